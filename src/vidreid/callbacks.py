"""Lightning callbacks of the suite: the W&B dashboard (CMC curve, ranked lists, dataset statistics,
resolved config) and the embedding / ranked-list export of ``evaluate.py export=true``.

Hook order (Lightning 2.x ``_EvaluationLoop._on_evaluation_epoch_end``): a callback's
``on_{validation,test}_epoch_end`` runs *before* the LightningModule's, which computes the metric. The
callbacks therefore read in ``on_{validation,test}_end``, when ``ReIDMetric.last`` holds the epoch's
:class:`~vidreid.evaluation.result.EvalResult` (embeddings in dataset order, distance matrix, ids, indices).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader, Subset

from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import CorruptFrameError, TestTrackletDataset, read_frame
from vidreid.evaluation.result import EvalResult
from vidreid.evaluation.visualize import (
    RankedRow,
    cmc_curve_image,
    ranked_gallery,
    ranked_list_image,
    save_image,
    select_queries,
)
from vidreid.export import write_embeddings, write_ranked_lists

log = logging.getLogger(__name__)

__all__ = ["EmbeddingExport", "WandbDashboard", "evaluation_items", "wandb_loggers"]


def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    """The trainer's ``WandbLogger`` instances (empty when W&B is not used or under ``fast_dev_run``)."""
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


def evaluation_items(loader: DataLoader | Sequence[DataLoader] | None) -> list[tuple[Tracklet, bool]] | None:
    """``[(tracklet, is_query), ...]`` of a validation/test loader in dataset-index order (the indices that
    ``EvalResult.q_index``/``g_index`` refer to), or ``None`` if the loader is not the datamodule's."""
    if isinstance(loader, list | tuple):
        loader = loader[0] if loader else None
    ds = getattr(loader, "dataset", None)
    while isinstance(ds, Subset):
        ds = ds.dataset
    return ds.items if isinstance(ds, TestTrackletDataset) else None


def _frame(path: Path) -> torch.Tensor:
    try:
        return read_frame(path)
    except CorruptFrameError:  # a picture is no reason to stop a run: grey tile
        return torch.full((3, 8, 4), 128, dtype=torch.uint8)


def _positions(n: int, k: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


class WandbDashboard(pl.Callback):
    """Log evaluation pictures and run metadata to every attached ``WandbLogger`` (no-op without one).

    Logged (global rank 0 only):
      - ``config``: the resolved Hydra config (set by :func:`vidreid.run_utils.build_callbacks` through
        :meth:`set_run_config`), merged into the W&B run config at fit/test start;
      - ``dataset/statistics``: a table with the rows of ``ReIDDataset.statistics()``;
      - ``{val,test}/cmc_curve``: the CMC curve image of each evaluation;
      - ``{val,test}/ranked_best`` and ``{val,test}/ranked_worst``: ranked-list grids of the ``num_queries``
        queries with the highest / lowest AP: query frames, then the top-``topk`` gallery (junk removed)
        framed green for a true match, red otherwise, with the distance under each tile.
    Scalars (loss terms, lr, CMC rank-k, mAP, mINP) are logged by the LightningModule and
    ``LearningRateMonitor`` through the logger itself.

    Args:
        num_queries: queries per grid (best and worst each).
        topk: gallery items per ranked list.
        frames_per_query: query frames shown (evenly spaced over the tracklet).
        tile: ``(height, width)`` of a frame tile in pixels.
        save_dir: also write the PNGs there (``<stage>_<kind>_step<step>.png``); ``None`` = W&B only.
    """

    def __init__(
        self,
        num_queries: int = 4,
        topk: int = 10,
        frames_per_query: int = 4,
        tile: Sequence[int] = (96, 48),
        save_dir: str | None = None,
    ):
        super().__init__()
        self.num_queries, self.topk, self.frames_per_query = num_queries, topk, frames_per_query
        self.tile = (int(tile[0]), int(tile[1]))
        self.save_dir = Path(save_dir) if save_dir else None
        self.run_config: dict[str, Any] | None = None
        self._meta_logged = False

    def set_run_config(self, config: dict[str, Any]) -> None:
        """The resolved run config (a plain dict) to put into the W&B run config."""
        self.run_config = config

    # ------------------------------------------------------------------ run metadata
    def _log_meta(self, trainer: pl.Trainer) -> None:
        if self._meta_logged or not trainer.is_global_zero:
            return
        loggers = wandb_loggers(trainer)
        if not loggers:
            return
        self._meta_logged = True
        data = getattr(trainer.datamodule, "data", None) if trainer.datamodule is not None else None
        for lg in loggers:
            if self.run_config:
                lg.log_hyperparams(self.run_config)
                self._save_config_file(lg)
            if data is not None:
                rows = data.statistics()
                cols = list(rows[0])
                lg.log_table("dataset/statistics", columns=cols, data=[[r[c] for c in cols] for r in rows])
                lg.experiment.summary["dataset/name"] = data.name

    def _save_config_file(self, lg) -> None:
        """``config_resolved.yaml`` in the W&B run's files (uploaded with the run, also by ``wandb sync``)."""
        from omegaconf import OmegaConf

        run_dir = getattr(lg.experiment, "dir", None)
        if not run_dir:
            return
        path = Path(run_dir) / "config_resolved.yaml"
        path.write_text(OmegaConf.to_yaml(OmegaConf.create(self.run_config)))
        lg.experiment.save(str(path), base_path=run_dir, policy="now")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_meta(trainer)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_meta(trainer)

    # ------------------------------------------------------------------ evaluation pictures
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log_eval(trainer, pl_module, "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_eval(trainer, pl_module, "test")

    def _log_eval(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loggers = wandb_loggers(trainer)
        if not trainer.is_global_zero or not (loggers or self.save_dir):
            return
        metric = getattr(pl_module, f"{stage}_metric", None)
        last = getattr(metric, "last", None)
        if not isinstance(last, EvalResult):
            return
        images = {"cmc_curve": cmc_curve_image(last.result.cmc, f"{stage} CMC, epoch {trainer.current_epoch}")}
        loader = trainer.val_dataloaders if stage == "val" else trainer.test_dataloaders
        items = evaluation_items(loader)
        if items is not None and last.distmat is not None:
            images.update(self.ranked_list_images(last, items))
        step = trainer.global_step
        for kind, img in images.items():
            if self.save_dir:
                save_image(img, self.save_dir / f"{stage}_{kind}_step{step}.png")
            for lg in loggers:
                lg.log_image(f"{stage}/{kind}", [img], step=step)

    def ranked_list_images(self, last: EvalResult, items: Sequence[tuple[Tracklet, bool]]) -> dict[str, Any]:
        """``{"ranked_best": image, "ranked_worst": image}`` from an evaluation's :class:`EvalResult`."""
        result = last.result
        best, worst = select_queries(result.ap, self.num_queries)
        out = {}
        for kind, queries in (("ranked_best", best), ("ranked_worst", worst)):
            if queries:
                out[kind] = ranked_list_image([self._row(last, items, q) for q in queries], tile=self.tile)
        return out

    def _row(self, last: EvalResult, items: Sequence[tuple[Tracklet, bool]], q: int) -> RankedRow:
        dist = last.distmat[q]
        q_pid, q_cam = int(last.q_pids[q]), int(last.q_camids[q])
        cols, match = ranked_gallery(dist, q_pid, q_cam, last.g_pids, last.g_camids, self.topk)
        query = items[int(last.q_index[q])][0]
        q_frames = [_frame(query.frames[p]) for p in _positions(len(query), self.frames_per_query)]
        g_frames = []
        for c in cols:
            t = items[int(last.g_index[c])][0]
            g_frames.append(_frame(t.frames[len(t) // 2]))
        ap = float(last.result.ap[q])
        return RankedRow(
            query_frames=q_frames,
            gallery_frames=g_frames,
            is_match=match,
            label=f"query {q}: pid {q_pid} cam {q_cam + 1}  AP {ap:.3f}",
            gallery_labels=[f"{float(dist[c]):.3f}" for c in cols],
        )


class EmbeddingExport(pl.Callback):
    """Write ``embeddings.npz`` and ``ranked_lists.csv`` (and ``ranked_lists_rerank.csv`` when re-ranking is on)
    into ``out_dir`` at the end of ``trainer.test`` (``evaluate.py export=true``).

    Everything comes from the test metric's :class:`~vidreid.evaluation.result.EvalResult` in ``on_test_end``:
    the embeddings of every test tracklet in dataset order (gathered from all ranks by the metric), the ids and
    the distance matrices. Nothing is recomputed; global rank 0 writes.

    Args:
        out_dir: destination folder. topk: gallery items per query in the CSV.
    """

    def __init__(self, out_dir: str | Path, topk: int = 10):
        super().__init__()
        self.out_dir, self.topk = Path(out_dir), int(topk)
        self.files: list[Path] = []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metric = pl_module.test_metric
        res = metric.last
        items = evaluation_items(trainer.test_dataloaders)
        if items is None or not isinstance(res, EvalResult):
            log.warning("export: the test loader is not the datamodule's (or nothing was evaluated); nothing exported")
            return
        if res.indices.tolist() != list(range(len(items))):
            raise RuntimeError(f"export: embedded {len(res.indices)} of {len(items)} test tracklets (or duplicates)")
        n_query = sum(1 for _, q in items if q)
        query = [t for t, _ in items[:n_query]]
        gallery = [t for t, _ in items[n_query:]]
        emb = res.embeddings
        self.files = [write_embeddings(self.out_dir / "embeddings.npz", emb[:n_query], emb[n_query:], query, gallery,
                                       metric.metric)]  # fmt: skip
        if res.distmat is not None:
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists.csv", res, items, self.topk))
        if res.rerank_distmat is not None:
            self.files.append(write_ranked_lists(self.out_dir / "ranked_lists_rerank.csv", res, items, self.topk,
                                                 distmat=res.rerank_distmat))  # fmt: skip
        for f in self.files:
            log.info("exported %s", f)
