"""ReIDMetric as used by the LightningModule: dataset-order restoration (DDP), st-ReID fusion wiring."""

import math

import pytest
import torch

from vidreid.data.tracklet import ReIDDataset, Tracklet
from vidreid.evaluation.metric import ReIDMetric
from vidreid.evaluation.spatial_temporal import fit_st_model


def _batches(n=12, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    pids = torch.arange(n) % 4
    cams = torch.arange(n) // 4 % 3
    is_q = torch.arange(n) < 4
    return emb, pids, cams, is_q


def test_shuffled_updates_rank_like_dataset_order():
    emb, pids, cams, is_q = _batches()
    # duplicate a gallery embedding so that a tie exists and its order matters
    emb[9] = emb[5]
    ordered = ReIDMetric()
    ordered.update(emb, pids, cams, is_q, indices=torch.arange(12))
    shuffled = ReIDMetric()
    perm = torch.tensor([7, 2, 11, 0, 5, 9, 1, 3, 10, 4, 8, 6])
    for part in perm.split(5):  # like rank shards arriving in another order
        shuffled.update(emb[part], pids[part], cams[part], is_q[part], indices=part)
    a, b = ordered.compute(), shuffled.compute()
    assert a == b
    assert torch.equal(ordered.last.g_index, shuffled.last.g_index)


def _tracklet(pid, cam, t):
    return Tracklet((f"/x/{pid}_{cam}_{t}.jpg",), pid, cam, (t,))


def test_st_fusion_reported_and_lifts_rank1():
    # 3 cameras in a line; every person walks cam0 -> cam1 (+1000 frames) -> cam2 (+2000 frames)
    train = [_tracklet(p, c, 10_000 * p + 1000 * c) for p in range(30) for c in range(3)]
    query = [_tracklet(p, 0, 500_000 + 3000 * p) for p in range(10)]
    gallery = [_tracklet(p, 1, 500_000 + 3000 * p + 1000) for p in range(10)]
    data = ReIDDataset("line", train, query, gallery)
    st_model = fit_st_model(data, bin_size=100, sigma=5)
    # visual features: identity signal buried in noise, so visual rank-1 is mediocre
    g = torch.Generator().manual_seed(0)
    ident = torch.randn(10, 16, generator=g)
    qf = ident + 1.5 * torch.randn(10, 16, generator=g)
    gf = ident + 1.5 * torch.randn(10, 16, generator=g)
    m = ReIDMetric(rerank=False, st={"lambda0": 1.0, "gamma0": 5.0, "lambda1": 2.0, "gamma1": 5.0})
    m.st_model = st_model
    items = query + gallery
    m.update(torch.cat([qf, gf]), torch.tensor([t.pid for t in items]), torch.tensor([t.camid for t in items]),
             torch.arange(20) < 10, timestamps=torch.tensor([t.timestamp for t in items], dtype=torch.float64))
    out = m.compute()
    # measured: visual rank-1 0.5, fused 0.8 (the logistic keeps a strong visual match from being vetoed)
    assert out["rank1"] == pytest.approx(0.5)
    assert out["st/rank1"] >= out["rank1"] + 0.25
    assert out["st/mAP"] > out["mAP"]


def test_st_without_timestamps_is_a_clear_error():
    train = [Tracklet(("/x/a.jpg",), 0, 0), Tracklet(("/x/b.jpg",), 0, 1)]
    with pytest.raises(ValueError, match="global frame numbers"):
        fit_st_model(ReIDDataset("no_time", train, train[:1], train[1:]))
    m = ReIDMetric(st={})
    m.st_model = object()
    m.update(torch.randn(2, 4), torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="timestamp"):
        m.compute()
    assert math.isnan(m.timestamps[0][0].item())
