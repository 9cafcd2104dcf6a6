"""Checkpoint reading: tensors and plain containers only (a pickle payload is refused before it runs), an
unreadable file named in the error, and one parse of the file per ``vidreid.embed`` call."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tests.tiny import tiny_cache, train_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("ckpt_train"), tiny_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def tiny_frames(tmp_path_factory, checkpoint) -> list[Path]:
    """The frames of one synthetic query tracklet (written by the tiny run's data generation)."""
    folder = sorted(p.parent for p in tiny_cache(tmp_path_factory).rglob("query/*/*/F000.jpg"))[0]
    return sorted(folder.glob("F*.jpg"))


class _CreatesAFile:
    """Pickles as ``open(path, "w")``: unpickling it with the unrestricted unpickler creates ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _tampered(checkpoint: Path, out: Path, marker: Path) -> Path:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["payload"] = _CreatesAFile(marker)
    torch.save(ckpt, out)
    return out


def test_a_tampered_checkpoint_is_refused_and_its_payload_never_runs(checkpoint, tiny_frames, tmp_path):
    """Before: vidreid.embed loaded checkpoints with weights_only=False, which ran the payload (the file appeared)."""
    import vidreid
    from vidreid.deploy.onnx_export import export_onnx
    from vidreid.runtime.checkpoint_io import AtomicCheckpointIO, CheckpointError

    marker = tmp_path / "pwned.txt"
    bad = _tampered(checkpoint, tmp_path / "tampered.ckpt", marker)
    with pytest.raises(CheckpointError, match=r"tampered\.ckpt: refused: .*objects other than tensors"):
        vidreid.embed(bad, [tiny_frames], progress=False, device="cpu")
    with pytest.raises(CheckpointError, match=r"tampered\.ckpt: refused"):
        export_onnx(bad, tmp_path / "x.onnx", seq_len=4, size=(64, 32))
    with pytest.raises(CheckpointError, match=r"tampered\.ckpt: refused"):  # train.py resume / test_ckpt=best
        AtomicCheckpointIO().load_checkpoint(bad)
    assert not marker.exists()


def test_a_saved_config_naming_a_foreign_class_is_refused(checkpoint, tiny_frames, tmp_path):
    """Saved configs are instantiated by name when the network is rebuilt: only vidreid's and torch.optim's
    classes may be named."""
    import vidreid
    from vidreid.runtime.checkpoint_io import CheckpointError

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["net"]["backbone"]["_target_"] = "os.system"
    torch.save(ckpt, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match=r"foreign\.ckpt: refused: .*'os\.system'"):
        vidreid.embed(tmp_path / "foreign.ckpt", [tiny_frames], progress=False, device="cpu")


def test_a_corrupted_checkpoint_is_named_as_unreadable(checkpoint, tiny_frames, tmp_path):
    """Before: torch's zip-reader message ('PytorchStreamReader failed reading zip archive') without the file."""
    import vidreid
    from vidreid.runtime.checkpoint_io import CheckpointError

    data = checkpoint.read_bytes()
    for name, content in (("truncated.ckpt", data[: len(data) // 2]), ("noise.ckpt", b"not a checkpoint" * 64)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=rf"{name} is not a readable checkpoint"):
            vidreid.embed(tmp_path / name, [tiny_frames], progress=False, device="cpu")


def test_embed_opens_and_parses_the_checkpoint_once(checkpoint, tiny_frames, monkeypatch):
    """Before: one read but three ``torch.load`` parses per call (settings, module check, load_from_checkpoint)."""
    import vidreid

    opened: list[str] = []
    target = str(checkpoint)
    watching = [True]

    def hook(event, args):
        if watching[0] and event == "open" and args and str(args[0]) == target:
            opened.append(event)

    sys.addaudithook(hook)  # audit hooks cannot be removed: it stops counting below
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    try:
        emb = vidreid.embed(checkpoint, [tiny_frames], progress=False, device="cpu")
    finally:
        watching[0] = False
    assert emb.shape == (1, 512)
    assert len(opened) == 1 and len(loads) == 1, (opened, loads)


