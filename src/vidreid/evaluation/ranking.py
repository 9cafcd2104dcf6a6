"""CMC, mAP and mINP from a query × gallery distance matrix, vectorised and chunked over queries; the one
pairwise-distance function and the one junk rule of the project.

The protocol is the usual re-ID one (docs/methods.md §0.2, §5.5): for every query, gallery items with the
same pid **and** the same camera are junk and removed, as are gallery items with pid ``-1``
(:func:`junk_mask`); the other items with the query's pid are its positives; queries with no positive
are skipped.

Speed: a full ``argsort`` of every row is the expensive part of the usual implementation (torchreid
``eval_market1501``, fast-reid ``evaluate_cy``). Only the rank of every positive is needed, and a
positive's rank only depends on the items ranked before the query's *last* positive. So float32 rows are
taken in blocks of 16 (their distances stay in the L2 cache): one compare pass against each row's farthest
positive (found from the few same-pid pairs), numpy's ``flatnonzero`` of that mask (a few percent of the matrix
for a trained model), one sort of exact integer keys ``(row, float bits, gallery index)`` of those items, and a
``searchsorted`` of the positives' keys into it; junk items before a positive are counted from their own keys and
taken off. The result equals a stable argsort ranking (ties broken by gallery order) for any input, including
heavy ties. Profiled at MARS scale before it was written: docs/performance.md ("Ranking"). Inputs that are not
float32-exact (float64 values with more precision) or galleries of more than 2**20 items take the bucketed route
(a per-row histogram over about ``num_gallery`` buckets, exact sorting only inside the buckets that hold a
positive), equally exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vidreid.runtime.threads import phase_threads, use_threads

__all__ = ["DISTANCES", "RankingResult", "evaluate_ranking", "junk_mask", "pairwise_distance", "positive_ranks"]

DISTANCES = ("cosine", "euclidean")

AP_MODES = ("standard", "trapezoid")
AVERAGES = ("valid", "all")


@dataclass(frozen=True)
class RankingResult:
    """Metrics of one evaluation.

    Attributes:
        cmc: ``(max_rank,)`` float64, ``cmc[k]`` = fraction of queries whose first positive is within
            the top ``k+1`` (after junk removal).
        mAP: mean average precision in ``[0, 1]``.
        mINP: mean inverse negative penalty in ``[0, 1]`` (Ye et al., "Deep Learning for Person
            Re-identification: A Survey and Outlook", TPAMI 2021, AGW): per query ``num_pos / (R_hard + 1)``
            with ``R_hard`` the 0-based rank of its hardest (last) positive.
        num_valid_queries: queries with at least one positive.
        num_queries: all queries.
        ap: ``(num_query,)`` per-query AP, NaN for a skipped query.
        first_hit: ``(num_query,)`` 0-based rank of the first positive, ``-1`` for a skipped query.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int
    ap: np.ndarray = field(repr=False)
    first_hit: np.ndarray = field(repr=False)

    def rank(self, k: int) -> float:
        """Rank-``k`` accuracy (``k`` is 1-based), e.g. ``rank(1)``."""
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
        """``{"rank1": ..., "mAP": ..., "mINP": ...}`` for the ranks that fit in ``cmc``."""
        out = {f"rank{k}": self.rank(k) for k in ranks if k <= len(self.cmc)}
        out.update(mAP=self.mAP, mINP=self.mINP)
        return out


def _as_tensor(x, name: str, ndim: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if ndim == 1:
        t = t.contiguous()  # ids: small; searchsorted wants contiguous input
    if t.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {tuple(t.shape)}")
    return t


def _single_thread():
    """Small ops (a few thousand elements) never gain from threads (:mod:`vidreid.runtime.threads`)."""
    return use_threads(1)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor | None = None, metric: str = "cosine") -> torch.Tensor:
    """The project's one distance: ``(Na, Nb)`` float32 distances between the rows of ``a (Na, D)`` and
    ``b (Nb, D)`` (``b=None``: ``a`` against itself), used by evaluation, re-ranking and the triplet loss.

    ``"cosine"``: ``1 − cos(a_i, b_j)`` clamped to ``[0, 2]``. STAFormer/PSTA train their triplet loss on
    ``−cos`` (docs/methods.md §1.2) and rank by it (§0.2): ``1 − cos`` is the same shifted by 1, so rankings and
    every margin/soft-margin triplet value are identical, and the distance is never negative (k-reciprocal
    re-ranking squares distances). ``"euclidean"``: ``‖a_i − b_j‖₂`` with the squared distance clamped at
    ``1e-12`` before the square root so gradients stay finite (torchreid ``compute_distance_matrix``; BoT).

    Differentiable (the triplet loss backpropagates through it).

    Raises:
        ValueError: on an unknown ``metric`` or inputs that are not ``(N, D)`` matrices with equal ``D``.
    """
    if metric not in DISTANCES:
        raise ValueError(f"metric={metric!r}: expected one of {DISTANCES}")
    if b is None:
        b = a
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings: expected (N, D) matrices with equal D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    a, b = a.float(), b.float()
    if metric == "cosine":
        return (1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T).clamp(0.0, 2.0)
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1).unsqueeze(0) - 2.0 * a @ b.T
    return sq.clamp(min=1e-12).sqrt()


def junk_mask(q_pid, q_camid, g_pids, g_camids):
    """The one junk rule (docs/methods.md §0.2): gallery items a query must not be ranked against — same pid **and**
    same camera as the query, or pid ``-1``.

    Args:
        q_pid, q_camid: the query's ids (ints), or ``(Nq,)`` arrays/tensors for a ``(Nq, Ng)`` mask.
        g_pids, g_camids: ``(Ng,)`` gallery ids (numpy or torch).

    Returns:
        bool mask ``(Ng,)`` (scalar query) or ``(Nq, Ng)``, numpy when ``g_pids`` is numpy, else torch.
        :func:`evaluate_ranking` applies exactly this rule (sparsely); ranked-list figures use it to draw
        what was ranked: ``cols = np.flatnonzero(~junk_mask(qp, qc, gp, gc))``.
    """
    lib = torch if isinstance(g_pids, torch.Tensor) else np
    qp = lib.as_tensor(q_pid) if lib is torch else np.asarray(q_pid)
    qc = lib.as_tensor(q_camid) if lib is torch else np.asarray(q_camid)
    if qp.ndim == 1:
        qp, qc = qp[:, None], qc[:, None]
    return ((g_pids == qp) & (g_camids == qc)) | (g_pids == -1)


def _same_pid_pairs(qp: np.ndarray, order: np.ndarray, sorted_gp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (row, gallery column) pairs with equal pid, rows indexing ``qp``; pid ``-1`` queries get none (numpy:
    a few thousand pairs per chunk, where torch's per-op overhead would dominate)."""
    lo = np.searchsorted(sorted_gp, qp, side="left")
    hi = np.searchsorted(sorted_gp, qp, side="right")
    counts = np.where(qp == -1, 0, hi - lo)
    rows = np.repeat(np.arange(len(qp), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    offs = np.arange(len(rows), dtype=np.int64) - starts[rows]
    return rows, order[lo[rows] + offs]


class _Workspace:
    """Reusable per-chunk buffers, made on first use: fresh large allocations per chunk cost more (page faults)
    than the math."""

    def __init__(self, rows: int, ng: int) -> None:
        self.rows, self.ng = rows, ng
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, b: int, dtype: torch.dtype) -> torch.Tensor:
        key = (name, dtype)
        if key not in self._bufs:
            self._bufs[key] = torch.empty(self.rows, self.ng, dtype=dtype)
        return self._bufs[key][:b]


# threshold route: key = row << 52 | order bits of the float32 value << 20 | gallery column (a non-negative int64)
_ROW_BITS, _COL_BITS = 11, 20
MAX_CHUNK_ROWS = 1 << _ROW_BITS
_ROW_SHIFT = 32 + _COL_BITS
# rows per compare block of the threshold route: its float32 rows (16 × 11,310 × 4 B at MARS scale) stay in the
# L2 cache between the compare, the extraction and the gather
_BLOCK_ROWS = 16
# numpy's flatnonzero on a bool array takes a memchr loop when at most 10 % of the items are set and a branchless
# loop above. Between ~4 % and 10 % the branchless loop is 2-4x faster (16-row blocks of 11,310, 22 M items in all,
# AMD EPYC: 16.8 vs 8.4 ms at 6 %, 30.9 vs 8.2 ms at 9.9 %); below, memchr wins. Masks whose density falls between
# these two constants are padded with set items to just over 10 %, and the padding's indices dropped (numpy's
# choice of loop is an implementation detail: another numpy only changes the speed, never the result).
_NP_BRANCHLESS_DENSITY = 0.1
_NP_MEMCHR_FAST_DENSITY = 0.03


def _float_order(v: np.ndarray) -> np.ndarray:
    """float32 ``v`` -> uint32 with the same order (``-0.0`` and ``+0.0`` equal): positives get the sign bit set,
    negatives have every bit flipped."""
    bits = (v + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into +0.0
    sign = (bits.view(np.int32) >> 31).view(np.uint32)
    sign |= np.uint32(0x80000000)
    bits ^= sign
    return bits


def _keys(rows: np.ndarray, vals: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Exact int64 sort keys ``(row, value, column)``: ascending key = the stable ascending order of each row."""
    return (rows << _ROW_SHIFT) | (_float_order(vals).astype(np.int64) << _COL_BITS) | cols


def _block_keys(flat: np.ndarray, vals: np.ndarray, first_row: int, ng: int) -> np.ndarray:
    """:func:`_keys` of the items at ``flat`` (indices into a row-major block of ``ng`` columns whose first row is
    ``first_row``), with fewer passes: ``(first_row + r) << 52 | v << 20 | c = v << 20 + flat + r·(2**52 − ng) +
    first_row << 52`` (``flat = r·ng + c``)."""
    key = _float_order(vals).astype(np.int64)
    key <<= _COL_BITS
    key += flat
    rows = flat // ng  # numpy divides by a scalar with a multiply (libdivide)
    rows *= (1 << _ROW_SHIFT) - ng
    key += rows
    key += first_row << _ROW_SHIFT
    return key


def _check_finite(total, x) -> None:
    """A sum is finite only if every term is (one vectorised pass); a non-finite sum may also be an overflow,
    which the exact check then clears. Raises ValueError on NaN or inf in ``x``."""
    lib = torch if isinstance(x, torch.Tensor) else np
    if not lib.isfinite(total) and not lib.isfinite(x).all():
        raise ValueError("distmat: expected finite values, found NaN or inf")


def _row_starts(sorted_keys: np.ndarray, first: int, last: int) -> np.ndarray:
    """Index of each row ``first..last-1``'s first key in ``sorted_keys``."""
    return np.searchsorted(sorted_keys, np.arange(first, last, dtype=np.int64) << _ROW_SHIFT)


def _nonzero(buf: np.ndarray, size: int) -> np.ndarray:
    """``np.flatnonzero(buf[:size])`` on the faster of numpy's two loops (``buf[size:]`` must be all True and at
    least ``size / 9 + 2`` long)."""
    mask = buf[:size]
    count = int(np.count_nonzero(mask))
    if _NP_MEMCHR_FAST_DENSITY * size < count <= _NP_BRANCHLESS_DENSITY * size:
        pad = int((_NP_BRANCHLESS_DENSITY * size - count) / (1 - _NP_BRANCHLESS_DENSITY)) + 2
        return np.flatnonzero(buf[: size + pad])[:count]
    return np.flatnonzero(mask)


def positive_ranks(
    x: torch.Tensor,
    qp: torch.Tensor,
    qc: torch.Tensor,
    gp: torch.Tensor,
    gc: torch.Tensor,
    gp_order: torch.Tensor | None = None,
    workspace: _Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0-based ranks of every positive of every row of a distance block, after junk removal.

    Args:
        x: ``(b, num_gallery)`` finite distances (smaller = more similar), on the CPU.
        qp, qc: ``(b,)`` query pids / camera ids (int64). gp, gc: ``(num_gallery,)`` gallery pids / cams.
        gp_order: optional stable argsort of ``gp`` (saves work across chunks).
        workspace: optional buffers of at least ``b`` rows for the bucketed route (internal).

    Returns:
        ``(rows, ranks)``: 1-D int64 tensors, one entry per positive, sorted by row and, within a row,
        by increasing rank. The rank of a positive is the number of non-junk gallery items before it in
        a stable ascending sort of the row (ties broken by gallery index).

    Raises:
        ValueError: if ``x`` holds NaN or inf.
    """
    b, ng = x.shape
    empty = torch.zeros(0, dtype=torch.int64)
    if b == 0 or ng == 0:
        return empty, empty
    if gp_order is None:
        gp_order = torch.argsort(gp, stable=True)
    xf = x if x.dtype == torch.float32 else x.float()
    exact32 = x.dtype in (torch.float32, torch.float16, torch.bfloat16) or torch.equal(xf.to(x.dtype), x)
    if exact32 and b <= MAX_CHUNK_ROWS and ng <= (1 << _COL_BITS):
        return _threshold_ranks(xf, qp, qc, gp, gc, gp_order)  # checks finiteness block by block
    _check_finite(x.sum(), x)
    ws = workspace if workspace is not None else _Workspace(b, ng)
    return _bucket_ranks(x, qp, qc, gp, gc, gp_order, ws)


def _threshold_ranks(x, qp, qc, gp, gc, gp_order) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`positive_ranks` for float32 ``x`` of at most 2**11 rows and 2**20 columns.

    A positive's rank only depends on the items ranked before it, all at most the row's farthest positive
    ``tmax``. In blocks of :data:`_BLOCK_ROWS` rows: one compare pass ``x <= tmax``, numpy's flatnonzero, exact keys
    ``(row, float bits, column)`` of the extracted items, one sort (numpy's SIMD sort), and a ``searchsorted`` of
    the block's positives into it gives the items before each positive. Junk items before a positive (same pid and
    camera, pid -1) are counted the same way from their own keys and taken off."""
    b, ng = x.shape
    empty = torch.zeros(0, dtype=torch.int64)
    qp, qc, gp, gc, gp_order = (t.numpy() for t in (qp, qc, gp, gc, gp_order))
    pr, pc = _same_pid_pairs(qp, gp_order, gp[gp_order])
    junk = gc[pc] == qc[pr]
    jr, jc = pr[junk], pc[junk]
    pr, pc = pr[~junk], pc[~junk]
    if len(pr) == 0:
        _check_finite(x.sum(), x)
        return empty, empty
    xn = x.detach().contiguous().numpy()
    xp = xn[pr, pc]
    tmax = np.full(b, -np.inf, dtype=np.float32)
    np.maximum.at(tmax, pr, xp)
    pkey = np.sort(_keys(pr, xp, pc))
    prow = pkey >> _ROW_SHIFT
    ranks = np.empty(len(pkey), dtype=np.int64)

    block = min(_BLOCK_ROWS, b)
    size = block * ng
    buf = np.empty(size + size // 9 + 4, dtype=bool)
    buf[size:] = True  # padding for _nonzero
    bounds = np.searchsorted(prow, np.arange(0, b + block, block))
    for i, a in enumerate(range(0, b, block)):
        e = min(b, a + block)
        xb = xn[a:e]
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow or inf - inf is what the check is for
            total = np.add.reduce(xb.reshape(-1))  # the compare below then reads xb from the L2 cache
        _check_finite(total, xb)
        p0, p1 = bounds[i], bounds[i + 1]
        if p0 == p1:  # no positive in these rows
            continue
        n = (e - a) * ng
        np.less_equal(xb, tmax[a:e, None], out=buf[:n].reshape(e - a, ng))
        flat = _nonzero(buf, n)
        keys = _block_keys(flat, xb.reshape(-1)[flat], a, ng)
        keys.sort()
        pk = pkey[p0:p1]
        ranks[p0:p1] = np.searchsorted(keys, pk) - _row_starts(keys, a, e)[prow[p0:p1] - a]

    minus1 = np.flatnonzero(gp == -1)
    if len(minus1):
        jr = np.concatenate([jr, np.repeat(np.arange(b, dtype=np.int64), len(minus1))])
        jc = np.concatenate([jc, np.tile(minus1, b)])
    if len(jr):
        jkey = np.sort(_keys(jr, xn[jr, jc], jc))
        ranks -= np.searchsorted(jkey, pkey) - _row_starts(jkey, 0, b)[prow]
    return torch.from_numpy(prow), torch.from_numpy(ranks)


def _bucket_ranks(x, qp, qc, gp, gc, gp_order, ws: _Workspace) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`positive_ranks` for any float dtype and size: monotone bucketing of every row into ``ng`` buckets
    (``x_j < x_p => bucket_j <= bucket_p`` and ``bucket_j < bucket_p => x_j < x_p``), a per-row histogram, and
    an exact sort only among the items that share a bucket with a positive."""
    b, ng = x.shape
    empty = torch.zeros(0, dtype=torch.int64)
    sorted_gp = gp[gp_order]
    nb = ng
    lo, hi = x.amin(1), x.amax(1)
    scale = (nb - 1) / (hi - lo)
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale)).unsqueeze(1)
    t = torch.sub(x, lo.unsqueeze(1), out=ws.get("t", b, x.dtype))
    t.mul_(scale)
    buckets = ws.get("buckets", b, torch.int64)
    buckets.copy_(t)  # truncation toward zero = floor, values are >= 0
    hist = ws.get("hist", b, torch.int32).zero_()
    hist.scatter_add_(1, buckets, torch.ones(1, 1, dtype=torch.int32).expand(b, ng))

    # 2. remove junk from the histogram: same pid & camera, and gallery pid -1.
    with _single_thread():
        pr, pc = (torch.from_numpy(t) for t in _same_pid_pairs(qp.numpy(), gp_order.numpy(), sorted_gp.numpy()))
        junk = gc[pc] == qc[pr]
        jr, jc = pr[junk], pc[junk]
        hist.view(-1).index_add_(0, jr * nb + buckets[jr, jc], torch.full((len(jr),), -1, dtype=torch.int32))
        minus1 = torch.nonzero(gp == -1).flatten()
    if len(minus1):
        hist.scatter_add_(1, buckets[:, minus1], torch.full((1, 1), -1, dtype=torch.int32).expand(b, len(minus1)))

    # 3. positives and the "hot" buckets that hold them.
    pr, pc = pr[~junk], pc[~junk]
    if len(pr) == 0:
        return empty, empty
    hot = ws.get("hot", b, torch.bool).zero_()
    with _single_thread():
        hot[pr, buckets[pr, pc]] = True
    hot_items = torch.gather(hot, 1, buckets, out=ws.get("hot_items", b, torch.bool))
    hr, hc = torch.nonzero(hot_items, as_tuple=True)  # row-major: gallery order within a row
    cum = torch.cumsum(hist, 1, out=ws.get("cum", b, torch.int32))  # valid items in buckets <= each bucket
    with _single_thread():
        return _exact_ranks(x, qp, qc, gp, gc, hist, cum, buckets, hr, hc)


def _exact_ranks(x, qp, qc, gp, gc, hist, cum, buckets, hr, hc) -> tuple[torch.Tensor, torch.Tensor]:
    """Ranks of the positives among the hot items (those sharing a bucket with a positive)."""
    nb = buckets.shape[1]
    hgp = gp[hc]
    keep = ~((hgp == -1) | ((hgp == qp[hr]) & (gc[hc] == qc[hr])))
    hr, hc, hgp = hr[keep], hc[keep], hgp[keep]
    is_pos = (hgp == qp[hr]) & (gc[hc] != qc[hr])
    hb = buckets[hr, hc]
    in_bucket = hist[hr, hb]  # valid items in the bucket itself

    # 4. exact order inside each (row, bucket) group: stable by value, then stable by group.
    o = torch.argsort(x[hr, hc], stable=True)
    grp = (hr * nb + hb)[o]
    o2 = torch.argsort(grp, stable=True)
    o, grp = o[o2], grp[o2]
    n = len(o)
    idx = torch.arange(n)
    first = torch.ones(n, dtype=torch.bool)
    first[1:] = grp[1:] != grp[:-1]
    group_start = torch.cummax(torch.where(first, idx, torch.zeros_like(idx)), 0).values
    pos_in_group = idx - group_start
    pos_sorted = is_pos[o]
    sel = o[pos_sorted]
    rows = hr[sel]
    ranks = (cum[rows, hb[sel]] - in_bucket[sel]).long() + pos_in_group[pos_sorted]
    return rows, ranks


def evaluate_ranking(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    max_rank: int = 50,
    ap_mode: str = "standard",
    average: str = "valid",
    chunk_size: int | None = None,
    num_threads: int | str | None = "auto",
) -> RankingResult:
    """CMC / mAP / mINP of a query × gallery distance matrix.

    Args:
        distmat: ``(num_query, num_gallery)`` distances (torch or numpy, float32/float64), finite;
            smaller = more similar. Never modified.
        q_pids, q_camids: ``(num_query,)`` int pids / camera ids. g_pids, g_camids: ``(num_gallery,)``.
        max_rank: length of the returned CMC curve.
        ap_mode: ``"standard"``: non-interpolated AP (docs/methods.md §0.2; torchreid ``eval_market1501``),
            ``AP = (1/n) Σ_i i / r_i`` over the ``n`` positives, ``r_i`` the 1-based rank of the
            ``i``-th positive after junk removal.
            ``"trapezoid"``: Market-1501's original AP as in Person_reID_baseline_pytorch
            ``evaluate_gpu.py::compute_mAP`` and st-ReID (docs/methods.md §5.5):
            ``AP = Σ_i (1/n) · (p_old_i + p_i) / 2`` with ``p_i = i / r_i`` and
            ``p_old_i = (i - 1) / (r_i - 1)`` (the precision at the rank just before the hit),
            ``p_old_i = 1`` when ``r_i = 1``.
        average: ``"valid"`` divides CMC / mAP / mINP sums by the queries that have a positive;
            ``"all"`` by all queries (Person_reID_baseline_pytorch / st-ReID; a skipped query then
            counts as 0).
        chunk_size: queries per chunk (at most 2048; default: a chunk near 4M distances). Work memory of the
            float32 route: the chunk's same-pid pairs, plus one block of 16 rows' mask and keys of the items up to
            each row's farthest positive (the bucketed route: a few int/bool matrices of the chunk).
        num_threads: torch intra-op threads during the call (restored after). ``"auto"``:
            ``vidreid.runtime.threads.phase_threads("ranking")`` = 1: the passes are memory-bound and the rest is sparse,
            so threads buy little on an idle machine and cost several times on a busy one. ``None`` keeps
            torch's setting. The float32 route runs numpy on the calling thread whatever this says.

    Returns:
        :class:`RankingResult` (mINP as in Ye et al. TPAMI 2021: ``n / r_n`` per query). Ties in distance
        are broken by gallery order, exactly as a stable ascending argsort of each row would rank them.
        Runs on the CPU (a CUDA ``distmat`` is copied over). ``make bench`` times it against torchreid's and
        fast-reid's Cython evaluators at MARS scale (1980 × 11,310). The cost grows with how far down each
        row its farthest positive lies (a poor model: up to the whole row between its positives).

    Raises:
        ValueError: on shape mismatches, non-finite distances, unknown ``ap_mode``/``average``,
            ``max_rank < 1``, or when no query has a positive and ``average == "valid"``.
    """
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode={ap_mode!r}: expected one of {AP_MODES}")
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}: expected one of {AVERAGES}")
    if max_rank < 1:
        raise ValueError(f"max_rank={max_rank}: expected >= 1")
    x = _as_tensor(distmat, "distmat", 2).detach().cpu()
    if not x.is_floating_point():
        x = x.double()
    nq, ng = x.shape
    qp = _as_tensor(q_pids, "q_pids", 1).long().cpu()
    qc = _as_tensor(q_camids, "q_camids", 1).long().cpu()
    gp = _as_tensor(g_pids, "g_pids", 1).long().cpu()
    gc = _as_tensor(g_camids, "g_camids", 1).long().cpu()
    for name, arr, n in (("q_pids", qp, nq), ("q_camids", qc, nq), ("g_pids", gp, ng), ("g_camids", gc, ng)):
        if len(arr) != n:
            raise ValueError(f"{name}: expected length {n} to match distmat {tuple(x.shape)}, got {len(arr)}")
    if chunk_size is None:
        chunk_size = max(1, (1 << 22) // max(ng, 1))
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: expected >= 1")
    chunk_size = min(chunk_size, MAX_CHUNK_ROWS)
    if num_threads == "auto":
        num_threads = phase_threads("ranking")

    with use_threads(num_threads):
        gp_order = torch.argsort(gp, stable=True)
        workspace = _Workspace(min(chunk_size, nq), ng)
        all_rows, all_ranks = [], []
        for a in range(0, nq, chunk_size):
            b = min(nq, a + chunk_size)
            rows, ranks = positive_ranks(x[a:b], qp[a:b], qc[a:b], gp, gc, gp_order, workspace)
            all_rows.append(rows + a)
            all_ranks.append(ranks)
    rows = torch.cat(all_rows) if all_rows else torch.zeros(0, dtype=torch.int64)
    ranks = torch.cat(all_ranks).double() if all_ranks else torch.zeros(0, dtype=torch.float64)
    with _single_thread():
        return _metrics_from_ranks(rows, ranks, nq, max_rank, ap_mode, average)


def _metrics_from_ranks(
    rows: torch.Tensor, ranks: torch.Tensor, nq: int, max_rank: int, ap_mode: str, average: str
) -> RankingResult:
    """Metrics from the per-positive ranks (rows sorted, ranks increasing within a row)."""
    npos = torch.bincount(rows, minlength=nq)
    valid = npos > 0
    num_valid = int(valid.sum())
    if num_valid == 0 and average == "valid":
        raise ValueError("no query has a positive in the gallery (after junk removal): metrics are undefined")
    n = len(rows)
    first = torch.ones(n, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    idx = torch.arange(n)
    k = idx - torch.cummax(torch.where(first, idx, torch.zeros_like(idx)), 0).values  # 0-based positive index
    k = k.double()
    prec = (k + 1) / (ranks + 1)
    if ap_mode == "trapezoid":
        old = torch.where(ranks > 0, k / ranks.clamp_min(1), torch.ones_like(ranks))
        prec = (old + prec) / 2
    npos_f = npos.double()
    ap = torch.zeros(nq, dtype=torch.float64).index_add_(0, rows, prec)
    ap = torch.where(valid, ap / npos_f.clamp_min(1), torch.full_like(ap, float("nan")))
    first_hit = torch.full((nq,), -1, dtype=torch.int64)
    first_hit[rows[first]] = ranks[first].long()
    last = torch.ones(n, dtype=torch.bool)
    last[:-1] = rows[1:] != rows[:-1]
    inp = torch.zeros(nq, dtype=torch.float64)
    inp[rows[last]] = npos_f[rows[last]] / (ranks[last] + 1)

    denom = num_valid if average == "valid" else nq
    denom = max(denom, 1)
    hits = torch.zeros(max_rank + 1, dtype=torch.float64)
    fh = first_hit[valid].clamp_max(max_rank)
    hits.index_add_(0, fh, torch.ones(len(fh), dtype=torch.float64))
    cmc = torch.cumsum(hits[:max_rank], 0) / denom
    return RankingResult(
        cmc=cmc.numpy(),
        mAP=float(torch.nan_to_num(ap, nan=0.0).sum() / denom),
        mINP=float(inp.sum() / denom),
        num_valid_queries=num_valid,
        num_queries=nq,
        ap=ap.numpy(),
        first_hit=first_hit.numpy(),
    )
