"""Checkpoint evaluation logic (called by the top-level ``evaluate.py``)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vidreid.callbacks import WandbDashboard
from vidreid.evaluation.metric import ReIDMetric
from vidreid.launch import multirun_safe_strategy
from vidreid.lit_module import ReIDLitModule
from vidreid.run_utils import (
    build_callbacks,
    build_loggers,
    collect_test_metrics,
    finish_wandb,
    output_dir,
    print_config,
    write_metrics,
)
from vidreid.train import resolve_ckpt_path


def load_module(ckpt_path: str, evaluation: DictConfig | dict | None = None, map_location: str = "cpu") -> ReIDLitModule:
    """Rebuild the LightningModule from a checkpoint's saved hyper-parameters and weights.

    Args:
        ckpt_path: a ``.ckpt`` written by ``train.py``.
        evaluation: evaluation options overriding the checkpoint's (re-ranking, st, distance, ...).
    Raises:
        FileNotFoundError: missing file; KeyError: a checkpoint without vidreid hyper-parameters.
    """
    ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    hp = ckpt.get("hyper_parameters")
    if not hp or "model" not in hp:
        raise KeyError(f"{ckpt_path} has no vidreid hyper-parameters (expected a checkpoint written by train.py)")
    if evaluation is not None:
        hp = {**hp, "evaluation": OmegaConf.to_container(evaluation, resolve=True) if isinstance(evaluation, DictConfig) else dict(evaluation)}
    keys = ("model", "optimizer", "scheduler", "loss", "evaluation", "num_classes", "backbone_lr_mult", "data_settings")
    module = ReIDLitModule(**{k: hp[k] for k in keys if k in hp})
    module.load_state_dict(ckpt["state_dict"])
    return module


def color_histogram_metrics(cfg: DictConfig, datamodule) -> dict[str, float]:
    """The training-free colour-histogram baseline on the configured test split (HSV, 6 stripes)."""
    from vidreid.evaluation.baselines import color_histogram_embeddings

    datamodule.setup("test")
    data = datamodule.data
    emb = color_histogram_embeddings(data.query + data.gallery, size=tuple(cfg.data.transforms.size))
    metric = ReIDMetric(metric="cosine", append_query_to_gallery=cfg.evaluation.append_query_to_gallery)
    is_query = torch.arange(len(emb)) < len(data.query)
    items = data.query + data.gallery
    metric.update(emb, torch.tensor([t.pid for t in items]), torch.tensor([t.camid for t in items]), is_query)
    return metric.compute()


def run_evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on the configured dataset; write ``<run_dir>/metrics.json``.

    ``ckpt_path=untrained`` evaluates the configured network with its random initialisation (seeded);
    ``baseline=color_histogram`` evaluates the colour-histogram baseline instead of a network.
    """
    pl.seed_everything(cfg.seed, workers=True)
    print_config(cfg, ("data", "evaluation", "trainer"))
    run_dir = output_dir(cfg)
    datamodule = instantiate(cfg.data)
    if cfg.get("baseline"):
        if cfg.baseline != "color_histogram":
            raise ValueError(f"baseline={cfg.baseline!r}: expected color_histogram or null")
        metrics = {f"test/{k}": v for k, v in color_histogram_metrics(cfg, datamodule).items()}
        write_metrics(metrics, run_dir / "metrics.json", title="colour-histogram baseline")
        return metrics
    if cfg.ckpt_path == "untrained":
        datamodule.setup("test")
        module = ReIDLitModule.from_config(cfg, datamodule.num_classes)
        ckpt = "untrained network"
    else:
        ckpt = resolve_ckpt_path(cfg.ckpt_path, run_dir)
        module = load_module(ckpt, cfg.evaluation)
    multirun_safe_strategy(cfg)
    loggers = build_loggers(cfg)
    extra: list[pl.Callback] = []
    if cfg.get("export", False):  # embeddings.npz + ranked_lists.csv next to metrics.json
        from vidreid.export import EmbeddingExport

        extra.append(EmbeddingExport(run_dir, topk=cfg.get("export_topk", 10)))
    if loggers:  # evaluate.yaml has no callbacks; the dashboard is a no-op unless a WandbLogger is attached
        extra.append(WandbDashboard())
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg, extra))
    try:
        trainer.test(module, datamodule=datamodule)
        metrics = collect_test_metrics(module, trainer)
        if trainer.is_global_zero:
            write_metrics(metrics, run_dir / "metrics.json", title=f"evaluate: {ckpt}")
            if cfg.get("export_onnx", False):
                from vidreid.onnx_export import export_onnx

                t, size = int(cfg.clip.seq_len), tuple(cfg.data.transforms.size)
                export_onnx(module, run_dir / f"model_T{t}_{size[0]}x{size[1]}.onnx", seq_len=t, size=size)
    finally:
        finish_wandb(loggers)
    return metrics
