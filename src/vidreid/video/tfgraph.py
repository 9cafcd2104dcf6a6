"""A frozen TensorFlow ``GraphDef`` (``.pb``) read without TensorFlow, and its convolutional part run in PyTorch.

Only what a MobileNet-SSD feature extractor and box predictor need: the protobuf wire format of
``tensorflow/core/framework/{graph,node_def,attr_value,tensor}.proto`` is decoded by hand (field numbers from
those files), ``Const`` tensors become numpy arrays, and the ops ``Conv2D``, ``DepthwiseConv2dNative``,
``FusedBatchNorm`` (inference), ``BiasAdd``, ``Relu6``, ``Relu``, ``Add``/``AddV2`` and ``Identity`` are
executed as ``torch.nn.functional`` calls in NCHW with TensorFlow's ``SAME``/``VALID`` padding (``SAME`` pads
the extra pixel at the bottom/right, as TensorFlow does). Batch norms are folded into the preceding convolution.
A ``.pb`` is data: nothing in it is executed as code.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TFGraph", "TFNode", "parse_graphdef"]

_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64, 10: np.bool_}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)`` of one protobuf message (value: int or bytes)."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        fn, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt} (field {fn})")
        yield fn, wt, v


def _packed_ints(v, wt) -> list[int]:
    if wt == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = _varint(v, i)
        out.append(x)
    return out


def _tensor(buf: bytes) -> np.ndarray | None:
    dtype, shape, content, floats, ints = 1, [], None, [], []
    for fn, wt, v in _fields(buf):
        if fn == 1:
            dtype = v
        elif fn == 2:  # TensorShapeProto: dim=2 {size=1}
            for f2, _, d in _fields(v):
                if f2 == 2:
                    size = next((x for f3, _, x in _fields(d) if f3 == 1), 0)
                    shape.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif fn == 4:
            content = v
        elif fn == 5:
            floats += list(struct.unpack(f"<{len(v) // 4}f", v)) if wt == 2 else [struct.unpack("<f", v)[0]]
        elif fn in (7, 10):
            ints += _packed_ints(v, wt)
    if dtype not in _DTYPES:  # strings, halves, ...: not needed by the convolutional part
        return None
    np_dtype = _DTYPES[dtype]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        arr = np.frombuffer(content, dtype=np_dtype).copy()
    else:
        vals = floats if np_dtype in (np.float32, np.float64) else [v - (1 << 64) if v >= 1 << 63 else v for v in ints]
        arr = np.asarray(vals, dtype=np_dtype)
        if arr.size == 1 and count > 1:  # TensorFlow stores a constant fill as one value
            arr = np.full(count, arr[0], np_dtype)
    return arr.reshape(shape)


class TFNode:
    """One ``NodeDef``: ``name``, ``op``, ``inputs`` (control inputs ``^x`` dropped, ``x:0`` -> ``x``) and the
    attributes used here (``strides``, ``padding``, ``epsilon``, ``data_format``, ``dilations``, ``value``)."""

    __slots__ = ("name", "op", "inputs", "attr")

    def __init__(self, name: str, op: str, inputs: list[str], attr: dict):
        self.name, self.op, self.inputs, self.attr = name, op, inputs, attr


def _attr_value(buf: bytes):
    for fn, _wt, v in _fields(buf):
        if fn == 1:  # ListValue: i=3 (packed), s=2
            ints: list[int] = []
            for f2, w2, x in _fields(v):
                if f2 == 3:
                    ints += _packed_ints(x, w2)
            return ints
        if fn == 2:
            return v.decode("utf-8", "replace")
        if fn == 3:
            return v
        if fn == 4:
            return struct.unpack("<f", v)[0]
        if fn == 5:
            return bool(v)
        if fn == 8:
            return _tensor(v)
    return None


def parse_graphdef(data: bytes) -> dict[str, TFNode]:
    """Nodes of a serialized ``GraphDef`` by name (attributes other than the ones listed in :class:`TFNode`
    are skipped)."""
    wanted = {"strides", "padding", "epsilon", "data_format", "dilations", "value"}
    nodes: dict[str, TFNode] = {}
    for fn, _, v in _fields(data):
        if fn != 1:
            continue
        name, op, inputs, attr = "", "", [], {}
        for f2, _, x in _fields(v):
            if f2 == 1:
                name = x.decode()
            elif f2 == 2:
                op = x.decode()
            elif f2 == 3:
                s = x.decode()
                if not s.startswith("^"):
                    inputs.append(s.split(":")[0])
            elif f2 == 5:
                key, val = "", b""
                for f3, _, y in _fields(x):
                    if f3 == 1:
                        key = y.decode()
                    elif f3 == 2:
                        val = y
                if key in wanted:
                    attr[key] = _attr_value(val)
        nodes[name] = TFNode(name, op, inputs, attr)
    return nodes


def _same_pad(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int]) -> torch.Tensor:
    pads = []
    for dim, kk, ss in ((x.shape[3], k[1], s[1]), (x.shape[2], k[0], s[0])):
        out = -(-dim // ss)
        total = max((out - 1) * ss + kk - dim, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class TFGraph:
    """The sub-graph between ``input_node`` and ``outputs`` of a frozen ``.pb``, executed in PyTorch.

    Args:
        path: the ``.pb`` file. input_node: the node whose value is fed (an NHWC float tensor in TensorFlow;
            here NCHW). outputs: node names computed by :meth:`__call__`.
    Raises:
        FileNotFoundError: no file. ValueError: an op outside the supported set (names node and op), or an
            output not reachable from the input.
    """

    SUPPORTED = {"Conv2D", "DepthwiseConv2dNative", "FusedBatchNorm", "FusedBatchNormV3", "BiasAdd", "Relu6",
                 "Relu", "Add", "AddV2", "Identity"}  # fmt: skip

    def __init__(self, path: str | Path, input_node: str, outputs: Sequence[str]):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"TensorFlow graph not found: {path}")
        self.nodes = parse_graphdef(path.read_bytes())
        self.input_node, self.outputs = input_node, list(outputs)
        self.program: list[tuple] = []
        self._compile()

    def _const(self, name: str) -> np.ndarray:
        n = self.nodes[name]
        while n.op == "Identity":
            n = self.nodes[n.inputs[0]]
        if n.op != "Const":
            raise ValueError(f"node {name!r}: expected a constant, got op {n.op}")
        if n.attr.get("value") is None:
            raise ValueError(f"constant {n.name!r}: unsupported dtype (expected float/int)")
        return n.attr["value"]

    def _compile(self) -> None:
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:  # iterative DFS to a topological order
            stack = [(name, False)]
            while stack:
                nm, done = stack.pop()
                if done:
                    order.append(nm)
                    continue
                if nm in seen:
                    continue
                seen.add(nm)
                if nm not in self.nodes:
                    raise ValueError(f"node {nm!r} not in the graph")
                stack.append((nm, True))
                if nm == self.input_node:
                    continue
                n = self.nodes[nm]
                data_inputs = n.inputs[:1] if n.op in ("Conv2D", "DepthwiseConv2dNative", "BiasAdd") or n.op.startswith(
                    "FusedBatchNorm") else n.inputs  # fmt: skip
                for i in reversed(data_inputs):
                    stack.append((i, False))

        for o in self.outputs:
            visit(o)
        consumers: dict[str, int] = {}
        for nm in order:
            if nm != self.input_node:
                for i in self.nodes[nm].inputs:
                    consumers[i] = consumers.get(i, 0) + 1
        prog: dict[str, list] = {}
        alias: dict[str, str] = {}
        for nm in order:
            if nm == self.input_node:
                continue
            n = self.nodes[nm]
            if n.op not in self.SUPPORTED:
                raise ValueError(f"node {nm!r}: op {n.op} is not supported by vidreid.video.tfgraph "
                                 f"(supported: {sorted(self.SUPPORTED)})")  # fmt: skip
            src = alias.get(n.inputs[0], n.inputs[0]) if n.inputs else None
            if n.op == "Identity":
                alias[nm] = src
                continue
            if n.attr.get("data_format", "NHWC") not in ("NHWC", None):
                raise ValueError(f"node {nm!r}: data_format {n.attr['data_format']} (expected NHWC)")
            if n.op in ("Conv2D", "DepthwiseConv2dNative"):
                w = self._const(n.inputs[1]).astype(np.float32)
                if n.op == "Conv2D":  # HWIO -> OIHW
                    wt, groups = np.transpose(w, (3, 2, 0, 1)), 1
                else:  # H W C M -> (C*M) 1 H W
                    kh, kw, c, m = w.shape
                    wt, groups = np.transpose(w, (2, 3, 0, 1)).reshape(c * m, 1, kh, kw), c
                strides = n.attr.get("strides") or [1, 1, 1, 1]
                dil = n.attr.get("dilations") or [1, 1, 1, 1]
                if max(dil) != 1:
                    raise ValueError(f"node {nm!r}: dilated convolutions are not supported")
                prog[nm] = ["conv", src, torch.from_numpy(np.ascontiguousarray(wt)),
                            torch.zeros(wt.shape[0]), (strides[1], strides[2]), n.attr.get("padding", "SAME"), groups]  # fmt: skip
            elif n.op.startswith("FusedBatchNorm") or n.op == "BiasAdd":
                if n.op == "BiasAdd":
                    a, b = None, self._const(n.inputs[1]).astype(np.float64)
                else:
                    g, beta, mean, var = (self._const(i).astype(np.float64) for i in n.inputs[1:5])
                    a = g / np.sqrt(var + float(n.attr.get("epsilon", 1e-3)))
                    b = beta - mean * a
                p = prog.get(src)
                if p is not None and p[0] == "conv" and consumers.get(src, 0) == 1:  # fold into the convolution
                    if a is not None:
                        p[2] = p[2] * torch.from_numpy(a.astype(np.float32)).view(-1, 1, 1, 1)
                        p[3] = p[3] * torch.from_numpy(a.astype(np.float32))
                    p[3] = p[3] + torch.from_numpy(b.astype(np.float32))
                    alias[nm] = src
                    continue
                prog[nm] = ["affine", src, None if a is None else torch.from_numpy(a.astype(np.float32)),
                            torch.from_numpy(b.astype(np.float32))]  # fmt: skip
            elif n.op in ("Relu6", "Relu"):
                prog[nm] = [n.op.lower(), src]
            else:  # Add / AddV2
                prog[nm] = ["add", src, alias.get(n.inputs[1], n.inputs[1])]
        self.program = [(nm, *prog[nm]) for nm in order if nm in prog]
        self.alias = alias

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x (B, C, H, W)`` float32 -> the ``outputs`` as NCHW tensors (in the order given)."""
        vals: dict[str, torch.Tensor] = {self.input_node: x}

        def get(name: str) -> torch.Tensor:
            return vals[self.alias.get(name, name)]

        for step in self.program:
            nm, kind = step[0], step[1]
            if kind == "conv":
                _, _, src, w, b, stride, padding, groups = step
                inp = get(src)
                if padding == "SAME":
                    inp = _same_pad(inp, (w.shape[2], w.shape[3]), stride)
                vals[nm] = F.conv2d(inp, w, b, stride=stride, groups=groups)
            elif kind == "affine":
                _, _, src, a, b = step
                y = get(src)
                vals[nm] = (y if a is None else y * a.view(1, -1, 1, 1)) + b.view(1, -1, 1, 1)
            elif kind == "relu6":
                vals[nm] = F.relu6(get(step[2]))
            elif kind == "relu":
                vals[nm] = F.relu(get(step[2]))
            else:
                vals[nm] = get(step[2]) + get(step[3])
        return [get(o) for o in self.outputs]
