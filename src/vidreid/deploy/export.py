"""Result files (the io layer): query/gallery embeddings (``embeddings.npz``) and top-k ranked lists (CSV).

Written by the :class:`vidreid.deploy.export.EmbeddingExport` callback (``evaluate.py export=true``) from the test
metric's :class:`~vidreid.evaluation.result.EvalResult`; embedding tracklets with a checkpoint is
:func:`vidreid.embed` (:mod:`vidreid.deploy.inference`); ONNX export is :mod:`vidreid.deploy.onnx_export`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import TestTrackletDataset
from vidreid.evaluation.result import EvalResult
from vidreid.evaluation.visualize import ranked_gallery

log = logging.getLogger(__name__)

__all__ = ["CSV_COLUMNS", "EmbeddingExport", "evaluation_items", "write_embeddings", "write_ranked_lists"]


def write_embeddings(
    path: str | Path,
    query_emb: Tensor,
    gallery_emb: Tensor,
    query: Sequence[Tracklet],
    gallery: Sequence[Tracklet],
    distance: str = "cosine",
    query_in_gallery: bool = False,
) -> Path:
    """Write ``embeddings.npz``: ``{query,gallery}_embeddings (N, D) float32``, ``{query,gallery}_pids``,
    ``_camids`` (int64, camids 0-based), ``_paths`` (first frame of each tracklet), ``_num_frames``, ``distance``
    (the metric used for ranking) and ``query_in_gallery`` (the dataset's declared protocol,
    :attr:`vidreid.data.tracklet.ReIDDataset.query_in_gallery`: scoring the file applies it as testing the
    checkpoint does). Written to a temporary file and renamed.

    Raises:
        ValueError: embedding rows and tracklets differ in number.
    """
    for name, emb, items in (("query", query_emb, query), ("gallery", gallery_emb, gallery)):
        if len(emb) != len(items):
            raise ValueError(f"{name}: {len(emb)} embeddings for {len(items)} tracklets")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"distance": np.array(distance), "query_in_gallery": np.array(bool(query_in_gallery))}
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


def write_ranked_lists(
    path: str | Path, result: EvalResult, items: Sequence[tuple[Tracklet, bool]], topk: int = 10,
    distmat: Tensor | None = None,
) -> Path:
    """Write the top-``topk`` ranked gallery of every query as CSV (one line per query and rank).

    Args:
        result: the evaluation (``q_pids``/``g_pids``, camids, ``q_index``/``g_index`` dataset indices).
        items: ``[(tracklet, is_query)]`` of the evaluation dataset (query items first).
        distmat: ``(Nq, Ng)`` distances to rank by; default ``result.distmat`` (pass ``result.rerank_distmat``
            for the re-ranked lists).
    Columns :data:`CSV_COLUMNS`: ``query_row``/``gallery_row`` index the rows of ``embeddings.npz``;
    ``gallery_set`` is ``query`` for a query placed in the gallery (the dataset's protocol, e.g. MARS); junk
    (same pid and camera, pid -1) is left out as in the metrics; ``rank`` is 1-based.

    Raises:
        ValueError: no distance matrix (the metric ran with ``keep_distmat=False``).
    """
    dist = result.distmat if distmat is None else distmat
    if dist is None:
        raise ValueError("write_ranked_lists: the evaluation kept no distance matrix (keep_distmat=False)")
    n_query = sum(1 for _, q in items if q)
    qi, gi = result.q_index, result.g_index
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in range(dist.shape[0]):
            q_pid, q_cam = int(result.q_pids[r]), int(result.q_camids[r])
            cols, match = ranked_gallery(dist[r], q_pid, q_cam, result.g_pids, result.g_camids, topk)
            q_item = int(qi[r])
            for rank, (c, m) in enumerate(zip(cols, match), start=1):
                g_item = int(gi[c])
                g_set, g_row = ("query", g_item) if g_item < n_query else ("gallery", g_item - n_query)
                w.writerow([q_item, q_pid, q_cam, rank, g_set, g_row, int(result.g_pids[c]),
                            int(result.g_camids[c]), f"{float(dist[r, c]):.6f}", int(m),
                            items[q_item][0].frames[0], items[g_item][0].frames[0]])  # fmt: skip
    tmp.replace(path)
    return path


def evaluation_items(loader: DataLoader | Sequence[DataLoader] | None) -> list[tuple[Tracklet, bool]] | None:
    """``[(tracklet, is_query), ...]`` of a validation/test loader in dataset-index order (the indices that
    ``EvalResult.q_index``/``g_index`` refer to), or ``None`` if the loader is not the datamodule's."""
    if isinstance(loader, list | tuple):
        loader = loader[0] if loader else None
    ds = getattr(loader, "dataset", None)
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds.items if isinstance(ds, TestTrackletDataset) else None


class EmbeddingExport(pl.Callback):
    """Write ``embeddings.npz`` and ``ranked_lists.csv`` (and ``ranked_lists_rerank.csv`` when re-ranking is on)
    into ``out_dir`` at the end of ``trainer.test`` (``evaluate.py export=true``).

    Everything comes from the test metric's :class:`~vidreid.evaluation.result.EvalResult` in ``on_test_end``:
    the embeddings of every test tracklet in dataset order (gathered from all ranks by the metric), the ids and
    the distance matrices. Nothing is recomputed; global rank 0 writes.

    Args:
        out_dir: destination folder. topk: gallery items per query in the CSV.
    """

    def __init__(self, out_dir: str | Path, topk: int = 10):
        super().__init__()
        self.out_dir, self.topk = Path(out_dir), int(topk)
        self.files: list[Path] = []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metric = pl_module.test_metric
        res = metric.last
        items = evaluation_items(trainer.test_dataloaders)
        if items is None or not isinstance(res, EvalResult):
            log.warning("export: the test loader is not the datamodule's (or nothing was evaluated); nothing exported")
            return
        if res.indices.tolist() != list(range(len(items))):
            raise RuntimeError(f"export: embedded {len(res.indices)} of {len(items)} test tracklets (or duplicates)")
        n_query = sum(1 for _, q in items if q)
        query = [t for t, _ in items[:n_query]]
        gallery = [t for t, _ in items[n_query:]]
        emb = res.embeddings
        data = getattr(trainer.datamodule, "data", None)
        self.files = [write_embeddings(self.out_dir / "embeddings.npz", emb[:n_query], emb[n_query:], query, gallery,
                                       metric.distance, query_in_gallery=bool(getattr(data, "query_in_gallery", False)))]  # fmt: skip
        if res.distmat is not None:
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists.csv", res, items, self.topk))
        if res.rerank_distmat is not None:
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists_rerank.csv", res, items, self.topk,
                                                 distmat=res.rerank_distmat))  # fmt: skip
        for f in self.files:
            log.info("exported %s", f)
