"""Crash-safe checkpoint files: write to a temporary sibling, flush to disk, then rename over the target.

Lightning's ``TorchCheckpointIO`` (2.6) serialises into memory and writes through an fsspec transaction
whose temporary file lives in the system temp dir; committing it is ``shutil.move``, which falls back to
copying *into the target path* when the temp dir is on another file system (the usual case on clusters
with a local ``/tmp`` and shared checkpoint storage). A failure during that copy (disk full, quota, node
lost) leaves a truncated ``last.ckpt``, and resuming then fails. Here the temporary file is created in the
checkpoint's own folder, so :func:`os.replace` is an atomic rename on POSIX: readers see either the old
complete file or the new complete file, never a partial one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save"]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``.

    On any error the temporary file is removed and the previous content of ``path`` (if any) is kept. The file
    gets the mode a plain ``open(path, "w")`` would give (``0o666`` minus the process umask, e.g. ``0644``), not
    the ``0600`` of the temporary file ``mkstemp`` creates.

    Raises:
        OSError (or whatever ``torch.save`` raised): the write failed; ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
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
