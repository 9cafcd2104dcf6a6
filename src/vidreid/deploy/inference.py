"""Inference with a trained checkpoint: load it (``ReIDLitModule.load_from_checkpoint``), read the data settings it
was trained with, and embed tracklets through ``predict_step`` + ``trainer.predict`` (:func:`embed`, exposed as
``vidreid.embed``), in three steps: reading (:func:`read_model`, :func:`data_settings`), backend choice
(:func:`onnxruntime_network` for onnxruntime, the module itself for PyTorch) and batching (:func:`predict`).

One rule for every consumer (``evaluate.py``, :func:`embed`, the ONNX export): the checkpoint's network, input
size and clip length win; an explicitly requested different value is an error naming both
(:func:`check_settings`).

Layering: entry points → callbacks → inference / io → LightningModule → models, data, evaluation.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vidreid.data.batch import TestBatch
from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import TestTrackletDataset, collate_tracklets
from vidreid.deploy.loading import (
    CheckpointSettings,
    _network_of,
    checkpoint_settings,
    load_checkpoint,
    load_module,
    load_network,
    read_checkpoint,
)
from vidreid.engine.lit_module import ReIDLitModule
from vidreid.engine.progress import HARMLESS_WARNINGS
from vidreid.evaluation.features import DEFAULT_MAX_CLIPS_PER_FORWARD, embed_tracklet_batch
from vidreid.runtime.checkpoint_io import CheckpointError

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "CheckpointError", "CheckpointSettings", "EmbedData", "EmbedModel", "SettingsConflict",
           "as_tracklet", "check_backend", "check_settings", "checkpoint_settings", "data_settings", "embed",
           "load_checkpoint", "load_module", "load_network", "onnxruntime_network", "predict", "read_checkpoint",
           "read_model"]  # fmt: skip

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: ``embed(backend=...)``: PyTorch eager, or the exported graph under onnxruntime (``precision`` fp32 / int8)
BACKENDS = ("pytorch", "onnxruntime")


class SettingsConflict(ValueError):
    """A requested setting differs from the one the checkpoint was trained with."""


def check_settings(requested: dict[str, Any], trained: dict[str, Any], where: str) -> None:
    """Raise :class:`SettingsConflict` when a requested value (not ``None``) differs from the trained one.

    Args:
        requested / trained: ``{name: value}`` (sequences compare element-wise as tuples).
        where: what the trained values come from (the checkpoint path), for the message.
    """
    norm = lambda v: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v  # noqa: E731
    bad = [(k, v, trained[k]) for k, v in requested.items()
           if v is not None and k in trained and norm(v) != norm(trained[k])]  # fmt: skip
    if bad:
        lines = "; ".join(f"{k}: requested {norm(v)!r}, the checkpoint was trained with {norm(t)!r}" for k, v, t in bad)
        raise SettingsConflict(f"{lines} ({where}). The checkpoint's input size, clip length and network are used "
                               "for evaluation and embedding: drop the override (or retrain with it).")


def as_tracklet(item: Tracklet | str | Path | Sequence[str | Path], i: int) -> Tracklet:
    """A :class:`Tracklet` (pid/camid -1) from a tracklet, a folder of frames (sorted by name) or frame paths.

    Raises:
        FileNotFoundError: a folder that does not exist. ValueError: no frames.
    """
    if isinstance(item, Tracklet):
        return item
    if isinstance(item, str | Path):
        folder = Path(item)
        if not folder.is_dir():
            raise FileNotFoundError(f"tracklet {i}: {folder} is not a folder of frames")
        frames = tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        if not frames:
            raise ValueError(f"tracklet {i}: no {'/'.join(IMAGE_SUFFIXES)} frames in {folder}")
        return Tracklet(frames, pid=-1, camid=-1)
    frames = tuple(Path(p) for p in item)
    if not frames:
        raise ValueError(f"tracklet {i}: empty frame list (expected at least one frame path)")
    return Tracklet(frames, pid=-1, camid=-1)


class NetPredictor(pl.LightningModule):
    """``predict_step`` for a bare network (``ReIDNet`` or any ``(n, T, 3, H, W) -> (n, D)`` eval module)."""

    def __init__(self, net: nn.Module, max_clips_per_forward: int = DEFAULT_MAX_CLIPS_PER_FORWARD):
        super().__init__()
        self.net, self.max_clips_per_forward = net, int(max_clips_per_forward)

    def predict_step(self, batch: TestBatch, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return embed_tracklet_batch(self.net, batch, self.max_clips_per_forward)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning for the library call: its per-Trainer info lines (GPU available, ...) and the warnings of
    :data:`~vidreid.engine.progress.HARMLESS_WARNINGS` (the ``_pytree`` ``LeafSpec`` deprecation inside Lightning's
    predict loop), in a ``warnings.catch_warnings`` scope: the caller's warning filters are the same afterwards."""
    names = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern, _ in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _trainer_device(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    if device.type == "mps":
        return {"accelerator": "mps", "devices": 1}
    return {"accelerator": "cpu", "devices": 1}


@dataclass(frozen=True)
class EmbedModel:
    """What :func:`read_model` gives :func:`embed`.

    Attributes:
        model: a ``ReIDLitModule``, a bare network, or (onnxruntime, checkpoint file) a function building the
            network only when its graph is not cached yet.
        settings: the checkpoint's data settings (``None`` for a module passed in memory).
        sha256: the checkpoint file's SHA-256 (onnxruntime only: the graph cache key), else ``None``.
    """

    model: nn.Module | Callable[[], nn.Module]
    settings: CheckpointSettings | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class EmbedData:
    """How tracklets are cut and resized for the network: ``clip`` (:class:`ClipSampler` keyword arguments),
    ``size`` ``(H, W)`` and the resize ``interpolation``."""

    clip: dict[str, Any]
    size: tuple[int, int]
    interpolation: str = "bilinear"


def check_backend(backend: str, precision: str) -> None:
    """Raise ``ValueError`` for an unknown ``backend`` (:data:`BACKENDS`) or a precision other than ``fp32``, or
    ``int8`` with ``backend="onnxruntime"``."""
    if backend not in BACKENDS:
        raise ValueError(f"embed: backend={backend!r}, expected one of {BACKENDS}")
    if precision not in ("fp32", "int8") or (precision == "int8" and backend != "onnxruntime"):
        raise ValueError(f"embed: precision={precision!r}, expected fp32, or int8 with backend='onnxruntime'")


def read_model(checkpoint: str | Path | nn.Module, backend: str = "pytorch", seq_len: int | None = None,
               size: Sequence[int] | None = None) -> EmbedModel:  # fmt: skip
    """Reading: parse a checkpoint file once (network and data settings), or take a module passed in memory.

    A file's ``seq_len``/``size`` win over the requested ones (:func:`check_settings`); for ``backend="pytorch"``
    the ``ReIDLitModule`` is built, for ``"onnxruntime"`` only the file's hash is taken and the network is built
    later, if its graph is not cached.

    Raises:
        FileNotFoundError / CheckpointError: as :func:`read_checkpoint`. SettingsConflict: as :func:`check_settings`.
    """
    if not isinstance(checkpoint, str | Path):
        if seq_len is None or size is None:
            log.warning("embed: a module carries no data settings; using T=%s, size=%s (pass seq_len= and size=)",
                        seq_len or 8, tuple(size or (256, 128)))  # fmt: skip
        return EmbedModel(checkpoint)
    buf = read_checkpoint(checkpoint)
    sha256 = hashlib.sha256(buf.getbuffer()).hexdigest() if backend == "onnxruntime" else None
    ckpt = load_checkpoint(buf, name=checkpoint)
    del buf
    settings = checkpoint_settings(ckpt, checkpoint)
    check_settings({"seq_len": seq_len, "size": size}, {"seq_len": settings.seq_len, "size": settings.size},
                   str(checkpoint))  # fmt: skip
    model = load_module(ckpt) if backend == "pytorch" else functools.partial(_network_of, ckpt)
    return EmbedModel(model, settings, sha256)


def data_settings(settings: CheckpointSettings | None, seq_len: int | None = None, size: Sequence[int] | None = None,
                  test_scheme: str | None = None) -> EmbedData:  # fmt: skip
    """The clip sampler, input size and interpolation: the checkpoint's (``settings``), else ``seq_len`` /
    ``size`` (default ``T=8``, ``(256, 128)``, bilinear); ``test_scheme`` overrides the checkpoint's (default
    ``all_frames``)."""
    clip = {k: v for k, v in dict(settings.clip if settings else {}).items()
            if k in ("seq_len", "test_scheme", "dense_max_clips")}  # fmt: skip
    clip["seq_len"] = settings.seq_len if settings else int(seq_len or 8)
    clip.setdefault("test_scheme", "all_frames")
    if test_scheme is not None:
        clip["test_scheme"] = test_scheme
    if settings:
        return EmbedData(clip, tuple(settings.size), settings.interpolation)
    return EmbedData(clip, tuple(size or (256, 128)))


def onnxruntime_network(loaded: EmbedModel, data: EmbedData, precision: str = "fp32",
                        calibration: Sequence[Tracklet] | None = None, calibration_clips: int = 64,
                        cache_dir: str | Path | None = None, threads: int | None = None) -> nn.Module:  # fmt: skip
    """Backend choice, onnxruntime: the network's exported graph (cached by checkpoint hash; int8 quantized and
    calibrated on ``calibration`` or the checkpoint's training tracklets) behind an ``OrtNet`` CPU session.

    Raises:
        ValueError: int8 for a module passed in memory without ``calibration``. ImportError: no export extra.
    """
    from vidreid.deploy import onnxruntime as ortb

    model = loaded.model
    net = model if callable(model) and not isinstance(model, nn.Module) else getattr(model, "net", model).cpu().eval()
    if precision == "int8" and calibration is None and loaded.settings is None:
        raise ValueError("embed: int8 needs calibration=[tracklets] for a module passed in memory")
    path = ortb.graph_path(net, loaded.sha256, ClipSampler(**data.clip), data.size, data.interpolation, precision,
                           calibration, loaded.settings.datamodule if loaded.settings else None, calibration_clips,
                           cache_dir)  # fmt: skip
    return ortb.OrtNet(path, threads)


def predict(model: nn.Module, items: Sequence[Tracklet], data: EmbedData, *, batch_size: int = 8,
            num_workers: int = 0, device: torch.device | None = None, max_clips_per_forward: int | None = None,
            progress: bool = False) -> Tensor:  # fmt: skip
    """Batching: decode ``batch_size`` tracklets per step, cut them into clips, run ``max_clips_per_forward``
    clips per forward and average each tracklet's clip embeddings (``trainer.predict`` over the module's
    ``predict_step``; a bare network goes through :class:`NetPredictor`). Returns ``(len(items), D)`` float32 on
    the CPU. ``progress``: Lightning's bar over batches (off by default)."""
    if isinstance(model, ReIDLitModule):  # its own predict_step, with this call's clip chunk
        predictor, saved_eval = model.eval(), model.eval_cfg
        chunk = int(max_clips_per_forward or saved_eval.get("max_clips_per_forward", DEFAULT_MAX_CLIPS_PER_FORWARD))
        predictor.eval_cfg = {**saved_eval, "max_clips_per_forward": chunk}
    else:
        chunk = int(max_clips_per_forward or DEFAULT_MAX_CLIPS_PER_FORWARD)
        predictor, saved_eval = NetPredictor(model.eval(), chunk), None
    ds = TestTrackletDataset(items, [], ClipSampler(**data.clip), data.size, data.interpolation)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_tracklets)
    try:
        with _quiet_lightning():
            trainer = pl.Trainer(**_trainer_device(device or torch.device("cpu")), logger=False,
                                 enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
                                 precision="32-true")  # fmt: skip
            out = trainer.predict(predictor, dataloaders=loader)
    finally:
        if saved_eval is not None:
            predictor.eval_cfg = saved_eval
    return torch.cat([o.float().cpu() for o in out])


@torch.no_grad()
def embed(
    checkpoint: str | Path | nn.Module,
    tracklets: Sequence[Tracklet | str | Path | Sequence[str | Path]],
    *,
    seq_len: int | None = None,
    test_scheme: str | None = None,
    size: Sequence[int] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    max_clips_per_forward: int | None = None,
    progress: bool = False,
    normalize: bool = False,
    backend: str = "pytorch",
    precision: str = "fp32",
    calibration: Sequence[Tracklet | str | Path | Sequence[str | Path]] | None = None,
    calibration_clips: int = 64,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Tensor:
    """Embed tracklets with a trained network: ``(N, D)`` float32 on the CPU, row ``i`` = ``tracklets[i]``.

    Each tracklet is cut into clips of ``T = seq_len`` frames by the test scheme (``all_frames`` by default:
    every frame, docs/methods.md §1.4), every clip goes through the eval-mode network (``size`` = (H, W) input), and
    the clip embeddings are averaged — the evaluation's procedure, run as ``trainer.predict`` over the module's
    ``predict_step``. The steps: reading (:func:`read_model`, :func:`data_settings`, :func:`as_tracklet`), backend
    choice (:func:`onnxruntime_network`) and batching (:func:`predict`). By default the vectors are the network's test features as the evaluation ranks them, *not*
    L2-normalised (norms of tens are usual): rank them with cosine distance, as the evaluation does, or pass
    ``normalize=True`` for unit rows (then dot product = cosine similarity, Euclidean ranking = cosine ranking).

    Args:
        checkpoint: a ``.ckpt`` written by ``train.py``, a ``ReIDLitModule`` or a ``ReIDNet``.
        tracklets: :class:`Tracklet` objects, folders of frame images (sorted by name), or lists of frame paths.
        seq_len, size: for a checkpoint file, its training values (saved in the checkpoint) are used; passing a
            different value is an error. For a module or network they must be given (else ``T=8, (256, 128)``
            with a warning).
        test_scheme: defaults to the checkpoint's ``clip.test_scheme`` (else ``all_frames``).
        max_clips_per_forward: clips per network forward; defaults to the module's
            ``evaluation.max_clips_per_forward`` (else 32).
        batch_size: tracklets decoded per step. num_workers: DataLoader workers decoding frames.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available). A module passed in is moved there.
        progress: show Lightning's progress bar over batches (off by default).
        normalize: L2-normalise each row (default ``False``: the raw test feature).
        backend: ``"pytorch"`` (eager) or ``"onnxruntime"``: the exported graph (uint8 clips in, normalisation
            inside; docs/deploy.md) run by an onnxruntime CPU session; decoding, clips and averaging unchanged.
            The graph is exported once per checkpoint and cached under the SHA-256 of the checkpoint's bytes
            (:func:`vidreid.deploy.onnxruntime.cached_onnx`), so an edited checkpoint is exported again.
        precision: onnxruntime only: ``"fp32"`` or ``"int8"`` (static QDQ quantization,
            :func:`vidreid.deploy.onnxruntime.quantize_int8`).
        calibration: int8 only: tracklets whose clips calibrate the activation ranges (default: the checkpoint's
            own training tracklets, read from its saved dataset config). calibration_clips: how many clips.
        cache_dir: where exported graphs are cached (default ``$VIDREID_CACHE_DIR/onnx`` or
            ``~/.cache/vidreid/onnx``). threads: onnxruntime intra-op threads (default torch's thread count).
    Raises:
        FileNotFoundError: missing checkpoint, folder or frame (the message names the path).
        CheckpointError: the checkpoint is unreadable or refused as unsafe (the message names the file).
        SettingsConflict: ``seq_len``/``size`` differ from the checkpoint's (the message names both values).
        ValueError: an empty tracklet; an unknown ``backend``/``precision``; int8 without a readable calibration
            set.
        ImportError: ``backend="onnxruntime"`` without the export extra.
    Example:
        >>> import vidreid
        >>> emb = vidreid.embed("logs/train/runs/X/checkpoints/last.ckpt", ["clips/person1", "clips/person2"])
    """
    check_backend(backend, precision)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    loaded = read_model(checkpoint, backend, seq_len, size)
    data = data_settings(loaded.settings, seq_len, size, test_scheme)
    items = [as_tracklet(t, i) for i, t in enumerate(tracklets)]
    if not items:
        return torch.zeros(0, 0)
    model = loaded.model
    if backend == "onnxruntime":  # the exported graph behind the same predict path; onnxruntime runs on the CPU
        calib = None if calibration is None else [as_tracklet(t, i) for i, t in enumerate(calibration)]
        model = onnxruntime_network(loaded, data, precision, calib, calibration_clips, cache_dir, threads)
        device = torch.device("cpu")
    emb = predict(model, items, data, batch_size=batch_size, num_workers=num_workers, device=device,
                  max_clips_per_forward=max_clips_per_forward, progress=progress)  # fmt: skip
    return torch.nn.functional.normalize(emb, dim=1) if normalize else emb
