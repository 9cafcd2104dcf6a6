"""Crash-safe checkpoint files: write to a temporary sibling, flush to disk, then rename over the target.

Lightning's ``TorchCheckpointIO`` (2.6) serialises into memory and writes through an fsspec transaction
whose temporary file lives in the system temp dir; committing it is ``shutil.move``, which falls back to
copying *into the target path* when the temp dir is on another file system (the usual case on clusters
with a local ``/tmp`` and shared checkpoint storage). A failure during that copy (disk full, quota, node
lost) leaves a truncated ``last.ckpt``, and resuming then fails. Here the temporary file is created in the
checkpoint's own folder, so :func:`os.replace` is an atomic rename on POSIX: readers see either the old
complete file or the new complete file, never a partial one.

Reading is :func:`load_checkpoint_file`: ``torch.load(weights_only=True)`` (a tampered pickle cannot run code),
saved configs may only name the project's and torch's classes, and an unreadable file is a
:class:`CheckpointError` naming it.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["SAFE_TARGET_PREFIXES", "AtomicCheckpointIO", "CheckpointError", "atomic_torch_save", "atomic_write",
           "load_checkpoint_file", "load_init_weights"]


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` into a temporary sibling ``tmp`` of ``path``, flush it to disk, then rename it over
    ``path``: readers never see a partial file.

    On any error the temporary file is removed and the previous content of ``path`` (if any) is kept. The file
    gets the mode a plain ``open(path, "w")`` would give (``0o666`` minus the process umask, e.g. ``0644``), not
    the ``0600`` of the temporary file ``mkstemp`` creates.

    Raises:
        OSError (or whatever ``write`` raised): the write failed; ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, 0o666 & ~_umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`: never leaves a partial file at ``path``.

    Raises:
        OSError (or whatever ``torch.save`` raised): the write failed; ``path`` is unchanged.
    """

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # into an open file, as before: torch.save's own path handling is not needed
            torch.save(obj, f)

    atomic_write(path, save)


def _umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it; it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves go through :func:`atomic_torch_save` (remote URLs such as
    ``s3://`` keep Lightning's own path). Use as a Trainer plugin: ``Trainer(plugins=[AtomicCheckpointIO()])``
    (``conf/trainer/default.yaml`` does)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint does not take storage_options")
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Resume/test loads: local files through :func:`load_checkpoint_file` (``weights_only=True`` whatever is
        asked, errors naming the file); remote URLs through Lightning with ``weights_only=True``."""
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_checkpoint_file(str(path).removeprefix("file://"), map_location=map_location)


# --- reading checkpoints: tensors and plain containers only -------------------------------------------------------

#: ``_target_`` prefixes a checkpoint's saved configs may name (the project's classes, torch optimisers and
#: schedulers); the configs are instantiated by name when a module is rebuilt, so any other target is refused.
SAFE_TARGET_PREFIXES = ("vidreid.", "torch.optim.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable (truncated, corrupted, not a checkpoint) or refused
    because it holds objects other than tensors and plain containers (a pickle that would run code)."""


def load_checkpoint_file(source: str | Path | bytes | io.BytesIO, name: str | Path | None = None,
                         map_location: Any = "cpu") -> dict[str, Any]:  # fmt: skip
    """``torch.load(source, weights_only=True)`` with errors that name the file.

    ``weights_only=True`` is torch's restricted unpickler: only tensors, storages and plain containers/primitives
    are rebuilt, and any other global in the pickle (``os.system``, ``pathlib.Path.touch``, a custom class) is
    refused *before* anything is called, so a tampered checkpoint cannot run code. Lightning's checkpoints
    (``state_dict``, ``hyper_parameters``, ``loops``, ``callbacks``, ``optimizer_states``, ``lr_schedulers``,
    datamodule hyper-parameters) hold nothing else, so no allow-list is needed.

    Args:
        source: a path, the file's bytes, or an in-memory copy (rewound before and after).
        name: how the file is named in errors (default: ``source`` when it is a path).
    Returns:
        The checkpoint dict.
    Raises:
        FileNotFoundError: no file at the path.
        CheckpointError: not a readable checkpoint (truncated or corrupted zip, not a torch file, not a dict), or
            refused as unsafe (the message names the file and the refused global).
    """
    name = str(name if name is not None else source if isinstance(source, str | Path) else "checkpoint")
    if isinstance(source, str | Path):
        if not Path(source).is_file():
            raise FileNotFoundError(f"checkpoint not found: {source}")
        buf: io.BytesIO = io.BytesIO(Path(source).read_bytes())
    else:
        buf = source if isinstance(source, io.BytesIO) else io.BytesIO(bytes(source))
    buf.seek(0)
    try:
        ckpt = torch.load(buf, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).strip().splitlines()
        why = next((ln.strip() for ln in lines if "GLOBAL" in ln), "")
        if why:  # the restricted unpickler met a global (a function or class to call): a code payload
            raise CheckpointError(
                f"{name}: refused: the checkpoint holds objects other than tensors and plain containers, which "
                f"could run code when loaded ({why}). It was not loaded and nothing in it was run; use checkpoints "
                "written by train.py from a source you trust.") from None  # fmt: skip
        msg = next((ln.strip() for ln in lines if "Unsupported" in ln), lines[0] if lines else "")
        raise CheckpointError(f"{name} is not a readable checkpoint: the file is corrupted or not a torch "
                              f"checkpoint (torch: {msg})") from None  # fmt: skip
    except (RuntimeError, EOFError, ValueError, OSError) as e:  # zip reader, truncated pickle, not a torch file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{name} is not a readable checkpoint: the file is truncated, corrupted or not a "
                              f"torch checkpoint (torch: {msg})") from None  # fmt: skip
    finally:
        buf.seek(0)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{name} is not a checkpoint: it holds a {type(ckpt).__name__}, expected a dict")
    bad = sorted(set(_unsafe_targets(ckpt.get("hyper_parameters"))) | set(_unsafe_targets(
        ckpt.get("datamodule_hyper_parameters"))))  # fmt: skip
    if bad:
        raise CheckpointError(f"{name}: refused: its saved configs name classes outside {SAFE_TARGET_PREFIXES} "
                              f"({bad}), which would be instantiated (run) when the model is rebuilt")  # fmt: skip
    return ckpt


def _unsafe_targets(node: Any) -> list[str]:
    """``_target_`` strings in a saved config (nested dicts/lists) that do not start with a safe prefix."""
    out: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "_target_" and not (isinstance(v, str) and v.startswith(SAFE_TARGET_PREFIXES)):
                out.append(str(v))
            else:
                out.extend(_unsafe_targets(v))
    elif isinstance(node, list | tuple):
        for v in node:
            out.extend(_unsafe_targets(v))
    return out


def load_init_weights(module: torch.nn.Module, path: str | Path, skip_mismatched: tuple[str, ...] = ("classifier",)
                      ) -> list[str]:  # fmt: skip
    """Initialise ``module`` (a ``ReIDLitModule``) with the weights of a ``train.py`` checkpoint (``init_ckpt``: a
    fine-tuning start, not a resume — no optimizer, epoch or scheduler state is taken). Read by
    :func:`load_checkpoint_file` (``weights_only=True``).

    Every tensor of the module must be in the checkpoint with the same shape, except parameters whose name contains
    one of ``skip_mismatched`` (the identity classifier, sized by the number of training identities), which keep
    their fresh initialisation when the shapes differ.

    Returns:
        the names of the tensors left at their initialisation.
    Raises:
        FileNotFoundError / CheckpointError: see :func:`load_checkpoint_file`. ValueError: a tensor missing from
        the checkpoint, an unexpected one, or a shape mismatch outside ``skip_mismatched`` (names the file, the
        tensors and their shapes: the checkpoint's network differs from the configured one).
    """
    ckpt = load_checkpoint_file(path)
    if "state_dict" not in ckpt:
        raise ValueError(f"{path}: no state_dict (expected a checkpoint written by train.py)")
    src, own = ckpt["state_dict"], module.state_dict()
    missing = sorted(set(own) - set(src))
    unexpected = sorted(set(src) - set(own))
    skipped, bad = [], []
    for k in sorted(set(own) & set(src)):
        if tuple(own[k].shape) != tuple(src[k].shape):
            (skipped if any(s in k for s in skip_mismatched) else bad).append(
                f"{k}: checkpoint {tuple(src[k].shape)} vs configured {tuple(own[k].shape)}")
    if missing or unexpected or bad:
        raise ValueError(f"init_ckpt={path}: the checkpoint's network differs from the configured one (configure the "
                         f"same backbone/aggregator/head as the checkpoint's run). Missing: {missing[:8]}; unexpected: "
                         f"{unexpected[:8]}; shape mismatches: {bad[:8]}")  # fmt: skip
    state = {k: v for k, v in src.items() if tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict({**own, **state}, strict=True)
    return [s.split(":")[0] for s in skipped]
