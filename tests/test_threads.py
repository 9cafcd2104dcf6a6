"""Thread policy (vidreid.runtime.threads): per-phase intra-op thread counts from the CPUs the process may use."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from vidreid.runtime import threads
from vidreid.runtime.threads import phase_threads, runnable_elsewhere, use_threads, worker_init_threads


def test_phase_rules(monkeypatch):
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    assert phase_threads("ranking", cpus=16) == 1
    assert phase_threads("worker", cpus=16) == 1
    assert phase_threads("reranking", cpus=16) == 16
    # DataLoader workers are not budgeted (they sleep most of a uint8-loader step): 2 cores train on 2 threads
    assert phase_threads("train", cpus=2) == 2
    assert phase_threads("train", ranks_per_node=4, cpus=16) == 4
    assert phase_threads("train", ranks_per_node=3, cpus=2) == 1
    assert phase_threads("eval", cpus=16) == 16


def test_load_never_changes_the_count(monkeypatch):
    """Same command, same numbers: the count follows the usable CPUs and the config, not what other processes are
    doing when the run starts (a count taken from /proc/loadavg gave different weights beside a busy process)."""
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    idle = {p: phase_threads(p) for p in ("train", "eval", "reranking")}
    monkeypatch.setattr(threads, "runnable_elsewhere", lambda *a, **k: 7)  # a busy machine
    assert {p: phase_threads(p) for p in ("train", "eval", "reranking")} == idle == {
        "train": 2, "eval": 2, "reranking": 2}
    # the measured advice survives as a log hint, never as a decision
    assert "fewer threads" in threads.busy_hint(2)
    assert threads.busy_hint(1) is None and threads.busy_hint(2, ranks_per_node=2) is None
    monkeypatch.setattr(threads, "runnable_elsewhere", lambda *a, **k: 0)
    assert threads.busy_hint(2) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a busy process next to the decision")
def test_busy_process_does_not_change_the_count(monkeypatch):
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert phase_threads("train") == 2 and phase_threads("eval") == 2
    finally:
        proc.kill()
        proc.wait()


def test_configured_count_wins(monkeypatch):
    monkeypatch.setenv("VIDREID_NUM_THREADS", "3")
    assert phase_threads("train", cpus=2, configured=1) == 1
    assert phase_threads("ranking", configured="2") == 2
    assert phase_threads("worker", configured=4) == 1
    with pytest.raises(ValueError, match="data.num_threads=0"):
        phase_threads("train", configured=0)


def test_affinity_is_the_budget(monkeypatch):
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert threads.available_cpus() == 3
    assert phase_threads("eval") == 3


def test_env_override_and_errors(monkeypatch):
    monkeypatch.setenv("VIDREID_NUM_THREADS", "3")
    assert phase_threads("ranking") == 3 and phase_threads("train", cpus=2) == 3
    assert phase_threads("worker") == 1  # never overridden: forked workers hang in libgomp with > 1 thread
    monkeypatch.setenv("VIDREID_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="VIDREID_NUM_THREADS"):
        phase_threads("train")
    monkeypatch.delenv("VIDREID_NUM_THREADS")
    with pytest.raises(ValueError, match="phase"):
        phase_threads("inference")
    with pytest.raises(ValueError, match="ranks_per_node"):
        phase_threads("train", ranks_per_node=0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/loadavg")
def test_runnable_elsewhere_sees_a_competing_process():
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert runnable_elsewhere(samples=5) >= 1  # a busy loop is runnable in every sample
    finally:
        proc.kill()
        proc.wait()


def test_use_threads_restores_and_worker_init():
    before = torch.get_num_threads()
    with use_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with use_threads(None):
        assert torch.get_num_threads() == before
    import vidreid.data.video_dataset  # noqa: F401 - imports OpenCV when the video extra is installed

    cv2 = sys.modules.get("cv2")
    cv2_before = cv2.getNumThreads() if cv2 is not None else None
    try:
        worker_init_threads(0)
        assert torch.get_num_threads() == 1
        if cv2 is not None:  # OpenCV's own pool is held to one thread in workers too
            assert cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before)
        if cv2 is not None:
            cv2.setNumThreads(cv2_before)
