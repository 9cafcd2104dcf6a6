"""Training run logic (called by the top-level ``train.py``)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vidreid.engine.lit_module import ReIDLitModule
from vidreid.engine.progress import quiet_lightning_console
from vidreid.runs.common import (
    build_callbacks,
    build_loggers,
    log,
    output_dir,
    print_config,
    resolve_ckpt_path,
    test_metrics,
    val_metrics,
    write_metrics,
)
from vidreid.runs.launch import multirun_safe_strategy
from vidreid.runs.loggers import finish_wandb
from vidreid.runtime.precision import check_cpu_precision


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
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        log.warning(msg)  # a sweep that optimises nothing
    else:
        log.debug(msg)  # a single run returns nothing to anyone: no warning
    return None


def run_train(cfg: DictConfig) -> tuple[dict[str, Any], ReIDLitModule]:
    """Fit and test per ``cfg``; write ``<run_dir>/metrics.json``. Returns (metrics, module).

    The datamodule (``cfg.data``) and the LightningModule (``cfg.model``, built with the dataset's number of
    training identities) are Hydra-instantiated; both save their hyper-parameters into every checkpoint.
    """
    quiet_lightning_console()  # Lightning's INFO lines once (stdout + log file), no litlogger/litmodels tips
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")
    print_config(cfg)
    run_dir = output_dir(cfg)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module: ReIDLitModule = instantiate(cfg.model, num_classes=datamodule.num_classes)
    if cfg.get("init_ckpt"):  # fine-tuning start: the weights only (a resume is ckpt_path)
        from vidreid.runtime.checkpoint_io import load_init_weights

        fresh = load_init_weights(module, cfg.init_ckpt)
        log.info("initialised from %s (weights only)%s", cfg.init_ckpt,
                 f"; left at their initialisation: {fresh}" if fresh else "")  # fmt: skip
    multirun_safe_strategy(cfg)  # --multirun + strategy=ddp would re-run the sweep in child ranks
    check_cpu_precision(cfg.trainer)  # bf16 on a CPU without native bf16: warn, suggest 32-true
    loggers = build_loggers(cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
    metrics: dict[str, Any] = {}
    try:
        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), run_dir),
                        weights_only=True)  # a resumed checkpoint is tensors and plain containers only
            metrics.update(val_metrics(trainer))
        if cfg.get("test", True):
            ckpt = None
            if cfg.get("test_ckpt", "last") == "best" and trainer.checkpoint_callback is not None:
                ckpt = trainer.checkpoint_callback.best_model_path or None
                if ckpt is None:
                    log.warning("test_ckpt=best but no best checkpoint was saved; testing the final weights")
            trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
            metrics.update(test_metrics(trainer))
        if trainer.is_global_zero:
            threads = datamodule.fit_threads if datamodule.fit_threads is not None else datamodule.stage_threads
            write_metrics(metrics, run_dir / "metrics.json", title=f"{cfg.task_name}: {datamodule.data.name}",
                          threads=threads)  # fmt: skip
    finally:
        finish_wandb(loggers)
    return metrics, module
