"""vidreid: a Hydra + PyTorch Lightning experiment suite for video-based person re-identification.

Public API outside Hydra: ``vidreid.embed(checkpoint, tracklets) -> Tensor (N, D)`` (see
:func:`vidreid.deploy.inference.embed`), imported on first use so that ``import vidreid`` stays light.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "embed"]


def __getattr__(name: str) -> Any:
    if name == "embed":
        from vidreid.deploy.inference import embed

        return embed
    raise AttributeError(f"module 'vidreid' has no attribute {name!r}")
