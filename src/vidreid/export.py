"""Feature export: the ``vidreid.embed`` API, query/gallery embedding files and top-k ranked-list CSVs.

- :func:`embed` — embeddings ``(N, D)`` of any tracklets with a trained checkpoint, outside Hydra and
  Lightning, with a rich progress bar over tracklets (the same test-time clip scheme and chunked forward as
  the evaluation: :func:`vidreid.evaluation.features.embed_tracklet_batch`).
- :class:`EmbeddingExport` — the callback behind ``evaluate.py export=true``: writes ``embeddings.npz``
  (query and gallery embeddings, pids, camids, tracklet paths) and ``ranked_lists.csv`` (top-k per query).
- ONNX export lives in :mod:`vidreid.onnx_export`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vidreid.callbacks import evaluation_items
from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import TestTrackletDataset, collate_tracklets
from vidreid.evaluation.features import embed_tracklet_batch
from vidreid.evaluation.visualize import ranked_gallery

log = logging.getLogger(__name__)

__all__ = ["EmbeddingExport", "embed", "load_network", "run_settings", "write_embeddings", "write_ranked_lists"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def run_settings(checkpoint: str | Path, hparams: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The data settings a checkpoint was trained with: ``{"size", "interpolation", "clip",
    "max_clips_per_forward"}`` from the checkpoint's hyper-parameters (``data_settings``), else from its run's
    ``.hydra/config.yaml`` (``<run>/checkpoints/x.ckpt`` → ``<run>/.hydra/config.yaml``), else ``None``.
    ``hparams``: those hyper-parameters when the checkpoint is already loaded (the file is then not read)."""
    saved = hparams
    if saved is None:
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=False).get("hyper_parameters", {})
        except Exception:  # noqa: BLE001 - unreadable here; load_network reports it properly
            saved = {}
    if saved.get("data_settings"):
        ds = dict(saved["data_settings"])
        ds["size"] = tuple(ds["size"])
        return ds
    cfg_path = Path(checkpoint).resolve().parent.parent / ".hydra" / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = OmegaConf.load(cfg_path)
    clip = OmegaConf.to_container(cfg.clip, resolve=True) if "clip" in cfg else {}
    tr = cfg.get("data", {}).get("transforms", {})
    return {
        "size": tuple(tr.get("size", (256, 128))),
        "interpolation": tr.get("test_interpolation", "bilinear"),
        "clip": clip,
        "max_clips_per_forward": clip.get("max_clips_per_forward", 32),
    }


def load_network(checkpoint: str | Path | nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """The eval-mode ``ReIDNet`` of a ``train.py`` checkpoint (path), a ``ReIDLitModule`` or a network."""
    if isinstance(checkpoint, str | Path):
        checkpoint = _load_module(checkpoint)
    net = getattr(checkpoint, "net", checkpoint)
    return net.to(device).eval()


def _load_module(checkpoint: str | Path) -> pl.LightningModule:
    from vidreid.evaluate import load_module

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    return load_module(str(checkpoint))


def _as_tracklet(item: Tracklet | str | Path | Sequence[str | Path], i: int) -> Tracklet:
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
    progress: bool = True,
) -> Tensor:
    """Embed tracklets with a trained network: ``(N, D)`` float32 on the CPU, row ``i`` = ``tracklets[i]``.

    Each tracklet is cut into clips of ``T = seq_len`` frames by the test scheme (``all_frames`` by default:
    every frame, METHODS.md §1.4), every clip goes through the eval-mode network (ImageNet-normalised RGB,
    ``size`` = (H, W)), and the clip embeddings are averaged — the evaluation's procedure.

    Args:
        checkpoint: a ``.ckpt`` written by ``train.py``, a ``ReIDLitModule`` or a ``ReIDNet``.
        tracklets: :class:`Tracklet` objects, folders of frame images (sorted by name), or lists of frame paths.
        seq_len, test_scheme, size, max_clips_per_forward: default to the training run's values (saved in
            the checkpoint, or for older checkpoints its run's ``<run>/.hydra/config.yaml``: :func:`run_settings`),
            else to ``T=8, all_frames, (256, 128), 32`` (a warning says so).
        batch_size: tracklets decoded per step. num_workers: DataLoader workers decoding frames.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        progress: show a rich progress bar over tracklets.
    Raises:
        FileNotFoundError: missing checkpoint, folder or frame (the message names the path).
        ValueError: an empty tracklet.
    Example:
        >>> import vidreid
        >>> emb = vidreid.embed("logs/train/runs/X/checkpoints/last.ckpt", ["clips/person1", "clips/person2"])
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    settings = None
    if isinstance(checkpoint, str | Path):  # read the file once: network and data settings
        path, checkpoint = checkpoint, _load_module(checkpoint)
        settings = run_settings(path, dict(checkpoint.hparams))
    if settings is None and (seq_len is None or size is None):
        log.warning("embed: no run settings in or beside the checkpoint; using T=%s, size=%s (pass seq_len= and size=)",
                    seq_len or 8, tuple(size or (256, 128)))
    settings = settings or {"size": (256, 128), "interpolation": "bilinear", "clip": {}, "max_clips_per_forward": 32}
    clip_kw = {k: v for k, v in settings["clip"].items() if k in ("seq_len", "test_scheme", "dense_max_clips")}
    clip_kw.setdefault("test_scheme", "all_frames")
    if seq_len is not None:
        clip_kw["seq_len"] = seq_len
    if test_scheme is not None:
        clip_kw["test_scheme"] = test_scheme
    clip = ClipSampler(**clip_kw)
    size = tuple(size or settings["size"])
    chunk = max_clips_per_forward or settings["max_clips_per_forward"]
    items = [_as_tracklet(t, i) for i, t in enumerate(tracklets)]
    net = load_network(checkpoint, device)
    ds = TestTrackletDataset(items, [], clip, size, settings["interpolation"])
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_tracklets)
    out: list[Tensor] = []
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("embedding tracklets"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("embed", total=len(items))
        for batch in loader:
            out.append(embed_tracklet_batch(net, batch, chunk).cpu())
            bar.advance(task, len(batch))
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------- files
def write_embeddings(
    path: str | Path,
    query_emb: Tensor,
    gallery_emb: Tensor,
    query: Sequence[Tracklet],
    gallery: Sequence[Tracklet],
    distance: str = "cosine",
) -> Path:
    """Write ``embeddings.npz``: ``{query,gallery}_embeddings (N, D) float32``, ``{query,gallery}_pids``,
    ``_camids`` (int64, camids 0-based), ``_paths`` (first frame of each tracklet), ``_num_frames``, and
    ``distance`` (the metric used for ranking). Written to a temporary file and renamed.

    Raises:
        ValueError: embedding rows and tracklets differ in number.
    """
    for name, emb, items in (("query", query_emb, query), ("gallery", gallery_emb, gallery)):
        if len(emb) != len(items):
            raise ValueError(f"{name}: {len(emb)} embeddings for {len(items)} tracklets")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"distance": np.array(distance)}
    for name, emb, items in (("query", query_emb, query), ("gallery", gallery_emb, gallery)):
        arrays[f"{name}_embeddings"] = emb.detach().float().cpu().numpy()
        arrays[f"{name}_pids"] = np.array([t.pid for t in items], dtype=np.int64)
        arrays[f"{name}_camids"] = np.array([t.camid for t in items], dtype=np.int64)
        arrays[f"{name}_paths"] = np.array([str(t.frames[0]) for t in items], dtype=np.str_)
        arrays[f"{name}_num_frames"] = np.array([len(t) for t in items], dtype=np.int64)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


CSV_COLUMNS = ("query_row", "query_pid", "query_camid", "rank", "gallery_set", "gallery_row", "gallery_pid",
               "gallery_camid", "distance", "match", "query_path", "gallery_path")


def write_ranked_lists(path: str | Path, last: dict, items: Sequence[tuple[Tracklet, bool]], topk: int = 10) -> Path:
    """Write the top-``topk`` ranked gallery of every query as CSV (one line per query and rank).

    Args:
        last: ``ReIDMetric.last`` (``distmat (Nq, Ng)``, ids, ``q_index``/``g_index`` dataset indices).
        items: ``[(tracklet, is_query)]`` of the evaluation dataset (query items first).
    Columns :data:`CSV_COLUMNS`: ``query_row``/``gallery_row`` index the rows of ``embeddings.npz``;
    ``gallery_set`` is ``query`` for a query placed in the gallery (``append_query_to_gallery``); junk
    (same pid and camera, pid -1) is left out as in the metrics; ``rank`` is 1-based.
    """
    n_query = sum(1 for _, q in items if q)
    dist, qi, gi = last["distmat"], last["q_index"], last["g_index"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in range(dist.shape[0]):
            q_pid, q_cam = int(last["q_pids"][r]), int(last["q_camids"][r])
            cols, match = ranked_gallery(dist[r], q_pid, q_cam, last["g_pids"], last["g_camids"], topk)
            q_item = int(qi[r])
            for rank, (c, m) in enumerate(zip(cols, match), start=1):
                g_item = int(gi[c])
                g_set, g_row = ("query", g_item) if g_item < n_query else ("gallery", g_item - n_query)
                w.writerow([q_item, q_pid, q_cam, rank, g_set, g_row, int(last["g_pids"][c]),
                            int(last["g_camids"][c]), f"{float(dist[r, c]):.6f}", int(m),
                            items[q_item][0].frames[0], items[g_item][0].frames[0]])  # fmt: skip
    tmp.replace(path)
    return path


def _gather(obj: Any) -> list[Any]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        out: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, obj)
        return out
    return [obj]


class EmbeddingExport(pl.Callback):
    """Write ``embeddings.npz`` and ``ranked_lists.csv`` (and ``ranked_lists_rerank.csv`` when re-ranking
    is on) into ``out_dir`` at the end of ``trainer.test``.

    The embeddings are taken from the LightningModule's ``test_metric`` states in ``on_test_epoch_end``,
    which Lightning calls for callbacks *before* the module's own hook (where the metric is computed and
    reset), gathered from all ranks and put back into dataset order; the ranked lists use
    ``test_metric.last`` in ``on_test_end``. Nothing is recomputed.

    Args:
        out_dir: destination folder. topk: gallery items per query in the CSV.
    """

    def __init__(self, out_dir: str | Path, topk: int = 10):
        super().__init__()
        self.out_dir, self.topk = Path(out_dir), int(topk)
        self._captured: dict[str, Tensor] | None = None
        self.files: list[Path] = []

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = pl_module.test_metric
        local = {k: torch.cat(getattr(m, k)).cpu() if getattr(m, k) else torch.zeros(0) for k in
                 ("embeddings", "indices")}  # fmt: skip
        parts = _gather(local)
        self._captured = {k: torch.cat([p[k] for p in parts if p[k].numel()]) for k in local}

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._captured is None:
            return
        items = evaluation_items(trainer.test_dataloaders)
        if items is None:
            log.warning("export: the test loader is not the datamodule's; nothing exported")
            return
        order = torch.argsort(self._captured["indices"])
        emb, idx = self._captured["embeddings"][order], self._captured["indices"][order]
        if idx.tolist() != list(range(len(items))):
            raise RuntimeError(f"export: embedded {len(idx)} of {len(items)} test tracklets (or duplicates)")
        n_query = sum(1 for _, q in items if q)
        query = [t for t, _ in items[:n_query]]
        gallery = [t for t, _ in items[n_query:]]
        metric = pl_module.test_metric
        self.files = [write_embeddings(self.out_dir / "embeddings.npz", emb[:n_query], emb[n_query:], query, gallery,
                                       metric.metric)]  # fmt: skip
        last = metric.last
        if last.get("distmat") is not None:
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists.csv", last, items, self.topk))
        if last.get("rerank_distmat") is not None:
            rr = {**last, "distmat": last["rerank_distmat"]}
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists_rerank.csv", rr, items, self.topk))
        for f in self.files:
            log.info("exported %s", f)
