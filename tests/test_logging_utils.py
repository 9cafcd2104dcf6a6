"""Logs that survive a resume and W&B run names: the resumed run's metrics.csv keeps the
epoch-1 validation row; W&B gets the same run id on resume and a name made of experiment + overrides."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_resumed_run_keeps_the_csv_history_and_its_wandb_run(tmp_path, cache_dir, monkeypatch):
    from tests.test_resume import Killed
    from vidreid.runs.train import run_train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")

    def cfg(*extra):
        return compose("train", tiny_overrides(
            cache_dir, "trainer.max_epochs=2", "test=false", "trainer.log_every_n_steps=1", "logger=wandb",
            "+trainer.limit_train_batches=2", "sampler.num_identities=2", *extra), output_dir=tmp_path)  # fmt: skip

    kill = ["+callbacks.kill._target_=tests.test_resume.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=1"]
    with pytest.raises(Killed):
        run_train(cfg(*kill))
    path = tmp_path / "csv" / "metrics.csv"
    before = _rows(path)
    val_before = [r for r in before if r.get("val/mAP")]
    assert len(val_before) == 1 and val_before[0]["epoch"] == "0"  # epoch 1 validated, epoch 2 killed
    first_runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(first_runs) == 1
    run_train(cfg("ckpt_path=last"))
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1  # the resumed job: same W&B run id
    after = _rows(path)
    val = [r for r in after if r.get("val/mAP")]
    assert [r["epoch"] for r in val] == ["0", "1"]
    assert val[0]["val/mAP"] == val_before[0]["val/mAP"]  # the epoch-1 row of the first process survived
    # each training step appears once (the killed epoch's step row was replaced by the replay's) and in order
    step_rows = [int(r["step"]) for r in after if r.get("train/loss_step")]
    assert step_rows == [0, 1, 2, 3]
    assert "lr-Adam/pg1" in after[0]  # columns of both processes are in the header


def test_fresh_csv_logger_without_previous_file_is_lightnings(tmp_path):
    from vidreid.runs.loggers import ResumableCSVLogger

    lg = ResumableCSVLogger(tmp_path, name="csv", version="")
    lg.log_metrics({"a": 1.0}, step=0)
    lg.log_metrics({"b": 2.0}, step=1)
    lg.save()
    assert _rows(tmp_path / "csv" / "metrics.csv") == [{"a": "1.0", "b": "", "step": "0"},
                                                      {"a": "", "b": "2.0", "step": "1"}]  # fmt: skip
    lg2 = ResumableCSVLogger(tmp_path, name="csv", version="")  # a resumed process restarting at step 1
    lg2.log_metrics({"c": 3.0}, step=1)
    lg2.save()
    assert _rows(tmp_path / "csv" / "metrics.csv") == [{"a": "1.0", "b": "", "c": "", "step": "0"},
                                                      {"a": "", "b": "", "c": "3.0", "step": "1"}]  # fmt: skip


def test_wandb_run_name_from_experiment_and_overrides():
    from vidreid.runs.loggers import wandb_run_name

    assert wandb_run_name("default", []) == "default"
    assert wandb_run_name(None, []) == "train"
    name = wandb_run_name("mars_psta", ["optimizer.lr=3e-4", "+aggregator.foo=1", "paths.data_dir=/d",
                                        "hydra.run.dir=x", "logger=wandb", "experiment=mars_psta", "seed=2"])  # fmt: skip
    assert name == "mars_psta,aggregator.foo=1,optimizer.lr=3e-4,seed=2"
    long = wandb_run_name("e", [f"k{i}=v" for i in range(100)], max_len=40)
    assert len(long) == 40 and long.endswith("…")


def test_wandb_resume_id_picks_the_latest_run_folder(tmp_path):
    from vidreid.runs.loggers import wandb_resume_id

    assert wandb_resume_id(tmp_path) is None
    (tmp_path / "wandb" / "offline-run-20260101_100000-aaaa1111").mkdir(parents=True)
    (tmp_path / "wandb" / "run-20260101_120000-bbbb2222").mkdir()
    (tmp_path / "wandb" / "latest-run").mkdir()
    assert wandb_resume_id(tmp_path) == "bbbb2222"
    (tmp_path / "wandb" / "offline-run-20260102_000000-cccc3333").mkdir()
    assert wandb_resume_id(tmp_path) == "cccc3333"


def test_build_loggers_names_wandb_runs_and_resumes_the_same_id(tmp_path, monkeypatch):
    from vidreid.runs.common import build_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose("train", ["logger=wandb", "optimizer.lr=3e-4"], output_dir=tmp_path)
    wb = next(lg for lg in build_loggers(cfg) if lg.__class__.__name__ == "WandbLogger")
    assert wb._wandb_init["name"] == "default,optimizer.lr=3e-4"  # was "train" for every run
    assert wb._wandb_init.get("id") is None
    (tmp_path / "wandb" / "offline-run-20260101_100000-abcd1234").mkdir(parents=True)
    cfg = compose("train", ["logger=wandb", "ckpt_path=last"], output_dir=tmp_path)
    wb = next(lg for lg in build_loggers(cfg) if lg.__class__.__name__ == "WandbLogger")
    assert wb._wandb_init["id"] == "abcd1234" and wb._wandb_init["resume"] == "allow"
