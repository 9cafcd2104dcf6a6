"""Kill-and-resume: a run killed in the middle of epoch 2 resumes from last.ckpt (ckpt_path=last), replays
that epoch with the same batches, and ends with the same weights as an uninterrupted run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from tests.conftest import compose
from tests.tiny import tiny_cache, tiny_overrides


class Killed(RuntimeError):
    """Stands for SIGKILL: nothing after it is written (ModelCheckpoint does not save on exceptions)."""


class KillAt(pl.Callback):
    """Raise :class:`Killed` after ``batch`` training batches of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx + 1 == self.batch:
            raise Killed(f"killed at epoch {trainer.current_epoch} batch {batch_idx}")


BATCHES: dict[str, dict[int, list[list[int]]]] = defaultdict(lambda: defaultdict(list))
THREADS: dict[str, set[int]] = defaultdict(set)  # torch intra-op threads seen by the training steps of each run


class RecordBatches(pl.Callback):
    """Record the pids of every training batch per epoch under ``BATCHES[name]``."""

    def __init__(self, name: str):
        self.name = name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        BATCHES[self.name][trainer.current_epoch].append(batch[1].tolist())
        THREADS[self.name].add(torch.get_num_threads())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tiny_cache(tmp_path_factory)


def _cfg(cache_dir: Path, out: Path, name: str, *extra: str):
    return compose("train", tiny_overrides(
        cache_dir, "trainer.max_epochs=2", "test=false", "logger=none", "trainer.deterministic=true",
        "+trainer.limit_val_batches=0",  # weights are compared, no need to validate
        "+trainer.limit_train_batches=2",  # 2-batch epochs: enough to be killed in the middle of one
        "sampler.num_identities=2",  # 2x2 clips per batch: cheap steps
        f"+callbacks.record._target_={__name__}.RecordBatches", f"+callbacks.record.name={name}", *extra,
    ), output_dir=out)  # fmt: skip


def test_killed_run_resumes_from_last_ckpt_and_matches_uninterrupted(tmp_path, cache_dir, monkeypatch):
    import vidreid.data.datamodule as datamodule
    from vidreid.runs.train import run_train

    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    chosen = 2  # what the thread policy picks at the start of the full and the killed run (2 usable CPUs)
    monkeypatch.setattr(datamodule, "phase_threads", lambda phase, *a, **k: chosen if phase == "train" else 1)

    _, full = run_train(_cfg(cache_dir, tmp_path / "full", "full"))
    steps_per_epoch = len(BATCHES["full"][0])
    assert steps_per_epoch == 2 and len(BATCHES["full"][1]) == steps_per_epoch

    run = tmp_path / "killed"
    kill = [f"+callbacks.kill._target_={__name__}.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=1"]
    with pytest.raises(Killed):
        run_train(_cfg(cache_dir, run, "killed", *kill))
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == steps_per_epoch  # end of epoch 1: only epoch 2 is lost
    assert last["ReIDDataModule"] == {"fit_threads": 2}  # the run's training thread count travels with it

    chosen = 1  # resumed where fewer CPUs are usable: the policy would now pick 1 thread; the run keeps its 2
    _, resumed = run_train(_cfg(cache_dir, run, "resumed", "ckpt_path=last"))
    assert THREADS["full"] == THREADS["killed"] == THREADS["resumed"] == {2}
    # the sampler stream continues deterministically: the replayed epoch sees exactly the batches of the full run
    assert list(BATCHES["resumed"]) == [1]
    assert BATCHES["resumed"][1] == BATCHES["full"][1]
    assert BATCHES["killed"][1] == BATCHES["full"][1][:1]
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0), k
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["epoch"] == 1 and final["global_step"] == 2 * steps_per_epoch


def test_ckpt_path_last_without_a_previous_run_names_the_path(tmp_path, cache_dir):
    from vidreid.runs.train import run_train

    with pytest.raises(FileNotFoundError, match=r"checkpoints/last\.ckpt.*hydra\.run\.dir"):
        run_train(_cfg(cache_dir, tmp_path / "fresh", "fresh", "ckpt_path=last"))
