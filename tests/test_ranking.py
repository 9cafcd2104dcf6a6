"""CMC / mAP / mINP: hand-computed cases and an independent per-query numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidreid.evaluation import ReIDMetric, evaluate_ranking

# Gallery of the hand case: g0..g7.
G_PIDS = np.array([2, 1, 1, 3, 1, -1, 4, 1])
G_CAMS = np.array([1, 0, 1, 1, 2, 1, 2, 2])
Q_PIDS = np.array([1, 2, 3, 4])
Q_CAMS = np.array([0, 1, 0, 0])
DIST = np.array(
    [
        # q0 (pid 1, cam 0): g1 is junk (same pid+cam), g5 junk (pid -1). Kept order:
        # g2+ (0.3), g0 (0.35), g4+ (0.5), g3 (0.55), g6 (0.6), g7+ (0.7) -> positives at ranks 1, 3, 6.
        [0.35, 0.2, 0.3, 0.55, 0.5, 0.05, 0.6, 0.7],
        # q1 (pid 2, cam 1): its only same-pid item g0 is in cam 1 -> junk -> no positive, skipped.
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        # q2 (pid 3, cam 0): g3+ nearest -> rank 1.
        [0.9, 0.8, 0.7, 0.1, 0.6, 0.5, 0.4, 0.3],
        # q3 (pid 4, cam 0): all tied -> gallery order g0 g1 g2 g3 g4 g6 g7 (g5 junk) -> g6+ at rank 6.
        [0.5] * 8,
    ]
)


def reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, trapezoid=False):
    """torchreid ``eval_market1501``-style loop with a stable argsort per query."""
    cmc, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        junk = ((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])) | (g_pids[order] == -1)
        hits = (g_pids[order][~junk] == q_pids[i]).astype(np.int64)
        if hits.sum() == 0:
            continue
        pos = np.flatnonzero(hits)  # 0-based ranks of the positives
        cmc.append((np.arange(max_rank) >= pos[0]).astype(float))
        if trapezoid:  # Person_reID_baseline_pytorch compute_mAP
            ap = 0.0
            for k, r in enumerate(pos):
                old = k / r if r != 0 else 1.0
                ap += (old + (k + 1) / (r + 1)) / 2 / len(pos)
        else:
            ap = np.mean((np.arange(len(pos)) + 1) / (pos + 1))
        aps.append(ap)
        inps.append(len(pos) / (pos[-1] + 1))
    return np.mean(cmc, 0), float(np.mean(aps)), float(np.mean(inps)), len(aps)


def test_hand_case_standard():
    threads = torch.get_num_threads()
    r = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=8)
    assert torch.get_num_threads() == threads  # the single-thread default is restored
    assert r.num_valid_queries == 3 and r.num_queries == 4
    np.testing.assert_allclose(r.cmc, [2 / 3] * 5 + [1, 1, 1])
    # AP: q0 (1/1 + 2/3 + 3/6)/3 = 13/18, q2 1, q3 1/6 -> 17/27
    assert math.isclose(r.mAP, 17 / 27, rel_tol=1e-12)
    # mINP: q0 3/6, q2 1/1, q3 1/6 -> 5/9
    assert math.isclose(r.mINP, 5 / 9, rel_tol=1e-12)
    np.testing.assert_allclose(r.ap, [13 / 18, np.nan, 1.0, 1 / 6])
    np.testing.assert_array_equal(r.first_hit, [0, -1, 0, 5])
    assert r.as_dict(ranks=(1, 5))["rank1"] == pytest.approx(2 / 3)


def test_hand_case_trapezoid():
    r = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=8, ap_mode="trapezoid")
    # q0: hits at ranks 1, 3, 6 -> (1+1)/2, (1/2 + 2/3)/2, (2/5 + 3/6)/2, each / 3 -> 61/90
    # q2: (1+1)/2 = 1; q3: (0/5 + 1/6)/2 = 1/12 -> (61/90 + 1 + 1/12) / 3 = 317/540
    assert math.isclose(r.mAP, 317 / 540, rel_tol=1e-12)
    np.testing.assert_allclose(r.ap, [61 / 90, np.nan, 1.0, 1 / 12])


def test_average_over_all_queries():
    r = evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=8, average="all")
    assert math.isclose(r.mAP, 17 / 36) and math.isclose(r.mINP, 5 / 12)
    assert r.cmc[0] == pytest.approx(0.5) and r.cmc[-1] == pytest.approx(0.75)


def test_junk_removal_changes_the_result():
    # The same q0 row, but with g1 moved to another camera it becomes a positive at rank 2
    # (g5 pid -1 stays junk): positives g1 (0.2), g2 (0.3), g4, g7 -> ranks 1, 2, 4, 7.
    cams = G_CAMS.copy()
    cams[1] = 3
    r = evaluate_ranking(DIST[:1], Q_PIDS[:1], G_PIDS, Q_CAMS[:1], cams, max_rank=3)
    assert math.isclose(r.mAP, (1 + 1 + 3 / 4 + 4 / 7) / 4)
    assert r.first_hit[0] == 0


def test_no_valid_query_raises_and_bad_input():
    with pytest.raises(ValueError, match="no query has a positive"):
        evaluate_ranking(DIST[1:2], Q_PIDS[1:2], G_PIDS, Q_CAMS[1:2], G_CAMS)
    with pytest.raises(ValueError, match="finite"):
        bad = DIST.copy()
        bad[0, 3] = np.nan
        evaluate_ranking(bad, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    with pytest.raises(ValueError, match="g_camids"):
        evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS[:-1])
    with pytest.raises(ValueError, match="ap_mode"):
        evaluate_ranking(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, ap_mode="11-point")


@pytest.mark.parametrize("seed", range(6))
def test_random_against_reference(seed):
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(5, 60)), int(rng.integers(20, 300))
    q_pids, g_pids = rng.integers(0, 10, nq), rng.integers(-1, 10, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    if seed % 2:  # heavy ties: a few distinct values only
        dist = rng.integers(0, 5, (nq, ng)).astype(np.float32)
    else:
        dist = rng.random((nq, ng))
    cmc, m_ap, m_inp, n_valid = reference(dist, q_pids, g_pids, q_cams, g_cams, 20)
    _, m_ap_trap, _, _ = reference(dist, q_pids, g_pids, q_cams, g_cams, 20, trapezoid=True)
    for chunk in (None, 1, 7):
        r = evaluate_ranking(torch.from_numpy(dist), q_pids, g_pids, q_cams, g_cams, max_rank=20, chunk_size=chunk)
        assert r.num_valid_queries == n_valid
        np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
        assert r.mAP == pytest.approx(m_ap, abs=1e-12) and r.mINP == pytest.approx(m_inp, abs=1e-12)
    rt = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap_mode="trapezoid")
    assert rt.mAP == pytest.approx(m_ap_trap, abs=1e-12)


def test_skewed_distances_still_exact():
    # One huge outlier per row squeezes the other values into few buckets: exercises the exact path.
    rng = np.random.default_rng(3)
    dist = rng.random((10, 200)) * 1e-3
    dist[:, 0] = 1e6
    q_pids, g_pids = rng.integers(0, 4, 10), rng.integers(0, 4, 200)
    q_cams, g_cams = np.zeros(10, dtype=int), np.ones(200, dtype=int)
    cmc, m_ap, m_inp, _ = reference(dist, q_pids, g_pids, q_cams, g_cams, 10)
    r = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    np.testing.assert_allclose(r.cmc, cmc)
    assert r.mAP == pytest.approx(m_ap) and r.mINP == pytest.approx(m_inp)


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _metric_batches(metric: ReIDMetric) -> None:
    # gallery at 10°, 30°, 60°, 90° (pids 1, 2, 1, 3; cam 1); queries at 0° (pid 1, cam 0),
    # 90° (pid 2, cam 0), 25° (pid 1, cam 2). Fed in two batches mixing queries and gallery.
    metric.update(
        torch.tensor([_unit(10), _unit(30), _unit(0)]),
        torch.tensor([1, 2, 1]),
        torch.tensor([1, 1, 0]),
        torch.tensor([False, False, True]),
    )
    metric.update(
        torch.tensor([_unit(60), _unit(90), _unit(90), _unit(25)]),
        torch.tensor([1, 3, 2, 1]),
        torch.tensor([1, 1, 0, 2]),
        torch.tensor([False, False, True, True]),
    )


def test_reid_metric_hand_case():
    metric = ReIDMetric()
    _metric_batches(metric)
    out = metric.compute()
    # q0: g0+ g1 g2+ g3 -> ranks 1, 3: AP 5/6, INP 2/3. q1: g3 g2 g1+ -> AP 1/3, INP 1/3.
    # q2 (25°): g1 (5°) g0+ (15°) g2+ (35°) -> ranks 2, 3: AP 7/12, INP 2/3.
    assert out["rank1"] == pytest.approx(1 / 3) and out["rank5"] == pytest.approx(1.0)
    assert out["mAP"] == pytest.approx(7 / 12) and out["mINP"] == pytest.approx(5 / 9)
    assert metric.last.distmat.shape == (3, 4) and float(metric.last.distmat.min()) >= 0.0


def test_reid_metric_append_query_and_merge():
    metric = ReIDMetric(distance="euclidean", append_query_to_gallery=True)
    # Simulate two DDP ranks: each holds one batch; merging concatenates the list states.
    a, b = ReIDMetric(distance="euclidean", append_query_to_gallery=True), metric
    _metric_batches(a)
    b.update(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    b.merge_state(a)
    out = b.compute()
    # Queries join the gallery (own entry = junk). q0: g0+ q2+ g1 g2+ -> AP (1 + 1 + 3/4)/3 = 11/12, INP 3/4.
    # q1 unchanged (1/3, 1/3). q2: g1 g0+ q0+ g2+ -> AP (1/2 + 2/3 + 3/4)/3 = 23/36, INP 3/4.
    assert out["mAP"] == pytest.approx(17 / 27) and out["mINP"] == pytest.approx(11 / 18)
    assert out["rank1"] == pytest.approx(1 / 3)


def test_reid_metric_rerank_wiring():
    from vidreid.evaluation import k_reciprocal_rerank, pairwise_distance

    metric = ReIDMetric(rerank=True, rerank_kwargs={"k1": 3, "k2": 2, "lambda_value": 0.5})
    _metric_batches(metric)
    out = metric.compute()
    emb = torch.tensor([_unit(d) for d in (0, 90, 25)]), torch.tensor([_unit(d) for d in (10, 30, 60, 90)])
    expected = k_reciprocal_rerank(
        pairwise_distance(emb[0], emb[1]),
        pairwise_distance(emb[0], emb[0]),
        pairwise_distance(emb[1], emb[1]),
        k1=3,
        k2=2,
        lambda_value=0.5,
    )
    torch.testing.assert_close(metric.last.rerank_distmat, expected)
    names = {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    assert set(out) == names | {f"rerank/{k}" for k in names}
    from vidreid.evaluation import evaluate_ranking

    direct = evaluate_ranking(expected, metric.last.q_pids, metric.last.g_pids, metric.last.q_camids, metric.last.g_camids)
    assert out["rerank/mAP"] == pytest.approx(direct.mAP)


@pytest.mark.parametrize("seed", range(8))
def test_threshold_route_exact_on_float32_edge_cases(seed):
    """float32 inputs take the threshold route (blocks of one compare pass + a sort of (row, bits, column) keys):
    ties, -0.0 vs +0.0, negative distances, pid -1 gallery items and queries, rows without positives and
    chunk boundaries must all rank exactly as a stable argsort; the bucketed route (float64 input) must agree."""
    from vidreid.evaluation import ranking

    rng = np.random.default_rng(100 + seed)
    nq, ng = int(rng.integers(3, 80)), int(rng.integers(5, 400))
    q_pids, g_pids = rng.integers(-1, 8, nq), rng.integers(-1, 8, ng)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    dist = rng.integers(-3, 4, (nq, ng)).astype(np.float32) * (0.5 if seed % 2 else 1.0)
    if seed % 4 == 2:
        dist = rng.standard_normal((nq, ng)).astype(np.float32)
    dist[dist == 0] = np.where(rng.random(int((dist == 0).sum())) < 0.5, -0.0, 0.0)  # -0.0 equals +0.0
    cmc, m_ap, m_inp, n_valid = reference(dist, q_pids, g_pids, q_cams, g_cams, 10)
    calls = []
    real = ranking._threshold_ranks
    ranking._threshold_ranks = lambda *a: calls.append(1) or real(*a)
    try:
        for chunk in (None, 1, 5):
            r = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, chunk_size=chunk)
            assert r.num_valid_queries == n_valid
            np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
            assert r.mAP == pytest.approx(m_ap, abs=1e-12) and r.mINP == pytest.approx(m_inp, abs=1e-12)
        assert calls, "float32 input must take the threshold route"
        n = len(calls)
        rb = evaluate_ranking(dist.astype(np.float64) * (1 + 1e-12), q_pids, g_pids, q_cams, g_cams, max_rank=10)
        assert len(calls) == n, "float64 values finer than float32 must take the bucketed route"
    finally:
        ranking._threshold_ranks = real
    np.testing.assert_array_equal(rb.first_hit, r.first_hit)
    np.testing.assert_allclose(rb.ap, r.ap, atol=1e-12)


def test_positive_ranks_agree_between_routes():
    """The per-positive ranks themselves (not just the averages) are identical on both routes."""
    from vidreid.evaluation.ranking import _bucket_ranks, _threshold_ranks, _Workspace

    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.integers(0, 50, (40, 300)).astype(np.float32))
    qp, qc = torch.from_numpy(rng.integers(0, 6, 40)), torch.from_numpy(rng.integers(0, 2, 40))
    gp, gc = torch.from_numpy(rng.integers(-1, 6, 300)), torch.from_numpy(rng.integers(0, 2, 300))
    order = torch.argsort(gp, stable=True)
    r1, k1 = _threshold_ranks(x, qp, qc, gp, gc, order)
    r2, k2 = _bucket_ranks(x, qp, qc, gp, gc, order, _Workspace(40, 300))
    assert torch.equal(r1, r2) and torch.equal(k1, k2) and len(r1) > 100


def test_junk_mask_is_the_ranking_rule():
    from vidreid.evaluation import junk_mask

    mask = junk_mask(Q_PIDS[0], Q_CAMS[0], G_PIDS, G_CAMS)
    np.testing.assert_array_equal(np.flatnonzero(mask), [1, 5])  # same pid+cam, and pid -1 (see DIST)
    full = junk_mask(torch.as_tensor(Q_PIDS), torch.as_tensor(Q_CAMS), torch.as_tensor(G_PIDS), torch.as_tensor(G_CAMS))
    assert full.shape == (4, 8) and full[1].nonzero().flatten().tolist() == [0, 5]
    # ranking the kept columns with the rule gives q0's ranks 1, 3, 6 from the hand case
    kept = np.flatnonzero(~mask)
    order = kept[np.argsort(DIST[0, kept], kind="stable")]
    assert (np.flatnonzero(G_PIDS[order] == 1) + 1).tolist() == [1, 3, 6]


def test_pairwise_distance_one_convention():
    from vidreid.evaluation import pairwise_distance

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    b = torch.tensor([[1.0, 1.0], [-3.0, 0.0]])
    c = pairwise_distance(a, b)  # 1 - cos
    torch.testing.assert_close(c, torch.tensor([[1 - 2**-0.5, 2.0], [1 - 2**-0.5, 1.0]]))
    e = pairwise_distance(a, b, "euclidean")
    torch.testing.assert_close(e, torch.tensor([[1.0, 4.0], [2**0.5, 13**0.5]]))
    self_d = pairwise_distance(a, metric="euclidean")  # b=None: a against itself, finite gradient at 0
    self_d.sum().backward()
    assert torch.isfinite(a.grad).all() and float(self_d[0, 0]) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="metric"):
        pairwise_distance(a, b, "manhattan")


@pytest.mark.parametrize("density", [0.0, 0.01, 0.04, 0.07, 0.099, 0.101, 0.5, 1.0])
def test_nonzero_on_either_numpy_loop_equals_flatnonzero(density):
    """The float32 route pads masks of 3-10 % density with set items so that numpy takes its branchless loop,
    then drops the padding: the indices must be exactly flatnonzero's."""
    from vidreid.evaluation.ranking import _nonzero

    rng = np.random.default_rng(int(density * 1000))
    size = 16 * 1000
    buf = np.ones(size + size // 9 + 4, dtype=bool)
    buf[:size] = rng.random(size) < density
    np.testing.assert_array_equal(_nonzero(buf, size), np.flatnonzero(buf[:size]))
    np.testing.assert_array_equal(_nonzero(buf, size - 7), np.flatnonzero(buf[: size - 7]))


def test_finite_check_blockwise_overflow_and_rows_without_positives():
    """The float32 route checks finiteness per block from a sum: huge finite distances (the sum overflows) rank
    normally; NaN or inf anywhere, also in rows that have no positive (skipped blocks), is an error."""
    rng = np.random.default_rng(5)
    nq, ng = 40, 120
    q_pids, g_pids = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    q_cams, g_cams = np.zeros(nq, dtype=int), np.ones(ng, dtype=int)
    dist = (rng.random((nq, ng)) * 3e38).astype(np.float32)  # finite; any row's sum overflows float32
    with np.errstate(over="ignore"):
        assert not np.isfinite(dist[:16].sum(dtype=np.float32))
    cmc, m_ap, m_inp, _ = reference(dist, q_pids, g_pids, q_cams, g_cams, 10)
    r = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
    assert r.mAP == pytest.approx(m_ap, abs=1e-12) and r.mINP == pytest.approx(m_inp, abs=1e-12)
    q_none = q_pids.copy()
    q_none[16:32] = 99  # rows 16..31 (a whole block) have no positive
    for bad in (np.nan, np.inf, -np.inf):
        for row in (20, 3):
            d = dist.copy()
            d[row, 7] = bad
            with pytest.raises(ValueError, match="finite"):
                evaluate_ranking(d, q_none, g_pids, q_cams, g_cams)
    d = dist.copy()
    d[20, 7] = np.nan
    with pytest.raises(ValueError, match="finite"):  # no positive anywhere in the chunk
        evaluate_ranking(d[16:32], q_none[16:32], g_pids, q_cams[16:32], g_cams, average="all")


def test_mars_scale_equals_a_stable_argsort_per_query(shared_data):
    """At the real MARS protocol scale (1980 queries × 11,310 gallery items, pids and cameras from mars-info), every
    query's AP and first hit equal a stable argsort of its row (a structured float32 matrix with ties added)."""
    from scipy.io import loadmat

    info = shared_data / "mars-info"
    rows = np.asarray(loadmat(str(info / "tracks_test_info.mat"))["track_test_info"]).astype(np.int64)
    qidx = np.asarray(loadmat(str(info / "query_IDX.mat"))["query_IDX"]).astype(np.int64).ravel() - 1
    is_q = np.zeros(len(rows), dtype=bool)
    is_q[qidx] = True
    gal = rows[~is_q & (rows[:, 2] != -1)]
    q_pids, q_cams = rows[qidx, 2], rows[qidx, 3]
    g_pids, g_cams = np.concatenate([gal[:, 2], q_pids]), np.concatenate([gal[:, 3], q_cams])
    gen = torch.Generator().manual_seed(0)
    _, inv = np.unique(np.concatenate([q_pids, g_pids]), return_inverse=True)
    feats = torch.randn(int(inv.max()) + 1, 64, generator=gen)[torch.from_numpy(inv)]
    feats = torch.nn.functional.normalize(feats + 1.5 * torch.randn(len(inv), 64, generator=gen), dim=1)
    dist = (1.0 - feats[: len(q_pids)] @ feats[len(q_pids) :].T).numpy()
    dist = np.round(dist * 200) / 200  # ~400 distinct values per row: many ties, broken by gallery order
    r = evaluate_ranking(dist.astype(np.float32), q_pids, g_pids, q_cams, g_cams, max_rank=50)
    order = np.argsort(dist, axis=1, kind="stable")
    for i in range(len(q_pids)):
        o = order[i]
        keep = ~(((g_pids[o] == q_pids[i]) & (g_cams[o] == q_cams[i])) | (g_pids[o] == -1))
        pos = np.flatnonzero(g_pids[o][keep] == q_pids[i])
        if len(pos) == 0:
            assert r.first_hit[i] == -1 and np.isnan(r.ap[i])
            continue
        assert r.first_hit[i] == pos[0], i
        assert r.ap[i] == pytest.approx(np.mean((np.arange(len(pos)) + 1) / (pos + 1)), abs=1e-12), i
    assert r.num_valid_queries == len(q_pids) and 0.05 < r.mAP < 0.95
