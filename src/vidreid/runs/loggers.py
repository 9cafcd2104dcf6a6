"""Loggers of a run, and all of vidreid's W&B code.

- :class:`ResumableCSVLogger` — Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when a run is
  resumed into its own directory (``ckpt_path=last``), so the curves of the epochs before the interruption are
  lost. This one keeps them: the old rows stay, the rows of the interrupted (replayed) steps are replaced by the
  resumed run's, and new columns are merged into the header.
- :func:`wandb_resume_id` — the id of the W&B run already in a run directory, so that a resumed job logs into
  the same W&B run (``WandbLogger(id=..., resume="allow")``).
- :func:`wandb_run_name` — ``<experiment>[,<override>,...]`` instead of every run being called ``train``.
- :func:`wandb_logger_config` / :func:`start_wandb_logger` — W&B start-up that never hangs: offline by default;
  an online run gets ``wandb.Settings(init_timeout=...)`` and is started right away, and when it cannot start (no
  API key: wandb would prompt or fail; server unreachable: ``wandb.init`` gives up after ``init_timeout``
  seconds) the job logs offline instead, with a warning (``wandb sync`` uploads the run later).
- :func:`finish_wandb` — closes the run at the end of a job (each multirun job its own run).
- :class:`WandbDashboard` — the dashboard callback (CMC curve, ranked lists, dataset statistics, resolved config).

Hook order (Lightning 2.x ``_EvaluationLoop._on_evaluation_epoch_end``): a callback's
``on_{validation,test}_epoch_end`` runs *before* the LightningModule's, which computes the metric. The
dashboard therefore reads in ``on_{validation,test}_end``, when ``ReIDMetric.last`` holds the epoch's
:class:`~vidreid.evaluation.result.EvalResult`.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf, open_dict

from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import CorruptFrameError, read_frame
from vidreid.deploy.export import evaluation_items
from vidreid.evaluation.result import EvalResult
from vidreid.evaluation.visualize import (
    RankedRow,
    cmc_curve_image,
    ranked_gallery,
    ranked_list_image,
    save_image,
    select_queries,
)

log = logging.getLogger(__name__)

__all__ = [
    "INIT_TIMEOUT_S",
    "ResumableCSVLogger",
    "WandbDashboard",
    "finish_wandb",
    "missing_key",
    "start_wandb_logger",
    "wandb_logger_config",
    "wandb_loggers",
    "wandb_resume_id",
    "wandb_run_name",
]


class _HistoryKeepingWriter(ExperimentWriter):
    """``ExperimentWriter`` that reads an existing ``metrics.csv`` instead of deleting it.

    At the first :meth:`save`, old rows with ``step >=`` the smallest step of the new rows are dropped (those
    steps were logged by the interrupted process and are logged again by the resumed one, which replays the
    epoch from the last checkpoint), the kept rows are rewritten under the union of old and new columns, and the
    new rows are appended.
    """

    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv here
        self._previous: list[dict[str, str]] | None = None
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                reader = csv.DictReader(f)
                self._previous = list(reader)
                self.metrics_keys = list(reader.fieldnames or [])

    def save(self) -> None:
        if self.metrics and self._previous is not None:
            first = min(int(m["step"]) for m in self.metrics)
            kept = [r for r in self._previous if r.get("step") not in (None, "") and int(float(r["step"])) < first]
            self._previous = None
            self._record_new_keys()
            tmp = f"{self.metrics_file_path}.tmp"
            with self._fs.open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.metrics_keys)
                w.writeheader()
                w.writerows(kept)
            self._fs.mv(tmp, self.metrics_file_path)
        super().save()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` (same arguments) whose ``metrics.csv`` keeps the history of a resumed run.

    A run resumed into its own directory (``python train.py ... hydra.run.dir=<run> ckpt_path=last``) appends
    to ``<save_dir>/<name>/<version>/metrics.csv``: every row logged before the last checkpoint stays, and the
    rows of the steps the interrupted process logged after it (the epoch it was killed in, which the resumed
    run replays) are replaced by the resumed run's rows. A fresh run in a new directory behaves exactly as
    ``CSVLogger``.
    """

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _HistoryKeepingWriter(log_dir=self.log_dir)
        return self._experiment


_RUN_DIR = re.compile(r"^(?:offline-)?run-\d{8}_\d{6}-(?P<id>[a-z0-9]+)$")


def wandb_resume_id(save_dir: str | Path) -> str | None:
    """The id of the most recent W&B run (online or offline) in ``<save_dir>/wandb/``, or ``None``.

    W&B names its local run folders ``run-<YYYYMMDD_HHMMSS>-<id>`` / ``offline-run-<...>-<id>``; the latest by
    that time stamp wins. Passing the id back with ``resume="allow"`` makes a resumed job continue that run
    (offline runs: ``wandb sync`` uploads both folders into the one run).
    """
    root = Path(save_dir) / "wandb"
    if not root.is_dir():
        return None
    runs = [(m.group(0).removeprefix("offline-"), m.group("id")) for p in root.iterdir()
            if p.is_dir() and (m := _RUN_DIR.match(p.name))]  # fmt: skip
    return max(runs)[1] if runs else None


# overrides that say where or how a run is stored, not what it trains: left out of run names
_NAME_SKIP = ("hydra", "paths.", "ckpt_path", "logger", "trainer.devices", "data.num_workers", "experiment")


def wandb_run_name(experiment: str | None, overrides: list[str] | tuple[str, ...] = (), max_len: int = 128) -> str:
    """A W&B run name from the experiment and the command-line overrides, e.g.
    ``wandb_run_name("default", ["optimizer.lr=3e-4", "aggregator=sticc"])`` → ``"default,aggregator=sticc,optimizer.lr=3e-4"``.

    Overrides about storage and launching (``hydra.*``, ``paths.*``, ``ckpt_path``, ``logger*``,
    ``trainer.devices``, ``data.num_workers``, ``experiment`` itself) are left out; the rest are sorted. Names
    longer than ``max_len`` characters are cut (W&B shows about that much).
    """
    keep = sorted(o.lstrip("+~") for o in overrides if not o.lstrip("+~").startswith(_NAME_SKIP))
    name = ",".join([experiment or "train", *keep])
    return name if len(name) <= max_len else name[: max_len - 1] + "…"


def wandb_logger_kwargs(cfg: Any, save_dir: str | Path) -> dict[str, Any]:
    """Extra ``WandbLogger`` arguments of a run: ``name`` (:func:`wandb_run_name` of ``experiment_name`` and the
    Hydra task overrides) when the config leaves it null, and ``id`` + ``resume="allow"`` when the run resumes
    (``ckpt_path`` set) into a directory that already holds a W&B run."""
    out: dict[str, Any] = {}
    wb = cfg.logger.get("wandb", {}) if cfg.get("logger") else {}
    if wb.get("name") is None:
        overrides: list[str] = []
        try:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():
                overrides = list(HydraConfig.get().overrides.task)
        except ImportError:  # pragma: no cover - hydra is a dependency
            pass
        out["name"] = wandb_run_name(cfg.get("experiment_name"), overrides)
    if cfg.get("ckpt_path") and wb.get("id") is None:
        run_id = wandb_resume_id(save_dir)
        if run_id:
            out.update(id=run_id, resume="allow")
    return out


# --- W&B logger start-up (offline by default, never hangs) ---

#: seconds wandb.init waits for the server before giving up (wandb's own ``init_timeout`` setting;
#: environment variable VIDREID_WANDB_INIT_TIMEOUT)
INIT_TIMEOUT_S = float(os.environ.get("VIDREID_WANDB_INIT_TIMEOUT", 30))
_OFFLINE_HINT = "logging to W&B offline instead; upload later with `wandb sync <run dir>/wandb/offline-run-*`"


def missing_key() -> str | None:
    """Why no W&B API key is configured (``WANDB_API_KEY``, an identity token, or the ``.netrc`` entry
    ``wandb login`` writes for ``WANDB_BASE_URL``), or ``None`` when one is."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return None
    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")
    path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
    try:
        auth = netrc.netrc(path).authenticators(urlparse(base).hostname or "")
    except (OSError, netrc.NetrcParseError):
        auth = None
    return None if auth and auth[2] else f"no W&B API key for {base} (run `wandb login` or set WANDB_API_KEY)"


def _offline(c: DictConfig) -> DictConfig:
    c = OmegaConf.create(OmegaConf.to_container(c, resolve=True))
    with open_dict(c):
        c.offline = True
        c.pop("settings", None)
    return c


def wandb_logger_config(c: DictConfig, init_timeout: float | None = None) -> DictConfig:
    """The ``WandbLogger`` config to instantiate: unchanged when offline; an online one gets wandb's
    ``settings.init_timeout``; without an API key, an offline copy (a warning gives the reason)."""
    if c.get("offline", False) or os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return c
    problem = missing_key()
    if problem is not None:
        log.warning("%s: %s", problem, _OFFLINE_HINT)
        return _offline(c)
    c = OmegaConf.create(OmegaConf.to_container(c, resolve=True))
    with open_dict(c):
        timeout = init_timeout if init_timeout is not None else os.environ.get("VIDREID_WANDB_INIT_TIMEOUT", INIT_TIMEOUT_S)
        c.settings = {"_target_": "wandb.Settings", "init_timeout": float(timeout)}
    return c


def start_wandb_logger(c: DictConfig, **kwargs):
    """Instantiate the ``WandbLogger`` of ``c`` (from :func:`wandb_logger_config`) and, when online, start its
    run now (global rank 0), so that a server that does not answer within ``init_timeout`` turns the job offline
    here, with a warning, instead of failing it at the first logged value.

    Returns:
        The ``WandbLogger`` (online, or offline after a failed start).
    """
    from hydra.utils import instantiate

    logger = instantiate(c, **kwargs)
    if c.get("offline", False) or int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) != 0:
        return logger
    import wandb

    if wandb.run is None:  # a fresh wandb service that reads the current environment (WANDB_BASE_URL, keys)
        wandb.teardown()
    try:
        _ = logger.experiment  # wandb.init with the configured init_timeout
    except Exception as e:  # noqa: BLE001 - wandb raises CommError/UsageError/TimeoutError variants
        if wandb.run is not None:
            wandb.finish(exit_code=1, quiet=True)
        wandb.teardown()  # the wandb service started with the online settings: a fresh one for the offline run
        log.warning("W&B server did not accept the run (%s: %s): %s", type(e).__name__,
                    str(e).splitlines()[0] if str(e) else "", _OFFLINE_HINT)  # fmt: skip
        logger = instantiate(_offline(c), **kwargs)
    return logger


def finish_wandb(loggers: list) -> None:
    """Close the W&B run at the end of a job, so each multirun job is its own run (docs/architecture.md §5)."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import wandb

            offline = getattr(lg, "_offline", False)
            if wandb.run is not None:
                run_dir = Path(wandb.run.dir).parent
                wandb.finish()
                if offline:
                    log.info("W&B run saved offline; upload it with:  wandb sync %s", run_dir)


# --- W&B dashboard callback ---

def wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    """The trainer's ``WandbLogger`` instances (empty when W&B is not used or under ``fast_dev_run``)."""
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]


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
      - ``config``: the resolved Hydra config (set by :func:`vidreid.runs.common.build_callbacks` through
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
