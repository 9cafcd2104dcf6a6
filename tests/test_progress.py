"""Progress in log files: a run whose stdout is a pipe prints one line per epoch (losses, lr, val
metrics, throughput, ETA) to stdout and to <run_dir>/train.log, once each, without Lightning's noise; and the CPU
bf16 warning."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, compose
from tests.tiny import PYTHON, TINY, subprocess_env, tiny_cache

LINE = re.compile(
    r"epoch (?P<e>\d+)/2 \| loss \d+\.\d{3} \(ce \d+\.\d{3}, triplet \d+\.\d{3}\) \| lr \d\.\d\de-\d\d \| "
    r"val mAP (?P<map>[01]\.\d{3}) rank1 [01]\.\d{3} mINP [01]\.\d{3} \| (?P<cps>\d+\.\d) clips/s \| \S+ \| ETA \S+$"
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


def test_redirected_run_logs_one_line_per_epoch_without_noise(tmp_path, cache_dir):
    overrides = [o for o in TINY if not o.startswith("++callbacks.progress_bar")]  # the configured bar
    cmd = [PYTHON, "train.py", *overrides, f"paths.cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}",
           "trainer.max_epochs=2", "+trainer.limit_train_batches=2"]  # fmt: skip
    p = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out_lines = [m for m in (LINE.search(x) for x in p.stdout.splitlines()) if m]
    assert [m["e"] for m in out_lines] == ["1", "2"], p.stdout[-3000:]
    assert all(float(m["cps"]) > 0 for m in out_lines)
    log_lines = [m for m in (LINE.search(x) for x in (tmp_path / "train.log").read_text().splitlines()) if m]
    assert [m["e"] for m in log_lines] == ["1", "2"]
    assert "ETA 0.0s" in log_lines[-1].group(0)
    # the logged val mAP is the run's: metrics.json holds the final validation
    import json

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert float(out_lines[-1]["map"]) == pytest.approx(metrics["val/mAP"], abs=5e-4)
    # noise: Lightning's INFO lines once (not also on stderr), no tips, no FLOPs table, no single-run sweeper warning,
    # no progress bar redrawn into the output
    assert not [x for x in p.stderr.splitlines() if x.startswith("INFO:")], p.stderr[-3000:]
    both = p.stdout + p.stderr
    for noise in ("litlogger", "litmodels", "Total FLOPs", "optimized_metric", "LeafSpec", "it/s",
                  "log_every_n_steps", "lightning.pytorch.Trainer"):  # fmt: skip
        assert noise not in both, noise
    # the resolved config goes to the run folder, the console gets its short summary
    assert "_target_: lightning.pytorch.Trainer" in (tmp_path / "config_tree.txt").read_text()
    assert "config:" in p.stdout and f"run folder {tmp_path}" in p.stdout
    assert "model: " in p.stdout and "M parameters" in p.stdout  # the one-line model summary


def test_format_duration():
    from vidreid.engine.progress import format_duration

    assert [format_duration(x) for x in (9.54, 200, 3725, float("nan"), -1)] == ["9.5s", "3m20s", "1h02m", "?", "?"]


def test_epoch_line_without_validation_or_known_length():
    from types import SimpleNamespace

    import torch

    from vidreid.engine.progress import EpochLog

    cb = EpochLog()
    cb._lrs, cb._clips, cb._epoch_times, cb._validated = [1e-4, 1e-3], 64, [10.0, 30.0], False
    trainer = SimpleNamespace(current_epoch=1, max_epochs=5, callback_metrics={
        "train/loss_epoch": torch.tensor(2.5), "train/ce_epoch": torch.tensor(2.0), "val/mAP": torch.tensor(0.5)})
    line = cb.line(trainer, elapsed=30.0)
    assert line == "epoch 2/5 | loss 2.500 (ce 2.000) | lr 1.00e-03 (backbone 1.00e-04) | 2.1 clips/s | 30.0s | ETA 1m00s"
    trainer.max_epochs = -1  # max_epochs=-1: endless, no ETA
    assert cb.line(trainer, 30.0).startswith("epoch 2 | ") and "ETA" not in cb.line(trainer, 30.0)


def test_cpu_bf16_detection(tmp_path):
    from vidreid.runtime.precision import cpu_has_native_bf16

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    bf16 = tmp_path / "bf16"
    bf16.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_has_native_bf16(avx2) is False
    assert cpu_has_native_bf16(bf16) is True
    assert cpu_has_native_bf16(arm) is True


def test_ddp_on_a_cpu_without_bf16_warns_and_suggests_fp32(tmp_path, caplog):
    from vidreid.runtime.precision import check_cpu_precision

    cfg = compose("train", ["trainer=ddp", "trainer.accelerator=cpu"], output_dir=tmp_path)
    assert cfg.trainer.precision == "bf16-mixed"
    with caplog.at_level("WARNING", logger="vidreid.runtime.precision"):
        msg = check_cpu_precision(cfg.trainer, native_bf16=False)
    assert msg and "trainer.precision=32-true" in msg and "bf16-mixed" in msg
    assert any("32-true" in r.getMessage() for r in caplog.records)
    assert check_cpu_precision(cfg.trainer, native_bf16=True) is None
    cfg32 = compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"], output_dir=tmp_path)
    assert check_cpu_precision(cfg32.trainer, native_bf16=False) is None
    gpu = compose("train", ["trainer=gpu"], output_dir=tmp_path)
    assert check_cpu_precision(gpu.trainer, native_bf16=False) is None  # a GPU run is not affected


def test_train_warns_about_emulated_bf16(tmp_path, cache_dir, caplog, monkeypatch):
    """run_train itself performs the check on its trainer config (fp32 here: the check is what is tested)."""
    import vidreid.runs.train as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "check_cpu_precision", lambda t: seen.append(str(t.precision)) or None)
    from tests.tiny import tiny_overrides

    cfg = compose("train", tiny_overrides(cache_dir, "logger=none", "test=false",
                                          "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                                          "+trainer.limit_val_batches=1"), output_dir=tmp_path)  # fmt: skip
    train_mod.run_train(cfg)
    assert seen == ["32-true"]


def test_harmless_warnings_are_filtered_and_others_kept():
    import warnings

    from vidreid.engine.progress import quiet_lightning_console

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning_console()
        for name in ("train/loss", "val/mAP", "test/rerank/mAP", "my/metric"):
            warnings.warn(f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch "
                          "level in distributed setting to accumulate the metric across devices.", stacklevel=1)  # fmt: skip
    assert [str(w.message).split("'")[1] for w in caught] == ["my/metric"]  # the 16 DDP warnings are gone


def test_epoch_log_leaves_the_process_warning_filters_alone():
    """Constructing EpochLog changed nothing; a stage's harmless-warning filters end with the stage."""
    import warnings
    from types import SimpleNamespace

    from vidreid.engine.progress import EpochLog

    with warnings.catch_warnings():
        warnings.resetwarnings()
        before = list(warnings.filters)
        cb = EpochLog()
        assert warnings.filters == before
        trainer = SimpleNamespace(datamodule=SimpleNamespace(val_split=None), is_global_zero=False)
        cb.setup(trainer, None, "fit")
        assert len(warnings.filters) > len(before)  # inside the stage the harmless ones are ignored
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("It is recommended to use `self.log('val/mAP', ..., sync_dist=True)`", stacklevel=1)
        assert caught == []
        cb.teardown(trainer, None, "fit")
        assert warnings.filters == before


def test_the_no_validation_note_promises_a_test_only_when_one_runs(tmp_path):
    """``train.py test=false`` without validation said "the final epoch is tested"."""
    from hydra.utils import instantiate

    for over, tested in (([], True), (["test=false"], False)):
        cb = instantiate(compose("train", over, output_dir=tmp_path).callbacks.epoch_log)
        assert cb.tested is tested
        note = cb.no_validation_note()
        assert ("the final epoch is tested" in note) is tested and ("test=false" in note) is (not tested)


def test_metric_table_title_on_one_line_and_no_empty_table(tmp_path, capsys, caplog):
    """A checkpoint path in the title wrapped over three lines inside the narrow table; a run without metrics
    (test=false, no validation) printed an empty table."""
    import json
    import logging

    from vidreid.runs.common import short_path, write_metrics

    ckpt = "/home/someone/projects/vidreid/logs/train/runs/2026-12-07_15-04-33/checkpoints/epoch=119-step=2400.ckpt"
    assert short_path(ckpt) == "2026-12-07_15-04-33/checkpoints/epoch=119-step=2400.ckpt"
    assert short_path("/x/model.ckpt") == "x/model.ckpt" and short_path("untrained network") == "untrained network"
    title = f"evaluate: {ckpt}"
    write_metrics({"test/mAP": 0.5, "test/rank1": 0.625}, tmp_path / "m.json", title=title)
    out = capsys.readouterr().out
    assert title in out.splitlines() and "0.6250" in out
    with caplog.at_level(logging.INFO, logger="vidreid"):
        write_metrics({}, tmp_path / "e.json", title="demo: pku-reid", threads=1)
    out = capsys.readouterr().out
    assert "metric" not in out and "┃" not in out and "no test or validation metrics" in caplog.text
    assert json.loads((tmp_path / "e.json").read_text()) == {"threads": 1}


def test_the_tracking_score_title_is_one_line(capsys):
    from vidreid.video.mot import print_score_table

    title = ("vtest.avi vs /home/someone/data/shared/mot15/PETS09-S2L1/gt/gt.txt (795 frames scored; count MAE per "
             "window 0.630)")
    print_score_table({"raw": {"HOTA": 0.5}, "reid": {"HOTA": 0.6}}, title=title)
    out = capsys.readouterr().out
    assert title in out.splitlines() and "0.600" in out
