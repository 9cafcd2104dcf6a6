"""Shared pieces of the train / evaluate entry points: seeding, loggers, callbacks, result files."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from vidreid.evaluation.metric import METRIC_NAMES
from vidreid.runs.loggers import start_wandb_logger, wandb_logger_config, wandb_logger_kwargs

log = logging.getLogger("vidreid")



def is_rank_zero() -> bool:
    """Global rank 0 of a distributed launch, from the environment Lightning reads (``RANK``, ``LOCAL_RANK``,
    ``SLURM_PROCID``, ...; :data:`lightning.pytorch.utilities.rank_zero_only.rank`); true for a single process.
    Under ``torchrun`` or SLURM every rank runs the entry point: console output about the run comes from rank 0."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


def config_summary(cfg: DictConfig) -> str:
    """A few lines naming the run: task, experiment, dataset, network, schedule, run folder (the full tree is in
    ``<run_dir>/config_tree.txt``). Values that cannot be resolved print as ``?``."""

    def get(path: str) -> str:
        try:
            value = OmegaConf.select(cfg, path, throw_on_missing=True)
        except Exception:  # noqa: BLE001 - an interpolation or a mandatory value that is missing
            return "?"
        if isinstance(value, str) and "." in value and path.endswith("_target_"):
            return value.rsplit(".", 1)[-1]
        return "?" if value is None else str(value)

    lines = [
        f"{get('task_name')}: experiment {get('experiment_name')}, seed {get('seed')}",
        f"  dataset {get('dataset._target_')} | backbone {get('backbone.name')} | aggregator "
        f"{get('aggregator._target_')} | T {get('clip.seq_len')} | size {get('data.transforms.size')}",
        f"  trainer {get('trainer.accelerator')} x{get('trainer.devices')} {get('trainer.precision')} | epochs "
        f"{get('trainer.max_epochs')} (validation every {get('trainer.check_val_every_n_epoch')})",
        f"  run folder {get('paths.output_dir')}",
    ]
    return "\n".join(lines)


def print_config(cfg: DictConfig, fields: tuple[str, ...] = ("data", "model", "loss", "optimizer", "scheduler", "trainer", "evaluation"),
                 run_dir: Path | None = None) -> Path | None:  # fmt: skip
    """Write the resolved config as a tree (one branch per top-level node in ``fields``) to
    ``<run_dir>/config_tree.txt`` and log a short summary (:func:`config_summary`) — global rank 0 only.

    Args:
        run_dir: where the tree goes; default ``cfg.paths.output_dir`` (no file when neither is set).

    Returns:
        The tree file, or ``None`` (another rank, or no run folder).
    """
    if not is_rank_zero():
        return None
    log.info("config:\n%s", config_summary(cfg))
    if run_dir is None:
        out = OmegaConf.select(cfg, "paths.output_dir", default=None)
        if not out:
            return None
        run_dir = Path(out)
    tree = Tree("config", guide_style="dim")
    for f in fields:
        if f in cfg:
            node = cfg[f]
            try:
                text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
            except Exception:  # noqa: BLE001 - written as it is: the run itself reports the bad value
                text = OmegaConf.to_yaml(node, resolve=False) if isinstance(node, DictConfig) else str(node)
            tree.add(f).add(text)
    path = Path(run_dir) / "config_tree.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        Console(file=fh, width=120, no_color=True).print(tree)
    return path


def build_loggers(cfg: DictConfig) -> list:
    """Instantiate every logger under ``cfg.logger`` (empty list if none)."""
    if not cfg.get("logger"):
        return []

    out = []
    for c in cfg.logger.values():
        if isinstance(c, DictConfig) and "_target_" in c:
            if str(c._target_).endswith("WandbLogger"):  # online without key/network: offline, never hang
                c = wandb_logger_config(c)
                # name from experiment + overrides; a resumed run continues its W&B run (same id)
                out.append(start_wandb_logger(c, **wandb_logger_kwargs(cfg, c.get("save_dir") or output_dir(cfg))))
            else:
                out.append(instantiate(c))
    return out


def build_callbacks(cfg: DictConfig, extra: Sequence[pl.Callback] = ()) -> list[pl.Callback]:
    """Instantiate every callback under ``cfg.callbacks``, then append each of ``extra`` (callbacks a run adds in
    code) unless the config already has one of its class; those with ``set_run_config`` (the W&B dashboard)
    receive the resolved run config."""
    nodes = (cfg.get("callbacks") or {}).values()
    callbacks = [instantiate(c) for c in nodes if isinstance(c, DictConfig) and "_target_" in c]
    callbacks += [cb for cb in extra if not any(type(c) is type(cb) for c in callbacks)]
    if not cfg.get("logger"):  # LearningRateMonitor refuses to run without a logger (logger=none)
        callbacks = [cb for cb in callbacks if not isinstance(cb, pl.callbacks.LearningRateMonitor)]
    if any(hasattr(cb, "set_run_config") for cb in callbacks):
        try:
            resolved = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # noqa: BLE001 - e.g. a mandatory value left out: log it unresolved
            resolved = OmegaConf.to_container(cfg, resolve=False)
        for cb in callbacks:
            if hasattr(cb, "set_run_config"):
                cb.set_run_config(resolved)
    return callbacks


def test_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """``{"test/<name>": value}`` of the last ``trainer.test``, from the values the LightningModule logged
    (``trainer.callback_metrics``; also right under ``ddp_spawn``, where the test ran in worker processes): every
    name of :data:`~vidreid.evaluation.metric.METRIC_NAMES`, plain and, when enabled, its ``rerank/``, ``st/`` and
    ``st_rerank/`` variants."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()
            if k.startswith("test/") and k.rsplit("/", 1)[-1] in METRIC_NAMES}  # fmt: skip


def val_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """``{"val/<name>": value}`` of the last validation (see :func:`test_metrics`)."""
    return {k: float(v) for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") and k.rsplit("/", 1)[-1] in METRIC_NAMES}  # fmt: skip


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` → ``<run_dir>/checkpoints/last.ckpt``; other values must be existing files.

    Raises:
        FileNotFoundError: the checkpoint does not exist (the message names the path).
    """
    if not ckpt_path:
        return None
    path = run_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = " (ckpt_path=last reads <hydra.run.dir>/checkpoints/last.ckpt: set hydra.run.dir to the old run)" if ckpt_path == "last" else ""
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    return str(path)


def output_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def short_path(path: str | Path) -> str:
    """A checkpoint path short enough for a table title: ``<run folder>/checkpoints/<file>`` for a path inside a
    run's ``checkpoints/`` folder, else the file's parent folder and name (any other string unchanged)."""
    p = Path(str(path))
    if p.suffix != ".ckpt":
        return str(path)
    if p.parent.name == "checkpoints" and p.parent.parent.name:
        return str(Path(p.parent.parent.name, "checkpoints", p.name))
    return str(Path(p.parent.name, p.name)) if p.parent.name else p.name


def write_metrics(metrics: dict[str, Any], path: Path, title: str = "results", threads: int | None = None) -> None:
    """Print a metrics table and write ``metrics.json`` (floats; numbers in [0, 1] for CMC/mAP/mINP) plus, when
    given, ``threads``: the torch intra-op thread count the run trained (or evaluated) with, an int — the float
    summation order, so the last digits, follow it.

    The title is printed on its own line above the table (a long title is not wrapped into the table's narrow
    width); a run without metrics (e.g. ``test=false`` and no validation) prints no table, only a log line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) or hasattr(v, "item")}
    payload: dict[str, Any] = dict(clean)
    if threads is not None:
        payload["threads"] = int(threads)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)
    if not clean:
        log.info("%s: no test or validation metrics (not tested, no validation ran)", title)
    else:
        table = Table()
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k, v in sorted(clean.items()):
            table.add_row(k, f"{v:.4f}")
        console = Console()
        console.print(title, soft_wrap=True, highlight=False, markup=False)
        console.print(table)
    log.info("metrics written to %s", path)
