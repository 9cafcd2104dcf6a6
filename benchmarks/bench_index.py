"""Gallery index benchmark (``vidreid.deploy.index``): build time, queries/s and recall@10 of the approximate indexes
(IVF, HNSW) against the exact one (``IndexFlatIP``) on random 768-d vectors (ViT-B-sized embeddings).

Usage: ``python benchmarks/bench_index.py [--sizes 100000 1000000] [--queries 1000] [--threads 1]
[--hnsw-max 100000] [--out benchmarks/results/index.json]``

Random isotropic vectors (``--data random``, the hardest setting) are the hardest case for approximate search
(neighbours are barely closer than everything else); ``clustered`` data (10 vectors per identity centre plus
noise, like tracklets of the same person; up to ``--clustered-max``) shows the regime re-ID galleries are in.
The vectors are generated in chunks from fixed seeds (memory: one copy of the data inside each index at a time,
3.1 GB at 1M x 768 float32). IVF uses min(1024, 4 sqrt(N)) lists trained on 64 vectors per list. HNSW
building is the slow part (single-threaded, several ms per 768-d vector on a shared CPU), so it runs
only up to ``--hnsw-max`` vectors. JSON goes to ``--out`` (default ``benchmarks/results/index.json``: untracked, or ``$VIDREID_BENCH_DIR``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import RESULTS  # noqa: E402  (benchmarks/results/, untracked, or $VIDREID_BENCH_DIR)
from _report import report  # noqa: E402

CHUNK = 50_000


DATA = "random"  # or "clustered" (set by main)
PER_ID = 10  # clustered: gallery vectors per identity


def centres(n: int, d: int) -> np.ndarray:
    return np.random.default_rng(777).standard_normal((max(1, n // PER_ID), d), dtype=np.float32)


def chunks(n: int, d: int, seed: int):
    """The ``n`` gallery vectors in chunks: i.i.d. N(0, I) (``random``) or identity centres + N(0, 0.6^2 I)
    noise, ``PER_ID`` vectors per identity (``clustered``: re-ID-like, every query has true neighbours)."""
    c = centres(n, d) if DATA == "clustered" else None
    for i, s in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, i])
        m = min(CHUNK, n - s)
        x = rng.standard_normal((m, d), dtype=np.float32)
        if c is not None:
            x = c[(np.arange(s, s + m) // PER_ID) % len(c)] + 0.6 * x
        yield x


def queries(n: int, nq: int, d: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    q = rng.standard_normal((nq, d), dtype=np.float32)
    if DATA == "clustered":
        c = centres(n, d)
        q = c[rng.integers(0, len(c), nq)] + 0.6 * q
    return q


def build(kind: str, n: int, d: int, **kw):
    from vidreid.deploy.index import GalleryIndex, IndexConfig

    idx = GalleryIndex(d, IndexConfig(kind, **kw))
    t = time.perf_counter()
    if kind == "ivf":  # k-means on the first train_size vectors, then add everything
        need, sample = kw["train_size"], []
        for c in chunks(n, d, 0):
            sample.append(c)
            if sum(len(x) for x in sample) >= need:
                break
        idx.train(np.concatenate(sample)[:need])
        del sample
    for c in chunks(n, d, 0):
        idx.add(c)
    return idx, time.perf_counter() - t


def timed_row(searcher, q: np.ndarray, exact: np.ndarray, **row) -> dict:
    """One search of the queries ``q`` ``(nq, d)`` on ``searcher`` (k = ``exact.shape[1]``): ``row`` plus queries/s and
    recall@k against the exact top-k ``exact`` ``(nq, k)``."""
    from vidreid.deploy.index import recall_at_k

    t = time.perf_counter()
    _, approx = searcher.search(q, exact.shape[1])
    st = time.perf_counter() - t
    return dict(row, queries_per_s=round(len(q) / st, 1), recall_at_10=round(recall_at_k(approx, exact), 4))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--hnsw-max", type=int, default=100_000)
    ap.add_argument("--data", nargs="+", default=["random", "clustered"], choices=["random", "clustered"])
    ap.add_argument("--clustered-max", type=int, default=100_000, help="largest n for the clustered data")
    ap.add_argument("--out", type=Path, default=RESULTS / "index.json")
    a = ap.parse_args()
    import faiss

    global DATA
    faiss.omp_set_num_threads(a.threads)
    rows = []
    for DATA, n in [(dt, n) for n in a.sizes for dt in a.data if dt == "random" or n <= a.clustered_max]:
        q = queries(n, a.queries, a.dim)
        flat, bt = build("flat", n, a.dim)
        t = time.perf_counter()
        _, exact = flat.search(q, a.k)
        st = time.perf_counter() - t
        rows.append(dict(data=DATA, n=n, index="flat (exact)", params="", build_s=round(bt, 2),
                         queries_per_s=round(a.queries / st, 1), recall_at_10=1.0))  # fmt: skip
        print(rows[-1], flush=True)
        del flat

        nlist = min(1024, int(round(4 * np.sqrt(n))))
        ivf, bt = build("ivf", n, a.dim, nlist=nlist, train_size=min(n, 64 * nlist))
        for nprobe in a.nprobe:
            ivf.index.nprobe = nprobe
            rows.append(timed_row(ivf, q, exact, data=DATA, n=n, index="ivf", build_s=round(bt, 2),
                                  params=f"nlist={nlist} nprobe={nprobe} train={min(n, 64 * nlist)}"))  # fmt: skip
            print(rows[-1], flush=True)
        del ivf
        if n <= a.hnsw_max:
            hnsw, bt = build("hnsw", n, a.dim, m=16, ef_construction=40)
            for ef in (64, 256):
                hnsw.index.hnsw.efSearch = ef
                rows.append(timed_row(hnsw, q, exact, data=DATA, n=n, index="hnsw", build_s=round(bt, 2),
                                      params=f"M=16 efConstruction=40 efSearch={ef}"))  # fmt: skip
                print(rows[-1], flush=True)
            del hnsw
        else:
            rows.append(dict(data=DATA, n=n, index="hnsw", params=f"not run (n > --hnsw-max={a.hnsw_max})"))
    report(f"gallery index: {a.dim}-d vectors, {a.queries} queries, top-{a.k}, {a.threads} thread(s)", rows,
           a.out)  # fmt: skip


if __name__ == "__main__":
    main()
