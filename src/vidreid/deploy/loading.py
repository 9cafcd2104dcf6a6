"""Reading a ``train.py`` checkpoint for inference: its bytes once (:func:`read_checkpoint`), one safe parse
(:func:`load_checkpoint`, ``torch.load(weights_only=True)`` via :mod:`vidreid.runtime.checkpoint_io`), the data
settings it was trained with (:class:`CheckpointSettings`) and the eval-mode module built from the parsed dict
(:func:`load_module`, :func:`load_network`). Used by :func:`vidreid.embed`, ``evaluate.py``, ``track.py`` and
the ONNX export (re-exported by :mod:`vidreid.deploy.inference`)."""

from __future__ import annotations

import inspect
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidreid.engine.lit_module import ReIDLitModule
from vidreid.runtime.checkpoint_io import load_checkpoint_file

__all__ = ["CheckpointSettings", "checkpoint_settings", "load_checkpoint", "load_module", "load_network",
           "read_checkpoint"]  # fmt: skip


@dataclass
class CheckpointSettings:
    """The data settings a checkpoint was trained with (from its ``datamodule_hyper_parameters``).

    Attributes:
        size: ``(H, W)`` network input size. seq_len: T, frames per clip.
        interpolation: test-time resize interpolation. clip: the whole ``clip`` node (schemes, T).
        datamodule: every saved datamodule hyper-parameter.
    """

    size: tuple[int, int]
    seq_len: int
    interpolation: str = "bilinear"
    clip: dict[str, Any] = field(default_factory=dict)
    datamodule: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hparams(cls, dm: dict[str, Any]) -> CheckpointSettings:
        """From saved ``ReIDDataModule`` hyper-parameters (``transforms``, ``clip``)."""
        tr, clip = dict(dm.get("transforms") or {}), dict(dm.get("clip") or {})
        return cls(
            size=tuple(int(x) for x in tr.get("size", (256, 128))),
            seq_len=int(clip.get("seq_len", 8)),
            interpolation=tr.get("test_interpolation", "bilinear"),
            clip=clip,
            datamodule=dict(dm),
        )


def read_checkpoint(path: str | Path) -> io.BytesIO:
    """The bytes of a checkpoint file in memory (read once; parsed by :func:`load_checkpoint`).

    Raises:
        FileNotFoundError: the file does not exist (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return io.BytesIO(path.read_bytes())


def load_checkpoint(path: str | Path | io.BytesIO, name: str | Path | None = None) -> dict[str, Any]:
    """The checkpoint dict of a ``train.py`` checkpoint (on the CPU); ``path`` may be an in-memory copy.

    Parsed with :func:`vidreid.runtime.checkpoint_io.load_checkpoint_file` (``torch.load(weights_only=True)``):
    tensors and plain containers only, so a tampered file cannot run code.

    Args:
        name: how the file is named in errors (default: ``path`` when it is a path).
    Raises:
        FileNotFoundError: the file does not exist (the message names it).
        CheckpointError: not a readable checkpoint, or refused as unsafe (the message names the file).
        KeyError: not a vidreid checkpoint, or one written before the network config was saved as ``net``
            (retrain, or evaluate it with the vidreid version that wrote it).
    """
    name = name if name is not None else path if isinstance(path, str | Path) else "checkpoint"
    ckpt = load_checkpoint_file(path, name=name)
    hp = ckpt.get("hyper_parameters") or {}
    if "net" not in hp:
        found = sorted(hp) if hp else "none"
        raise KeyError(f"{name} is not a vidreid checkpoint of this version: its hyper-parameters ({found}) have no "
                       "'net' (the network config ReIDLitModule saves)")
    return ckpt


def checkpoint_settings(ckpt: dict[str, Any], path: str | Path = "checkpoint") -> CheckpointSettings:
    """The :class:`CheckpointSettings` of a loaded checkpoint dict.

    Raises:
        KeyError: the checkpoint has no datamodule hyper-parameters (it was not written by ``train.py``'s
            ``trainer.fit`` with the ``ReIDDataModule``).
    """
    dm = ckpt.get("datamodule_hyper_parameters")
    if not dm:
        raise KeyError(f"{path} has no datamodule_hyper_parameters (input size, clip length): it was not written by "
                       "train.py; pass seq_len= and size= with a network instead")
    return CheckpointSettings.from_hparams(dict(dm))


def load_module(path: str | Path | io.BytesIO | dict[str, Any], map_location: str = "cpu",
                **overrides: Any) -> ReIDLitModule:  # fmt: skip
    """The eval-mode ``ReIDLitModule`` of a checkpoint (path, in-memory copy or an already loaded dict), without
    ``torch.compile`` — what ``ReIDLitModule.load_from_checkpoint`` builds (saved hyper-parameters + overrides as
    init arguments, ``on_load_checkpoint``, strict ``load_state_dict``), from one safe parse of the file.

    Args:
        overrides: init arguments replacing the saved ones, e.g. ``evaluation=`` (re-ranking, st, distance).
    Raises:
        FileNotFoundError, CheckpointError, KeyError: see :func:`load_checkpoint`.
    """
    ckpt = path if isinstance(path, dict) else load_checkpoint(path)
    params = inspect.signature(ReIDLitModule.__init__).parameters
    kwargs = {k: v for k, v in ckpt["hyper_parameters"].items() if k in params}
    kwargs.update(overrides)
    kwargs.setdefault("compile", False)
    module = ReIDLitModule(**kwargs)
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"], strict=module.strict_loading)
    return module.to(map_location).eval()


def _network_of(ckpt: dict[str, Any]) -> nn.Module:
    return load_module(ckpt).net


def load_network(checkpoint: str | Path | nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """The eval-mode ``ReIDNet`` of a ``train.py`` checkpoint (path), a ``ReIDLitModule`` or a network."""
    if isinstance(checkpoint, str | Path):
        checkpoint = load_module(checkpoint)
    net = getattr(checkpoint, "net", checkpoint)
    return net.to(device).eval()
