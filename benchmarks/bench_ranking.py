"""CMC / mAP / mINP at the real MARS protocol scale: 1980 queries × 11,310 gallery items.

Pids and cameras come from the official MARS protocol files (``mars-info/tracks_test_info.mat`` and
``query_IDX.mat``: gallery = test rows not in the query, junk rows (pid −1) dropped, then the queries
appended — 9330 + 1980 = 11,310 items). Distances are cosine distances of random-but-structured features
(one centre per identity plus noise, distractors random), so metrics are far from 0 and 1. Compared in
the same run, in alternating repetitions (medians), at 1 and N torch threads, idle and beside one competing
process:

* ``evaluate_ranking`` (vidreid; its default thread policy, and the given thread count),
* the project's own reference: a per-query numpy loop as in torchreid ``eval_market1501`` (one stable
  ``argsort`` of the matrix, then a Python loop over queries),
* torchreid's and fast-reid's Cython ``evaluate_cy`` when built (``benchmarks/build_cython_refs.py``; pass the
  folder with ``--cython-dir`` or ``$VIDREID_CYTHON_REFS``). They accumulate in float32, so their metrics agree
  to ~1e-6; the numpy reference must agree to 1e-12.

Usage: ``python benchmarks/bench_ranking.py [--repeats 3] [--cython-dir DIR] [--quick]``
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from _measure import LOADS, SHARED, alternate, competing, cpu_description, load_average, out_path
from _report import report
from scipy.io import loadmat

from vidreid.evaluation import RankingResult, evaluate_ranking
from vidreid.runtime.threads import available_cpus


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


def cython_evaluators(folder: str | None) -> dict:
    """``{name: evaluate_cy}`` of the Cython evaluators built into ``folder`` (none when absent)."""
    if not folder or not Path(folder).is_dir():
        return {}
    sys.path.insert(0, str(folder))
    found = {}
    for name, module in (("torchreid Cython", "torchreid_rank_cy"), ("fast-reid Cython", "fastreid_rank_cy")):
        try:
            found[name] = importlib.import_module(module).evaluate_cy
        except ImportError as e:
            print(f"{module} not importable from {folder}: {e}")
    return found


def _metrics(name, res):
    """(cmc, mAP, mINP) from each method's own return type."""
    if isinstance(res, RankingResult):
        return res.cmc, res.mAP, res.mINP
    if name.startswith("fast-reid"):  # (cmc, all_AP, all_INP) over valid queries
        return np.asarray(res[0], dtype=np.float64), float(np.mean(res[1])), float(np.mean(res[2]))
    if name.startswith("torchreid"):  # (cmc, mAP), no mINP
        return np.asarray(res[0], dtype=np.float64), float(res[1]), None
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=out_path("ranking"))
    parser.add_argument("--repeats", type=int, default=3, help="alternating repetitions (medians)")
    parser.add_argument("--cython-dir", default=os.environ.get("VIDREID_CYTHON_REFS"))
    parser.add_argument("--quick", action="store_true", help="1 repetition, idle only")
    args = parser.parse_args()

    q_pids, q_cams, g_pids, g_cams, source = mars_protocol_ids()
    distmat = structured_distances(q_pids, g_pids)
    dist_np = distmat.numpy()
    shape = f"{distmat.shape[0]}x{distmat.shape[1]}"
    n_threads = available_cpus()
    cy = cython_evaluators(args.cython_dir)
    print(f"ids from {source}; distmat {shape} float32; {cpu_description()}; Cython references: {sorted(cy) or 'none'}")
    ids = (q_pids, g_pids, q_cams, g_cams)
    rows = []
    loads = LOADS[:1] if args.quick else LOADS
    for load in loads:
        torch.set_num_threads(n_threads)
        fns = {
            "vidreid (default threads)": lambda: evaluate_ranking(distmat, *ids),
            f"vidreid ({n_threads} threads)": lambda: evaluate_ranking(distmat, *ids, num_threads=n_threads),
            "numpy per-query loop (reference)": lambda: numpy_loop(dist_np, *ids),
        }
        for name, fn in cy.items():
            fns[name] = lambda fn=fn: fn(dist_np, q_pids, g_pids, q_cams, g_cams, 50)
        with competing(load == "competing"):
            la = load_average()
            med, res = alternate(fns, 1 if args.quick else args.repeats)
        ours_name = "vidreid (default threads)"
        ours_t = med[ours_name]
        ref_cmc, ref_map, ref_inp = _metrics(ours_name, res[ours_name])
        for name, t in med.items():
            cmc, m_ap, m_inp = _metrics(name, res[name])
            tol = 1e-5 if "Cython" in name else 1e-12
            diff = max(float(np.abs(np.asarray(cmc)[:50] - ref_cmc[:50]).max()), abs(m_ap - ref_map),
                       abs(m_inp - ref_inp) if m_inp is not None else 0.0)  # fmt: skip
            threads = n_threads if name.startswith(f"vidreid ({n_threads}") else 1  # numpy/Cython: one thread
            rows.append({
                "load": load, "threads": threads, "method": name,
                "median_s": round(t, 4), "x_vidreid_default": round(t / ours_t, 2),
                "rank1": round(float(cmc[0]), 6), "mAP": round(m_ap, 6),
                "mINP": round(m_inp, 6) if m_inp is not None else None,
                "max_metric_diff": float(f"{diff:.2g}"), "same_metrics": diff <= tol, "load_1min": la[0],
            })  # fmt: skip
    report(f"Ranking {shape} (MARS protocol ids: {source}), {cpu_description()}", rows, args.out)
    if not all(r["same_metrics"] for r in rows):
        raise SystemExit("metric mismatch between implementations")


if __name__ == "__main__":
    main()
