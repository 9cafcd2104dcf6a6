"""Small things users hit: evaluate.py writes the CMC curve and ranked-list PNGs into the run dir by
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


def _mars_with_frames(root: Path) -> Path:
    """The MARS-layout fixture of test_datasets with real JPEG frames: query 9's frame is query 7's frame, so under
    the MARS protocol (queries also in the gallery) query 7 ranks query 9 (another pid, another camera) first; its
    true match (gallery 7: the same picture with noise) comes first only when the queries are not in the gallery."""
    from PIL import Image

    from tests.test_datasets import make_mars

    make_mars(root)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
    look = {"0007C1T0001F001": base, "0009C4T0001F001": base,
            "0007C2T0001F001": np.clip(base.astype(int) + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)}
    for split, names in (("bbox_train", "train_name.txt"), ("bbox_test", "test_name.txt")):
        for name in (root / "info" / names).read_text().split():
            img = look.get(name[:-4])
            if img is None:
                img = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
            path = root / split / name[:4] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path, quality=95)
    return root


def test_scoring_saved_embeddings_keeps_the_datasets_protocol(checkpoint, tmp_path):
    """MARS declares query_in_gallery: `evaluate.py embeddings=<npz>` applies it exactly as evaluating the
    checkpoint does (the file records it), and the fixture is one where the protocol changes the numbers."""
    from vidreid.runs.evaluate import run_evaluate

    root = _mars_with_frames(tmp_path / "MARS")
    base = ["logger=none", "figures=false", "data.num_workers=0", "data.val_identities=0", "trainer.accelerator=cpu",
            "++callbacks.progress_bar=null"]
    ev_dir = tmp_path / "ev"
    evaluated = run_evaluate(compose("evaluate", [*base, f"ckpt_path={checkpoint}", "dataset=mars",
                                                  f"dataset.root={root}", "export=true"], output_dir=ev_dir))
    npz = ev_dir / "embeddings.npz"
    with np.load(npz) as z:
        assert bool(z["query_in_gallery"]) is True
    scored = run_evaluate(compose("evaluate", [*base, f"embeddings={npz}"], output_dir=tmp_path / "sc"))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert scored[k] == pytest.approx(evaluated[k], abs=1e-6), k
    assert evaluated["test/rank1"] == 0.0  # query 9's copy of the picture outranks the true match
    forced = run_evaluate(compose("evaluate", [*base, f"embeddings={npz}", "evaluation.append_query_to_gallery=false"],
                                  output_dir=tmp_path / "off"))  # fmt: skip
    assert forced["test/rank1"] == 1.0


def test_evaluate_writes_beside_the_checkpoints_run_as_the_readme_says(checkpoint, cache_dir, tmp_path):
    """The README's commands as typed: `evaluate.py ckpt_path=<run>/checkpoints/last.ckpt export=true` writes
    metrics.json and embeddings.npz into <run>/evaluate/<time>/ (before: a new logs/evaluate/runs/<time>/), and
    `evaluate.py embeddings=<that>/embeddings.npz` writes into <that>/scored/<time>/."""
    import subprocess

    from tests.conftest import REPO
    from tests.tiny import PYTHON, subprocess_env

    run = checkpoint.parent.parent
    env = subprocess_env(VIDREID_LOG_DIR=str(tmp_path / "logs"))
    cmd = [PYTHON, "evaluate.py", *tiny_overrides(cache_dir, f"ckpt_path={checkpoint}", "export=true",
                                                   "logger=none", "figures=false")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out,) = (run / "evaluate").iterdir()
    assert (out / "metrics.json").is_file() and (out / "embeddings.npz").is_file()
    assert (out / "config_tree.txt").is_file()  # the full config goes to the run folder, a summary to the console
    assert "dataset:" not in proc.stdout.split("config:")[0] and proc.stdout.count("\n") < 120
    assert not (tmp_path / "logs").exists()
    proc = subprocess.run([PYTHON, "evaluate.py", f"embeddings={out / 'embeddings.npz'}", "logger=none"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (scored,) = (out / "scored").iterdir()
    assert json.loads((scored / "metrics.json").read_text())["test/mAP"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["test/mAP"], abs=1e-6)


def test_fused_distances_are_re_ranked_when_re_ranking_is_on(tmp_path):
    """fusion.color_weight with evaluation.rerank.enabled: the fused embeddings' k-reciprocal re-ranked metrics are
    reported as rerank/<name>, equal to re-ranking the fused distance (1 - w) d_net + w d_colour directly."""
    from vidreid.data.tracklet import Tracklet
    from vidreid.deploy.score_npz import fused_npz_metrics
    from vidreid.evaluation.fusion import fuse_embeddings
    from vidreid.evaluation.metric import ReIDMetric

    g = torch.Generator().manual_seed(3)
    pids = torch.arange(12).repeat(3)  # 12 people: one query, two gallery tracklets each
    net = torch.randn(12, 16, generator=g)[pids] + 0.9 * torch.randn(36, 16, generator=g)
    color = torch.randn(12, 8, generator=g)[pids] + 0.9 * torch.randn(36, 8, generator=g)
    cams = (torch.arange(36) >= 12).long()
    npz = tmp_path / "embeddings.npz"
    np.savez(npz, query_embeddings=net[:12].numpy(), gallery_embeddings=net[12:].numpy(),
             query_pids=pids[:12].numpy(), gallery_pids=pids[12:].numpy(), query_camids=cams[:12].numpy(),
             gallery_camids=cams[12:].numpy(), query_in_gallery=False)  # fmt: skip
    items = [Tracklet((Path(f"{i}.jpg"),), int(p), int(c)) for i, (p, c) in enumerate(zip(pids, cams))]
    rr = {"enabled": True, "k1": 6, "k2": 3, "lambda_value": 0.3}
    out, _ = fused_npz_metrics(str(npz), items[:12], items[12:], [0.4], {"rerank": rr}, color=color)
    direct = ReIDMetric(distance="cosine", rerank=True, rerank_kwargs={"k1": 6, "k2": 3, "lambda_value": 0.3})
    direct.update(fuse_embeddings(net, color, 0.4), pids, cams, torch.arange(36) < 12, indices=torch.arange(36))
    want = direct.compute()
    assert out[0.4]["rerank/mAP"] == pytest.approx(float(want["rerank/mAP"]), abs=1e-6)
    assert out[0.4]["mAP"] == pytest.approx(float(want["mAP"]), abs=1e-6)
    assert abs(out[0.4]["rerank/mAP"] - out[0.4]["mAP"]) > 1e-3  # re-ranking did change the ranking
    assert "rerank/mAP" not in fused_npz_metrics(str(npz), items[:12], items[12:], [0.4], {}, color=color)[0][0.4]
