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


def _readme_sweep_commands() -> list[str]:
    """The `python train.py ... -m ...` lines of the Sweeps section of docs/operations.md (where the README sends
    its readers), without their trailing comments."""
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("\n## Sweeps", 1)[1].split("\n## ", 1)[0]
    cmds = []
    for line in section.splitlines():
        line = line.split("  #", 1)[0].strip()
        if line.startswith("python train.py") and " -m" in f" {line} ":
            cmds.append(line)
    return cmds


# overrides appended to each README command: the tiny set, one batch per job, logs under the test's folder. Not
# hydra.sweep.dir: the default sweep dir must resolve (it did not: every --multirun died on
# `InterpolationResolutionError: HydraConfig was not set, full_key: hydra.sweep.dir`)
def _sweep_tiny(cache_dir: Path, log_dir: Path) -> list[str]:
    keep = [o for o in tiny_overrides(cache_dir) if not o.startswith(("aggregator.", "backbone.last_stride"))]
    return [*keep, "backbone.last_stride=1", "++trainer.fast_dev_run=true", "hydra.sweeper.n_trials=2",
            f"paths.log_dir={log_dir}"]  # fmt: skip


def test_readme_sweep_commands_run_verbatim(tmp_path, cache_dir):
    """Every multirun command of the documented Sweeps section, as written plus tiny overrides: each launched job
    writes a metrics.json with its validation (or, for plain multiruns, test) numbers, in the folder the text names
    (multiruns/grid_<time>/<job>, optuna_<time>/<job>, or <time>/<job> for a plain -m)."""
    import re
    import shlex

    cmds = _readme_sweep_commands()
    assert len(cmds) >= 4, cmds
    for i, cmd in enumerate(cmds):
        log_dir = tmp_path / f"cmd{i}"
        args = shlex.split(cmd)[2:]  # after `python train.py`
        over = [o for o in _sweep_tiny(cache_dir, log_dir) if "optuna" in cmd or not o.startswith("hydra.sweeper")]
        proc = _run([*args, *over], timeout=900)
        launched = sum(int(n) for n in re.findall(r"Launching (\d+) jobs locally", proc.stdout + proc.stderr))
        jobs = sorted(p.parent for p in log_dir.glob("train/multiruns/*/*/.hydra"))
        assert launched >= 1 and len(jobs) == launched, (cmd, launched, jobs)
        prefix = "grid_" if "hparams_search=grid" in cmd else "optuna_" if "hparams_search=optuna" in cmd else ""
        for job in jobs:
            assert re.fullmatch(prefix + r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", job.parent.name), job
            assert job.name.isdigit(), job
        values = []
        for job in jobs:
            metrics = json.loads((job / "metrics.json").read_text())
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            if "hparams_search" in cmd:  # searches compare jobs on validation (held-out training ids); no test
                assert cfg.experiment_name in ("sweep_grid", "sweep_optuna") and cfg.test is False
                assert not any(k.startswith("test/") for k in metrics), metrics
            key = cfg.optimized_metric if "hparams_search" in cmd else "test/mAP"
            assert 0.0 <= metrics[key] <= 1.0, (cmd, job, metrics)
            values.append(metrics[key])
            overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
            assert all(o in overrides for o in args[1:] if "," not in o and "sweeper" not in o), (args, overrides)
        if "optuna" in cmd:  # train.py returned the configured metric to the sampler: best = the best job
            best = yaml.safe_load(next(log_dir.glob("train/multiruns/*/optimization_results.yaml")).read_text())
            assert best["best_value"] == pytest.approx(max(values), abs=1e-6)
            sampled = {o.split("=")[0] for o in yaml.safe_load((jobs[0] / ".hydra" / "overrides.yaml").read_text())}
            assert {"optimizer.lr", "optimizer.weight_decay", "data.transforms.erasing_p"} <= sampled, sampled
        swept = [o for o in args if "=" in o and "," in o.split("=", 1)[1] and o.startswith("optimizer.lr")]
        for o in swept:  # a command-line sweep axis: one job per value, in order
            key, vals = o.split("=", 1)
            got = [next(x.split("=", 1)[1] for x in yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text())
                        if x.startswith(key + "=")) for j in jobs]  # fmt: skip
            assert sorted(map(float, set(got))) == sorted(map(float, vals.split(","))), (o, got)


def test_optimized_value_is_a_float_or_a_clear_error(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    from vidreid.runs.train import optimized_value

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
    from vidreid.runs.launch import multirun_safe_strategy

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

    from vidreid.runtime.checkpoint_io import AtomicCheckpointIO

    cfg = compose("train", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.sync_batchnorm=true",
                            "backbone=resnet18", "callbacks=none", "logger=none"], output_dir=tmp_path)  # fmt: skip
    assert cfg.trainer.precision == "bf16-mixed"
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    module = instantiate(cfg.model, num_classes=4)
    synced = trainer.strategy._layer_sync.apply(module)
    kinds = {type(m) for m in synced.modules()}
    assert torch.nn.SyncBatchNorm in kinds and torch.nn.BatchNorm2d not in kinds
