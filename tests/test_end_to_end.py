"""End to end: train.py and evaluate.py on a tiny synthetic set, in-process and under 2-process CPU DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose
from tests.tiny import TINY


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _overrides(cache_dir: Path) -> list[str]:
    return TINY + [f"paths.cache_dir={cache_dir}"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir):
    from vidreid.train import run_train

    out = tmp_path_factory.mktemp("train_run")
    cfg = compose("train", _overrides(cache_dir), output_dir=out)
    metrics, _ = run_train(cfg)
    return out, metrics


def test_train_writes_metrics_and_checkpoints(trained_run):
    out, metrics = trained_run
    saved = json.loads((out / "metrics.json").read_text())
    for k in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/mINP", "val/mAP"):
        assert 0.0 <= saved[k] <= 1.0, k
    assert saved["test/rank1"] <= saved["test/rank5"] <= saved["test/rank10"]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "csv").glob("metrics.csv"))


def test_evaluate_reproduces_the_final_test_metrics(trained_run, tmp_path, cache_dir):
    from vidreid.evaluate import run_evaluate

    out, metrics = trained_run
    cfg = compose("evaluate", _overrides(cache_dir) + [f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], output_dir=tmp_path)
    ev = run_evaluate(cfg)
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert ev[k] == pytest.approx(metrics[k], abs=1e-6), k
    assert json.loads((tmp_path / "metrics.json").read_text())["test/mAP"] == pytest.approx(metrics["test/mAP"], abs=1e-6)


def test_missing_checkpoint_is_named(tmp_path, cache_dir):
    from vidreid.evaluate import run_evaluate

    cfg = compose("evaluate", _overrides(cache_dir) + [f"ckpt_path={tmp_path / 'nope.ckpt'}"], output_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        run_evaluate(cfg)


def test_ddp_two_processes_matches_single_process_evaluation(tmp_path, cache_dir):
    """2-process CPU DDP (gloo): training runs, and the rank-gathered test metrics equal a 1-process
    evaluation of the same final weights."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "train.py", *_overrides(cache_dir), "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "logger=csv", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((run_dir / "metrics.json").read_text())
    ev_dir = tmp_path / "eval"
    cmd = [sys.executable, "evaluate.py", *_overrides(cache_dir), f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
           "logger=none", f"hydra.run.dir={ev_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((ev_dir / "metrics.json").read_text())
    for k in ("test/rank1", "test/rank5", "test/mAP", "test/mINP"):
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), k


def test_interleaved_order_mixes_queries_and_gallery():
    from vidreid.data.datamodule import interleaved_order

    assert interleaved_order(2, 4) == [2, 0, 3, 4, 1, 5]
    order = interleaved_order(37, 400)
    assert sorted(order) == list(range(437))
    for n in (12, 40, 100):  # every prefix of n items holds queries and gallery in about the 37:400 proportion
        q = sum(i < 37 for i in order[:n])
        assert abs(q - n * 37 / 437) <= 1, (n, q)
    assert interleaved_order(0, 3) == [0, 1, 2] and interleaved_order(3, 0) == [0, 1, 2]


def test_fast_dev_run_validates_on_one_batch(tmp_path, cache_dir):
    """``debug=fdr`` (fast_dev_run: one validation batch) with test batches much smaller than query + gallery:
    the one batch must hold both queries and gallery items for the metric to rank anything."""
    from vidreid.train import run_train

    over = _overrides(cache_dir) + ["debug=fdr", "data.test_batch_size=6", "logger=none"]
    metrics, _ = run_train(compose("train", over, output_dir=tmp_path))
    assert 0.0 < metrics["val/mAP"] <= 1.0
