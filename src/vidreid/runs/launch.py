"""Process-launch checks for multi-process training under Hydra.

Lightning's ``strategy=ddp`` starts ranks 1..N-1 by re-executing ``sys.argv`` (``_SubprocessScriptLauncher``;
under Hydra ``_hydra_subprocess_cmd`` keeps every argument). In a ``--multirun`` the arguments hold the
sweep, so each child rank re-runs the *whole sweep* instead of joining the current job (docs/architecture.md §5).
:func:`multirun_safe_strategy` detects that situation and switches the job to ``ddp_spawn``, whose workers
are started with ``multiprocessing`` and never re-read the command line.

Not affected, and left alone: single runs; ``devices=1`` on one node (no process is started); jobs whose
ranks are started by something else — the SLURM launcher (``hydra/launcher=slurm``: one task per rank,
Lightning reads the ranks from SLURM) or ``torchrun`` (``LOCAL_RANK``/``WORLD_SIZE`` already set).
"""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

__all__ = ["multirun_safe_strategy"]

_SCRIPT_STRATEGIES = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


def _hydra_multirun() -> tuple[bool, str]:
    """``(is a multirun job, launcher _target_)``; ``(False, "")`` outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
    except ImportError:  # pragma: no cover - hydra is a dependency
        return False, ""
    if not HydraConfig.initialized():
        return False, ""
    hc = HydraConfig.get()
    launcher = str(hc.launcher.get("_target_", "")) if "launcher" in hc else ""
    return hc.mode == RunMode.MULTIRUN, launcher


def _spawns_processes(trainer: DictConfig) -> bool:
    """Whether Lightning would start more than one process itself for this trainer config."""
    if os.environ.get("LOCAL_RANK") is not None and os.environ.get("WORLD_SIZE") is not None:
        return False  # torchrun / an external launcher already started every rank
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
        return False  # srun started one task per rank
    devices = trainer.get("devices", 1)
    nodes = int(trainer.get("num_nodes", 1) or 1)
    if isinstance(devices, int) and devices in (0, 1) and nodes == 1:
        return False
    if isinstance(devices, str) and devices.strip() in ("1", "0") and nodes == 1:
        return False
    if not isinstance(devices, int | str) and len(devices) <= 1 and nodes == 1:
        return False
    return True  # devices > 1, "auto", -1, a list of several ids, or several nodes


def multirun_safe_strategy(cfg: DictConfig) -> str | None:
    """Switch ``cfg.trainer.strategy`` from ``ddp`` to ``ddp_spawn`` (in place, with a warning) when this is
    a Hydra multirun job launched by a local launcher and Lightning would start the ranks by re-executing
    the command line. Returns the new strategy name, or ``None`` when nothing changed.
    """
    trainer = cfg.get("trainer")
    if trainer is None:
        return None
    strategy = trainer.get("strategy", "auto")
    if not isinstance(strategy, str) or strategy not in _SCRIPT_STRATEGIES:
        return None
    multirun, launcher = _hydra_multirun()
    if not multirun or "submitit" in launcher:
        return None
    if not _spawns_processes(trainer):
        return None
    new = "ddp_spawn" if strategy == "ddp" else strategy.replace("ddp_", "ddp_spawn_", 1)
    log.warning(
        "trainer.strategy=%s inside a Hydra --multirun would make every child rank re-run the whole sweep "
        "(Lightning re-executes the command line); using strategy=%s for this job instead. For multi-node "
        "sweeps use hydra/launcher=slurm (one task per rank) or torchrun.",
        strategy, new,
    )
    with open_dict(cfg):
        cfg.trainer.strategy = new
    return new
