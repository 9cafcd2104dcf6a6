"""Gallery index: search a large gallery of tracklet embeddings outside an evaluation run (faiss).

- :class:`GalleryIndex` — cosine similarity (inner product of L2-normalised embeddings) over a faiss index:
  ``flat`` (``IndexFlatIP``, exact), ``ivf`` (``IndexIVFFlat``: k-means coarse quantiser with ``nlist`` lists,
  ``nprobe`` visited per query; Jégou et al., TPAMI 2011) or ``hnsw`` (``IndexHNSWFlat``: graph with ``M`` links,
  ``ef_search`` beam; Malkov & Yashunin, TPAMI 2018), with per-row metadata (pids, camids, paths, timestamps);
  saved as a folder (``index.faiss``, ``meta.npz``, ``config.json``) and loaded back.
- :func:`load_embeddings` — rows of an ``evaluate.py export=true`` ``embeddings.npz`` (``query``/``gallery`` set)
  or of a ``track.py`` ``tracklets.npz``.
- CLI::

    python -m vidreid.deploy.index build EMB.npz OUT_DIR [--set gallery] [--kind flat|ivf|hnsw] [--nlist N] [--m M]
    python -m vidreid.deploy.index search OUT_DIR --query EMB.npz [--set query] [--k 10] [--csv ranked.csv]
    python -m vidreid.deploy.index search OUT_DIR --tracklets DIR [DIR ...] --checkpoint CKPT [--k 10]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["GalleryIndex", "IndexConfig", "load_embeddings", "main", "recall_at_k"]

META_KEYS = ("pids", "camids", "paths", "timestamps")


@dataclass
class IndexConfig:
    """Index kind and parameters.

    Attributes:
        kind: ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate).
        nlist: IVF lists (``None``: ``4 * sqrt(N)`` rounded, at least 1, at most ``N / 39`` so each list
            gets faiss' recommended 39 training points). nprobe: IVF lists visited per query.
        m: HNSW links per node. ef_construction / ef_search: HNSW beam widths when building / searching.
        train_size: IVF k-means training sample (``None``: ``min(N, 256 * nlist)``).
        normalize: L2-normalise vectors (cosine similarity); turn off only for pre-normalised data.
    """

    kind: str = "flat"
    nlist: int | None = None
    nprobe: int = 16
    m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    train_size: int | None = None
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"index kind must be flat, ivf or hnsw, got {self.kind!r}")


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.clip(n, 1e-12, None)


class GalleryIndex:
    """A faiss index over ``(N, D)`` embeddings, scored by cosine similarity (higher = closer), with metadata.

    Args:
        dim: embedding dimension D. config: :class:`IndexConfig`.
    Example:
        >>> idx = GalleryIndex(768, IndexConfig("hnsw")); idx.add(emb, pids=pids)
        >>> sims, rows = idx.search(queries, k=10)     # (Nq, 10) float32, (Nq, 10) int64 (-1 = no result)
    """

    def __init__(self, dim: int, config: IndexConfig | None = None):
        import faiss

        self.dim, self.config = int(dim), config or IndexConfig()
        self.meta: dict[str, np.ndarray] = {}
        self.index = None
        self._faiss = faiss
        if self.config.kind == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
        elif self.config.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(self.dim, self.config.m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = self.config.ef_construction
            self.index.hnsw.efSearch = self.config.ef_search
        # ivf is created on the first add (nlist depends on N)

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{what}: expected (N, {self.dim}) embeddings, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{what}: embeddings contain NaN/inf")
        return _normalize(x) if self.config.normalize else np.ascontiguousarray(x, dtype=np.float32)

    def train(self, sample: np.ndarray) -> GalleryIndex:
        """Create and train the IVF index on ``sample (N, D)`` (``nlist`` from N unless configured; at most
        ``train_size`` rows, drawn with a fixed seed). A no-op for ``flat``/``hnsw``, which need no training."""
        if self.config.kind != "ivf" or self.index is not None:
            return self
        faiss, c, n = self._faiss, self.config, len(sample)
        nlist = c.nlist or max(1, min(int(round(4 * math.sqrt(n))), n // 39 or 1))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ntrain = min(n, c.train_size or 256 * nlist)
        rows = np.sort(np.random.default_rng(0).choice(n, ntrain, replace=False)) if ntrain < n else slice(None)
        index.train(self._check(sample[rows], "training sample"))
        index.nprobe = min(c.nprobe, nlist)
        self.index, self._quantizer = index, quantizer  # keep the quantiser alive alongside the index
        return self

    def add(self, emb: np.ndarray, chunk: int = 100_000, **meta: np.ndarray) -> GalleryIndex:
        """Add ``emb (N, D)`` (trains the IVF quantiser on the first call) and per-row metadata arrays
        (``pids``, ``camids``, ``paths``, ``timestamps`` or any other name; each of length N)."""
        n = len(emb)
        for k, v in meta.items():
            if v is not None and len(v) != n:
                raise ValueError(f"metadata {k!r} has {len(v)} rows for {n} embeddings")
        if self.index is None:  # ivf: train the coarse quantiser on (a sample of) this first batch
            self.train(emb)
        for s in range(0, n, chunk):
            self.index.add(self._check(emb[s : s + chunk], "embeddings"))
        for k, v in meta.items():
            if v is None:
                continue
            v = np.asarray(v)
            self.meta[k] = np.concatenate([self.meta[k], v]) if k in self.meta else v
        return self

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` gallery rows per query: ``(similarities (Nq, k) float32, rows (Nq, k) int64)``, best first;
        rows are -1 (similarity -inf) where fewer than ``k`` results exist.

        Raises:
            ValueError: empty index, ``k < 1`` or queries of another dimension."""
        if len(self) == 0:
            raise ValueError("the index is empty (add embeddings first)")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = self._check(queries, "queries")
        sims, rows = self.index.search(q, int(k))
        sims = np.where(rows < 0, -np.inf, sims).astype(np.float32)
        return sims, rows.astype(np.int64)

    # ------------------------------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write ``index.faiss``, ``meta.npz`` and ``config.json`` (kind, parameters, dim, size) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._faiss.write_index(self.index, str(folder / "index.faiss"))
        np.savez(folder / "meta.npz", **self.meta)
        (folder / "config.json").write_text(json.dumps({"dim": self.dim, "ntotal": len(self), **asdict(self.config)},
                                                       indent=1))  # fmt: skip
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> GalleryIndex:
        """Read a folder written by :meth:`save`.

        Raises:
            FileNotFoundError: a missing file (names it). ValueError: the files disagree (size, dimension)."""
        import faiss

        folder = Path(folder)
        for name in ("index.faiss", "meta.npz", "config.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"index folder {folder} lacks {name} (expected a folder written by "
                                        f"`python -m vidreid.deploy.index build`)")  # fmt: skip
        cfg = json.loads((folder / "config.json").read_text())
        dim, ntotal = cfg.pop("dim"), cfg.pop("ntotal")
        obj = cls.__new__(cls)
        obj.dim, obj.config, obj._faiss = int(dim), IndexConfig(**cfg), faiss
        obj.index = faiss.read_index(str(folder / "index.faiss"))
        if obj.index.d != obj.dim or obj.index.ntotal != ntotal:
            raise ValueError(f"{folder}: index.faiss holds {obj.index.ntotal} x {obj.index.d}, config.json says "
                             f"{ntotal} x {dim}")  # fmt: skip
        if obj.config.kind == "ivf":
            obj.index.nprobe = obj.config.nprobe
        elif obj.config.kind == "hnsw":
            obj.index.hnsw.efSearch = obj.config.ef_search
        with np.load(folder / "meta.npz", allow_pickle=False) as z:
            obj.meta = {k: z[k] for k in z.files}
        return obj


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k rows (``exact (Nq, k)``) found in its approximate top-k."""
    if approx.shape != exact.shape:
        raise ValueError(f"shapes differ: {approx.shape} vs {exact.shape}")
    hits = sum(len(set(a[a >= 0].tolist()) & set(e[e >= 0].tolist())) for a, e in zip(approx, exact))
    return hits / max(1, int((exact >= 0).sum()))


def load_embeddings(path: str | Path, subset: str | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings ``(N, D)`` and metadata from an ``.npz``:

    - ``evaluate.py export=true`` ``embeddings.npz``: ``subset`` = ``gallery`` (default), ``query`` or ``all``
      (query rows first); metadata ``pids``, ``camids``, ``paths`` (first frame), ``num_frames``, ``set``.
    - ``track.py`` ``tracklets.npz`` (``embeddings`` key): all rows; metadata ``pids`` (identities), ``camids``,
      ``paths`` (tracklet folders), ``timestamps`` (s), and the other per-row arrays.

    Raises:
        FileNotFoundError: missing file. ValueError: neither layout, or an unknown ``subset``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding file not found: {path} (expected evaluate.py's embeddings.npz or "
                                f"track.py's tracklets.npz)")  # fmt: skip
    with np.load(path, allow_pickle=False) as z:
        files = set(z.files)
        if "embeddings" in files:
            emb = z["embeddings"]
            meta = {k: z[k] for k in files if k != "embeddings" and z[k].shape[:1] == emb.shape[:1]}
            return emb, meta
        if {"query_embeddings", "gallery_embeddings"} <= files:
            subset = subset or "gallery"
            if subset not in ("gallery", "query", "all"):
                raise ValueError(f"subset must be gallery, query or all, got {subset!r}")
            sets = ["query", "gallery"] if subset == "all" else [subset]
            emb = np.concatenate([z[f"{s}_embeddings"] for s in sets])
            meta = {}
            for key in ("pids", "camids", "paths", "num_frames"):
                if all(f"{s}_{key}" in files for s in sets):
                    meta[key] = np.concatenate([z[f"{s}_{key}"] for s in sets])
            meta["set"] = np.concatenate([np.full(len(z[f"{s}_embeddings"]), s) for s in sets])
            return emb, meta
    raise ValueError(f"{path}: holds {sorted(files)}; expected 'embeddings' (track.py) or "
                     f"'query_embeddings'/'gallery_embeddings' (evaluate.py export=true)")  # fmt: skip


# ---------------------------------------------------------------------------------------------- CLI
def _build(a: argparse.Namespace) -> None:
    emb, meta = load_embeddings(a.embeddings, a.set)
    cfg = IndexConfig(kind=a.kind, nlist=a.nlist, nprobe=a.nprobe, m=a.m, ef_construction=a.ef_construction,
                      ef_search=a.ef_search)  # fmt: skip
    t = time.perf_counter()
    idx = GalleryIndex(emb.shape[1], cfg).add(emb, **meta)
    dt = time.perf_counter() - t
    idx.save(a.out)
    print(f"built {cfg.kind} index of {len(idx)} x {idx.dim} embeddings in {dt:.2f} s -> {a.out}")


def _search(a: argparse.Namespace) -> None:
    idx = GalleryIndex.load(a.index)
    if (a.query is None) == (not a.tracklets):
        raise SystemExit("search: give either --query EMB.npz or --tracklets DIR ... --checkpoint CKPT")
    if a.query is not None:
        q, qmeta = load_embeddings(a.query, a.set)
        names = [str(p) for p in qmeta.get("paths", np.arange(len(q)))]
    else:
        if a.checkpoint is None:
            raise SystemExit("search --tracklets needs --checkpoint CKPT (the model that embedded the gallery)")
        from vidreid.deploy.inference import embed

        q = embed(a.checkpoint, a.tracklets, progress=False).numpy()
        names, qmeta = [str(t) for t in a.tracklets], {}
    t = time.perf_counter()
    sims, rows = idx.search(q, a.k)
    dt = time.perf_counter() - t
    cols = ["query", "query_pid", "rank", "gallery_row", "similarity", *[k for k in META_KEYS if k in idx.meta]]
    out = open(a.csv, "w", newline="") if a.csv else sys.stdout  # noqa: SIM115
    try:
        w = csv.writer(out)
        w.writerow(cols)
        qp = qmeta.get("pids")
        for i in range(len(q)):
            for r in range(rows.shape[1]):
                g = int(rows[i, r])
                if g < 0:
                    continue
                w.writerow([names[i], int(qp[i]) if qp is not None else "", r + 1, g, f"{sims[i, r]:.6f}",
                            *[idx.meta[k][g] for k in META_KEYS if k in idx.meta]])  # fmt: skip
    finally:
        if a.csv:
            out.close()
    print(f"searched {len(q)} queries (top-{a.k}) in {dt * 1000:.1f} ms" + (f" -> {a.csv}" if a.csv else ""),
          file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``python -m vidreid.deploy.index build|search ...`` (see module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m vidreid.deploy.index", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build an index from embeddings.npz / tracklets.npz")
    b.add_argument("embeddings")
    b.add_argument("out", help="output folder")
    b.add_argument("--set", default=None, help="gallery (default) | query | all, for evaluate.py's embeddings.npz")
    b.add_argument("--kind", default="flat", choices=["flat", "ivf", "hnsw"])
    b.add_argument("--nlist", type=int, default=None)
    b.add_argument("--nprobe", type=int, default=16)
    b.add_argument("--m", type=int, default=32)
    b.add_argument("--ef-construction", type=int, default=80)
    b.add_argument("--ef-search", type=int, default=128)
    s = sub.add_parser("search", help="top-k gallery rows for query embeddings or tracklet folders")
    s.add_argument("index", help="folder written by build")
    s.add_argument("--query", default=None, help="embeddings.npz / tracklets.npz of the queries")
    s.add_argument("--set", default="query", help="query (default) | gallery | all, for evaluate.py's file")
    s.add_argument("--tracklets", nargs="*", default=None, help="tracklet folders to embed as queries")
    s.add_argument("--checkpoint", default=None)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--csv", default=None, help="write the ranked lists here (default: stdout)")
    a = ap.parse_args(argv)
    (_build if a.cmd == "build" else _search)(a)


if __name__ == "__main__":
    main()
