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
