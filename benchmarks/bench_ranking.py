"""CMC / mAP / mINP at the real MARS protocol scale: 1980 queries × 11,310 gallery items.

Pids and cameras come from the official MARS protocol files (``mars-info/tracks_test_info.mat`` and
``query_IDX.mat``: gallery = test rows not in the query, junk rows (pid −1) dropped, then the queries
appended — 9330 + 1980 = 11,310 items). Distances are cosine distances of random-but-structured features
(one centre per identity plus noise, distractors random), so metrics are far from 0 and 1. Compared in
the same run:

* ``evaluate_ranking`` (vidreid, bucketed exact ranks),
* a vectorised torch implementation that fully sorts every row (``argsort`` + masks),
* a per-query numpy loop as in torchreid ``eval_market1501`` (one ``argsort`` of the matrix, then a
  Python loop over queries; its AP is vectorised per query instead of torchreid's list comprehension).

All three must give identical metrics (stable sorts: ties broken by gallery order).

Usage: ``python benchmarks/bench_ranking.py [--out benchmarks/results/ranking.json] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from _report import report
from scipy.io import loadmat

from vidreid.evaluation import evaluate_ranking

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDREID_SHARED_DATA", REPO.parent / "shared" / "data"))


def mars_protocol_ids() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(q_pids, q_cams, g_pids, g_cams, source) of the MARS test protocol, queries appended to the gallery."""
    info = SHARED / "mars-info"
    try:
        rows = np.asarray(loadmat(str(info / "tracks_test_info.mat"))["track_test_info"]).astype(np.int64)
        query_idx = np.asarray(loadmat(str(info / "query_IDX.mat"))["query_IDX"]).astype(np.int64).ravel() - 1
    except (FileNotFoundError, OSError, KeyError) as err:
        print(f"MARS protocol files not usable under {info} ({err}); using synthetic ids of the same sizes")
        rng = np.random.default_rng(0)
        q_pids, q_cams = rng.integers(1, 627, 1980), rng.integers(0, 6, 1980)
        g_pids = rng.integers(0, 627, 9330)
        g_cams = rng.integers(0, 6, 9330)
        return q_pids, q_cams, np.concatenate([g_pids, q_pids]), np.concatenate([g_cams, q_cams]), "synthetic"
    is_query = np.zeros(len(rows), dtype=bool)
    is_query[query_idx] = True
    gallery = rows[~is_query & (rows[:, 2] != -1)]
    query = rows[query_idx]
    q_pids, q_cams = query[:, 2], query[:, 3] - 1
    g_pids = np.concatenate([gallery[:, 2], q_pids])
    g_cams = np.concatenate([gallery[:, 3] - 1, q_cams])
    return q_pids, q_cams, g_pids, g_cams, str(info)


def structured_distances(q_pids, g_pids, dim: int = 128, noise: float = 1.6, seed: int = 0) -> torch.Tensor:
    """Cosine distances ``(Nq, Ng)`` float32 of features = identity centre + noise (pid 0 = own random centre)."""
    gen = torch.Generator().manual_seed(seed)
    pids = np.concatenate([q_pids, g_pids])
    _, inv = np.unique(pids, return_inverse=True)
    centres = torch.randn(int(inv.max()) + 1, dim, generator=gen)
    feats = centres[torch.from_numpy(inv)] + noise * torch.randn(len(pids), dim, generator=gen)
    distractor = torch.from_numpy(pids == 0)
    feats[distractor] = torch.randn(int(distractor.sum()), dim, generator=gen) * (1 + noise)
    feats = torch.nn.functional.normalize(feats, dim=1)
    nq = len(q_pids)
    return (1.0 - feats[:nq] @ feats[nq:].T).clamp_(0.0, 2.0)


def numpy_loop(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50):
    """Per-query loop in the style of torchreid ``eval_market1501`` (stable argsort of the whole matrix)."""
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        remove = ((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])) | (g_pids[order] == -1)
        raw = matches[i][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        pos = np.flatnonzero(raw)
        all_inp.append(len(pos) / (pos[-1] + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        all_ap.append(((np.arange(len(pos)) + 1.0) / (pos + 1.0)).mean())
    return np.mean(all_cmc, 0), float(np.mean(all_ap)), float(np.mean(all_inp))


def torch_full_sort(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50, chunk=256):
    """Vectorised torch metrics with a full stable sort of every row (chunked over queries)."""
    qp, qc, gp, gc = (torch.as_tensor(x) for x in (q_pids, q_cams, g_pids, g_cams))
    cmc_sum = torch.zeros(max_rank, dtype=torch.float64)
    ap_sum = inp_sum = 0.0
    n_valid = 0
    for a in range(0, distmat.shape[0], chunk):
        d = distmat[a : a + chunk]
        order = torch.argsort(d, dim=1, stable=True)
        gps, gcs = gp[order], gc[order]
        junk = ((gps == qp[a : a + chunk, None]) & (gcs == qc[a : a + chunk, None])) | (gps == -1)
        pos = (gps == qp[a : a + chunk, None]) & ~junk
        rank = torch.cumsum(~junk, 1) - 1  # 0-based rank among kept items
        k = torch.cumsum(pos, 1)  # 1-based index of each positive
        npos = pos.sum(1)
        valid = npos > 0
        n_valid += int(valid.sum())
        prec = torch.where(pos, k.double() / (rank.double() + 1.0), torch.zeros((), dtype=torch.float64))
        ap_sum += float((prec.sum(1)[valid] / npos[valid]).sum())
        big = torch.iinfo(torch.int64).max
        first = torch.where(pos, rank, torch.full_like(rank, big)).amin(1)[valid]
        last = torch.where(pos, rank, torch.full_like(rank, -1)).amax(1)[valid]
        inp_sum += float((npos[valid].double() / (last.double() + 1.0)).sum())
        cmc_sum += (torch.arange(max_rank)[None, :] >= first[:, None]).double().sum(0)
    return (cmc_sum / n_valid).numpy(), ap_sum / n_valid, inp_sum / n_valid


def timed(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ranking.json")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the fast methods")
    args = parser.parse_args()

    q_pids, q_cams, g_pids, g_cams, source = mars_protocol_ids()
    distmat = structured_distances(q_pids, g_pids)
    dist_np = distmat.numpy()
    shape = f"{distmat.shape[0]}x{distmat.shape[1]}"
    print(f"ids from {source}; distmat {shape} float32; torch threads {torch.get_num_threads()}")

    ids = (q_pids, g_pids, q_cams, g_cams)
    t_ours, ours = timed(lambda: evaluate_ranking(distmat, *ids), args.repeats)
    t_ours2, ours2 = timed(lambda: evaluate_ranking(distmat, *ids, num_threads=None), args.repeats)
    t_sort, (cmc_s, map_s, inp_s) = timed(lambda: torch_full_sort(distmat, *ids), args.repeats)
    t_np, (cmc_n, map_n, inp_n) = timed(lambda: numpy_loop(dist_np, *ids), 1)

    rows = []
    for name, t, cmc, m_ap, m_inp in (
        ("vidreid evaluate_ranking (1 thread, default)", t_ours, ours.cmc, ours.mAP, ours.mINP),
        (f"vidreid evaluate_ranking ({torch.get_num_threads()} threads)", t_ours2, ours2.cmc, ours2.mAP, ours2.mINP),
        (f"torch full sort, vectorised ({torch.get_num_threads()} threads)", t_sort, cmc_s, map_s, inp_s),
        ("numpy per-query loop", t_np, cmc_n, map_n, inp_n),
    ):
        same = bool(
            np.allclose(cmc, ours.cmc, atol=1e-12) and abs(m_ap - ours.mAP) < 1e-9 and abs(m_inp - ours.mINP) < 1e-9
        )
        rows.append(
            {
                "method": name,
                "distmat": shape,
                "seconds": round(t, 4),
                "speedup_vs_numpy_loop": round(t_np / t, 2),
                "rank1": round(float(cmc[0]), 6),
                "mAP": round(m_ap, 6),
                "mINP": round(m_inp, 6),
                "same_metrics_as_vidreid": same,
                "ids": source,
            }
        )
    report("Ranking metrics at MARS scale", rows, args.out)
    if not all(r["same_metrics_as_vidreid"] for r in rows):
        raise SystemExit("metric mismatch between implementations")


if __name__ == "__main__":
    main()
