"""Sweeps (grid, Optuna, W&B) and multi-process launch options: the multirun + strategy=ddp guard, the
SLURM launcher config, SyncBatchNorm."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from tests.conftest import REPO, compose
from tests.tiny import PYTHON, subprocess_env, tiny_cache, tiny_overrides


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


def _run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYTHON, "train.py", *args], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    return proc


def _job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def test_grid_sweep_runs_each_job_in_its_own_dir(tmp_path, cache_dir):
    """sweeps/grid.yaml with a 2-point lr axis: two jobs, each with its own folder, overrides and metrics."""
    sweep_dir = tmp_path / "grid"
    _run(["-m", "--config-dir", "sweeps", "--config-name", "grid", *tiny_overrides(cache_dir),
          "aggregator=temporal_avg", "optimizer.lr=1e-3,2e-3", "++trainer.fast_dev_run=true",
          f"hydra.sweep.dir={sweep_dir}"])  # fmt: skip
    jobs = _job_dirs(sweep_dir)
    assert [p.name for p in jobs] == ["0", "1"]
    lrs = []
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert 0.0 <= metrics["val/mAP"] <= 1.0 and 0.0 <= metrics["val/rank1"] <= 1.0
        assert not any(k.startswith("test/") for k in metrics), "grid.yaml sets test=false"
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        lrs.append(next(float(o.split("=")[1]) for o in overrides if o.startswith("optimizer.lr=")))
        assert OmegaConf.load(job / ".hydra" / "config.yaml").experiment_name == "sweep_grid"
    assert lrs == [1e-3, 2e-3]


def test_optuna_sweep_two_trials_returns_the_optimized_metric(tmp_path, cache_dir):
    """sweeps/optuna.yaml, 2 TPE trials: each trial has its own folder and metrics, and Optuna's best value
    is the larger of the trials' val/mAP (so train.py returned the configured metric)."""
    sweep_dir = tmp_path / "optuna"
    proc = _run(["-m", "--config-dir", "sweeps", "--config-name", "optuna", *tiny_overrides(cache_dir),
                 "hydra.sweeper.n_trials=2", "++trainer.fast_dev_run=true", f"hydra.sweep.dir={sweep_dir}"])  # fmt: skip
    jobs = _job_dirs(sweep_dir)
    assert [p.name for p in jobs] == ["0", "1"], proc.stderr[-2000:]
    values, sampled = [], []
    for job in jobs:
        values.append(json.loads((job / "metrics.json").read_text())["val/mAP"])
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        sampled.append({o.split("=")[0] for o in overrides})
    for keys in sampled:  # the search space of sweeps/optuna.yaml (clip.seq_len is fixed by the TINY overrides)
        assert {"optimizer.lr", "optimizer.weight_decay", "loss.triplet_margin", "data.transforms.erasing_p"} <= keys
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values), abs=1e-6)


def test_optimized_value_is_a_float_or_a_clear_error(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    from vidreid.train import optimized_value

    cfg = compose("train", ["optimized_metric=val/rank1"], output_dir=tmp_path)
    assert optimized_value(cfg, {"val/rank1": 0.25, "val/mAP": 0.5}) == 0.25
    assert optimized_value(cfg, {"val/mAP": 0.5}) is None  # basic sweeper / single run: warning only
    assert "BasicSweeper" in HydraConfig.get().sweeper._target_
    cfg = compose("train", ["optimized_metric=val/rank1", "hydra/sweeper=optuna"], output_dir=tmp_path)
    with pytest.raises(KeyError, match=r"optimized_metric='val/rank1'.*val/mAP"):
        optimized_value(cfg, {"val/mAP": 0.5})


def test_wandb_sweep_file_parameters_are_valid_overrides(tmp_path):
    """Every parameter of sweeps/wandb.yaml is an existing config key; the command passes the sampled
    values through ${args_no_hyphens} to train.py with online W&B."""
    spec = yaml.safe_load((REPO / "sweeps" / "wandb.yaml").read_text())
    assert spec["program"] == "train.py" and "${args_no_hyphens}" in spec["command"]
    assert "logger=wandb" in spec["command"] and spec["metric"] == {"name": "val/mAP", "goal": "maximize"}
    overrides = [c for c in spec["command"] if "=" in c and not c.startswith("${")]  # the fixed overrides
    for key, p in spec["parameters"].items():
        value = p["values"][-1] if "values" in p else p["max"]
        overrides.append(f"{key}={value}")
    cfg = compose("train", overrides, output_dir=tmp_path)
    assert cfg.logger.wandb.offline is False and cfg.logger.wandb.group == "sweep_wandb"
    for key, p in spec["parameters"].items():
        expected = p["values"][-1] if "values" in p else p["max"]
        assert OmegaConf.select(cfg, key) == pytest.approx(expected), key


# ------------------------------------------------------------------------------------------ launch options
def _set_mode(cfg, mode: str, launcher: str = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode[mode]
        cfg.hydra.launcher = {"_target_": launcher}
    HydraConfig.instance().set_config(cfg)


@pytest.mark.parametrize(
    "mode,launcher,devices,env,expected",
    [
        ("MULTIRUN", "basic", 2, {}, "ddp_spawn"),  # the broken combination: switched
        ("MULTIRUN", "basic", "auto", {}, "ddp_spawn"),
        ("RUN", "basic", 2, {}, "ddp"),  # single runs re-execute argv safely
        ("MULTIRUN", "basic", 1, {}, "ddp"),  # one device: no child process
        ("MULTIRUN", "submitit", 2, {}, "ddp"),  # SLURM starts every rank itself
        ("MULTIRUN", "basic", 2, {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}, "ddp"),  # torchrun
    ],
)
def test_multirun_with_ddp_switches_to_ddp_spawn(tmp_path, monkeypatch, mode, launcher, devices, env, expected):
    from vidreid.launch import multirun_safe_strategy

    for k in ("LOCAL_RANK", "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = compose("train", ["trainer=ddp", f"trainer.devices={devices}"], output_dir=tmp_path)
    target = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher" if launcher == "submitit"
              else "hydra._internal.core_plugins.basic_launcher.BasicLauncher")  # fmt: skip
    _set_mode(cfg, mode, target)
    changed = multirun_safe_strategy(cfg)
    assert cfg.trainer.strategy == expected
    assert changed == (expected if expected != "ddp" else None)


def test_multirun_ddp_job_runs_once_under_ddp_spawn(tmp_path, cache_dir):
    """A real `train.py -m ... trainer=ddp` with 2 CPU ranks: the job is switched to ddp_spawn, trains and
    validates (metrics gathered from both ranks), and the sweep is launched exactly once (with strategy=ddp
    the child rank would re-launch it)."""
    sweep_dir = tmp_path / "ddp_sweep"
    proc = _run(["-m", *tiny_overrides(cache_dir), "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
                 "trainer.precision=32-true", "trainer.max_epochs=1", "+trainer.limit_train_batches=1", "test=false",
                 "logger=none", "callbacks=none", f"hydra.sweep.dir={sweep_dir}"], timeout=400)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "using strategy=ddp_spawn" in out
    assert out.count("Launching 1 jobs locally") == 1
    assert [p.name for p in _job_dirs(sweep_dir)] == ["0"]
    metrics = json.loads((sweep_dir / "0" / "metrics.json").read_text())
    assert 0.0 <= metrics["val/mAP"] <= 1.0 and 0.0 <= metrics["val/rank1"] <= 1.0


def test_slurm_launcher_config(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher (sweep extra)")
    cfg = compose("train", ["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                            "hydra.launcher.partition=gpu"], output_dir=tmp_path)  # fmt: skip
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu"


def test_sync_batchnorm_and_precision_options(tmp_path):
    """trainer=ddp trainer.sync_batchnorm=true converts the network's BatchNorm layers to SyncBatchNorm;
    trainer=ddp defaults to bf16-mixed; checkpoints go through the atomic CheckpointIO."""
    import torch
    from hydra.utils import instantiate

    from vidreid.checkpoint_io import AtomicCheckpointIO
    from vidreid.lit_module import ReIDLitModule

    cfg = compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.sync_batchnorm=true",
                            "backbone=resnet18", "callbacks=none", "logger=none"], output_dir=tmp_path)  # fmt: skip
    assert cfg.trainer.precision == "bf16-mixed"
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    module = ReIDLitModule.from_config(cfg, num_classes=4)
    synced = trainer.strategy._layer_sync.apply(module)
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
