"""Thread policy: how many torch intra-op threads each phase of a run uses.

torch starts with one intra-op thread per core it sees. That is the right choice for one big dense kernel on an
otherwise idle machine and the wrong one everywhere else: every OpenMP region waits for its slowest thread, so a
thread that the OS deschedules (another process, another DDP rank on the same node) stalls all of them. Measured
on 2 shared cores (issue 13): k-reciprocal re-ranking of 11,310 items took 15.8 s in its ``topk`` with 2 threads
against 1.4 s with 1, and the default training step ran 1.5x slower with 2 threads than with 1 beside one
competing process. On an idle machine the same kernels gain from threads (the training step: 72 vs 37 clips/s
with 2 vs 1 threads on 2 idle cores), so no fixed number is right in both cases.

The policy (:func:`phase_threads`) budgets the CPUs this process may run on (``os.sched_getaffinity``, not
``os.cpu_count``: containers and ``taskset`` restrict it), divides them among the DDP ranks of the node and, for a
single process, takes off what other processes keep busy at the moment of the decision (:func:`runnable_elsewhere`,
from ``/proc/loadavg``):

* ``"ranking"``: 1 — CMC/mAP/mINP is two memory-bound compare passes plus sparse work on the positives.
* ``"worker"``: 1 — a DataLoader worker decodes JPEGs; torch ops inside it must not fan out (and a forked worker
  whose parent had used several libgomp threads hangs in its first multi-threaded region).
* ``"reranking"``, ``"eval"``, ``"train"``: ``max(1, cpus // ranks_per_node - busy)`` with ``busy`` the runnable
  threads of other processes (0 under DDP, where the other ranks are already budgeted).

DataLoader workers are not budgeted: with clips kept uint8 from decode to the network they sleep most of the
step. Measured with ``benchmarks/bench_threads.py`` (the embedded default, 2 workers, AMD EPYC 2 cores): the two
workers together used 3-9 % of one core while the training steps ran (its ``worker_cpu_share`` column);
the paper recipes decode 8 frames per clip (~1.2 ms) against a forward/backward of tens to hundreds of
milliseconds per clip on the CPU. Budgeting a whole core per worker halved the default's training speed on 2 idle
cores.

Because the training count depends on the load when a run starts, a run logs it, stores it in its checkpoints
(:class:`vidreid.data.datamodule.ReIDDataModule` ``state_dict``) and a resumed run uses the stored count, so
resuming stays exact. ``VIDREID_NUM_THREADS=<n>`` pins every phase but ``"worker"`` (experiments, benchmarks,
reproducing a run on a busier machine).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["available_cpus", "phase_threads", "runnable_elsewhere", "use_threads", "worker_init_threads"]

PHASES = ("ranking", "reranking", "train", "eval", "worker")
ENV = "VIDREID_NUM_THREADS"


def available_cpus() -> int:
    """CPUs this process may run on: ``len(os.sched_getaffinity(0))`` (``os.cpu_count()`` where the platform has
    no affinity call), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS / Windows
        return max(1, os.cpu_count() or 1)


def runnable_elsewhere(samples: int = 3, interval_s: float = 0.002) -> int:
    """Threads of *other* processes that are runnable right now: the running count of ``/proc/loadavg`` minus
    this process's own running threads, the minimum over ``samples`` reads ``interval_s`` apart (a CPU-bound
    competitor is runnable in every read, a short-lived blip is not). 0 where ``/proc`` is absent."""
    import time

    counts = []
    for i in range(max(1, samples)):
        try:
            running = int(open("/proc/loadavg").read().split()[3].split("/")[0])
            own = 0
            for tid in os.listdir("/proc/self/task"):
                try:
                    stat = open(f"/proc/self/task/{tid}/stat").read()
                except OSError:  # the thread ended
                    continue
                own += stat[stat.rindex(")") + 2] == "R"
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - own))
        if i + 1 < samples:
            time.sleep(interval_s)
    return min(counts)


def phase_threads(phase: str, ranks_per_node: int = 1, cpus: int | None = None, busy: int | None = None) -> int:
    """Intra-op threads for ``phase`` (see the module docstring for the rules and the measurements behind them).

    Args:
        phase: one of ``"ranking"``, ``"reranking"``, ``"train"``, ``"eval"``, ``"worker"``.
        ranks_per_node: DDP processes sharing this node's CPUs.
        cpus: CPUs to budget (default :func:`available_cpus`).
        busy: CPUs other processes keep busy (default :func:`runnable_elsewhere` for a single process, 0 under
            DDP).

    Returns:
        A thread count >= 1. ``$VIDREID_NUM_THREADS`` (a positive integer), when set, wins for every phase but
        ``"worker"`` (always 1).

    Raises:
        ValueError: on an unknown phase, ``ranks_per_node < 1`` or a bad ``$VIDREID_NUM_THREADS``.
    """
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}: expected one of {PHASES}")
    if ranks_per_node < 1:
        raise ValueError(f"ranks_per_node={ranks_per_node}: expected >= 1")
    if phase == "worker":
        # never overridden: a forked DataLoader worker inherits libgomp's thread-pool state from its parent, and its
        # first parallel region with > 1 thread waits forever for threads that do not exist in the child
        return 1
    env = os.environ.get(ENV)
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"${ENV}={env!r}: expected a positive integer")
        return int(env)
    if phase == "ranking":
        return 1
    budget = max(1, (available_cpus() if cpus is None else cpus) // ranks_per_node)
    if busy is None:
        busy = runnable_elsewhere() if ranks_per_node == 1 and budget > 1 else 0
    return max(1, budget - busy)


@contextmanager
def use_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads and restore the previous count after (``None``: leave the
    setting alone)."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def worker_init_threads(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """``DataLoader(worker_init_fn=...)``: one intra-op thread per worker (``phase_threads("worker")``), for torch
    and, when it is loaded (the ``video`` extra), OpenCV, whose own pool would otherwise fan out in every worker."""
    n = phase_threads("worker")
    torch.set_num_threads(n)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(n)
