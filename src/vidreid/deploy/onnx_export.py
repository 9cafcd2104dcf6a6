"""ONNX export of the eval-mode network for a fixed clip length T, checked against PyTorch.

Needs the optional ``export`` extra (``pip install -e ".[export]"``: onnx, onnxscript, onnxruntime).
The graph is the deployable model, the network exactly as PyTorch runs it in eval mode:

- input ``clips``: ``uint8 (B, T, 3, H, W)``, RGB pixels in ``[0, 255]``, channel-first frames; B dynamic,
  T and (H, W) fixed to the checkpoint's clip length and input size. The normalisation
  ``(x − 255·mean) / (255·std)`` (``data.transforms.mean/std``, ImageNet's by default) is inside the graph.
- output ``embedding``: ``float32 (B, D)``, one embedding per clip (not L2-normalised; the test feature the
  evaluation ranks, with flip-test summed in when the network has it).

A tracklet's embedding is the mean of its clips' embeddings, the clips cut by the test scheme
(``all_frames``: :func:`vidreid.data.clip_sampling.all_frames`); docs/deploy.md shows it with onnxruntime, and
``vidreid.embed(..., backend="onnxruntime")`` runs it (:mod:`vidreid.deploy.onnxruntime`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidreid.deploy.loading import load_module

log = logging.getLogger(__name__)

__all__ = ["export_onnx"]


def _network(model: str | Path | nn.Module) -> nn.Module:
    """The eval-mode CPU network of a checkpoint path, a ``ReIDLitModule`` or a network."""
    if isinstance(model, str | Path):
        model = load_module(model)
    return getattr(model, "net", model).cpu().eval()


#: loggers of the exporter stack that print INFO progress lines (``[torch.onnx] Obtain model graph ...``, onnxscript's
#: optimizer and rewriter passes); raised to WARNING for the export, so warnings and errors still show
_EXPORT_LOGGERS = ("onnxscript", "torch.onnx", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes",
                   "onnx_ir")  # fmt: skip


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress output: its loggers at WARNING, and the ``print`` lines it writes to stdout
    (``[torch.onnx] ...``) captured and sent to this module's DEBUG log."""
    loggers = [logging.getLogger(n) for n in _EXPORT_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
        for line in out.getvalue().splitlines():
            log.debug("exporter: %s", line)


def _export(net: nn.Module, x: torch.Tensor, path: Path, opset: int | None) -> str:
    names = dict(input_names=["clips"], output_names=["embedding"])
    try:  # the torch.export-based exporter (needs onnxscript)
        batch = torch.export.Dim("batch", min=1, max=4096)
        # one self-contained file (weights inside; fine below ONNX's 2 GB protobuf limit)
        with _quiet_exporter():
            torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=({0: batch},), opset_version=opset,
                              external_data=False, verbose=False, **names)  # fmt: skip
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - fall back to the TorchScript exporter, say why
        log.warning("torch.onnx.export(dynamo=True) failed (%s: %s); retrying with the TorchScript exporter",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        dyn = {"clips": {0: "batch"}, "embedding": {0: "batch"}}
        with _quiet_exporter():
            torch.onnx.export(net, (x,), str(path), dynamo=False, dynamic_axes=dyn, opset_version=opset or 17,
                              **names)  # fmt: skip
        return "torchscript"


def _pixels(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)


@torch.no_grad()
def export_onnx(
    model: str | Path | nn.Module,
    path: str | Path,
    seq_len: int,
    size: Sequence[int],
    *,
    opset: int | None = None,
    check: bool = True,
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Export the eval-mode network to ONNX (uint8 clips in, embeddings out: the module docstring's contract) and
    compare its output with PyTorch's.

    Args:
        model: a ``train.py`` checkpoint path, a ``ReIDLitModule`` or a ``ReIDNet``.
        path: the ``.onnx`` file to write.
        seq_len: T, frames per clip (fixed in the graph). size: ``(H, W)`` of the frames (fixed).
        opset: ONNX opset (``None`` = the exporter's default).
        check: validate with ``onnx.checker`` and, when onnxruntime is installed, run both on a random uint8
            batch of 3 clips (a batch size other than the traced 2, which exercises the dynamic axis).
        atol: largest tolerated absolute difference of the embeddings.
    Returns:
        ``{"path", "exporter", "checked_with", "max_abs_diff", "embedding_dim"}`` (``max_abs_diff`` is
        ``None`` when onnxruntime is missing: the graph is then only checked by ``onnx.checker``).
    Raises:
        ImportError: onnx is not installed (the message names the extra).
        AssertionError: the ONNX embeddings differ from PyTorch's by more than ``atol``.
    """
    try:
        import onnx
    except ImportError as e:
        raise ImportError('ONNX export needs the export extra: pip install -e ".[export]"') from e
    net = _network(model)
    h, w = int(size[0]), int(size[1])
    gen = torch.Generator().manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter = _export(net, _pixels((2, seq_len, 3, h, w), gen), path, opset)
    out: dict[str, Any] = {"path": path, "exporter": exporter, "checked_with": None, "max_abs_diff": None}
    x = _pixels((3, seq_len, 3, h, w), gen)
    ref = net(x).float()
    out["embedding_dim"] = int(ref.shape[1])
    if not check:
        return out
    onnx.checker.check_model(str(path), full_check=True)
    out["checked_with"] = "onnx.checker"
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s checked with onnx.checker only, outputs not compared", path)
        return out
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(["embedding"], {"clips": x.numpy()})[0])
    diff = float((got - ref).abs().max())
    out.update(checked_with="onnxruntime", max_abs_diff=diff)
    assert got.shape == ref.shape and diff <= atol, (
        f"ONNX output differs from PyTorch: shapes {tuple(got.shape)} vs {tuple(ref.shape)}, max |diff| {diff:.3g} > {atol}"
    )
    log.info("ONNX export %s (%s) matches PyTorch: max |diff| %.2e", path, exporter, diff)
    return out
