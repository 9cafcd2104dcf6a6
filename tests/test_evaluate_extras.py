"""Small things users hit (issue A5.6): evaluate.py writes the CMC curve and ranked-list PNGs into the run dir by
default; `evaluate.py embeddings=<npz>` scores saved embeddings without the network (same numbers);
`vidreid.embed(normalize=True)`; checkpoints are written with the process umask, not 0600."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides, train_tiny_checkpoint


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cache_dir) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("extras_train"), cache_dir)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, cache_dir, checkpoint):
    from vidreid.runs.evaluate import run_evaluate

    out = tmp_path_factory.mktemp("extras_eval")
    cfg = compose("evaluate", tiny_overrides(cache_dir, f"ckpt_path={checkpoint}", "export=true", "logger=none",
                                             "evaluation.rerank.enabled=true"), output_dir=out)  # fmt: skip
    return out, run_evaluate(cfg)


def test_evaluate_writes_cmc_and_ranked_list_pngs_by_default(evaluated):
    from PIL import Image

    out, _ = evaluated
    figures = out / "figures"
    for kind in ("cmc_curve", "ranked_best", "ranked_worst"):
        files = list(figures.glob(f"test_{kind}_step*.png"))
        assert len(files) == 1, (kind, sorted(p.name for p in figures.glob("*")))
        with Image.open(files[0]) as im:
            assert im.width > 100 and im.height > 50


def test_scoring_saved_embeddings_reproduces_the_evaluation(evaluated, tmp_path):
    from vidreid.runs.evaluate import run_evaluate

    out, metrics = evaluated
    cfg = compose("evaluate", [f"embeddings={out / 'embeddings.npz'}", "logger=none",
                               "evaluation.rerank.enabled=true"], output_dir=tmp_path)  # fmt: skip
    scored = run_evaluate(cfg)  # no ckpt_path, no dataset, no network
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(scored)
    for k in ("test/rank1", "test/mAP", "test/mINP", "test/rerank/rank1", "test/rerank/mAP"):
        assert scored[k] == pytest.approx(metrics[k], abs=1e-6), k
    assert set(scored) == set(metrics)


def _npz(path: Path, q, g, qp, gp, qc, gc, **extra) -> Path:
    np.savez(path, query_embeddings=np.asarray(q, np.float32), gallery_embeddings=np.asarray(g, np.float32),
             query_pids=np.asarray(qp), gallery_pids=np.asarray(gp), query_camids=np.asarray(qc),
             gallery_camids=np.asarray(gc), **extra)  # fmt: skip
    return path


def test_score_embeddings_hand_case(tmp_path):
    """q0 (pid 1, cam 0) ranks g1 (pid 2) before its match g0 -> rank-1 miss, AP 1/2; q1 (pid 2) ranks its match
    first -> AP 1. The same-camera g2 of pid 1 is junk for q0."""
    from vidreid.deploy.score_npz import score_embeddings

    q = [[1.0, 0.0], [0.9, 0.1]]
    g = [[0.6, 0.8], [0.9, 0.1], [1.0, 0.0]]
    path = _npz(tmp_path / "e.npz", q, g, [1, 2], [1, 2, 1], [0, 0], [1, 1, 0], distance=np.array("cosine"))
    m = score_embeddings(path, {"distance": "cosine", "rerank": {"enabled": False}})
    assert m["rank1"] == pytest.approx(0.5) and m["rank5"] == pytest.approx(1.0)
    assert m["mAP"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["mINP"] == pytest.approx((0.5 + 1.0) / 2)


def test_score_embeddings_rejects_bad_files(tmp_path):
    from vidreid.deploy.score_npz import score_embeddings

    with pytest.raises(FileNotFoundError, match="export=true"):
        score_embeddings(tmp_path / "none.npz", {})
    bad = tmp_path / "bad.npz"
    np.savez(bad, query_embeddings=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"lacks \['gallery_embeddings'"):
        score_embeddings(bad, {})
    short = _npz(tmp_path / "short.npz", [[1, 0]], [[1, 0], [0, 1]], [1], [1], [0], [1, 1])
    with pytest.raises(ValueError, match="gallery_pids has 1 entries for 2 gallery embeddings"):
        score_embeddings(short, {})
    ok = _npz(tmp_path / "ok.npz", [[1, 0]], [[1, 0]], [1], [1], [0], [1])
    with pytest.raises(ValueError, match="st.enabled"):
        score_embeddings(ok, {"st": {"enabled": True}})


def test_embed_normalize(checkpoint, cache_dir, tmp_path):
    from hydra.utils import instantiate

    import vidreid

    data = instantiate(compose("train", tiny_overrides(cache_dir), output_dir=tmp_path).dataset)
    items = data.query[:3]
    raw = vidreid.embed(checkpoint, items, progress=False)
    unit = vidreid.embed(checkpoint, items, progress=False, normalize=True)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3), atol=1e-2)  # the raw test feature is not unit-norm
    assert torch.allclose(unit.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(unit, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoints_follow_the_process_umask(tmp_path, umask):
    from vidreid.runtime.checkpoint_io import AtomicCheckpointIO, atomic_torch_save

    old = os.umask(umask)
    try:
        atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "x.ckpt")
        AtomicCheckpointIO().save_checkpoint({"b": 1}, tmp_path / "last.ckpt")
    finally:
        os.umask(old)
    for name in ("x.ckpt", "last.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name  # was always 0o600
    assert torch.load(tmp_path / "x.ckpt")["a"].shape == (2,)


def test_test_time_net_settings_apply_to_a_trained_checkpoint(evaluated, cache_dir, checkpoint, tmp_path):
    """`evaluate.py ckpt_path=... model.net.flip_test=true` (or `test_feature=pre_bn`) evaluates the checkpoint with
    that test-time setting (no parameters involved) instead of refusing it as a network change; structural network
    overrides are still refused."""
    from vidreid.deploy.inference import SettingsConflict
    from vidreid.runs.evaluate import run_evaluate

    out, _ = evaluated
    base = np.load(out / "embeddings.npz")["query_embeddings"]
    for override in ("model.net.flip_test=true", "model.net.test_feature=pre_bn"):
        run = tmp_path / override.split(".")[-1].split("=")[0]
        cfg = compose("evaluate", tiny_overrides(cache_dir, f"ckpt_path={checkpoint}", "export=true", "logger=none",
                                                 "figures=false", override), output_dir=run)  # fmt: skip
        run_evaluate(cfg)
        emb = np.load(run / "embeddings.npz")["query_embeddings"]
        assert emb.shape == base.shape and np.abs(emb - base).max() > 1e-3, override
    with pytest.raises(SettingsConflict, match="model.net.aggregator.stripes"):
        run_evaluate(compose("evaluate", tiny_overrides(cache_dir, f"ckpt_path={checkpoint}", "logger=none",
                                                        "aggregator.stripes=3"), output_dir=tmp_path / "x"))  # fmt: skip
