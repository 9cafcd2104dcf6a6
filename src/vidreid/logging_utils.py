"""Loggers that survive a resume, and readable W&B run names.

- :class:`ResumableCSVLogger` — Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when a run is
  resumed into its own directory (``ckpt_path=last``), so the curves of the epochs before the interruption are
  lost. This one keeps them: the old rows stay, the rows of the interrupted (replayed) steps are replaced by the
  resumed run's, and new columns are merged into the header.
- :func:`wandb_resume_id` — the id of the W&B run already in a run directory, so that a resumed job logs into
  the same W&B run (``WandbLogger(id=..., resume="allow")``).
- :func:`wandb_run_name` — ``<experiment>[,<override>,...]`` instead of every run being called ``train``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

__all__ = ["ResumableCSVLogger", "wandb_resume_id", "wandb_run_name"]


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

