"""Learning-rate schedulers from the ``scheduler`` config: torch's own classes chosen by ``_target_``.

The configs (``conf/scheduler/``) are Hydra partials of ``torch.optim.lr_scheduler`` classes — ``MultiStepLR``,
``CosineAnnealingLR``, or ``SequentialLR`` over a ``LinearLR`` warmup and a main schedule (PSTA: 10 warmup epochs
from 0.01×, docs/methods.md §2.3). All step once per epoch. :func:`build_scheduler` instantiates one for an
optimizer, including the nested schedulers of a ``SequentialLR``/``ChainedScheduler`` (a plain Hydra partial
cannot hand the optimizer down to them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

__all__ = ["build_scheduler"]

_NESTED = ("schedulers",)


def build_scheduler(cfg: DictConfig | Mapping[str, Any], optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The scheduler of ``cfg`` (a ``_target_`` node, ``_partial_`` or not) attached to ``optimizer``.

    A ``schedulers`` list (``SequentialLR``, ``ChainedScheduler``) is built first, in order, with the same
    optimizer.

    Raises:
        ValueError: ``cfg`` has no ``_target_`` (the message shows the node).
    """
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if "_target_" not in c:
        raise ValueError(f"scheduler config needs a _target_ (a torch.optim.lr_scheduler class), got {c}")
    c.pop("_partial_", None)
    kwargs: dict[str, Any] = {}
    for key in _NESTED:
        if key in c:
            kwargs[key] = [build_scheduler(ch, optimizer) for ch in c.pop(key)]
    return instantiate(c, optimizer=optimizer, **kwargs)
