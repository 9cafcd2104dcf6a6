"""k-reciprocal re-ranking against a straightforward numpy transcription of the published algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidreid.evaluation import evaluate_ranking, k_reciprocal_rerank


def reference_rerank(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3, square=True):
    """Dense, loop-per-row k-reciprocal re-ranking (Zhong et al. CVPR 2017, Alg. 1 + Eq. 7–12),
    transcribed step by step from the paper and its public ``re_ranking`` reference."""
    nq = q_g.shape[0]
    dist = np.block([[q_q, q_g], [q_g.T, g_g]])
    dist = (np.power(dist, 2) if square else dist).astype(np.float32)
    dist = (dist / np.max(dist, axis=0)).T  # column-normalised, transposed
    n = dist.shape[0]
    rank = np.argsort(dist, axis=1, kind="stable")

    def reciprocal(i, k):
        fwd = rank[i, : k + 1]
        return np.array([j for j in fwd if i in rank[j, : k + 1]], dtype=np.int64)

    v = np.zeros_like(dist)
    half = int(np.around(k1 / 2.0))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = list(r)
        for c in r:
            rh = reciprocal(c, half)
            if len(np.intersect1d(rh, r)) > 2.0 / 3.0 * len(rh):
                expanded.extend(rh)
        idx = np.unique(np.array(expanded, dtype=np.int64))
        w = np.exp(-dist[i, idx])
        v[i, idx] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jaccard = np.zeros((nq, n), dtype=np.float32)
    for i in range(nq):
        shared = np.minimum(v[i][None, :], v).sum(1)  # sum of minima with every row
        jaccard[i] = 1.0 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + dist[:nq] * lambda_value
    return final[:, nq:]


def clustered(num_q, num_g, num_ids, dim, noise, seed):
    """Features of ``num_ids`` clusters; returns Euclidean q_g, q_q, g_g and the pids."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    q_ids = rng.integers(0, num_ids, num_q)
    g_ids = np.concatenate([np.arange(num_ids), rng.integers(0, num_ids, num_g - num_ids)])
    qf = centres[q_ids] + noise * rng.normal(size=(num_q, dim))
    gf = centres[g_ids] + noise * rng.normal(size=(num_g, dim))

    def d(a, b):
        return np.sqrt(np.maximum(((a[:, None] - b[None]) ** 2).sum(-1), 0))

    return d(qf, gf), d(qf, qf), d(gf, gf), q_ids, g_ids


@pytest.mark.parametrize(
    ("k1", "k2", "lam", "seed"),
    [(20, 6, 0.3, 0), (20, 1, 0.3, 1), (7, 3, 0.5, 2), (5, 2, 0.0, 3)],
)
def test_matches_reference(k1, k2, lam, seed):
    q_g, q_q, g_g, _, _ = clustered(30, 80, 12, 16, 0.8, seed)
    expected = reference_rerank(q_g, q_q, g_g, k1, k2, lam)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam, chunk_size=17, pair_budget=500)
    assert isinstance(got, np.ndarray) and got.shape == (30, 80) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    # not trivially the original distance
    full = np.block([[q_q, q_g], [q_g.T, g_g]]) ** 2
    orig = (full / full.max(0)).T[:30, 30:]
    assert np.abs(got - orig).max() > 0.05


def test_matches_reference_larger_gallery():
    # > 128 gallery rows: exercises the tiled column reads and several row chunks.
    q_g, q_q, g_g, _, _ = clustered(40, 300, 25, 16, 0.9, 4)
    expected = reference_rerank(q_g, q_q, g_g)
    got = k_reciprocal_rerank(q_g, q_q, g_g, chunk_size=64)
    assert np.abs(got - expected).max() < 1e-4


def test_unsquared_variant_matches_reference():
    # st-ReID re_ranking.py works on 2 - 2·P_joint without squaring (docs/methods.md §5.5).
    q_g, q_q, g_g, _, _ = clustered(20, 50, 8, 8, 0.6, 11)
    expected = reference_rerank(q_g, q_q, g_g, 12, 4, 0.3, square=False)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=12, k2=4, square=False)
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - reference_rerank(q_g, q_q, g_g, 12, 4, 0.3)).max() > 1e-2


def test_torch_input_float32_and_chunking_invariance():
    q_g, q_q, g_g, _, _ = clustered(25, 60, 10, 8, 0.7, 5)
    ref = k_reciprocal_rerank(q_g, q_q, g_g, k1=10, k2=4)
    t = k_reciprocal_rerank(
        torch.tensor(q_g, dtype=torch.float32),
        torch.tensor(q_q, dtype=torch.float32),
        torch.tensor(g_g, dtype=torch.float32),
        k1=10,
        k2=4,
        chunk_size=3,
        pair_budget=1,
    )
    assert isinstance(t, torch.Tensor) and t.shape == (25, 60)
    assert np.abs(t.numpy() - ref).max() < 1e-4


def test_rerank_improves_map_on_clustered_data():
    # Noisy clusters: a query's nearest neighbours are mostly of its identity, so the k-reciprocal
    # neighbourhoods are more reliable than the single pairwise distance.
    q_g, q_q, g_g, q_ids, g_ids = clustered(60, 300, 20, 32, 1.15, 7)
    rng = np.random.default_rng(0)
    q_cams, g_cams = np.zeros(60, dtype=np.int64), rng.integers(1, 4, 300)
    before = evaluate_ranking(q_g, q_ids, g_ids, q_cams, g_cams)
    after = evaluate_ranking(k_reciprocal_rerank(q_g, q_q, g_g), q_ids, g_ids, q_cams, g_cams)
    assert 0.2 < before.mAP < 0.8
    assert after.mAP > before.mAP + 0.05


def test_bad_shapes_and_parameters():
    q_g, q_q, g_g, _, _ = clustered(5, 20, 4, 4, 0.5, 0)
    with pytest.raises(ValueError, match="g_g_dist"):
        k_reciprocal_rerank(q_g, q_q, g_g[:-1])
    with pytest.raises(ValueError, match="q_q_dist"):
        k_reciprocal_rerank(q_g, q_q[:, :3], g_g)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(q_g, q_q, g_g, lambda_value=1.5)
    with pytest.raises(ValueError, match="k1"):
        k_reciprocal_rerank(q_g, q_q, g_g, k1=0)
