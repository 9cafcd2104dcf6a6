"""Learning-rate schedules (per epoch), as ``LambdaLR`` factors."""

from __future__ import annotations

import math


def lr_lambda(
    name: str = "multistep",
    max_epochs: int = 1,
    warmup_epochs: int = 0,
    warmup_factor: float = 0.01,
    milestones: list[int] | tuple[int, ...] = (),
    gamma: float = 0.1,
    min_lr_factor: float = 0.0,
):
    """Per-epoch learning-rate factor: linear warmup from ``warmup_factor`` to 1 over ``warmup_epochs``
    (PSTA: 10 epochs from 0.01×, METHODS.md §2.3), then ``multistep`` (×``gamma`` at each milestone),
    ``cosine`` (to ``min_lr_factor`` at ``max_epochs``) or ``constant``.

    Raises:
        ValueError: unknown schedule name.
    """
    if name not in ("multistep", "cosine", "constant"):
        raise ValueError(f"scheduler.name must be multistep, cosine or constant, got {name!r}")
    milestones = sorted(int(m) for m in milestones)

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            alpha = epoch / warmup_epochs
            return warmup_factor * (1 - alpha) + alpha
        if name == "multistep":
            return gamma ** sum(epoch >= m for m in milestones)
        if name == "cosine":
            span = max(max_epochs - warmup_epochs, 1)
            progress = min((epoch - warmup_epochs) / span, 1.0)
            return min_lr_factor + (1 - min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor
