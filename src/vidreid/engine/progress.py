"""Progress that reaches log files: one line per epoch, the rich bar only on a terminal, and less noise.

- :class:`EpochLog` logs one line per training epoch through the ``vidreid.engine.progress`` logger (which Hydra sends
  to ``<run_dir>/<task>.log`` and to stdout): loss terms, learning rate, the epoch's validation metrics,
  throughput, epoch time and ETA. A job under ``nohup``, SLURM or CI, whose stdout is a file, thus shows
  its progress.
- :func:`terminal_progress_bar` is the ``callbacks.progress_bar`` factory: Lightning's ``RichProgressBar`` when
  stdout is a terminal, otherwise a silent bar (a redrawn bar in a log file is noise, and without a bar
  callback Lightning would add its tqdm bar).
- :class:`ParamSummary` replaces Lightning's model-summary table (which prints ``Total FLOPs: 0`` unless the
  module has an example input) with one line: parameters, trainable parameters, size.
- :func:`quiet_lightning_console` removes the stderr handler Lightning attaches to its ``lightning`` logger
  (every Lightning INFO line otherwise appears twice: on stderr and, through Hydra's root handler, on
  stdout) and, for a run's entry point, filters known-harmless warnings (:data:`HARMLESS_WARNINGS`).
  :class:`EpochLog` ignores those warnings only while its trainer runs a stage: constructing or using the
  callback leaves the process's warning filters as they were.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, RichProgressBar

log = logging.getLogger(__name__)

__all__ = ["EpochLog", "ParamSummary", "QuietProgressBar", "format_duration", "quiet_lightning_console",
           "terminal_progress_bar"]  # fmt: skip

# (message regex, why it is harmless here)
HARMLESS_WARNINGS: tuple[tuple[str, str], ...] = (
    (r"It is recommended to use `self\.log\('(val|test)/",
     "ReIDMetric gathers the embeddings of every rank itself; the logged value is already global"),
    (r"It is recommended to use `self\.log\('train/",
     "under DDP the epoch means of train/* are rank 0's own batches, an estimate of the loss like the per-step "
     "values; syncing them would add an all-reduce per logged value for a number that only monitors training"),
    (r".*isinstance\(treespec, LeafSpec\)", "a deprecation inside Lightning, not in vidreid"),
    (r"Total length of `list` across ranks is zero",
     "the datamodule returns no validation loader when data.val_identities=0 (no validation, on purpose)"),
)
_LIGHTNING_TIPS = ("💡 Tip:", "Trainer already configured with model summary callbacks")


class _DropTips(logging.Filter):
    """Drop Lightning's advertising lines (litlogger / litmodels tips) and its note that our model summary
    replaced its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_LIGHTNING_TIPS)


def quiet_lightning_console(ignore_warnings: bool = True) -> None:
    """Make Lightning's console output single and quieter (idempotent; call once per process, early, from a run's
    entry point: it changes process-wide logging and, with ``ignore_warnings``, warning filters).

    - ``lightning/__init__.py`` always adds a stderr ``StreamHandler`` to the ``lightning`` logger, which also
      propagates to the root logger; under Hydra (root handlers: stdout + the run's log file) every Lightning
      INFO line then appears on both stdout and stderr. When the root logger has handlers, that stderr
      handler is removed, so the lines go once to stdout and the log file.
    - Lightning's "💡 Tip: ... litlogger / litmodels" lines are dropped.
    - :data:`HARMLESS_WARNINGS` are ignored (``ignore_warnings``).
    """
    lg = logging.getLogger("lightning")
    if logging.getLogger().hasHandlers() and lg.propagate:
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler and getattr(h, "stream", None) in (sys.stderr, sys.stdout):
                lg.removeHandler(h)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in target.filters):
            target.addFilter(_DropTips())
    # filters of a logger apply to records created by that logger only: the tips come from rank_zero's logger
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in target.filters):
            target.addFilter(_DropTips())
    if ignore_warnings:
        for pattern, _ in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)


def format_duration(seconds: float) -> str:
    """``3725`` → ``"1h02m"``, ``200`` → ``"3m20s"``, ``9.5`` → ``"9.5s"``; ``nan``/negative → ``"?"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class EpochLog(pl.Callback):
    """One log line per training epoch (global rank 0), e.g.::

        epoch 3/20 | loss 2.314 (ce 1.902, triplet 0.412) | lr 1.00e-03 | val mAP 0.512 rank1 0.438 mINP 0.301
        | 45.3 clips/s | 12.1s | ETA 3m20s

    - loss terms: the epoch means of ``train/<term>`` as logged by the LightningModule;
    - lr: the learning rate of the last optimizer parameter group during the epoch (the heads; the backbone's
      is shown too when it differs);
    - val: only on epochs that validated;
    - clips/s: training clips over the training time of the epoch (validation excluded); the epoch time
      includes validation; ETA = mean epoch time so far × epochs left (the final test not included).

    While a stage runs (``setup`` to ``teardown``) the :data:`HARMLESS_WARNINGS` are ignored inside a
    ``warnings.catch_warnings`` scope that ``teardown`` closes: the process's warning filters are the same before
    and after, and constructing the callback changes nothing.

    Args:
        metrics: validation metrics shown, in order (names under ``val/``).
        tested: whether the run tests its final weights after fitting (``train.py``'s ``test``; callbacks config
            ``tested: ${oc.select:test,true}``): only then does the no-validation note say the final epoch is tested.
    """

    def __init__(self, metrics: tuple[str, ...] | list[str] = ("mAP", "rank1", "mINP"), tested: bool = True):
        super().__init__()
        self.metrics = tuple(metrics)
        self.tested = bool(tested)
        self._epoch_start = self._train_time = 0.0
        self._clips = 0
        self._validated = False
        self._lrs: list[float] = []
        self._epoch_times: list[float] = []
        self._val_time = 0.0
        self._scope: warnings.catch_warnings | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        quiet_lightning_console(ignore_warnings=False)  # also in spawned DDP workers
        if self._scope is None:  # the stage's own warning filters, undone in teardown
            self._scope = warnings.catch_warnings()
            self._scope.__enter__()
        for pattern, _ in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        dm = trainer.datamodule
        if stage == "fit" and dm is not None and getattr(dm, "val_split", "n/a") is None:
            warnings.filterwarnings("ignore", message=r"`ModelCheckpoint\(monitor='val/")
            if trainer.is_global_zero:
                log.info(self.no_validation_note())

    def no_validation_note(self) -> str:
        """The line logged when a fit has no validation split."""
        then = "the final epoch is tested"
        if not self.tested:
            then = "test=false: nothing is tested (evaluate.py ckpt_path=<run>/checkpoints/last.ckpt tests it)"
        return f"no validation split (data.val_identities=0): validation and the best-by-val checkpoint are off; {then}"

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._scope is not None:
            scope, self._scope = self._scope, None
            scope.__exit__(None, None, None)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._clips, self._validated, self._val_time, self._lrs = 0, False, 0.0, []

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        if not self._lrs and trainer.optimizers:
            self._lrs = [float(g["lr"]) for g in trainer.optimizers[0].param_groups]

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        clips = batch[0] if isinstance(batch, list | tuple) else batch
        self._clips += int(getattr(clips, "shape", [0])[0]) * trainer.world_size

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True
            self._val_time += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self._epoch_start
        self._epoch_times.append(elapsed)
        log.info(self.line(trainer, elapsed))

    def line(self, trainer: pl.Trainer, elapsed: float) -> str:
        """The epoch's log line (see the class docstring)."""
        m = trainer.callback_metrics
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        parts = [f"epoch {epoch}/{total}" if total and total > 0 else f"epoch {epoch}"]
        terms = {k[6:-6]: float(v) for k, v in m.items() if k.startswith("train/") and k.endswith("_epoch")}
        if "loss" in terms:
            rest = ", ".join(f"{k} {v:.3f}" for k, v in terms.items() if k != "loss")
            parts.append(f"loss {terms['loss']:.3f}" + (f" ({rest})" if rest else ""))
        if self._lrs:
            lr = f"lr {self._lrs[-1]:.2e}"
            if len(set(self._lrs)) > 1:
                lr += f" (backbone {self._lrs[0]:.2e})"
            parts.append(lr)
        if self._validated:
            vals = [f"{k} {float(m[f'val/{k}']):.3f}" for k in self.metrics if f"val/{k}" in m]
            if vals:
                parts.append("val " + " ".join(vals))
        train_time = max(elapsed - self._val_time, 1e-9)
        parts.append(f"{self._clips / train_time:.1f} clips/s")
        parts.append(format_duration(elapsed))
        if total and total > 0:
            left = total - epoch
            mean = sum(self._epoch_times) / len(self._epoch_times)
            parts.append(f"ETA {format_duration(left * mean)}")
        return " | ".join(parts)


class QuietProgressBar(ProgressBar):
    """A progress bar that draws nothing (used when stdout is not a terminal; :class:`EpochLog` reports)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:  # stays off: there is no terminal to draw on
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return False


def terminal_progress_bar(**rich_kwargs: Any) -> ProgressBar:
    """``RichProgressBar(**rich_kwargs)`` when stdout is a terminal, else :class:`QuietProgressBar`."""
    if sys.stdout.isatty():
        return RichProgressBar(**rich_kwargs)
    return QuietProgressBar()


class ParamSummary(ModelSummary):
    """Lightning's ``ModelSummary`` reduced to one log line: ``model: 5.0 M parameters (5.0 M trainable),
    20.1 MB`` (no per-layer table, no ``Total FLOPs: 0``)."""

    @staticmethod
    def summarize(summary_data, total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes, total_flops: int = 0, **summarize_kwargs: Any) -> None:  # fmt: skip
        log.info("model: %.1f M parameters (%.1f M trainable), %.1f MB", total_parameters / 1e6,
                 trainable_parameters / 1e6, model_size)
