"""ONNX export of the eval-mode network for a fixed clip length T, checked against PyTorch.

Needs the optional ``export`` extra (``pip install -e ".[export]"``: onnx, onnxscript, onnxruntime).
The graph maps ImageNet-normalised RGB clips ``clips (B, T, 3, H, W) float32`` (B dynamic, T/H/W fixed)
to ``embedding (B, D) float32`` — the per-clip embedding; averaging the clips of a tracklet
(:func:`vidreid.evaluation.features.embed_tracklet_batch`) stays with the caller.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidreid.engine.lit_module import ReIDLitModule

log = logging.getLogger(__name__)

__all__ = ["export_onnx"]


def _network(model: str | Path | nn.Module) -> nn.Module:
    """The eval-mode CPU network of a checkpoint path, a ``ReIDLitModule`` or a network."""
    if isinstance(model, str | Path):
        if not Path(model).is_file():
            raise FileNotFoundError(f"checkpoint not found: {model}")
        model = ReIDLitModule.load_from_checkpoint(str(model), map_location="cpu", compile=False)
    return getattr(model, "net", model).cpu().eval()


def _export(net: nn.Module, x: torch.Tensor, path: Path, opset: int | None) -> str:
    names = dict(input_names=["clips"], output_names=["embedding"])
    try:  # the torch.export-based exporter (needs onnxscript)
        batch = torch.export.Dim("batch", min=1, max=4096)
        # one self-contained file (weights inside; fine below ONNX's 2 GB protobuf limit)
        torch.onnx.export(net, (x,), str(path), dynamo=True, dynamic_shapes=({0: batch},), opset_version=opset,
                          external_data=False, verbose=False, **names)  # fmt: skip
        return "dynamo"
    except Exception as e:  # noqa: BLE001 - fall back to the TorchScript exporter, say why
        log.warning("torch.onnx.export(dynamo=True) failed (%s: %s); retrying with the TorchScript exporter",
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        dyn = {"clips": {0: "batch"}, "embedding": {0: "batch"}}
        torch.onnx.export(net, (x,), str(path), dynamo=False, dynamic_axes=dyn, opset_version=opset or 17, **names)
        return "torchscript"


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
    """Export the eval-mode network to ONNX and compare its output with PyTorch's.

    Args:
        model: a ``train.py`` checkpoint path, a ``ReIDLitModule`` or a ``ReIDNet``.
        path: the ``.onnx`` file to write.
        seq_len: T, frames per clip (fixed in the graph). size: ``(H, W)`` of the frames (fixed).
        opset: ONNX opset (``None`` = the exporter's default).
        check: validate with ``onnx.checker`` and, when onnxruntime is installed, run both on a random
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
    exporter = _export(net, torch.randn(2, seq_len, 3, h, w, generator=gen), path, opset)
    out: dict[str, Any] = {"path": path, "exporter": exporter, "checked_with": None, "max_abs_diff": None}
    x = torch.randn(3, seq_len, 3, h, w, generator=gen)
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
