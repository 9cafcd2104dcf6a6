"""``ReIDMetric``: a torchmetrics metric that gathers embeddings across DDP ranks and reports CMC / mAP / mINP."""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vidreid.evaluation.ranking import DISTANCES, RankingResult, evaluate_ranking, pairwise_distance
from vidreid.evaluation.reranking import k_reciprocal_rerank
from vidreid.evaluation.result import EvalResult

__all__ = ["METRIC_NAMES", "ReIDMetric", "pairwise_distance"]

# the names one ranking reports (ReIDMetric's default ranks), also under rerank/, st/ and st_rerank/; the
# entry points log them as val/<name> and test/<name> (the one list of metric names)
METRIC_NAMES = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


class ReIDMetric(Metric):
    """Query / gallery retrieval metrics over everything passed to :meth:`update`.

    States are lists reduced with ``"cat"``, so under DDP :meth:`compute` sees the embeddings of all ranks;
    items are put back in dataset order (``indices``) so that a multi-process run ranks exactly as one process.
    Under DDP only rank 0 of the metric's process group ranks (distances, re-ranking, st fusion) and the metrics
    are broadcast: every rank returns the same dict (Lightning's ``self.log`` needs the same keys on every rank),
    the ranking is paid once, and :attr:`last` is set on rank 0 only (``None`` elsewhere).

    Args:
        distance: ``"cosine"`` (default; ``1 − cos``) or ``"euclidean"``, the distance the items are ranked by
            (:func:`~vidreid.evaluation.ranking.pairwise_distance`). The former keyword ``metric=`` still works
            with a ``DeprecationWarning``.
        append_query_to_gallery: also put the queries into the gallery (the MARS protocol, docs/methods.md §6.1);
            a query's own entry is then junk (same pid and camera).
        ranks: CMC ranks reported as ``rank{k}``.
        ap_mode: ``"standard"`` or ``"trapezoid"`` (see :func:`evaluate_ranking`).
        average: ``"valid"`` (default; docs/methods.md §0.2: CMC / mAP / mINP averaged over the queries that have a
            true match, others skipped) or ``"all"`` (st-ReID ``evaluate_st.py`` l.201–202: divided by all queries,
            a query without a true match counts as a miss with AP 0). Applies to every report (plain,
            ``rerank/``, ``st/``, ``st_rerank/``).
        rerank: also report k-reciprocal re-ranked numbers (``rerank/<name>``; ``k1, k2, lambda_value`` from
            ``rerank_kwargs``). The plain numbers are always reported (STAFormer prints both, docs/methods.md §1.5).
        st: spatial-temporal fusion options ``{lambda0, gamma0, lambda1, gamma1}``; when given and
            :attr:`st_model` is set, ``st/<name>`` (joint score, docs/methods.md §5.4) is reported, plus
            ``st_rerank/<name>`` (re-ranking on ``2 − 2·P_joint`` without squaring, §5.5) if ``rerank``.
        keep_distmat: keep the last ``(Nq, Ng)`` distance matrix and ids in :attr:`last` for visualisation.

    Raises:
        ValueError: on an unknown ``distance`` or ``average``; TypeError when both ``distance`` and ``metric`` are
            given.

    Attributes:
        st_model: a fitted :class:`~vidreid.evaluation.spatial_temporal.SpatialTemporalModel` (set by the caller).
        last: after :meth:`compute`, an :class:`~vidreid.evaluation.result.EvalResult`: the metrics, every
            embedding in dataset order, and the plain ranking (``distmat`` only if ``keep_distmat``);
            ``q_index``/``g_index`` are the dataset indices of the rows/columns.
        num_rankings: distance matrices this instance has ranked in this process (plain, re-ranked, st), summed
            over calls: under DDP it grows on rank 0 only.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        distance: str | None = None,
        append_query_to_gallery: bool = False,
        ranks: tuple[int, ...] = (1, 5, 10, 20),
        ap_mode: str = "standard",
        average: str = "valid",
        rerank: bool = False,
        rerank_kwargs: dict | None = None,
        st: dict | None = None,
        keep_distmat: bool = True,
        **kwargs,
    ) -> None:
        if "metric" in kwargs:
            old = kwargs.pop("metric")
            if distance is not None:
                raise TypeError(f"ReIDMetric: got distance={distance!r} and the former keyword metric={old!r}; "
                                "pass distance= only")  # fmt: skip
            warnings.warn(f"ReIDMetric(metric={old!r}) is deprecated: the argument is a distance, pass "
                          f"distance={old!r}", DeprecationWarning, stacklevel=2)  # fmt: skip
            distance = old
        super().__init__(**kwargs)
        distance = "cosine" if distance is None else distance
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}: expected one of {DISTANCES}")
        self.distance = distance
        self.append_query_to_gallery = append_query_to_gallery
        self.ranks = tuple(ranks)
        self.ap_mode = ap_mode
        if average not in ("valid", "all"):
            raise ValueError(f"evaluation.average={average!r}: expected 'valid' or 'all'")
        self.average = average
        self.rerank = rerank
        self.rerank_kwargs = dict(rerank_kwargs or {})
        self.st = dict(st) if st is not None else None
        self.st_model = None
        self.keep_distmat = keep_distmat
        self.last: EvalResult | None = None
        self.num_rankings = 0
        for name in ("embeddings", "pids", "camids", "is_query", "timestamps", "indices"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        embeddings: torch.Tensor,
        pids: torch.Tensor,
        camids: torch.Tensor,
        is_query: torch.Tensor,
        timestamps: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ):
        """Add a batch: ``embeddings (N, D)``, ``pids (N,)``, ``camids (N,)``, ``is_query (N,)`` bool, optional
        ``timestamps (N,)`` (frame numbers for st-ReID; NaN = unknown) and ``indices (N,)`` (dataset order).

        Raises:
            ValueError: if the lengths differ or ``embeddings`` is not 2-D.
        """
        dev = embeddings.device
        pids, camids, is_query = (torch.as_tensor(x, device=dev) for x in (pids, camids, is_query))
        n = embeddings.shape[0]
        if embeddings.ndim != 2 or not (len(pids) == len(camids) == len(is_query) == n):
            raise ValueError(
                f"update: expected embeddings (N, D) and pids/camids/is_query of length N, got "
                f"{tuple(embeddings.shape)}, {len(pids)}, {len(camids)}, {len(is_query)}"
            )
        if timestamps is None:
            timestamps = torch.full((n,), float("nan"), device=dev)
        if indices is None:
            offset = sum(len(x) for x in self.pids)
            indices = torch.arange(offset, offset + n, device=dev)
        self.embeddings.append(embeddings.detach().float())
        self.pids.append(pids.long())
        self.camids.append(camids.long())
        self.is_query.append(is_query.bool())
        self.timestamps.append(torch.as_tensor(timestamps, device=dev).double())
        self.indices.append(torch.as_tensor(indices, device=dev).long())

    @property
    def metric(self) -> str:
        """Deprecated name of :attr:`distance`."""
        warnings.warn("ReIDMetric.metric is deprecated: use ReIDMetric.distance", DeprecationWarning, stacklevel=2)
        return self.distance

    def _rank(self, distmat, qp, gp, qc, gc) -> RankingResult:
        self.num_rankings += 1
        return evaluate_ranking(
            distmat.cpu(), qp, gp, qc, gc, max_rank=max(self.ranks), ap_mode=self.ap_mode, average=self.average
        )

    def compute(self) -> dict[str, float]:
        """``{"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}`` as floats in [0, 1], plus the same names
        under ``rerank/``, ``st/`` and ``st_rerank/`` when those are enabled.

        Under DDP (states synced on compute, more than one process in the group) rank 0 of the metric's process
        group ranks and broadcasts the dict; the other ranks wait for it and rank nothing.

        Raises:
            ValueError: if there are no queries or no gallery items, or st fusion lacks timestamps (on every rank
                under DDP: rank 0's error is broadcast; other exceptions reach the other ranks as RuntimeError).
        """
        src = self._broadcast_source()
        if src is None:
            return self._compute_here()
        ranker = dist.get_rank() == src
        payload, error = None, None
        if ranker:
            try:
                payload = ("ok", self._compute_here())
            except Exception as err:  # the other ranks must not wait forever: they get the error too
                payload, error = ("error", (type(err).__name__, str(err))), err
        else:
            self.last = None
        box = [payload]
        dist.broadcast_object_list(box, src=src, group=self.process_group)
        status, value = box[0]
        if error is not None:
            raise error
        if status == "error":
            kind, msg = value
            raise (ValueError if kind == "ValueError" else RuntimeError)(f"ReIDMetric.compute on rank {src}: {kind}: {msg}")
        return value

    def _broadcast_source(self) -> int | None:
        """Global rank that ranks for the group, or ``None`` when this process ranks its own states (no DDP, one
        process, or ``sync_on_compute=False``)."""
        if not (self.sync_on_compute and dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group
        if dist.get_world_size(group) < 2:
            return None
        return dist.get_global_rank(group, 0) if group is not None else 0

    def _compute_here(self) -> dict[str, float]:
        """The ranking itself, on this process's (synced) states."""
        order = torch.argsort(dim_zero_cat(self.indices), stable=True)
        emb = dim_zero_cat(self.embeddings)[order]
        pids, camids = dim_zero_cat(self.pids)[order].cpu(), dim_zero_cat(self.camids)[order].cpu()
        is_query = dim_zero_cat(self.is_query)[order].cpu()
        times = dim_zero_cat(self.timestamps)[order].cpu()
        index = dim_zero_cat(self.indices)[order].cpu()
        qsel, gsel = is_query, ~is_query
        qf, gf = emb[qsel.to(emb.device)], emb[gsel.to(emb.device)]
        qp, qc, qt, qi = pids[qsel], camids[qsel], times[qsel], index[qsel]
        gp, gc, gt, gi = pids[gsel], camids[gsel], times[gsel], index[gsel]
        if self.append_query_to_gallery:
            gf = torch.cat([gf, qf])
            gp, gc, gt, gi = torch.cat([gp, qp]), torch.cat([gc, qc]), torch.cat([gt, qt]), torch.cat([gi, qi])
        if len(qf) == 0 or len(gf) == 0:
            raise ValueError(f"ReIDMetric.compute: need queries and gallery items, got {len(qf)} and {len(gf)}")
        distmat = pairwise_distance(qf, gf, self.distance)
        result = self._rank(distmat, qp, gp, qc, gc)
        out = result.as_dict(self.ranks)
        self.last = EvalResult(
            metrics=out, embeddings=emb.detach().float().cpu(), pids=pids, camids=camids, is_query=is_query,
            indices=index, result=result, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, q_index=qi, g_index=gi,
            distmat=distmat.cpu() if self.keep_distmat else None,
        )
        qq = gg = None
        if self.rerank:
            qq, gg = pairwise_distance(qf, qf, self.distance), pairwise_distance(gf, gf, self.distance)
            rr = k_reciprocal_rerank(distmat, qq, gg, **self.rerank_kwargs)
            self.last.rerank_distmat = rr.cpu() if self.keep_distmat else None
            out.update({f"rerank/{k}": v for k, v in self._rank(rr, qp, gp, qc, gc).as_dict(self.ranks).items()})
        if self.st is not None and self.st_model is not None:
            out.update(self._st_metrics(qf, gf, qp, gp, qc, gc, qt, gt))
        return out

    def _st_metrics(self, qf, gf, qp, gp, qc, gc, qt, gt) -> dict[str, float]:
        from vidreid.evaluation.spatial_temporal import joint_distance, joint_score

        if torch.isnan(qt).any() or torch.isnan(gt).any():
            raise ValueError("st-ReID fusion needs a timestamp for every query and gallery item (frame numbers in "
                             "the file names); this dataset has none — set evaluation.st.enabled=false")
        kw = {k: self.st[k] for k in ("lambda0", "gamma0", "lambda1", "gamma1") if k in self.st}
        qn, gn = F.normalize(qf.float(), dim=1).cpu(), F.normalize(gf.float(), dim=1).cpu()

        def joint(af, ac, at, bf, bc, bt):
            return joint_distance(joint_score(af @ bf.T, self.st_model.score(ac, at, bc, bt), **kw)).float()

        d = joint(qn, qc, qt, gn, gc, gt)
        out = {f"st/{k}": v for k, v in self._rank(d, qp, gp, qc, gc).as_dict(self.ranks).items()}
        if self.rerank:
            rr = k_reciprocal_rerank(d, joint(qn, qc, qt, qn, qc, qt), joint(gn, gc, gt, gn, gc, gt),
                                     square=False, **self.rerank_kwargs)
            out.update({f"st_rerank/{k}": v for k, v in self._rank(rr, qp, gp, qc, gc).as_dict(self.ranks).items()})
        return out
