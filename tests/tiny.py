"""The tiny synthetic run used by the operations tests (sweeps, W&B, resume, bad input, export): 8 train
identities at 64x32, ResNet-18, T=4, P×K = 4×2, 2 epochs on the CPU — seconds per run.

The synthetic set is generated once per pytest session into a shared cache folder (the generator is
deterministic and guarded by a file lock, so every test file may ask for it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.conftest import REPO

TINY = [
    "dataset.num_train_ids=8",
    "dataset.num_test_ids=6",
    "dataset.num_cams=4",
    "dataset.num_distractors=2",
    "dataset.image_size=[64,32]",
    "dataset.min_len=8",
    "dataset.max_len=12",
    "data.transforms.size=[64,32]",
    "data.num_workers=0",
    "backbone=resnet18",
    "backbone.last_stride=2",
    "aggregator.stripes=1",
    "clip.seq_len=4",
    "sampler.num_identities=4",
    "sampler.num_instances=2",
    "trainer.max_epochs=2",
    "trainer.check_val_every_n_epoch=1",
    "trainer.accelerator=cpu",
    "++callbacks.progress_bar=null",  # ++: evaluate.yaml has no callbacks
]


def tiny_cache(tmp_path_factory) -> Path:
    """The session-wide cache folder of the tiny synthetic set."""
    return tmp_path_factory.getbasetemp() / "tiny_synthetic_cache"


def tiny_overrides(cache_dir: Path, *extra: str) -> list[str]:
    return [*TINY, f"paths.cache_dir={cache_dir}", *extra]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for ``train.py``/``evaluate.py`` subprocesses: the source tree importable, 1 thread each,
    W&B never online by accident."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "1"}  # fmt: skip
    env.update(extra)
    return env


PYTHON = sys.executable


def train_tiny_checkpoint(out: Path, cache_dir: Path) -> Path:
    """Train the tiny run for one epoch of 2 batches (no test, no validation, no logger) into ``out``; returns its
    ``last.ckpt`` (the data settings travel inside the checkpoint: no run folder needed)."""
    from tests.conftest import compose
    from vidreid.runs.train import run_train

    cfg = compose("train", tiny_overrides(cache_dir, "trainer.max_epochs=1", "test=false", "logger=none",
                                          "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=0"),
                  output_dir=out)  # fmt: skip
    run_train(cfg)
    return out / "checkpoints" / "last.ckpt"
