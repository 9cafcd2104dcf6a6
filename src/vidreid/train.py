"""Training run logic (called by the top-level ``train.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vidreid.lit_module import ReIDLitModule
from vidreid.run_utils import (
    METRIC_KEYS,
    build_callbacks,
    build_loggers,
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


def run_train(cfg: DictConfig) -> tuple[dict[str, Any], ReIDLitModule]:
    """Fit and test per ``cfg``; write ``<run_dir>/metrics.json``. Returns (metrics, module)."""
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    print_config(cfg)
    run_dir = output_dir(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = ReIDLitModule.from_config(cfg, datamodule.num_classes)
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
            metrics.update({f"test/{k}": v for k, v in module.last_test_results.items() if k in METRIC_KEYS})
        if trainer.is_global_zero:
            write_metrics(metrics, run_dir / "metrics.json", title=f"{cfg.task_name}: {datamodule.data.name}")
    finally:
        finish_wandb(loggers)
    return metrics, module
