"""``EvalResult``: what one query/gallery evaluation produced, typed (read by the W&B dashboard, the embedding and
ranked-list export and the tests, instead of a string-keyed dict)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from vidreid.evaluation.ranking import RankingResult

__all__ = ["EvalResult"]


@dataclass
class EvalResult:
    """One evaluation (:meth:`vidreid.evaluation.metric.ReIDMetric.compute`), on the CPU.

    Attributes:
        metrics: ``{"rank1", ..., "mAP", "mINP"}`` floats in [0, 1], plus ``rerank/``, ``st/``, ``st_rerank/``
            variants when enabled.
        embeddings: ``(N, D)`` float32 embeddings of every evaluated item in dataset order (row ``i`` = the item
            with dataset index ``indices[i]``; for a full evaluation ``indices == arange(N)``).
        pids, camids, indices: ``(N,)`` int64 of the same items; ``is_query``: ``(N,)`` bool.
        result: the plain ranking (:class:`RankingResult`: CMC, per-query AP/INP).
        q_pids, q_camids, q_index: ``(Nq,)`` ids and dataset indices of the distance-matrix rows (queries).
        g_pids, g_camids, g_index: ``(Ng,)`` of its columns (the gallery, plus the queries when the protocol
            appends them: those columns repeat a query's index).
        distmat: ``(Nq, Ng)`` float32 distances of the plain ranking (``None`` unless ``keep_distmat``).
        rerank_distmat: ``(Nq, Ng)`` k-reciprocal re-ranked distances (when re-ranking is on and kept).
    """

    metrics: dict[str, float]
    embeddings: Tensor
    pids: Tensor
    camids: Tensor
    is_query: Tensor
    indices: Tensor
    result: RankingResult
    q_pids: Tensor
    g_pids: Tensor
    q_camids: Tensor
    g_camids: Tensor
    q_index: Tensor
    g_index: Tensor
    distmat: Tensor | None = None
    rerank_distmat: Tensor | None = field(default=None)

    @property
    def num_query(self) -> int:
        """Queries in the evaluation (rows of ``distmat``)."""
        return len(self.q_pids)
