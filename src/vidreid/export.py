"""Result files (the io layer): query/gallery embeddings (``embeddings.npz``) and top-k ranked lists (CSV).

Written by the :class:`vidreid.callbacks.EmbeddingExport` callback (``evaluate.py export=true``) from the test
metric's :class:`~vidreid.evaluation.result.EvalResult`; embedding tracklets with a checkpoint is
:func:`vidreid.embed` (:mod:`vidreid.inference`); ONNX export is :mod:`vidreid.onnx_export`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from vidreid.data.tracklet import Tracklet
from vidreid.evaluation.result import EvalResult
from vidreid.evaluation.visualize import ranked_gallery

__all__ = ["CSV_COLUMNS", "write_embeddings", "write_ranked_lists"]


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
