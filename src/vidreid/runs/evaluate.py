"""Checkpoint evaluation logic (called by the top-level ``evaluate.py``).

The checkpoint decides what was trained: its network (``ReIDLitModule.load_from_checkpoint``), input size, test
interpolation and clip length (the datamodule's saved hyper-parameters) are used, whatever the composed config
says; a value the user set explicitly on the command line (``data.transforms.size=``, ``clip.seq_len=``,
``aggregator=``, ``backbone=``, ``model.net.*=``, ``experiment=``) that differs from the checkpoint's is an error
naming both (:class:`vidreid.deploy.inference.SettingsConflict`). The dataset, test scheme and evaluation options
(re-ranking, st, distance) are the config's.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from vidreid.data.tracklet import query_in_gallery_applied
from vidreid.deploy.export import EmbeddingExport
from vidreid.deploy.inference import (
    CheckpointSettings,
    SettingsConflict,
    check_settings,
    checkpoint_settings,
    load_checkpoint,
    load_module,
    read_checkpoint,
)
from vidreid.engine.lit_module import ReIDLitModule
from vidreid.engine.progress import quiet_lightning_console, terminal_progress_bar
from vidreid.evaluation.metric import ReIDMetric
from vidreid.runs.common import (
    build_callbacks,
    build_loggers,
    log,
    output_dir,
    print_config,
    resolve_ckpt_path,
    short_path,
    test_metrics,
    write_metrics,
)
from vidreid.runs.launch import multirun_safe_strategy
from vidreid.runs.loggers import WandbDashboard, finish_wandb

# what a command-line override must touch to request a network / an input size / a clip length: the node itself,
# an ancestor of it (`data.transforms=...`), anything inside it (`aggregator.stripes=2`), or a group that sets it
_NET = ("model.net", ("backbone", "aggregator", "experiment"))
# network settings used only at test time (no parameters): a command-line value applies to the loaded checkpoint
TEST_TIME_NET_KEYS = ("flip_test", "test_feature")
_SIZE = ("data.transforms.size", ("experiment",))
_SEQ = ("clip.seq_len", ("experiment",))

MISSING_CKPT = ("evaluate.py needs a checkpoint: ckpt_path=<a .ckpt written by train.py> (e.g. "
                "ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt), ckpt_path=untrained (the configured "
                "network at its random initialisation), or baseline=color_histogram")


def _cli_keys() -> list[str]:
    """The keys the user set on the command line (``hydra.overrides.task``), ``[]`` outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    task = HydraConfig.get().overrides.get("task") or []
    return [str(o).split("=", 1)[0].lstrip("+~") for o in task]


def _requested(keys: list[str], what: tuple[str, tuple[str, ...]]) -> bool:
    node, groups = what
    for k in keys:
        if k == node or node.startswith(k + ".") or k.startswith(node + "."):
            return True
        if any(k == g or k.startswith(g + ".") or k.startswith(g + "/") for g in groups):
            return True
    return False


def _leaf_diff(a: Any, b: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    """Leaves present in both nested dicts that differ: ``[(key, a_value, b_value)]``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for k in a.keys() & b.keys():
            out += _leaf_diff(a[k], b[k], f"{prefix}.{k}")
        return sorted(out)
    norm = lambda v: tuple(v) if isinstance(v, list | tuple) else v  # noqa: E731
    return [] if norm(a) == norm(b) else [(prefix, a, b)]


def apply_checkpoint_settings(cfg: DictConfig, ckpt: dict[str, Any], where: str) -> CheckpointSettings:
    """Make ``cfg`` use the checkpoint's input size, test interpolation and clip length (in place).

    Raises:
        SettingsConflict: the command line asked for another input size, clip length or network (the message
            names the requested and the trained value).
    """
    settings = checkpoint_settings(ckpt, where)
    keys = _cli_keys()
    requested = {}
    if _requested(keys, _SIZE):
        requested["size"] = list(cfg.data.transforms.size)
    if _requested(keys, _SEQ):
        requested["seq_len"] = int(cfg.clip.seq_len)
    check_settings(requested, {"size": settings.size, "seq_len": settings.seq_len}, where)
    if _requested(keys, _NET):
        composed = OmegaConf.to_container(cfg.model.net, resolve=True)
        diff = [d for d in _leaf_diff(composed, dict(ckpt["hyper_parameters"]["net"]), "model.net")
                if not d[0].endswith("input_size") and d[0].split(".")[-1] not in TEST_TIME_NET_KEYS]  # fmt: skip
        if diff:
            lines = "; ".join(f"{k}: requested {a!r}, the checkpoint's network has {b!r}" for k, a, b in diff)
            raise SettingsConflict(f"{lines} ({where}). The network is rebuilt from the checkpoint: drop the "
                                   "aggregator/backbone/model overrides (or retrain with them).")
    with open_dict(cfg):
        cfg.data.transforms.size = list(settings.size)
        cfg.data.transforms.test_interpolation = settings.interpolation
        cfg.clip.seq_len = settings.seq_len
    log.info("evaluating with the checkpoint's input size %dx%d, T=%d, %s test resize (%s)",
             settings.size[0], settings.size[1], settings.seq_len, settings.interpolation, where)
    return settings


def color_histogram_metrics(cfg: DictConfig, datamodule) -> dict[str, float]:
    """The training-free colour-histogram baseline on the configured test split (HSV, 6 stripes)."""
    from vidreid.evaluation.baselines import color_histogram_embeddings

    datamodule.setup("test")
    data = datamodule.data
    emb = color_histogram_embeddings(data.query + data.gallery, size=tuple(cfg.data.transforms.size))
    append = cfg.evaluation.get("append_query_to_gallery")
    metric = ReIDMetric(
        distance="cosine", append_query_to_gallery=query_in_gallery_applied(data.query_in_gallery, append),
        average=cfg.evaluation.get("average", "valid"),
    )
    is_query = torch.arange(len(emb)) < len(data.query)
    items = data.query + data.gallery
    metric.update(emb, torch.tensor([t.pid for t in items]), torch.tensor([t.camid for t in items]), is_query)
    return metric.compute()


def _ckpt_path(cfg: DictConfig) -> str:
    try:
        value = cfg.get("ckpt_path")
    except MissingMandatoryValue:
        value = None
    if not value:
        raise ValueError(MISSING_CKPT)
    return str(value)


def run_evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on the configured dataset; write ``<run_dir>/metrics.json``.

    ``ckpt_path=untrained`` evaluates the configured network with its random initialisation (seeded);
    ``baseline=color_histogram`` evaluates the colour-histogram baseline instead of a network;
    ``test=false export_onnx=true`` only exports the checkpoint's graph (no test, no ``metrics.json``).

    Raises:
        ValueError: no ``ckpt_path`` (and no baseline), or ``test=false`` without ``export_onnx=true``;
        FileNotFoundError: the checkpoint does not exist;
        SettingsConflict: an explicit override contradicts the checkpoint (see the module docstring).
    """
    quiet_lightning_console()  # Lightning's INFO lines once (stdout + log file), no litlogger/litmodels tips
    pl.seed_everything(cfg.seed, workers=True)
    run_dir = output_dir(cfg)
    if cfg.get("embeddings"):  # score a saved embeddings.npz: no network, no frames
        from vidreid.deploy.score_npz import score_embeddings

        metrics = {f"test/{k}": v for k, v in score_embeddings(cfg.embeddings, cfg.evaluation).items()}
        write_metrics(metrics, run_dir / "metrics.json", title=f"scored {cfg.embeddings}")
        return metrics
    if cfg.get("baseline"):
        if cfg.baseline != "color_histogram":
            raise ValueError(f"baseline={cfg.baseline!r}: expected color_histogram or null")
        print_config(cfg, ("data", "evaluation"))
        metrics = {f"test/{k}": v for k, v in color_histogram_metrics(cfg, instantiate(cfg.data)).items()}
        write_metrics(metrics, run_dir / "metrics.json", title="colour-histogram baseline")
        return metrics
    ckpt_arg = _ckpt_path(cfg)
    if not cfg.get("test", True) and not cfg.get("export_onnx", False):
        raise ValueError("test=false without export_onnx=true: nothing to do (test=false skips the test, e.g. "
                         "`evaluate.py ckpt_path=... test=false export_onnx=true` only writes the ONNX graph)")
    settings: CheckpointSettings | None = None
    buf: dict[str, Any] | None = None
    if ckpt_arg != "untrained":
        ckpt_file = resolve_ckpt_path(ckpt_arg, run_dir)
        buf = load_checkpoint(read_checkpoint(ckpt_file), name=ckpt_file)  # parsed once (weights_only)
        settings = apply_checkpoint_settings(cfg, buf, ckpt_file)
    print_config(cfg, ("data", "evaluation", "trainer"))
    datamodule = instantiate(cfg.data)
    if buf is None:
        datamodule.setup("test")
        module: ReIDLitModule = instantiate(cfg.model, num_classes=datamodule.num_classes)
        ckpt = "untrained network"
    else:
        module = load_module(buf, evaluation=cfg.evaluation)
        keys = _cli_keys()
        test_time = {k: cfg.model.net[k] for k in TEST_TIME_NET_KEYS if f"model.net.{k}" in keys}
        if test_time:  # e.g. model.net.flip_test=true on a trained checkpoint
            module.net.set_test_time(**test_time)
            log.info("test-time network settings from the command line: %s", test_time)
        ckpt = ckpt_file
    multirun_safe_strategy(cfg)
    loggers = build_loggers(cfg)
    extra: list[pl.Callback] = [terminal_progress_bar()]  # rich on a terminal; nothing redrawn into log files
    color_weight = float((cfg.get("fusion") or {}).get("color_weight") or 0.0)
    if cfg.get("export", False) or color_weight > 0:  # embeddings.npz + ranked_lists.csv next to metrics.json
        extra.append(EmbeddingExport(run_dir, topk=cfg.get("export_topk", 10)))
    figures = run_dir / "figures" if cfg.get("figures", True) else None
    if loggers or figures:  # CMC curve + best/worst ranked lists: to W&B when attached, as PNGs into <run_dir>/figures
        extra.append(WandbDashboard(save_dir=str(figures) if figures else None))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg, extra))
    metrics: dict[str, Any] = {}
    try:
        if cfg.get("test", True):
            trainer.test(module, datamodule=datamodule)
            metrics = test_metrics(trainer)
            if color_weight > 0 and trainer.is_global_zero:  # appearance fusion with the colour histogram
                from vidreid.deploy.score_npz import fused_npz_metrics

                fused, _ = fused_npz_metrics(run_dir / "embeddings.npz", datamodule.data.query,
                                             datamodule.data.gallery, [color_weight], dict(cfg.evaluation),
                                             size=tuple(cfg.data.transforms.size))  # as baseline=color_histogram
                metrics.update({f"test/fused/{k}": v for k, v in fused[color_weight].items()})
                f = fused[color_weight]
                log.info("fused with the colour histogram (fusion.color_weight=%g): rank-1 %.4f, mAP %.4f%s",
                         color_weight, f["rank1"], f["mAP"], f"; re-ranked: rank-1 {f['rerank/rank1']:.4f}, mAP "
                         f"{f['rerank/mAP']:.4f}" if "rerank/mAP" in f else "")  # fmt: skip
            if trainer.is_global_zero:
                write_metrics(metrics, run_dir / "metrics.json", title=f"evaluate: {short_path(ckpt)}",
                              threads=datamodule.stage_threads)  # fmt: skip
        else:
            log.info("test=false: %s is not tested (no metrics.json); only the export runs", ckpt)
        if trainer.is_global_zero:
            if cfg.get("export_onnx", False):
                from vidreid.deploy.onnx_export import export_onnx

                t = settings.seq_len if settings else int(cfg.clip.seq_len)
                size = settings.size if settings else tuple(cfg.data.transforms.size)
                export_onnx(module, run_dir / f"model_T{t}_{size[0]}x{size[1]}.onnx", seq_len=t, size=size)
    finally:
        finish_wandb(loggers)
    return metrics


__all__ = ["MISSING_CKPT", "SettingsConflict", "apply_checkpoint_settings", "color_histogram_metrics", "run_evaluate"]
