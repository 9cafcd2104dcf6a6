"""Training run logic (called by the top-level ``train.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vidreid.launch import multirun_safe_strategy
from vidreid.lit_module import ReIDLitModule
from vidreid.run_utils import (
    build_callbacks,
    build_loggers,
    collect_test_metrics,
    finish_wandb,
    log,
    output_dir,
    print_config,
    write_metrics,
)


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


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value ``train.py`` returns to a sweeper: ``metrics[cfg.optimized_metric]`` as a float.

    When the run did not produce that metric (e.g. no validation ran), a single run or a grid sweep gets
    ``None`` with a warning; under the Optuna sweeper, which needs a number, it is an error.

    Raises:
        KeyError: the Optuna sweeper is in use and the metric is missing (the message lists the metrics).
    """
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if metrics.get(name) is not None:
        return float(metrics[name])
    msg = (f"optimized_metric={name!r} was not produced by this run; it has {sorted(metrics)}. Make sure "
           "validation runs (trainer.check_val_every_n_epoch <= trainer.max_epochs) or choose another metric.")
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized() and "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower():
        raise KeyError(msg)
    log.warning(msg)
    return None


def run_train(cfg: DictConfig) -> tuple[dict[str, Any], ReIDLitModule]:
    """Fit and test per ``cfg``; write ``<run_dir>/metrics.json``. Returns (metrics, module)."""
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    print_config(cfg)
    run_dir = output_dir(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = ReIDLitModule.from_config(cfg, datamodule.num_classes)
    multirun_safe_strategy(cfg)  # --multirun + strategy=ddp would re-run the sweep in child ranks
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
    metrics: dict[str, Any] = {}
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), run_dir))
            metrics.update({k: v.item() for k, v in trainer.callback_metrics.items() if k.startswith("val/")})
        if cfg.get("test", True):
            ckpt = None
            if cfg.get("test_ckpt", "last") == "best" and trainer.checkpoint_callback is not None:
                ckpt = trainer.checkpoint_callback.best_model_path or None
                if ckpt is None:
                    log.warning("test_ckpt=best but no best checkpoint was saved; testing the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=ckpt)
            metrics.update(collect_test_metrics(module, trainer))
        if trainer.is_global_zero:
            write_metrics(metrics, run_dir / "metrics.json", title=f"{cfg.task_name}: {datamodule.data.name}")
    finally:
        finish_wandb(loggers)
    return metrics, module
