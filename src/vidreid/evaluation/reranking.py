"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), sparse and chunked in torch.

Follows the public reference implementation (``re_ranking`` in the authors' repository
zhunzhong07/person-re-ranking, copied into torchreid ``torchreid/utils/rerank.py`` and st-ReID
``re_ranking.py``) step by step:

1. ``D = [[q_q, q_g], [q_gᵀ, g_g]]`` ((N, N), N = num_query + num_gallery), squared, cast to float32,
   each column divided by its maximum, then transposed: ``Dt[i, j] = D[j, i]² / max_k D[k, i]²``.
2. ``R(i)``: the k-reciprocal neighbours of ``i`` among its ``k1 + 1`` nearest (rows of ``Dt``).
3. Expansion: for each ``c ∈ R(i)``, its ``round(k1 / 2)``-reciprocal set ``R½(c)`` is added when
   ``|R½(c) ∩ R(i)| > 2/3 · |R½(c)|``.
4. ``V[i, j] = exp(−Dt[i, j]) / Σ exp(−Dt[i, ·])`` over the expanded set (0 elsewhere).
5. Local query expansion (``k2 > 1``): ``V[i] ← mean of V[r]`` over the ``k2`` nearest ``r`` of ``i``.
6. Jaccard distance ``1 − m / (2 − m)`` with ``m = Σ_c min(V[q, c], V[g, c])``, via an inverted index.
7. ``final = jaccard · (1 − λ) + Dt · λ``, query × gallery block.

Nothing dense of size (N, N) is built: steps 1–2 take a ``topk`` of chunks of ``Dt`` rows read straight
from the three input blocks (a row of ``Dt`` is a column of ``D``; squaring and the per-row scale keep the
order, so the raw values are ranked), ``V`` is sparse (tens of non-zeros per row), and step 6 touches only
pairs that share a non-zero column. Extra memory is ``O(N·k1²)`` plus one ``(num_query, num_gallery)``
output, next to the inputs. Equal distances at the ``k``-th neighbour are broken by the lower index (a
stable sort); numpy's default ``argsort`` in the reference is not stable, so with exact ties the two may
pick different neighbours. Without ties the results agree to float32 rounding (~1e-6).
"""

from __future__ import annotations

import numpy as np
import torch

from vidreid.runtime.threads import phase_threads, use_threads

__all__ = ["k_reciprocal_rerank"]


class _Blocks:
    """The three input blocks ``D = [[q_q, q_g], [q_gᵀ, g_g]]``, read as ``Dt = Dᵀ`` without building it."""

    def __init__(self, qg: torch.Tensor, qq: torch.Tensor, gg: torch.Tensor, square: bool = True) -> None:
        self.qg, self.qq, self.gg = qg, qq, gg
        self.square = square
        self.nq, self.ng = qg.shape
        self.n = self.nq + self.ng
        self._buf: torch.Tensor | None = None

    def _columns(self, mat: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """``mat[:, a:b].T`` as a contiguous ``(b - a, rows)`` tensor (rows of ``Dt``).

        On the CPU it is copied in 128-row tiles into a reused buffer: a plain ``.T.contiguous()`` of a
        column block strides through memory and was 3x slower than the tiled copy plus ``topk``."""
        cols = mat[:, a:b]
        if mat.device.type != "cpu":
            return cols.T.contiguous()
        w, rows = b - a, mat.shape[0]
        need = w * rows
        if self._buf is None or self._buf.numel() < need or self._buf.dtype != mat.dtype:
            self._buf = torch.empty(need, dtype=mat.dtype)
        out = self._buf[:need].view(w, rows)
        for r0 in range(0, rows, 128):
            out[:, r0 : r0 + 128].copy_(cols[r0 : r0 + 128].T)
        return out

    def _part(self, rows: torch.Tensor, k: int, offset: int):
        """Row max of ``|d|`` and the ``k`` smallest entries of each row of ``rows`` (column ids + offset)."""
        k = min(k, rows.shape[1])
        hi = rows.amax(1)  # (aminmax is several times slower on the CPU)
        val, idx = torch.topk(rows, k, dim=1, largest=False, sorted=False)
        if self.square and bool((val < 0).any()):  # the reference squares: order by |d| as it does
            rows = rows.abs()
            hi = rows.amax(1)
            val, idx = torch.topk(rows, k, dim=1, largest=False, sorted=False)
        return hi, val, idx + offset

    def neighbours(self, a: int, b: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``a:b`` of ``Dt``: (row max of the prepared distance, ``k`` nearest columns sorted by
        increasing distance, ties by column). Squaring is monotone in ``|d|``, so raw values are ranked."""
        nq = self.nq
        if b <= nq:
            parts = [self._part(self._columns(self.qq, a, b), k, 0), self._part(self.qg[a:b], k, nq)]
        else:
            s, e = a - nq, b - nq
            parts = [self._part(self._columns(self.qg, s, e), k, 0), self._part(self._columns(self.gg, s, e), k, nq)]
        hi = torch.maximum(parts[0][0], parts[1][0])
        val = torch.cat([parts[0][1], parts[1][1]], 1)
        idx = torch.cat([parts[0][2], parts[1][2]], 1)
        by_idx = torch.argsort(idx, dim=1)  # then a stable sort by value: ties keep column order
        val, idx = val.gather(1, by_idx), idx.gather(1, by_idx)
        idx_sorted = idx.gather(1, torch.sort(val, dim=1, stable=True).indices)
        return self.prepare(hi), idx_sorted[:, :k]

    def prepare(self, d: torch.Tensor) -> torch.Tensor:
        """Raw distances -> the values the reference works on: squared (unless ``square=False``), float32."""
        return (d.pow(2) if self.square else d).to(torch.float32)

    def entries(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """``Dt[i, j] = D[j, i]`` (prepared) for 1-D index tensors of equal length, one gather per entry."""
        nq = self.nq
        out = torch.empty(i.shape, dtype=self.qg.dtype, device=i.device)
        iq, jq = i < nq, j < nq
        for sel, mat, r, c in (
            (jq & iq, self.qq, j, i),
            (jq & ~iq, self.qg, j, i - nq),
            (~jq & iq, self.qg, i, j - nq),  # D[j, i] = q_g[i, j - nq]
            (~jq & ~iq, self.gg, j - nq, i - nq),
        ):
            idx = torch.nonzero(sel).flatten()
            if len(idx):
                out[idx] = mat[r[idx], c[idx]]
        return self.prepare(out)


def _to_tensor(x, name: str, shape: tuple[int, ...] | None, device) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim != 2 or (shape is not None and tuple(t.shape) != shape):
        want = shape if shape is not None else "2-D"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    return t.detach().to(device)


def _reciprocal_mask(nn: torch.Tensor, chunk: int) -> torch.Tensor:
    """``mask[i, m] = i ∈ nn[nn[i, m]]``: which of the neighbours ``nn (N, K)`` are reciprocal."""
    n = nn.shape[0]
    out = torch.empty_like(nn, dtype=torch.bool)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        own = torch.arange(a, b, device=nn.device).view(-1, 1, 1)
        out[a:b] = (nn[nn[a:b]] == own).any(-1)
    return out


def _expand_rows(ptr: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For CSR row pointers ``ptr``: (index into ``rows``, entry position) of every entry of those rows."""
    counts = ptr[rows + 1] - ptr[rows]
    src = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    pos = ptr[rows][src] + torch.arange(len(src), device=rows.device) - starts[src]
    return src, pos


def _csr_ptr(rows: torch.Tensor, n: int) -> torch.Tensor:
    ptr = torch.zeros(n + 1, dtype=torch.int64, device=rows.device)
    ptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    return ptr


def _nearest(dt: _Blocks, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1–2: squared row maxima ``(N,)`` float32 and the ``k`` nearest columns ``(N, k)`` of ``Dt``."""
    n, nq = dt.n, dt.nq
    device = dt.qg.device
    rowmax = torch.empty(n, dtype=torch.float32, device=device)
    nn = torch.empty(n, k, dtype=torch.int64, device=device)
    bounds = [(a, min(nq, a + chunk)) for a in range(0, nq, chunk)]
    bounds += [(a, min(n, a + chunk)) for a in range(nq, n, chunk)]
    for a, b in bounds:
        m, nn[a:b] = dt.neighbours(a, b, k)
        rowmax[a:b] = torch.where(m > 0, m, torch.ones_like(m))
    return rowmax, nn


def _expanded_weights(dt: _Blocks, rowmax: torch.Tensor, nn1: torch.Tensor, nnh: torch.Tensor):
    """Steps 3–4: the sparse ``V`` as COO ``(rows, cols, vals)``, sorted by row then column."""
    n = dt.n
    device = nn1.device
    rec1 = _reciprocal_mask(nn1, max(1, (1 << 22) // (nn1.shape[1] ** 2)))
    rech = _reciprocal_mask(nnh, max(1, (1 << 22) // (nnh.shape[1] ** 2)))
    v_rows, v_cols, v_vals = [], [], []
    k1n, khn = nn1.shape[1], nnh.shape[1]
    step = max(1, (1 << 22) // (k1n * khn))
    for a in range(0, n, step):
        b = min(n, a + step)
        cand, cand_ok = nn1[a:b], rec1[a:b]  # (c, K1): R(i) = cand[cand_ok]
        half, half_ok = nnh[cand], rech[cand]  # (c, K1, Kh): R½(candidate) = half[half_ok]
        r_sorted = torch.where(cand_ok, cand, torch.full_like(cand, n)).sort(1).values  # R(i), padded with n
        flat = half.flatten(1)
        hit = r_sorted.gather(1, torch.searchsorted(r_sorted, flat).clamp_max(k1n - 1)) == flat
        in_r = hit.view_as(half)  # element of R½(candidate) is in R(i)
        count = (in_r & half_ok).sum(-1)
        size = half_ok.sum(-1)
        accept = cand_ok & (3 * count > 2 * size)  # |R½ ∩ R| > 2/3 |R½|, exactly in integers
        members = torch.cat([cand, flat], 1)
        ok = torch.cat([cand_ok, (half_ok & accept.unsqueeze(-1)).flatten(1)], 1)
        r, c = torch.nonzero(ok, as_tuple=True)
        keys = torch.unique(r * n + members[r, c])  # np.unique per row; sorted by row, then column
        r = torch.div(keys, n, rounding_mode="floor")
        cols = keys - r * n
        rows = r + a
        w = torch.exp(-dt.entries(rows, cols) / rowmax[rows])
        total = torch.zeros(b - a, dtype=torch.float32, device=device).index_add_(0, r, w)
        v_rows.append(rows)
        v_cols.append(cols)
        v_vals.append(w / total[r])
    return torch.cat(v_rows), torch.cat(v_cols), torch.cat(v_vals)


def _query_expansion(v_rows, v_cols, v_vals, nn_k2: torch.Tensor, n: int):
    """Step 5: ``V[i] <- mean(V[nn_k2[i]])``, COO in and out (sorted by row then column)."""
    kk = nn_k2.shape[1]
    v_ptr = _csr_ptr(v_rows, n)
    per_row = max(1, len(v_cols) // n)
    step = max(1, (1 << 22) // (kk * per_row))
    q_rows, q_cols, q_vals = [], [], []
    for a in range(0, n, step):
        b = min(n, a + step)
        src, pos = _expand_rows(v_ptr, nn_k2[a:b].reshape(-1))
        row = torch.div(src, kk, rounding_mode="floor") + a
        keys, inv = torch.unique(row * n + v_cols[pos], return_inverse=True)
        vals = torch.zeros(len(keys), dtype=torch.float32, device=keys.device).index_add_(0, inv, v_vals[pos])
        q_rows.append(torch.div(keys, n, rounding_mode="floor"))
        q_cols.append(keys % n)
        q_vals.append(vals / kk)
    return torch.cat(q_rows), torch.cat(q_cols), torch.cat(q_vals)


def _jaccard_mix(dt: _Blocks, rowmax, v_rows, v_cols, v_vals, lambda_value: float, pair_budget: int, chunk: int):
    """Steps 6–7: ``(nq, ng)`` float32 ``jaccard·(1−λ) + Dt·λ`` through an inverted index (CSC).

    ``jaccard = 1 − m/(2 − m)`` is 1 wherever ``m = Σ_c min(V[q, c], V[g, c])`` is 0, which is almost
    everywhere: the dense part is ``(1 − λ) + λ·Dt`` and only pairs sharing a column get ``−(1 − λ)·m/(2 − m)``.
    """
    nq, ng, n = dt.nq, dt.ng, dt.n
    device = v_rows.device
    out = torch.empty(nq, ng, dtype=torch.float32, device=device)
    for a in range(0, nq, chunk):
        b = min(nq, a + chunk)
        o = out[a:b]
        o.copy_(dt.prepare(dt.qg[a:b]) if dt.qg.dtype != torch.float32 or not dt.square else dt.qg[a:b])
        if dt.square and dt.qg.dtype == torch.float32:
            o.mul_(o)
        o.mul_(lambda_value / rowmax[a:b].unsqueeze(1))
        o.add_(1.0 - lambda_value)

    v_ptr = _csr_ptr(v_rows, n)
    gsel = v_rows >= nq
    g_cols = v_cols[gsel]
    order = torch.argsort(g_cols, stable=True)
    csc_rows = v_rows[gsel][order] - nq
    csc_vals = v_vals[gsel][order]
    col_ptr = _csr_ptr(g_cols, n)
    col_count = col_ptr[1:] - col_ptr[:-1]
    q_end = int(v_ptr[nq])
    pairs_per_query = torch.zeros(nq, dtype=torch.int64, device=device)
    pairs_per_query.index_add_(0, v_rows[:q_end], col_count[v_cols[:q_end]])
    cum_pairs = torch.cumsum(pairs_per_query, 0).cpu()
    flat_out = out.view(-1)
    a = 0
    while a < nq:
        base = int(cum_pairs[a - 1]) if a > 0 else 0
        b = int(torch.searchsorted(cum_pairs, base + pair_budget, right=True))
        b = min(nq, max(b, a + 1))
        e0, e1 = int(v_ptr[a]), int(v_ptr[b])
        src, pos = _expand_rows(col_ptr, v_cols[e0:e1])
        keys, inv = torch.unique(v_rows[e0:e1][src] * ng + csc_rows[pos], return_inverse=True)
        m = torch.zeros(len(keys), dtype=torch.float32, device=device)
        m.index_add_(0, inv, torch.minimum(v_vals[e0:e1][src], csc_vals[pos]))
        flat_out.index_add_(0, keys, m.div_(m - 2.0).mul_(1.0 - lambda_value))  # -(1-λ)·m/(2-m)
        a = b
    return out


def k_reciprocal_rerank(
    q_g_dist,
    q_q_dist,
    g_g_dist,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    pair_budget: int = 1 << 22,
    square: bool = True,
    num_threads: int | str | None = "auto",
):
    """Re-ranked query × gallery distances (Zhong et al. CVPR 2017, reference ``re_ranking``).

    Args:
        q_g_dist: ``(num_query, num_gallery)`` distances (e.g. Euclidean or ``1 - cos``; ``2 - 2·P_joint``
            for st-ReID), non-negative; torch or numpy, any float dtype.
        q_q_dist: ``(num_query, num_query)``; g_g_dist: ``(num_gallery, num_gallery)``.
        k1: k-reciprocal neighbourhood size (20 in the paper). k2: query-expansion size (6; 1 disables).
        lambda_value: weight of the original distance in the final mix (0.3).
        chunk_size: rows of the (N, N) distance processed at once (default ≈ 8M entries per chunk).
        device: where to compute (default: the device of ``q_g_dist``); inputs are moved there.
        pair_budget: max (query entry, gallery entry) pairs expanded at once in the Jaccard step.
        square: square the distances first, as the reference does. ``False`` reproduces st-ReID's
            ``re_ranking.py``, which works on ``2 − 2·P_joint`` directly (docs/methods.md §5.5).
        num_threads: torch intra-op threads during the call on the CPU (restored after). ``"auto"``:
            ``vidreid.runtime.threads.phase_threads("reranking")`` (1; the ``topk`` of step 2 took 15.8 s with 2
            threads against 1.4 s with 1 on 2 shared cores; ``make bench`` measures 1 and N threads,
            idle and beside a competing process). ``None`` keeps torch's setting.

    Returns:
        ``(num_query, num_gallery)`` float32 re-ranked distances: a numpy array when ``q_g_dist`` is
        numpy, otherwise a tensor on ``device``.

    Raises:
        ValueError: on inconsistent shapes, ``k1 < 1``, ``k2 < 1`` or ``lambda_value`` outside [0, 1].
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1={k1}, k2={k2}: expected both >= 1")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value={lambda_value}: expected a value in [0, 1]")
    as_numpy = not isinstance(q_g_dist, torch.Tensor)
    if device is None:
        device = q_g_dist.device if isinstance(q_g_dist, torch.Tensor) else torch.device("cpu")
    qg = _to_tensor(q_g_dist, "q_g_dist", None, device)
    nq, ng = qg.shape
    qq = _to_tensor(q_q_dist, "q_q_dist", (nq, nq), device)
    gg = _to_tensor(g_g_dist, "g_g_dist", (ng, ng), device)
    if nq == 0 or ng == 0:
        raise ValueError(f"q_g_dist: expected at least one query and one gallery item, got shape {(nq, ng)}")
    dt = _Blocks(qg, qq, gg, square)
    n = dt.n
    chunk = chunk_size or max(1, (1 << 23) // n)
    k_top = min(n, max(k1 + 1, k2))
    kh = int(np.around(k1 / 2.0))

    if num_threads == "auto":
        num_threads = phase_threads("reranking") if qg.device.type == "cpu" else None
    with use_threads(num_threads):
        rowmax, nn = _nearest(dt, k_top, chunk)
        v = _expanded_weights(dt, rowmax, nn[:, : min(k1 + 1, n)], nn[:, : min(kh + 1, n)])
        if k2 > 1:
            v = _query_expansion(*v, nn[:, : min(k2, n)], n)
        out = _jaccard_mix(dt, rowmax, *v, lambda_value, pair_budget, chunk)
    return out.cpu().numpy() if as_numpy else out
