"""st-ReID spatial-temporal model: hand-computed histograms / smoothing / scores, and a fusion that lifts rank-1."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidreid.evaluation import SpatialTemporalModel, evaluate_ranking, joint_distance, joint_score
from vidreid.evaluation.metric import pairwise_distance

EPS = 1e-7


def _hand_model() -> SpatialTemporalModel:
    # (pid, cam, frame); bin_size 10, 6 bins, 3 cameras.
    # fmt: off
    samples = [
        (7, 0, 10), (7, 0, 30), (7, 1, 45), (7, 2, 60), (7, 2, 64),  # means 20 / 45 / 62
        (9, 0, 50), (9, 2, 20),  # cam0 later by 30
        (11, 1, 5),  # one camera only: no pair
        (12, 0, 0), (12, 1, 0),  # equal means: the higher camera counts as later
        (13, 0, 0), (13, 1, 200),  # Δ = 200 -> bin 20, outside 6 bins: dropped
    ]
    # fmt: on
    pids, cams, frames = zip(*samples)
    with pytest.warns(UserWarning, match="1 transit times exceed"):
        return SpatialTemporalModel.fit(pids, cams, frames, num_cams=3, bin_size=10, num_bins=6)


def test_fit_histogram_by_hand():
    h = _hand_model().hist
    assert h.shape == (3, 3, 6) and h.dtype == torch.float64
    expected = torch.zeros(3, 3, 6, dtype=torch.float64)
    # H[later][earlier][bin]: id 7 -> (1,0) Δ25 bin 2, (2,0) Δ42 bin 4, (2,1) Δ17 bin 1;
    # id 9 -> (0,2) Δ30 bin 3; id 12 -> (1,0) Δ0 bin 0. Each histogram / (count + 1e-7).
    expected[1, 0, 0] = expected[1, 0, 2] = 1 / (2 + EPS)
    expected[2, 0, 4] = expected[2, 1, 1] = expected[0, 2, 3] = 1 / (1 + EPS)
    torch.testing.assert_close(h, expected, rtol=0, atol=1e-15)


def test_smoothing_by_hand():
    s = _hand_model().smooth(sigma=1.0).hist  # kernel offsets |d| <= 3

    def g(d):
        return math.exp(-d * d / 2) / math.sqrt(2 * math.pi) if abs(d) <= 3 else 0.0

    h = 1 / (2 + EPS)
    raw = [h * (g(u) + g(u - 2)) for u in range(6)]  # H[1][0] = h at bins 0 and 2
    total = sum(raw)
    for u in range(6):
        assert float(s[1, 0, u]) == pytest.approx(raw[u] / (total + EPS), rel=1e-12)
    assert raw[5] == pytest.approx(h * g(3))  # bin 5: offset 5 from bin 0 is cut off by 3σ
    raw2 = [g(u - 4) / (1 + EPS) for u in range(6)]  # H[2][0] = e_4: bin 0 is 4 > 3σ away
    assert float(s[2, 0, 0]) == 0.0
    assert float(s[2, 0, 1]) == pytest.approx(raw2[1] / (sum(raw2) + EPS), rel=1e-12)
    assert float(s.sum(-1)[1, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(s[0, 0].abs().sum()) == 0.0  # same camera stays zero


def test_score_by_hand():
    m = _hand_model()
    p = m.score([1, 1], [30, 30], [0, 0, 1, 2, 0, 0], [5, 40, 10, 47, 100, 30])
    h, one = 1 / (2 + EPS), 1 / (1 + EPS)
    # q cam1 t30 vs: cam0 t5 (q later, Δ25 -> H[1][0][2]); cam0 t40 (g later, H[0][1][1] = 0); same cam -> 0;
    # cam2 t47 (g later, Δ17 -> H[2][1][1]); cam0 t100 (Δ70, bin 7 out of range) -> 0;
    # cam0 t30 (equal times: gallery counts as later, H[0][1][0] = 0 although H[1][0][0] > 0).
    torch.testing.assert_close(p[0], torch.tensor([h, 0, 0, one, 0, 0], dtype=torch.float64))
    assert p.shape == (2, 6)


def test_joint_score_and_distance():
    s = torch.tensor([[0.5, -1.0]])
    p = torch.tensor([[0.1, 0.0]])
    pj = joint_score(s, p)
    expected0 = 1 / (1 + math.exp(-2.5)) / (1 + 2 * math.exp(-0.5))
    expected1 = 1 / (1 + math.exp(5)) / 3
    torch.testing.assert_close(pj, torch.tensor([[expected0, expected1]], dtype=torch.float64))
    torch.testing.assert_close(joint_distance(pj), 2 - 2 * pj)
    with pytest.raises(ValueError, match="equal shapes"):
        joint_score(s, p[:, :1])


def test_fit_rejects_bad_cameras():
    with pytest.raises(ValueError, match="camids"):
        SpatialTemporalModel.fit([1, 1], [0, 3], [0, 10], num_cams=3)


def _walkers(rng, n_ids, noise):
    """People walking cam0 -> cam1 -> cam2 -> cam3, ~600 frames per hop, starting anywhere in 60k frames."""
    centres = rng.normal(size=(n_ids, 32))
    start = rng.uniform(0, 60_000, n_ids)
    pids, cams, times, feats = [], [], [], []
    for i in range(n_ids):
        t = start[i]
        for c in range(4):
            if c:
                t += rng.normal(600, 60)
            pids.append(i)
            cams.append(c)
            times.append(t)
            feats.append(centres[i] + noise * rng.normal(size=32))
    return np.array(pids), np.array(cams), np.array(times), torch.tensor(np.array(feats), dtype=torch.float32)


def test_spatial_temporal_fusion_lifts_rank1():
    rng = np.random.default_rng(0)
    tr_p, tr_c, tr_t, _ = _walkers(rng, 200, 0.0)
    model = SpatialTemporalModel.fit(tr_p, tr_c, tr_t, num_cams=4, bin_size=100, num_bins=40).smooth(sigma=2)
    pids, cams, times, feats = _walkers(rng, 150, 1.3)
    q = cams == 0
    qf, gf = feats[torch.from_numpy(q)], feats[torch.from_numpy(~q)]
    visual = 1 - pairwise_distance(qf, gf)  # cosine similarity
    p_st = model.score(cams[q], times[q], cams[~q], times[~q])
    args = (pids[q], pids[~q], cams[q], cams[~q])
    vis_only = evaluate_ranking(1 - visual, *args)
    fused = evaluate_ranking(joint_distance(joint_score(visual, p_st)), *args)
    assert 0.2 < vis_only.rank(1) < 0.75
    assert fused.rank(1) > vis_only.rank(1) + 0.2 and fused.rank(1) > 0.85
    assert fused.mAP > vis_only.mAP + 0.2
