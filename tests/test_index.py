"""vidreid.deploy.index: exact search equals brute force, approximate recall, save/load with metadata, the CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("faiss")

from tests.conftest import REPO  # noqa: E402
from vidreid.deploy.index import GalleryIndex, IndexConfig, load_embeddings, recall_at_k  # noqa: E402


def _clustered(n: int, d: int, n_ids: int, seed: int = 0, noise: float = 0.6) -> np.ndarray:
    """Re-ID-like embeddings: ``n`` vectors around ``n_ids`` identity centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, d))
    return (centres[rng.integers(0, n_ids, n)] + noise * rng.standard_normal((n, d))).astype(np.float32)


def _brute_force(g: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qn.astype(np.float64) @ gn.T.astype(np.float64)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def test_exact_search_equals_brute_force_top_k():
    rng = np.random.default_rng(1)
    g, q = rng.standard_normal((3000, 64)).astype(np.float32), rng.standard_normal((50, 64)).astype(np.float32)
    sims, rows = GalleryIndex(64).add(g).search(q, 10)
    ref_s, ref_i = _brute_force(g, q, 10)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    # rows equal except where two similarities tie to float32 precision
    same = rows == ref_i
    assert same.mean() > 0.999 and np.allclose(sims[~same], ref_s[~same], atol=1e-5)


def test_fewer_gallery_items_than_k_gives_minus_one_rows():
    sims, rows = GalleryIndex(8).add(np.eye(8, dtype=np.float32)[:3]).search(np.eye(8, dtype=np.float32)[:1], 5)
    assert rows[0, 0] == 0 and set(rows[0, :3].tolist()) == {0, 1, 2} and sims[0, 0] == pytest.approx(1.0)
    assert (rows[0, 3:] == -1).all() and np.isinf(sims[0, 3:]).all()


@pytest.mark.parametrize("cfg", [IndexConfig("ivf", nprobe=8), IndexConfig("hnsw", m=16, ef_construction=40,
                                                                              ef_search=64)], ids=["ivf", "hnsw"])  # fmt: skip
def test_approximate_recall_at_10k_vectors(cfg):
    """10,000 re-ID-like 128-d embeddings (500 identities): recall@10 of the approximate index vs exact >= 0.9."""
    g = _clustered(10_000, 128, 500)
    q = _clustered(200, 128, 500, seed=0)[:200] + 0.01
    _, exact = GalleryIndex(128).add(g).search(q, 10)
    _, approx = GalleryIndex(128, cfg).add(g).search(q, 10)
    r = recall_at_k(approx, exact)
    assert r >= 0.9, r


def test_recall_at_k_counts_overlaps():
    assert recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), np.array([[3, 2, 9], [7, 8, 9]])) == pytest.approx(2 / 6)


def test_save_load_round_trip_keeps_results_and_metadata(tmp_path):
    g = _clustered(2000, 32, 50)
    meta = dict(pids=np.arange(2000) % 50, camids=np.arange(2000) % 3,
                paths=np.array([f"t/{i}" for i in range(2000)]), timestamps=np.linspace(0, 99, 2000))  # fmt: skip
    for kind in ("flat", "ivf", "hnsw"):
        idx = GalleryIndex(32, IndexConfig(kind, nprobe=4, ef_search=32)).add(g, **meta)
        s1, r1 = idx.search(g[:20], 5)
        idx.save(tmp_path / kind)
        back = GalleryIndex.load(tmp_path / kind)
        s2, r2 = back.search(g[:20], 5)
        assert back.config.kind == kind and len(back) == 2000
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_allclose(s1, s2)
        assert back.meta["paths"][7] == "t/7" and back.meta["pids"][51] == 1 and back.meta["timestamps"][-1] == 99


def test_bad_input_messages(tmp_path):
    idx = GalleryIndex(16)
    with pytest.raises(ValueError, match="index is empty"):
        idx.search(np.zeros((1, 16), np.float32))
    with pytest.raises(ValueError, match=r"expected \(N, 16\) embeddings, got shape \(3, 8\)"):
        idx.add(np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="metadata 'pids' has 2 rows for 3 embeddings"):
        idx.add(np.ones((3, 16), np.float32), pids=np.zeros(2))
    with pytest.raises(ValueError, match="kind must be flat, ivf or hnsw"):
        IndexConfig("lsh")
    with pytest.raises(FileNotFoundError, match="lacks index.faiss"):
        GalleryIndex.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_embeddings(tmp_path / "nope.npz")
    np.savez(tmp_path / "x.npz", foo=np.zeros(3))
    with pytest.raises(ValueError, match="expected 'embeddings'"):
        load_embeddings(tmp_path / "x.npz")


def test_cli_build_and_search_on_an_evaluate_export(tmp_path):
    """``python -m vidreid.deploy.index build|search`` on an evaluate.py-style embeddings.npz: each query's top-1 is the
    gallery row made from it."""
    rng = np.random.default_rng(3)
    gal = rng.standard_normal((300, 24)).astype(np.float32)
    qrows = np.array([5, 17, 250])
    np.savez(tmp_path / "embeddings.npz", query_embeddings=gal[qrows] + 0.01, gallery_embeddings=gal,
             query_pids=qrows, gallery_pids=np.arange(300), query_camids=np.zeros(3, int),
             gallery_camids=np.ones(300, int), query_paths=np.array(["q5", "q17", "q250"]),
             gallery_paths=np.array([f"g{i}" for i in range(300)]))  # fmt: skip
    env_py = [sys.executable, "-m", "vidreid.deploy.index"]
    b = subprocess.run([*env_py, "build", str(tmp_path / "embeddings.npz"), str(tmp_path / "idx"), "--kind", "hnsw"],
                       capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert b.returncode == 0, b.stderr
    assert "built hnsw index of 300 x 24" in b.stdout
    s = subprocess.run([*env_py, "search", str(tmp_path / "idx"), "--query", str(tmp_path / "embeddings.npz"),
                        "--k", "3", "--csv", str(tmp_path / "r.csv")], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert s.returncode == 0, s.stderr
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("query,query_pid,rank,gallery_row,similarity,pids,camids,paths")
    top1 = [ln.split(",") for ln in lines[1:] if ln.split(",")[2] == "1"]
    assert [(r[0], int(r[3]), r[-1]) for r in top1] == [("q5", 5, "g5"), ("q17", 17, "g17"), ("q250", 250, "g250")]


def test_track_py_tracklets_npz_is_read_with_its_metadata(tmp_path):
    np.savez(tmp_path / "tracklets.npz", embeddings=np.ones((4, 8), np.float32), pids=np.array([0, 0, 1, 2]),
             camids=np.zeros(4, int), paths=np.array(list("abcd")), timestamps=np.array([1.0, 5, 9, 12]))  # fmt: skip
    emb, meta = load_embeddings(tmp_path / "tracklets.npz")
    assert emb.shape == (4, 8) and meta["pids"].tolist() == [0, 0, 1, 2] and meta["timestamps"][3] == 12
