"""``ReIDMetric``: a torchmetrics metric that gathers embeddings across DDP ranks and reports CMC / mAP / mINP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vidreid.evaluation.ranking import RankingResult, evaluate_ranking
from vidreid.evaluation.reranking import k_reciprocal_rerank

__all__ = ["ReIDMetric", "pairwise_distance"]

METRICS = ("cosine", "euclidean")


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``(Na, Nb)`` float32 distances between rows of ``a (Na, D)`` and ``b (Nb, D)``.

    ``"cosine"``: ``1 − cos`` clamped to ``[0, 2]`` (never negative, METHODS.md §0.2 ranks by ``−cos``,
    the same order). ``"euclidean"``: L2 distance (torchreid ``compute_distance_matrix``).

    Raises:
        ValueError: on an unknown ``metric`` or mismatched feature dimensions.
    """
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}: expected one of {METRICS}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings: expected (N, D) matrices with equal D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.float(), b.float()
    if metric == "cosine":
        return (1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).clamp_(0.0, 2.0)
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return sq.clamp_(min=0.0).sqrt_()


class ReIDMetric(Metric):
    """Query / gallery retrieval metrics over everything passed to :meth:`update`.

    States are lists reduced with ``"cat"``, so under DDP :meth:`compute` sees the embeddings of all ranks.

    Args:
        metric: ``"cosine"`` (default) or ``"euclidean"`` distance.
        append_query_to_gallery: also put the queries into the gallery (the MARS protocol, METHODS.md §6.1);
            a query's own entry is then junk (same pid and camera).
        ranks: CMC ranks reported as ``rank{k}``.
        ap_mode: ``"standard"`` or ``"trapezoid"`` (see :func:`evaluate_ranking`).
        rerank: apply :func:`k_reciprocal_rerank` (``k1, k2, λ`` from ``rerank_kwargs``) before ranking.
        keep_distmat: keep the last ``(Nq, Ng)`` distance matrix and ids in :attr:`last` for visualisation.

    Attributes:
        last: after :meth:`compute` — ``{"distmat", "q_pids", "g_pids", "q_camids", "g_camids",
            "result": RankingResult}`` (``distmat`` only if ``keep_distmat``).
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        metric: str = "cosine",
        append_query_to_gallery: bool = False,
        ranks: tuple[int, ...] = (1, 5, 10, 20),
        ap_mode: str = "standard",
        rerank: bool = False,
        rerank_kwargs: dict | None = None,
        keep_distmat: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if metric not in METRICS:
            raise ValueError(f"metric={metric!r}: expected one of {METRICS}")
        self.metric = metric
        self.append_query_to_gallery = append_query_to_gallery
        self.ranks = tuple(ranks)
        self.ap_mode = ap_mode
        self.rerank = rerank
        self.rerank_kwargs = dict(rerank_kwargs or {})
        self.keep_distmat = keep_distmat
        self.last: dict = {}
        for name in ("embeddings", "pids", "camids", "is_query"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor, is_query: torch.Tensor):
        """Add a batch: ``embeddings (N, D)``, ``pids (N,)``, ``camids (N,)``, ``is_query (N,)`` bool.

        Raises:
            ValueError: if the lengths differ or ``embeddings`` is not 2-D.
        """
        pids, camids, is_query = (torch.as_tensor(x, device=embeddings.device) for x in (pids, camids, is_query))
        n = embeddings.shape[0]
        if embeddings.ndim != 2 or not (len(pids) == len(camids) == len(is_query) == n):
            raise ValueError(
                f"update: expected embeddings (N, D) and pids/camids/is_query of length N, got "
                f"{tuple(embeddings.shape)}, {len(pids)}, {len(camids)}, {len(is_query)}"
            )
        self.embeddings.append(embeddings.detach().float())
        self.pids.append(pids.long())
        self.camids.append(camids.long())
        self.is_query.append(is_query.bool())

    def compute(self) -> dict[str, float]:
        """``{"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}`` as floats in [0, 1].

        Raises:
            ValueError: if there are no queries or no gallery items.
        """
        emb = dim_zero_cat(self.embeddings)
        pids, camids = dim_zero_cat(self.pids), dim_zero_cat(self.camids)
        is_query = dim_zero_cat(self.is_query)
        qf, gf = emb[is_query], emb[~is_query]
        q_pids, q_cams = pids[is_query], camids[is_query]
        g_pids, g_cams = pids[~is_query], camids[~is_query]
        if self.append_query_to_gallery:
            gf = torch.cat([gf, qf])
            g_pids, g_cams = torch.cat([g_pids, q_pids]), torch.cat([g_cams, q_cams])
        if len(qf) == 0 or len(gf) == 0:
            raise ValueError(f"ReIDMetric.compute: need queries and gallery items, got {len(qf)} and {len(gf)}")
        distmat = pairwise_distance(qf, gf, self.metric)
        if self.rerank:
            distmat = k_reciprocal_rerank(
                distmat,
                pairwise_distance(qf, qf, self.metric),
                pairwise_distance(gf, gf, self.metric),
                **self.rerank_kwargs,
            )
        result: RankingResult = evaluate_ranking(
            distmat.cpu(),
            q_pids.cpu(),
            g_pids.cpu(),
            q_cams.cpu(),
            g_cams.cpu(),
            max_rank=max(self.ranks),
            ap_mode=self.ap_mode,
        )
        self.last = {
            "distmat": distmat.cpu() if self.keep_distmat else None,
            "q_pids": q_pids.cpu(),
            "g_pids": g_pids.cpu(),
            "q_camids": q_cams.cpu(),
            "g_camids": g_cams.cpu(),
            "result": result,
        }
        return result.as_dict(self.ranks)
