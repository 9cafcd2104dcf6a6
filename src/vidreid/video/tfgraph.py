"""A frozen TensorFlow ``GraphDef`` (``.pb``) read without TensorFlow, and its convolutional part run in PyTorch.

Only what a MobileNet-SSD feature extractor and box predictor need: the protobuf wire format of
``tensorflow/core/framework/{graph,node_def,attr_value,tensor}.proto`` is decoded by hand (field numbers from
those files), ``Const`` tensors become numpy arrays, and the ops ``Conv2D``, ``DepthwiseConv2dNative``,
``FusedBatchNorm`` (inference), ``BiasAdd``, ``Relu6``, ``Relu``, ``Add``/``AddV2`` and ``Identity`` are
executed as ``torch.nn.functional`` calls in NCHW with TensorFlow's ``SAME``/``VALID`` padding (``SAME`` pads
the extra pixel at the bottom/right, as TensorFlow does). Batch norms are folded into the preceding convolution.
A ``.pb`` is data: nothing in it is executed as code.

The TensorFlow.js *graph model* format is read as well (:func:`read_tfjs_graph`): ``model.json`` holds the same
``GraphDef`` written as JSON (``modelTopology.node``: ``name``, ``op``, ``input``, ``attr``) and a weights
manifest whose entries (``name``, ``shape``, ``dtype``, optional ``quantization``) are laid out one after the
other in the concatenated binary shards (``float16`` halves, ``uint8`` / ``uint16`` affine codes
``q * scale + min``, as in tfjs-core ``io/io_utils.ts`` ``decodeWeights``). :class:`TFJSGraph` executes such a
graph node by node in PyTorch with TensorFlow's NHWC semantics, including Grappler's fused ops
(``_FusedConv2D``, ``FusedDepthwiseConv2dNative``) and the tensor ops of a detector's decoding tail
(``TopKV2``, ``GatherV2``, ``StridedSlice``, ...).
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["TFGraph", "TFJSGraph", "TFNode", "decode_tfjs_weights", "parse_graphdef", "read_tfjs_graph"]

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



def topological_order(outputs: Sequence[str], inputs: Callable[[str], Sequence[str]], nodes: Mapping,
                      where: str) -> list[str]:  # fmt: skip
    """The nodes ``outputs`` depend on, each after its ``inputs(name)`` (iterative depth-first search, so deep
    graphs need no recursion), each once.

    Raises:
        ValueError: a node that is not in ``nodes`` (names it and ``where``).
    """
    order: list[str] = []
    seen: set[str] = set()
    for out in outputs:
        stack = [(out, False)]
        while stack:
            nm, done = stack.pop()
            if done:
                order.append(nm)
                continue
            if nm in seen:
                continue
            seen.add(nm)
            if nm not in nodes:
                raise ValueError(f"node {nm!r} not in {where}")
            stack.append((nm, True))
            for i in reversed(list(inputs(nm))):
                stack.append((i, False))
    return order

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
        def data_inputs(nm: str) -> list[str]:  # the weights of a conv / BN are constants, read when compiled
            if nm == self.input_node:
                return []
            n = self.nodes[nm]
            return n.inputs[:1] if n.op in ("Conv2D", "DepthwiseConv2dNative", "BiasAdd") or n.op.startswith(
                "FusedBatchNorm") else n.inputs  # fmt: skip

        order = topological_order(self.outputs, data_inputs, self.nodes, "the graph")
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


# ----------------------------------------------------------------------------------------------------------------
# TensorFlow.js graph models (model.json + binary weight shards)

_TFJS_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "float16": np.float16,
                "uint8": np.uint8, "uint16": np.uint16}  # fmt: skip


def decode_tfjs_weights(specs: Sequence[Mapping], buffer: bytes) -> dict[str, np.ndarray]:
    """Arrays of one TFJS weights-manifest group, read in order from the group's concatenated shards ``buffer``.

    Each spec has ``name``, ``shape``, ``dtype`` (``float32`` / ``int32`` / ``bool``) and optionally
    ``quantization = {dtype, scale, min, original_dtype}``: ``float16`` codes are widened to float32, ``uint8`` /
    ``uint16`` codes become ``q * scale + min`` (float32, or rounded to int32 when ``original_dtype`` is int32) —
    the rules of tfjs-core ``io/io_utils.ts`` ``decodeWeights``.

    Raises:
        ValueError: an unsupported dtype (``string``, ``complex64``, ...) or quantization, or a buffer shorter or
            longer than the specs need (names the weight and both sizes).
    """
    out: dict[str, np.ndarray] = {}
    off = 0
    for spec in specs:
        name, shape, dtype = spec["name"], [int(d) for d in spec.get("shape", [])], spec.get("dtype", "float32")
        q = spec.get("quantization")
        stored = q["dtype"] if q else dtype
        if stored not in _TFJS_DTYPES or dtype not in ("float32", "int32", "bool"):
            raise ValueError(f"TFJS weight {name!r}: unsupported dtype {dtype!r} / quantization {stored!r} "
                             f"(supported: float32, int32, bool; quantized float16, uint8, uint16)")  # fmt: skip
        np_dtype = np.dtype(_TFJS_DTYPES[stored])
        count = int(np.prod(shape)) if shape else 1
        nbytes = count * np_dtype.itemsize
        if off + nbytes > len(buffer):
            raise ValueError(f"TFJS weight {name!r} needs bytes {off}..{off + nbytes} but the shards hold "
                             f"{len(buffer)} bytes")  # fmt: skip
        arr = np.frombuffer(buffer, dtype=np_dtype.newbyteorder("<"), count=count, offset=off)
        off += nbytes
        if q and stored in ("uint8", "uint16"):
            if "scale" not in q or "min" not in q:
                raise ValueError(f"TFJS weight {name!r}: {stored} quantization without scale/min: {q}")
            arr = arr.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            if q.get("original_dtype", dtype) == "int32" or dtype == "int32":
                arr = np.round(arr).astype(np.int32)
        elif stored == "float16":
            arr = arr.astype(np.float32)
        else:
            arr = arr.astype(np_dtype.newbyteorder("="), copy=True)
        out[name] = arr.reshape(shape)
    if off != len(buffer):
        raise ValueError(f"TFJS weights: the manifest describes {off} bytes but the shards hold {len(buffer)}")
    return out


def _tfjs_attr(v: Mapping):
    """A JSON ``AttrValue`` as a Python value (strings base64-decoded; tensors/shapes: ``None``)."""
    if "list" in v:
        lst = v["list"]
        if "i" in lst:
            return [int(x) for x in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(x).decode("utf-8", "replace") for x in lst["s"]]
        if "f" in lst:
            return [float(x) for x in lst["f"]]
        return []
    if "s" in v:
        return base64.b64decode(v["s"]).decode("utf-8", "replace")
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return float(v["f"])
    if "b" in v:
        return bool(v["b"])
    if "type" in v:
        return v["type"]
    return None


def read_tfjs_graph(path: str | Path) -> tuple[dict[str, TFNode], dict]:
    """Nodes of a TensorFlow.js graph model ``path`` (its ``model.json``; the weight shards named in its manifest
    are read from the same folder), by name, with every ``Const`` node's ``attr["value"]`` set to its decoded
    array, and the model's ``signature`` (``{}`` when absent). Node inputs keep their output index
    (``"topk:1"``); control inputs (``^x``) are dropped.

    Raises:
        FileNotFoundError: ``path`` or a shard missing (names it). ValueError: not a graph model, or a weight
            the manifest lists that no node uses as a ``Const`` / a ``Const`` without a weight.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TensorFlow.js graph model not found: {path}")
    model = json.loads(path.read_text())
    topo = model.get("modelTopology")
    if not isinstance(topo, dict) or "node" not in topo or "weightsManifest" not in model:
        raise ValueError(f"{path}: not a TensorFlow.js graph model (expected modelTopology.node and weightsManifest)")
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        shards = []
        for rel in group["paths"]:
            shard = path.parent / rel
            if not shard.is_file():
                raise FileNotFoundError(f"TensorFlow.js weight shard not found: {shard} (listed in {path})")
            shards.append(shard.read_bytes())
        weights.update(decode_tfjs_weights(group["weights"], b"".join(shards)))
    nodes: dict[str, TFNode] = {}
    for n in topo["node"]:
        attr = {k: _tfjs_attr(v) for k, v in n.get("attr", {}).items()}
        if n["op"] == "Const":
            if n["name"] not in weights:
                raise ValueError(f"{path}: constant {n['name']!r} has no entry in the weights manifest")
            attr["value"] = weights[n["name"]]
        inputs = [i for i in n.get("input", []) if not i.startswith("^")]
        nodes[n["name"]] = TFNode(n["name"], n["op"], inputs, attr)
    return nodes, model.get("signature") or {}


def _ref(name: str) -> tuple[str, int]:
    base, _, k = name.partition(":")
    return base, int(k) if k else 0


def _pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow ``SAME`` padding (before, after) of one spatial dimension (the odd pixel goes after)."""
    eff = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + eff - size, 0)
    return total // 2, total - total // 2


_ACTS: dict[str, Callable] = {"Relu": F.relu, "Relu6": F.relu6, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
                              "Elu": F.elu}  # fmt: skip
_TORCH_DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_INT64": torch.int64, "DT_BOOL": torch.bool}


@functools.lru_cache(maxsize=64)
def _resize_matrix(n: int, out: int, align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """``(out, n)`` float32 weights of TensorFlow's ``ResizeBilinear`` along one axis
    (``tensorflow/core/kernels/image/resize_bilinear_op.cc``: legacy ``in = out * scale``, half-pixel
    ``(out + 0.5) * scale - 0.5`` clamped at 0, or the align-corners scale ``(n - 1) / (out - 1)``)."""
    scale = (n - 1) / (out - 1) if align_corners and out > 1 else n / out
    pos = np.arange(out, dtype=np.float64)
    src = np.maximum((pos + 0.5) * scale - 0.5, 0.0) if half_pixel else pos * scale
    lo = np.minimum(np.floor(src).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = src - np.floor(src)
    m = np.zeros((out, n))
    np.add.at(m, (np.arange(out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(out), hi), frac)
    return torch.from_numpy(m.astype(np.float32))


def _resize_bilinear(x: torch.Tensor, size: Sequence[int], align_corners: bool, half_pixel: bool) -> torch.Tensor:
    """TensorFlow ``ResizeBilinear`` of an NHWC tensor to ``size = (height, width)`` (separable: two matrix
    products with :func:`_resize_matrix`)."""
    mh = _resize_matrix(int(x.shape[1]), int(size[0]), align_corners, half_pixel)
    mw = _resize_matrix(int(x.shape[2]), int(size[1]), align_corners, half_pixel)
    y = torch.einsum("oh,bhwc->bowc", mh, x)
    return torch.einsum("pw,bowc->bopc", mw, y).contiguous()


class TFJSGraph:
    """A TensorFlow.js graph model executed in PyTorch with TensorFlow's semantics (NHWC image tensors).

    Convolutions run as ``torch.nn.functional.conv2d`` on channels-last views (no copy between the NHWC tensors
    and the NCHW calls); ``SAME`` padding puts the odd pixel after, as TensorFlow does; Grappler's fused
    convolutions apply ``BiasAdd`` or an inference ``FusedBatchNorm`` (folded into the weights) and then their
    activation. Supported ops: :attr:`SUPPORTED`. Multi-output ops (``TopKV2``) are addressed as ``"name:k"``.

    Args:
        path: ``model.json`` of the graph model (its shards beside it).
    Raises:
        FileNotFoundError: missing model or shard (names it). ValueError: an op outside :attr:`SUPPORTED` on
            the way to a requested output (names node and op), or a shape argument that is not a constant.
    """

    SUPPORTED = {"Placeholder", "Const", "Identity", "Conv2D", "DepthwiseConv2dNative", "_FusedConv2D",
                 "FusedDepthwiseConv2dNative", "BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "FloorDiv",
                 "FloorMod", "Maximum", "Minimum", "Relu", "Relu6", "Sigmoid", "Tanh", "LeakyRelu", "Mean",
                 "ConcatV2", "Reshape", "ExpandDims", "Squeeze", "Transpose", "StridedSlice", "GatherV2", "TopKV2",
                 "Cast", "Equal", "MaxPool", "AvgPool", "ResizeBilinear", "Pad", "PadV2"}  # fmt: skip

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.nodes, self.signature = read_tfjs_graph(self.path)
        self.inputs = [n.name for n in self.nodes.values() if n.op == "Placeholder"]
        self._consts = {nm: n.attr["value"] for nm, n in self.nodes.items() if n.op == "Const"}
        self._programs: dict[tuple, list] = {}

    # -- compilation -------------------------------------------------------------------------------------------
    def _const_np(self, ref: str, node: str) -> np.ndarray:
        base, _ = _ref(ref)
        n = self.nodes[base]
        while n.op == "Identity":
            n = self.nodes[_ref(n.inputs[0])[0]]
        if n.op != "Const":
            raise ValueError(f"node {node!r}: input {ref!r} must be a constant (got op {n.op}): dynamic shapes "
                             f"are not supported by vidreid.video.tfgraph")  # fmt: skip
        return n.attr["value"]

    def _const_t(self, ref: str, node: str) -> torch.Tensor:
        a = self._const_np(ref, node)
        return torch.from_numpy(np.ascontiguousarray(a))

    def _conv_fn(self, n: TFNode) -> Callable:
        a = n.attr
        if a.get("data_format", "NHWC") != "NHWC":
            raise ValueError(f"node {n.name!r}: data_format {a['data_format']} (expected NHWC)")
        depthwise = "Depthwise" in n.op
        w = self._const_np(n.inputs[1], n.name).astype(np.float32)
        if depthwise:  # H W C M -> (C*M) 1 H W
            kh, kw, c, m = w.shape
            wt, groups = np.transpose(w, (2, 3, 0, 1)).reshape(c * m, 1, kh, kw), c
        else:  # H W I O -> O I H W
            wt, groups = np.transpose(w, (3, 2, 0, 1)), 1
        wt = wt.astype(np.float64)
        bias = np.zeros(wt.shape[0])
        act: Callable | None = None
        fused = a.get("fused_ops") or []
        if n.op.startswith(("_Fused", "Fused")):
            args = n.inputs[2:2 + int(a.get("num_args", len(n.inputs) - 2))]
            ops = list(fused)
            if ops and ops[0] == "BiasAdd":
                bias = self._const_np(args[0], n.name).astype(np.float64)
                ops.pop(0)
            elif ops and ops[0] == "FusedBatchNorm":
                g, beta, mean, var = (self._const_np(x, n.name).astype(np.float64) for x in args[:4])
                s = g / np.sqrt(var + float(a.get("epsilon", 1e-3)))
                wt, bias = wt * s.reshape(-1, 1, 1, 1), beta - mean * s
                ops.pop(0)
            if len(ops) > 1 or (ops and ops[0] not in _ACTS and ops[0] != "LeakyRelu"):
                raise ValueError(f"node {n.name!r}: fused ops {fused} are not supported (BiasAdd or FusedBatchNorm, "
                                 f"then one of {sorted(_ACTS) + ['LeakyRelu']})")  # fmt: skip
            if ops:
                alpha = float(a.get("leakyrelu_alpha", 0.2))
                act = (lambda t: F.leaky_relu(t, alpha)) if ops[0] == "LeakyRelu" else _ACTS[ops[0]]
        st, dil = a.get("strides") or [1, 1, 1, 1], a.get("dilations") or [1, 1, 1, 1]
        stride, dilation = (st[1], st[2]), (dil[1], dil[2])
        padding, explicit = a.get("padding", "VALID"), a.get("explicit_paddings") or []
        weight = torch.from_numpy(wt.astype(np.float32)).contiguous(memory_format=torch.channels_last)
        b = torch.from_numpy(bias.astype(np.float32))
        kh, kw = weight.shape[2], weight.shape[3]

        def conv(x: torch.Tensor) -> torch.Tensor:
            xc = x.permute(0, 3, 1, 2)
            if padding == "SAME":
                (t, bo), (le, r) = _pads(xc.shape[2], kh, stride[0], dilation[0]), _pads(xc.shape[3], kw, stride[1],
                                                                                          dilation[1])  # fmt: skip
            elif padding == "EXPLICIT":
                t, bo, le, r = explicit[2], explicit[3], explicit[4], explicit[5]
            else:
                t = bo = le = r = 0
            if t == bo and le == r:
                y = F.conv2d(xc, weight, b, stride, (t, le), dilation, groups)
            else:
                y = F.conv2d(F.pad(xc, (le, r, t, bo)), weight, b, stride, 0, dilation, groups)
            if act is not None:
                y = act(y)
            return y.permute(0, 2, 3, 1)

        return conv

    def _pool_fn(self, n: TFNode) -> Callable:
        a = n.attr
        k, st = a["ksize"], a["strides"]
        kh, kw, sh, sw = k[1], k[2], st[1], st[2]
        same, is_max = a.get("padding") == "SAME", n.op == "MaxPool"

        def pool(x: torch.Tensor) -> torch.Tensor:
            xc = x.permute(0, 3, 1, 2)
            if same:
                (t, bo), (le, r) = _pads(xc.shape[2], kh, sh, 1), _pads(xc.shape[3], kw, sw, 1)
                if is_max and t == bo and le == r:  # torch pads with -inf itself
                    y = F.max_pool2d(xc, (kh, kw), (sh, sw), (t, le))
                elif is_max:
                    xc = F.pad(xc, (le, r, t, bo), value=float("-inf"))
                    y = F.max_pool2d(xc, (kh, kw), (sh, sw))
                else:  # TensorFlow averages over the valid pixels only
                    ones = F.pad(torch.ones_like(xc[:1, :1]), (le, r, t, bo))
                    xc = F.pad(xc, (le, r, t, bo))
                    y = F.avg_pool2d(xc, (kh, kw), (sh, sw)) / F.avg_pool2d(ones, (kh, kw), (sh, sw))
            else:
                y = (F.max_pool2d if is_max else F.avg_pool2d)(xc, (kh, kw), (sh, sw))
            return y.permute(0, 2, 3, 1)

        return pool

    def _strided_slice_fn(self, n: TFNode) -> Callable:
        begin, end, strides = (self._const_np(i, n.name).tolist() for i in n.inputs[1:4])
        a = n.attr
        if a.get("ellipsis_mask", 0) or a.get("new_axis_mask", 0) or any(s < 1 for s in strides):
            raise ValueError(f"node {n.name!r}: StridedSlice with ellipsis/new-axis masks or negative strides is not "
                             f"supported")  # fmt: skip
        bm, em, sm = a.get("begin_mask", 0), a.get("end_mask", 0), a.get("shrink_axis_mask", 0)
        index: list = []
        for i, (b0, e0, s0) in enumerate(zip(begin, end, strides)):
            if sm >> i & 1:
                index.append(b0)
            else:
                index.append(slice(None if bm >> i & 1 else b0, None if em >> i & 1 else e0, s0))
        index_t = tuple(index)
        return lambda x: x[index_t]

    def _step(self, n: TFNode) -> tuple[Callable, list[str]]:  # noqa: C901 - one branch per op
        op, a, ins = n.op, n.attr, n.inputs
        const = self._const_np
        if op not in self.SUPPORTED:
            raise ValueError(f"node {n.name!r}: op {op} is not supported by vidreid.video.tfgraph.TFJSGraph "
                             f"(supported: {sorted(self.SUPPORTED)})")  # fmt: skip
        if op == "Const":
            v = self._const_t(n.name, n.name)
            return (lambda: v), []
        if op == "Identity":
            return (lambda x: x), ins[:1]
        if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
            return self._conv_fn(n), ins[:1]
        if op in ("MaxPool", "AvgPool"):
            return self._pool_fn(n), ins[:1]
        binary = {"BiasAdd": torch.add, "Add": torch.add, "AddV2": torch.add, "Sub": torch.sub, "Mul": torch.mul,
                  "RealDiv": torch.div, "Maximum": torch.maximum, "Minimum": torch.minimum, "Equal": torch.eq,
                  "FloorDiv": lambda x, y: torch.div(x, y, rounding_mode="floor"), "FloorMod": torch.remainder}  # fmt: skip
        if op in binary:
            return binary[op], ins[:2]
        if op in _ACTS:
            return _ACTS[op], ins[:1]
        if op == "LeakyRelu":
            alpha = float(a.get("alpha", 0.2))
            return (lambda x: F.leaky_relu(x, alpha)), ins[:1]
        if op == "Cast":
            dt = _TORCH_DTYPES[a["DstT"]]
            return (lambda x: x.to(dt)), ins[:1]
        if op == "Mean":
            axes, keep = [int(v) for v in np.atleast_1d(const(ins[1], n.name))], bool(a.get("keep_dims", False))
            return (lambda x: x.mean(dim=axes, keepdim=keep)), ins[:1]
        if op == "ConcatV2":
            axis = int(const(ins[-1], n.name))
            return (lambda *xs: torch.cat(xs, axis)), ins[:-1]
        if op == "Reshape":
            shape = [int(v) for v in const(ins[1], n.name).reshape(-1)]
            return (lambda x: x.reshape(shape)), ins[:1]
        if op == "ExpandDims":
            dim = int(const(ins[1], n.name))
            return (lambda x: x.unsqueeze(dim)), ins[:1]
        if op == "Squeeze":
            dims = a.get("squeeze_dims") or []
            return (lambda x: x.squeeze(tuple(dims)) if dims else x.squeeze()), ins[:1]
        if op == "Transpose":
            perm = [int(v) for v in const(ins[1], n.name)]
            return (lambda x: x.permute(perm)), ins[:1]
        if op == "StridedSlice":
            return self._strided_slice_fn(n), ins[:1]
        if op == "GatherV2":
            axis = int(const(ins[2], n.name))
            if a.get("batch_dims", 0):
                raise ValueError(f"node {n.name!r}: GatherV2 with batch_dims is not supported")

            def gather(p: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                ax = axis % p.dim()
                g = p.index_select(ax, idx.reshape(-1).long())
                return g.reshape(p.shape[:ax] + idx.shape + p.shape[ax + 1:])

            return gather, ins[:2]
        if op == "TopKV2":
            k = int(const(ins[1], n.name))

            def topk(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                if x.dim() == 2 and len(x) == 1 and x.shape[1] > 64 * k:
                    # a detector's masked heat-map is mostly zeros: when >= k values are positive, the k largest
                    # are among them (exact, and ~10x less to rank)
                    pos = (x[0] > 0).nonzero().view(-1)
                    if len(pos) >= k:
                        v, j = torch.topk(x[0, pos], k, sorted=True)
                        i = pos[j]
                        i, o = torch.sort(i)
                        v, o2 = torch.sort(v.gather(0, o), descending=True, stable=True)
                        return v[None], i.gather(0, o2).to(torch.int32)[None]
                v, i = torch.topk(x, k, dim=-1, largest=True, sorted=True)
                # TensorFlow orders equal values by index; torch.topk leaves ties unspecified
                i, o = torch.sort(i, dim=-1)
                v = v.gather(-1, o)
                v, o = torch.sort(v, dim=-1, descending=True, stable=True)
                return v, i.gather(-1, o).to(torch.int32)

            return topk, ins[:1]
        if op == "ResizeBilinear":
            size = [int(v) for v in const(ins[1], n.name)]
            ac, hp = bool(a.get("align_corners", False)), bool(a.get("half_pixel_centers", False))
            return (lambda x: _resize_bilinear(x, size, ac, hp)), ins[:1]
        # Pad / PadV2
        pads = const(ins[1], n.name).reshape(-1, 2)
        flat = [int(v) for pair in pads[::-1] for v in pair]
        value = float(const(ins[2], n.name)) if op == "PadV2" else 0.0
        return (lambda x: F.pad(x, flat, value=value)), ins[:1]

    def _compile(self, outputs: tuple[str, ...], feeds: tuple[str, ...]) -> list:
        def inputs(nm: str) -> list[str]:  # fed nodes, graph inputs and constants are leaves
            n = self.nodes[nm]
            return [] if nm in feeds or n.op in ("Placeholder", "Const") else [_ref(i)[0] for i in n.inputs]

        order = topological_order([_ref(o)[0] for o in outputs], inputs, self.nodes, f"the graph {self.path}")
        prog = []
        for nm in order:
            n = self.nodes[nm]
            if nm in feeds:
                continue
            if n.op == "Placeholder":
                raise ValueError(f"graph input {nm!r} needed for {outputs} but not fed")
            fn, ins = self._step(n)
            prog.append((nm, fn, [_ref(i) for i in ins]))
        return prog

    @torch.no_grad()
    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Sequence[str]) -> list[torch.Tensor]:
        """Values of ``outputs`` (``"name"`` or ``"name:k"``) given ``feeds`` (node name -> tensor; a graph input
        or any intermediate node, whose inputs then are not computed). Image tensors are NHWC, as in TensorFlow.

        Raises:
            ValueError: a needed graph input not fed, or an unsupported op on the way (see the class).
        """
        key = (tuple(outputs), tuple(sorted(feeds)))
        prog = self._programs.get(key)
        if prog is None:
            prog = self._programs[key] = self._compile(key[0], key[1])
        vals: dict[str, object] = dict(feeds)
        for nm, fn, ins in prog:
            args = []
            for base, k in ins:
                v = vals[base]
                args.append(v[k] if isinstance(v, tuple) else v)
            vals[nm] = fn(*args)
        res = []
        for o in outputs:
            base, k = _ref(o)
            v = vals[base]
            res.append(v[k] if isinstance(v, tuple) else v)
        return res
