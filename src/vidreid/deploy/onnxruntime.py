"""The ONNX Runtime backend of :func:`vidreid.embed`: the exported graph (:mod:`vidreid.deploy.onnx_export`) run by an
``onnxruntime.InferenceSession`` on the CPU, in fp32 or int8.

- :class:`OrtNet` — an ``nn.Module`` face over a session: uint8 clips ``(n, T, 3, H, W)`` → ``(n, D)`` float32, so
  ``embed``'s decoding, clip cutting and clip averaging are the same code for both backends.
- :func:`cached_onnx` — the fp32 graph of a checkpoint, exported once into a cache folder keyed by the SHA-256 of
  the checkpoint's bytes (plus T, input size and the export format), so a changed checkpoint never reuses a stale
  graph.
- :func:`quantize_int8` — onnxruntime static quantization (QDQ format, per-channel int8 weights, uint8
  activations, MinMax calibration; ``onnxruntime.quantization.quantize_static``) calibrated on clips of the
  training data; cached under the hash of the calibration clips too.
- :func:`calibration_clips` / :func:`training_tracklets` — the calibration set: evenly spaced training tracklets
  (the checkpoint's own dataset config), one test clip each, decoded exactly as ``embed`` decodes them.

Needs the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import TestTrackletDataset, collate_tracklets
from vidreid.runtime.checkpoint_io import atomic_write
from vidreid.runtime.onnx import _require_ort, cache_root, ort_session  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMAT", "PRECISIONS", "QUANT_METHOD", "fp32_convs", "OrtNet", "cache_root", "cached_onnx", "calibration_clips", "calibration_id", "graph_path", "ort_session",
           "quantize_int8", "training_tracklets"]  # fmt: skip

#: bumped whenever the exported graph's contract changes (part of every cache key: old files are never reused)
EXPORT_FORMAT = "uint8-clips-v1"
PRECISIONS = ("fp32", "int8")


class OrtNet(nn.Module):
    """An onnxruntime session behind the network's call: uint8 clips ``(n, T, 3, H, W)`` (any memory layout) →
    ``(n, D)`` float32 embeddings on the CPU.

    Args:
        path: an exported graph (:func:`cached_onnx` or :func:`quantize_int8`). threads: intra-op threads.
    Raises (on call):
        ValueError: clips that are not uint8 or not 5-D (the graph's input contract).
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        # embed_tracklet_batch places inputs on the device of the module's first parameter: the CPU
        self._device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, clips: Tensor) -> Tensor:
        if clips.dtype != torch.uint8 or clips.dim() != 5:
            raise ValueError(f"OrtNet: expected uint8 clips (n, T, 3, H, W), got {clips.dtype} {tuple(clips.shape)}")
        x = np.ascontiguousarray(clips.cpu().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: x})[0])


def cached_onnx(
    module: nn.Module | Callable[[], nn.Module], checkpoint_sha256: str | None, seq_len: int, size: Sequence[int],
    cache_dir: str | Path | None = None,
) -> Path:
    """The fp32 graph of ``module`` (:func:`vidreid.deploy.onnx_export.export_onnx`, checked against PyTorch),
    exported once into ``<cache>/<sha256[:16]>/T<T>_<H>x<W>_fp32.onnx`` and reused while the checkpoint's bytes,
    T, size and :data:`EXPORT_FORMAT` stay the same (a ``.json`` beside it records the full key). Without a hash
    (a module passed in memory) the graph goes to a fresh temporary folder and is not reused. ``module`` may be a
    callable returning the network, called only when the graph must be exported.
    """
    from vidreid.deploy.onnx_export import export_onnx

    h, w = int(size[0]), int(size[1])
    if checkpoint_sha256 is None:
        folder = Path(tempfile.mkdtemp(prefix="vidreid-onnx-"))
        return export_onnx(_module(module), folder / f"T{seq_len}_{h}x{w}_fp32.onnx", seq_len=seq_len, size=(h, w))["path"]
    key = {"checkpoint_sha256": checkpoint_sha256, "seq_len": int(seq_len), "size": [h, w], "format": EXPORT_FORMAT,
           "torch": torch.__version__}  # fmt: skip
    path = cache_root(cache_dir) / checkpoint_sha256[:16] / f"T{seq_len}_{h}x{w}_fp32.onnx"
    if _cache_hit(path, key):
        return path
    net = _module(module)
    atomic_write(path, lambda tmp: export_onnx(net, tmp, seq_len=seq_len, size=(h, w)))
    _write_key(path, key)
    log.info("exported %s", path)
    return path


def _module(module: nn.Module | Callable[[], nn.Module]) -> nn.Module:
    return module if isinstance(module, nn.Module) else module()


def _cache_hit(path: Path, key: dict[str, Any]) -> bool:
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return False
    try:
        return json.loads(meta.read_text()) == key
    except (OSError, ValueError):
        return False


def _write_key(path: Path, key: dict[str, Any]) -> None:
    atomic_write(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(key, indent=1)))


class _ClipReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over ``(N, T, 3, H, W)`` uint8 clips, in batches."""

    def __init__(self, name: str, clips: np.ndarray, batch: int = 8):
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            [{name: np.ascontiguousarray(clips[i : i + batch])} for i in range(0, len(clips), batch)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


#: int8 recipe (part of the cache key): QDQ Conv-only, per-channel int8 weights, uint8 MinMax activations, the first
#: FP32_HEAD_FRACTION of the distinct convolutions (in order of use) kept in fp32
QUANT_METHOD = "static-qdq-conv-minmax-per-channel-fp32-head0.25"
FP32_HEAD_FRACTION = 0.25


def fp32_convs(model, head: float = FP32_HEAD_FRACTION) -> list[str]:
    """Names of the Conv nodes int8 leaves in fp32: those whose weight is among the first ``head`` fraction of the
    graph's distinct conv weights in order of use (a flip-test graph runs each weight twice; the exporter's
    ``_token_<n>`` copies count as one).

    Chosen by quantizing one quarter of the convolutions at a time (docs/deploy.md, PKU-Reid MobileNetV2 split 0,
    fp32 rank-1 0.811): the first quarter alone costs 0.325 rank-1 (0.486), the second and third quarters nothing
    (0.811, 0.838), and everything after the first quarter nothing either (0.838) — the early, high-resolution
    layers, whose activations int8 resolves worst, are where post-training quantization hurts this network."""
    import re

    convs = [(n.name, re.sub(r"_token_\d+$", "", n.input[1])) for n in model.graph.node if n.op_type == "Conv"]
    order = list(dict.fromkeys(w for _, w in convs))
    keep = set(order[: int(head * len(order))])
    return [name for name, w in convs if w in keep]


def quantize_int8(fp32_path: str | Path, clips: np.ndarray | Callable[[], np.ndarray], out: str | Path | None = None,
                  calibration_id: str | None = None) -> Path:  # fmt: skip
    """Static int8 quantization of an exported fp32 graph, calibrated on ``clips`` (uint8 ``(N, T, 3, H, W)``, or a
    callable returning them, called only on a cache miss).

    onnxruntime's ``quant_pre_process`` (shape inference, graph optimisation) then ``quantize_static``: QDQ
    format, convolutions only, per-channel symmetric int8 weights, asymmetric uint8 activations, MinMax ranges over
    the calibration clips; the first quarter of the convolutions stays fp32 (:func:`fp32_convs`). Cached next to ``fp32_path`` as ``<stem>_int8_<id[:12]>.onnx`` (``out`` overrides), ``id`` =
    ``calibration_id`` (:func:`calibration_id`: the frames' paths, sizes and modification times) or else the
    SHA-256 of the clips; the key also holds the fp32 graph's hash: the same graph and calibration give the same
    file, anything else another file.

    Raises:
        ValueError: ``clips`` is not a non-empty uint8 ``(N, T, 3, H, W)`` array.
    """
    ort = _require_ort()
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    def checked(x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.uint8 or x.ndim != 5 or not len(x):
            raise ValueError(f"calibration clips: expected uint8 (N, T, 3, H, W) with N >= 1, got {x.dtype} {x.shape}")
        return x

    if not callable(clips):
        clips = checked(clips)
        calibration_id = calibration_id or hashlib.sha256(clips.tobytes()).hexdigest()
    elif calibration_id is None:
        clips = checked(clips())
        calibration_id = hashlib.sha256(clips.tobytes()).hexdigest()
    fp32_path = Path(fp32_path)
    out = Path(out) if out is not None else fp32_path.with_name(
        f"{fp32_path.stem.removesuffix('_fp32')}_int8_{calibration_id[:12]}.onnx")  # fmt: skip
    key = {"fp32": fp32_path.name, "fp32_sha256": hashlib.sha256(fp32_path.read_bytes()).hexdigest(),
           "calibration": calibration_id, "onnxruntime": ort.__version__,
           "method": QUANT_METHOD}  # fmt: skip
    if _cache_hit(out, key):
        return out
    clips = checked(clips() if callable(clips) else clips)
    name = ort_session(fp32_path, 1, reuse=False).get_inputs()[0].name

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory() as d:
            pre = Path(d) / "pre.onnx"
            with contextlib.redirect_stdout(None):
                quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
            import onnx

            keep = fp32_convs(onnx.load(str(pre), load_external_data=False))
            quantize_static(str(pre), str(tmp), _ClipReader(name, clips), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=keep, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})  # fmt: skip

    atomic_write(out, write)
    _write_key(out, key)
    log.info("int8 graph %s (calibrated on %d clips)", out, len(clips))
    return out


def graph_path(
    module: nn.Module | Callable[[], nn.Module], checkpoint_sha256: str | None, clip: ClipSampler, size: Sequence[int],
    interpolation: str = "bilinear", precision: str = "fp32", calibration: Sequence[Tracklet] | None = None,
    datamodule_hparams: dict[str, Any] | None = None, calibration_clips_n: int = 64, cache_dir: str | Path | None = None,
) -> Path:  # fmt: skip
    """The graph ``vidreid.embed(backend="onnxruntime", precision=...)`` runs, exported / quantized on a cache miss:
    fp32 by :func:`cached_onnx`; int8 by :func:`quantize_int8` calibrated on ``calibration`` tracklets, else on the
    training tracklets of ``datamodule_hparams`` (:func:`training_tracklets`).

    Raises:
        ValueError: an unknown precision, or int8 without calibration tracklets or readable training data.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}, expected one of {PRECISIONS}")
    path = cached_onnx(module, checkpoint_sha256, clip.seq_len, size, cache_dir)
    if precision == "fp32":
        return path
    if calibration is None:
        if datamodule_hparams is None:
            raise ValueError("int8 needs calibration=[tracklets] (no checkpoint dataset to calibrate on)")
        calibration = training_tracklets(datamodule_hparams)
    return quantize_int8(
        path, lambda: calibration_clips(calibration, clip, size, interpolation, calibration_clips_n),
        calibration_id=calibration_id(calibration, clip, size, interpolation, calibration_clips_n))


def training_tracklets(datamodule_hparams: dict[str, Any], where: str = "checkpoint") -> list[Tracklet]:
    """The training tracklets of the dataset a checkpoint was trained on (its saved ``dataset`` config, whose
    ``_target_`` the safe checkpoint loader has restricted to vidreid's classes; a relative ``root`` is taken
    from the current directory, as ``train.py`` took it).

    Raises:
        ValueError: no dataset config in the checkpoint, or the dataset cannot be read here (the message says
            to pass ``calibration=`` tracklets instead).
    """
    from hydra.utils import instantiate

    ds_cfg = dict(datamodule_hparams.get("dataset") or {})
    if not str(ds_cfg.get("_target_", "")).startswith("vidreid.data.datasets."):
        raise ValueError(f"{where}: no vidreid dataset config saved; pass calibration=[tracklets] for int8")
    try:
        data = instantiate(ds_cfg)
    except Exception as e:  # noqa: BLE001 - any reader failure: say what to do instead
        raise ValueError(f"{where}: the training data ({ds_cfg.get('_target_')}, root={ds_cfg.get('root')!r}) "
                         f"cannot be read from {Path.cwd()} ({type(e).__name__}: {e}); run where it is or pass "
                         "calibration=[tracklets] for int8") from e  # fmt: skip
    return list(data.train)


def _calibration_rows(n: int, num_clips: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(num_clips, n)).round().astype(int))


def calibration_id(tracklets: Sequence[Tracklet], clip: ClipSampler, size: Sequence[int], interpolation: str = "bilinear",
                   num_clips: int = 64) -> str:  # fmt: skip
    """SHA-256 naming the calibration set :func:`calibration_clips` would decode (same arguments) without decoding
    it: the chosen frames' paths, sizes and modification times, T, the test scheme, size and interpolation.

    Raises:
        ValueError: no tracklets.
    """
    if not tracklets:
        raise ValueError("calibration: no tracklets")
    h = hashlib.sha256(repr((clip.seq_len, clip.test_scheme, tuple(size), interpolation, num_clips)).encode())
    for i in _calibration_rows(len(tracklets), num_clips):
        for f in tracklets[int(i)].frames:
            st = os.stat(f)
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def calibration_clips(
    tracklets: Sequence[Tracklet], clip: ClipSampler, size: Sequence[int], interpolation: str = "bilinear",
    num_clips: int = 64,
) -> np.ndarray:  # fmt: skip
    """uint8 ``(N, T, 3, H, W)`` calibration clips: ``num_clips`` tracklets evenly spaced over ``tracklets``
    (deterministic), the middle test clip of each, decoded and resized as ``embed`` does.

    Raises:
        ValueError: no tracklets.
    """
    if not tracklets:
        raise ValueError("calibration: no tracklets")
    rows = _calibration_rows(len(tracklets), num_clips)
    ds = TestTrackletDataset([tracklets[i] for i in rows], [], clip, size, interpolation)
    out = []
    for start in range(0, len(ds), 16):
        batch = collate_tracklets([ds[i] for i in range(start, min(len(ds), start + 16))])
        for frames, clips in zip(batch.frames, batch.clips):
            out.append(frames[clips[len(clips) // 2]].contiguous().numpy())
    return np.stack(out)
