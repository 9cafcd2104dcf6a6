"""Bad input: every case gets a clear error naming the path or value and what was expected, and loses
nothing (no half-written files, the last good checkpoint kept). W&B without network is in test_wandb.py."""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from PIL import Image

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides
from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.video_dataset import CorruptFrameError, TestTrackletDataset, TrainClipDataset


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


def _frames(folder: Path, colours: list[tuple[int, int, int]], size=(16, 8)) -> list[Path]:
    """Solid-colour JPEG frames F000.jpg, F001.jpg, ... (H, W = size)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, c in enumerate(colours):
        p = folder / f"F{i:03d}.jpg"
        Image.new("RGB", (size[1], size[0]), c).save(p, quality=100)
        paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------ dataset root
def _setup_error(cfg) -> BaseException:
    """The error the datamodule raises at setup (Hydra wraps it in InstantiationException: its cause)."""
    with pytest.raises(Exception) as e:
        instantiate(cfg.data).setup("fit")
    err = e.value
    assert str(cfg.dataset.root) in str(err)  # the path is in the message the user sees either way
    return err.__cause__ or err


def test_missing_dataset_root_names_the_path_and_layout(tmp_path):
    cfg = compose("train", ["dataset=mars", f"dataset.root={tmp_path / 'nowhere' / 'MARS'}"], output_dir=tmp_path)
    err = _setup_error(cfg)
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    assert f"missing {tmp_path / 'nowhere' / 'MARS'}" in msg and "Expected layout" in msg and "bbox_train" in msg


def test_wrong_layout_names_the_missing_file(tmp_path):
    """A MARS root with image folders but no info/ protocol files: the first missing file is named."""
    root = tmp_path / "MARS"
    (root / "bbox_train").mkdir(parents=True)
    (root / "bbox_test").mkdir()
    cfg = compose("train", ["dataset=mars", f"dataset.root={root}"], output_dir=tmp_path)
    err = _setup_error(cfg)
    assert isinstance(err, FileNotFoundError)
    assert re.search(re.escape(f"missing {root / 'info'}") + r"/\w+", str(err)) and "Expected layout" in str(err)


# ------------------------------------------------------------------------------------------ frames and tracklets
def test_corrupt_frame_fails_with_the_path(tmp_path):
    paths = _frames(tmp_path / "t", [(200, 0, 0), (0, 200, 0), (0, 0, 200)])
    paths[1].write_bytes(b"\xff\xd8 not really a jpeg")
    t = Tracklet(tuple(paths), pid=1, camid=0)
    ds = TestTrackletDataset([t], [], ClipSampler(seq_len=3, test_scheme="all_frames"), (16, 8))
    with pytest.raises(CorruptFrameError, match=re.escape(str(paths[1]))):
        ds[0]


def test_corrupt_frame_is_replaced_by_its_nearest_neighbour_with_skip_corrupt(tmp_path, caplog):
    paths = _frames(tmp_path / "t", [(200, 0, 0), (0, 200, 0), (0, 0, 200)])
    paths[2].write_bytes(b"")  # empty file: the last frame's nearest readable neighbour is frame 1 (green)
    t = Tracklet(tuple(paths), pid=1, camid=0)
    ds = TestTrackletDataset([t], [], ClipSampler(seq_len=3, test_scheme="all_frames"), (16, 8), skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        item = ds[0]
    frames = item["frames"][item["clips"][0]]  # (3, 3, H, W) uint8
    assert torch.equal(frames[2], frames[1]) and not torch.equal(frames[0], frames[1])
    assert int(frames[1, 1].float().mean()) > 150  # green channel of the green frame
    assert any(str(paths[2]) in r.getMessage() and "skip_corrupt" in r.getMessage() for r in caplog.records)


def test_a_tracklet_of_only_corrupt_frames_fails_even_with_skip_corrupt(tmp_path):
    paths = _frames(tmp_path / "t", [(1, 2, 3), (4, 5, 6)])
    for p in paths:
        p.write_bytes(b"garbage")
    t = Tracklet(tuple(paths), pid=1, camid=0)
    ds = TestTrackletDataset([t], [], ClipSampler(seq_len=2), (16, 8), skip_corrupt=True)
    with pytest.raises(CorruptFrameError, match=re.escape(str(paths[0]))):
        ds[0]


def test_empty_tracklet_is_refused_or_skipped_and_counted(tmp_path):
    with pytest.raises(ValueError, match=r"empty tracklet \(pid=3, camid=1\): expected at least one frame"):
        Tracklet((), pid=3, camid=1)
    with pytest.raises(ValueError, match="empty tracklet: length 0"):
        ClipSampler(seq_len=4).test(0)
    # a parser meeting an empty tracklet folder (DukeMTMC-VideoReID has some) skips it and counts it
    from vidreid.data.datasets.duke_video import DukeVideo

    root = tmp_path / "Duke"
    for split, pid in (("train", 1), ("train", 2), ("query", 7), ("gallery", 7)):
        folder = root / split / f"{pid:04d}" / "0001"
        folder.mkdir(parents=True, exist_ok=True)
        cam = 1 if split != "gallery" else 2
        Image.new("RGB", (8, 16)).save(folder / f"{pid:04d}_C{cam}_F0001_X0001{pid}.jpg")
    (root / "gallery" / "0007" / "0002").mkdir()  # empty tracklet folder
    data = DukeVideo(root)
    assert len(data.train) == 2 and len(data.query) == 1 and len(data.gallery) == 1
    assert data.extra["empty_tracklet_folders"] == 1
    # the embedding API names an empty folder
    from vidreid.deploy.inference import as_tracklet as _as_tracklet

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty"))):
        _as_tracklet(tmp_path / "empty", 0)


def test_tracklet_shorter_than_t_is_padded(tmp_path):
    """2 frames, T=4: restricted-random training pads with the last frame (STAFormer, docs/methods.md §1.4); the
    all-frames test repeats the tail until the length is a multiple of T and re-sorts: one clip [0, 0, 1, 1]."""
    from vidreid.data.transforms import build_transforms

    paths = _frames(tmp_path / "t", [(250, 0, 0), (0, 0, 250)])
    t = Tracklet(tuple(paths), pid=0, camid=0)
    clip = ClipSampler(seq_len=4, train_scheme="restricted_random", test_scheme="all_frames")
    tf = build_transforms(train=True, size=(16, 8), flip_p=0.0, erasing_p=0.0)
    x, pid, camid = TrainClipDataset([t], clip, tf, (16, 8))[0]
    assert x.shape == (4, 3, 16, 8) and (pid, camid) == (0, 0)
    assert torch.equal(x[1], x[2]) and torch.equal(x[2], x[3]) and not torch.equal(x[0], x[1])
    item = TestTrackletDataset([t], [], clip, (16, 8))[0]
    assert item["clips"].tolist() == [[0, 0, 1, 1]]


# ------------------------------------------------------------------------------------------ config
def test_unknown_config_option_gives_hydras_message(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        compose("train", ["trainer.max_epoch=3"], output_dir=tmp_path)
    msg = str(e.value)
    assert "Could not override 'trainer.max_epoch'" in msg and "+trainer.max_epoch=3" in msg
    with pytest.raises(ConfigCompositionException, match=r"Could not find 'aggregator/tempavg'") as e:
        compose("train", ["aggregator=tempavg"], output_dir=tmp_path)
    assert "temporal_avg" in str(e.value)  # the available options are listed


# ------------------------------------------------------------------------------------------ training failures
class PoisonAt(pl.Callback):
    """Fill the first network weight with NaN at the first batch of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            with torch.no_grad():
                next(pl_module.net.parameters()).fill_(float("nan"))


def test_nan_loss_stops_with_step_and_terms_and_keeps_the_last_good_checkpoint(tmp_path, cache_dir):
    from vidreid.engine.lit_module import NonFiniteLossError
    from vidreid.runs.train import run_train

    cfg = compose("train", tiny_overrides(cache_dir, "logger=none", "test=false", "+trainer.limit_train_batches=2",
                                          "+trainer.limit_val_batches=0", "sampler.num_identities=2",
                                          f"+callbacks.poison._target_={__name__}.PoisonAt", "+callbacks.poison.epoch=1"),
                  output_dir=tmp_path)  # fmt: skip
    with pytest.raises(NonFiniteLossError) as e:
        run_train(cfg)
    msg = str(e.value)
    m = re.search(r"non-finite training loss at global step (\d+) \(epoch 1, batch 0\)", msg)
    assert m, msg
    assert "ce=nan" in msg and "triplet=nan" in msg and "loss=nan" in msg
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == int(m.group(1))  # the end of the good epoch
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


def test_checkpoint_write_failure_leaves_the_previous_file(tmp_path, monkeypatch):
    """A save that dies half-way (disk full) raises, and last.ckpt still holds the previous complete file."""
    import vidreid.runtime.checkpoint_io as cio

    io = cio.AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 0, "w": torch.arange(1000.0)}, path)
    before = path.read_bytes()

    def failing_save(obj, f, *a, **k):
        f.write(b"\x80\x02partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cio.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 1, "w": torch.zeros(1000)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # the temporary file is gone
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["epoch"] == 0
    io.save_checkpoint({"epoch": 2, "w": np.zeros(3)}, path)  # and the next save works
    assert torch.load(path, weights_only=False)["epoch"] == 2


def test_deferred_nan_check_names_the_first_bad_step(tmp_path, cache_dir):
    """On an accelerator the loss is not synced to the host every step: a device flag keeps the first non-finite
    step and is read every `finite_check_every_n_steps` and on each epoch's last batch (here forced on the CPU)."""
    from vidreid.engine.lit_module import NonFiniteLossError, ReIDLitModule
    from vidreid.runs.train import run_train

    cfg = compose("train", tiny_overrides(cache_dir, "logger=none", "test=false", "+trainer.limit_train_batches=3",
                                          "+trainer.limit_val_batches=0", "sampler.num_identities=2",
                                          f"+callbacks.poison._target_={__name__}.PoisonAt", "+callbacks.poison.epoch=1"),
                  output_dir=tmp_path)  # fmt: skip
    ReIDLitModule.defer_finite_check = True
    try:
        with pytest.raises(NonFiniteLossError, match=r"at global step 3 \(detected at step 5, epoch 1, batch 2\)"):
            run_train(cfg)  # poisoned at step 3 (epoch 1, batch 0); checked on the epoch's last batch (step 5)
    finally:
        ReIDLitModule.defer_finite_check = None
