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
    assert phase_threads("ranking", cpus=16, busy=0) == 1
    assert phase_threads("worker", cpus=16, busy=0) == 1
    assert phase_threads("reranking", cpus=16, busy=0) == 16
    assert phase_threads("reranking", cpus=2, busy=1) == 1  # one competing process on 2 cores
    assert phase_threads("reranking", cpus=2, busy=9) == 1
    # DataLoader workers are not budgeted (they sleep most of a uint8-loader step): 2 idle cores train on 2 threads
    assert phase_threads("train", cpus=2, busy=0) == 2
    assert phase_threads("train", cpus=2, busy=1) == 1  # ... and on 1 beside a competing process
    assert phase_threads("train", ranks_per_node=4, cpus=16, busy=0) == 4
    assert phase_threads("eval", cpus=16, busy=3) == 13


def test_ddp_ranks_are_not_counted_twice(monkeypatch):
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "runnable_elsewhere", lambda: 7)
    assert phase_threads("train", ranks_per_node=2, cpus=16) == 8  # the other rank is budgeted, not "busy"
    assert phase_threads("train", cpus=16) == 9


def test_affinity_is_the_budget(monkeypatch):
    monkeypatch.delenv("VIDREID_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert threads.available_cpus() == 3
    assert phase_threads("eval", busy=0) == 3


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
