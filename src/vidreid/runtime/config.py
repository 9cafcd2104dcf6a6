"""Config nodes as plain Python: what checkpoints and saved hyper-parameters hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["plain"]


def plain(node: Any) -> Any:
    """A resolved plain ``dict``/``list`` copy of a config node (``DictConfig``/``ListConfig`` resolved with
    ``OmegaConf.to_container``; a ``Mapping`` converted value by value); anything else is returned as is.
    Checkpoints then hold no OmegaConf objects, so they load with ``torch.load(weights_only=True)``."""
    if isinstance(node, DictConfig | ListConfig):
        return OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        return {k: plain(v) for k, v in node.items()}
    return node
