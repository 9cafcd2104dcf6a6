"""ReIDMetric as used by the LightningModule: dataset-order restoration (DDP), ranking once under DDP, st-ReID
fusion wiring, the ``distance`` argument."""

import json
import math
import multiprocessing
import os
import socket
from pathlib import Path

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


def test_distance_argument_and_the_former_metric_keyword():
    emb, pids, cams, is_q = _batches()
    eu = ReIDMetric(distance="euclidean")
    eu.update(emb, pids, cams, is_q)
    assert eu.distance == "euclidean"
    with pytest.warns(DeprecationWarning, match=r"distance='euclidean'"):
        old = ReIDMetric(metric="euclidean")
    old.update(emb, pids, cams, is_q)
    assert old.distance == "euclidean" and old.compute() == eu.compute()
    cos = ReIDMetric()
    cos.update(emb, pids, cams, is_q)
    assert cos.distance == "cosine" and cos.compute()["mAP"] != eu.compute()["mAP"]  # the keyword is used
    with pytest.raises(TypeError, match="distance= only"):
        ReIDMetric(distance="cosine", metric="euclidean")
    with pytest.raises(ValueError, match="distance='manhattan'"):
        ReIDMetric(distance="manhattan")


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank of :func:`test_ddp_ranks_once_on_rank_zero_and_broadcasts`: counts the distance matrices, rankings
    and re-rankings this process computes (spies on the names the metric calls)."""
    import torch.distributed as dist

    import vidreid.evaluation.metric as metric_mod

    # forked (seconds instead of a re-import of torch and torchmetrics per rank): one thread in every phase, as a
    # forked child must not enter a multi-threaded OpenMP region its parent's pool was used for
    os.environ["VIDREID_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    calls = {"evaluate_ranking": 0, "k_reciprocal_rerank": 0, "pairwise_distance": 0}

    def spy(name):
        real = getattr(metric_mod, name)

        def wrapped(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)

        return wrapped

    for name in calls:
        setattr(metric_mod, name, spy(name))
    report = {}
    try:
        emb, pids, cams, is_q = _batches(n=40, d=8, seed=3)
        m = metric_mod.ReIDMetric(rerank=True, rerank_kwargs={"k1": 4, "k2": 2, "lambda_value": 0.3})
        shard = torch.arange(rank, 40, world)  # what a DistributedSampler deals each rank
        m.update(emb[shard], pids[shard], cams[shard], is_q[shard], indices=shard)
        report["metrics"] = m.compute()
        report["calls"] = dict(calls)
        report["last_is_none"] = m.last is None
        report["num_rankings"] = getattr(m, "num_rankings", None)
        bad = metric_mod.ReIDMetric()  # gallery only: rank 0 fails, and the other rank must hear of it, not hang
        bad.update(emb[shard], pids[shard], cams[shard], torch.zeros(len(shard), dtype=torch.bool), indices=shard)
        try:
            bad.compute()
        except ValueError as err:
            report["error"] = str(err)
    finally:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(report))
        dist.destroy_process_group()


def test_ddp_ranks_once_on_rank_zero_and_broadcasts(tmp_path):
    """2 CPU processes (gloo), each holding half of the items: both return the 1-process metrics (plain and
    re-ranked); only rank 0 computed distances, ranked and re-ranked; an error on rank 0 reaches rank 1."""
    emb, pids, cams, is_q = _batches(n=40, d=8, seed=3)
    single = ReIDMetric(rerank=True, rerank_kwargs={"k1": 4, "k2": 2, "lambda_value": 0.3})
    single.update(emb, pids, cams, is_q)
    expected = single.compute()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    for rep in (r0, r1):
        assert rep["metrics"].keys() == expected.keys()
        for k, v in expected.items():
            assert rep["metrics"][k] == pytest.approx(v, abs=1e-12), k
        assert "no queries" not in rep["error"] and "need queries and gallery items" in rep["error"]
    assert r0["calls"] == {"evaluate_ranking": 2, "k_reciprocal_rerank": 1, "pairwise_distance": 3}
    assert r1["calls"] == {"evaluate_ranking": 0, "k_reciprocal_rerank": 0, "pairwise_distance": 0}
    assert (single.num_rankings, r0["num_rankings"], r1["num_rankings"]) == (2, 2, 0)  # plain + re-ranked
    assert not r0["last_is_none"] and r1["last_is_none"]
