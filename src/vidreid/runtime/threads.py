"""Thread policy: how many torch intra-op threads each phase of a run uses.

torch starts with one intra-op thread per core it sees. That is the right choice for one big dense kernel on an
otherwise idle machine and the wrong one everywhere else: every OpenMP region waits for its slowest thread, so a
thread that the OS deschedules (another process, another DDP rank on the same node) stalls all of them. Measured
on 2 shared cores: k-reciprocal re-ranking of 11,310 items took 15.8 s in its ``topk`` with 2 threads
against 1.4 s with 1, and the default training step ran 1.5x slower with 2 threads than with 1 beside one
competing process. On an idle machine the same kernels gain from threads (the training step: 72 vs 37 clips/s
with 2 vs 1 threads on 2 idle cores), so no fixed number is right in both cases.

The policy (:func:`phase_threads`) budgets the CPUs this process may run on (``os.sched_getaffinity``, not
``os.cpu_count``: containers and ``taskset`` restrict it) and divides them among the DDP ranks of the node. It never
looks at the machine's load: the thread count fixes the float summation order, so a count taken from the load at
start-up made the same command give different weights beside a busy process (after 3 epochs of the default recipe
they differed by up to 3.9e-2 from an idle run's). The same command on the same machine therefore uses the same
count, idle or busy:

* ``"ranking"``: 1 — CMC/mAP/mINP is two memory-bound compare passes plus sparse work on the positives.
* ``"worker"``: 1 — a DataLoader worker decodes JPEGs; torch ops inside it must not fan out (and a forked worker
  whose parent had used several libgomp threads hangs in its first multi-threaded region).
* ``"reranking"``, ``"eval"``, ``"train"``: ``max(1, cpus // ranks_per_node)``.

A configured count wins over the policy for every phase but ``"worker"``: the ``data.num_threads`` config key (the
``configured`` argument), else ``$VIDREID_NUM_THREADS``. The measured advice for busy cores (fewer threads are
faster beside a competing process) is a log hint only (:func:`busy_hint`, from ``/proc/loadavg``): it never changes
the count.

DataLoader workers are not budgeted: with clips kept uint8 from decode to the network they sleep most of the
step. Measured with ``benchmarks/bench_threads.py`` (the embedded default, 2 workers, AMD EPYC 2 cores): the two
workers together used 3-9 % of one core while the training steps ran (its ``worker_cpu_share`` column);
the paper recipes decode 8 frames per clip (~1.2 ms) against a forward/backward of tens to hundreds of
milliseconds per clip on the CPU. Budgeting a whole core per worker halved the default's training speed on 2 idle
cores.

A run logs its training count, records it in ``metrics.json`` (``threads``) and stores it in its checkpoints
(:class:`vidreid.data.datamodule.ReIDDataModule` ``state_dict``); a resumed run uses the stored count, so resuming
on a machine with another CPU count stays exact.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["available_cpus", "busy_hint", "phase_threads", "runnable_elsewhere", "use_threads", "worker_init_threads"]

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


def _positive(value: object, what: str) -> int:
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{what}={value!r}: expected a positive integer")
    return int(text)


def phase_threads(phase: str, ranks_per_node: int = 1, cpus: int | None = None,
                  configured: int | str | None = None) -> int:
    """Intra-op threads for ``phase`` (see the module docstring for the rules and the measurements behind them).

    The result depends only on the arguments, ``$VIDREID_NUM_THREADS`` and the CPUs this process may use — never on
    the machine's load — so the same command on the same machine always gets the same count.

    Args:
        phase: one of ``"ranking"``, ``"reranking"``, ``"train"``, ``"eval"``, ``"worker"``.
        ranks_per_node: DDP processes sharing this node's CPUs.
        cpus: CPUs to budget (default :func:`available_cpus`).
        configured: a count from the run's config (``data.num_threads``); ``None`` = not set.

    Returns:
        A thread count >= 1: ``configured`` when given, else ``$VIDREID_NUM_THREADS`` when set, else the policy;
        ``"worker"`` is always 1.

    Raises:
        ValueError: on an unknown phase, ``ranks_per_node < 1``, or a ``configured`` / ``$VIDREID_NUM_THREADS`` that
            is not a positive integer.
    """
    if phase not in PHASES:
        raise ValueError(f"phase={phase!r}: expected one of {PHASES}")
    if ranks_per_node < 1:
        raise ValueError(f"ranks_per_node={ranks_per_node}: expected >= 1")
    if phase == "worker":
        # never overridden: a forked DataLoader worker inherits libgomp's thread-pool state from its parent, and its
        # first parallel region with > 1 thread waits forever for threads that do not exist in the child
        return 1
    if configured is not None:
        return _positive(configured, "data.num_threads")
    env = os.environ.get(ENV)
    if env:
        return _positive(env, f"${ENV}")
    if phase == "ranking":
        return 1
    return max(1, (available_cpus() if cpus is None else cpus) // ranks_per_node)


def busy_hint(n: int, ranks_per_node: int = 1) -> str | None:
    """A log hint, never a decision: when ``n > 1`` threads were chosen for a single process and other processes
    keep CPUs busy right now (:func:`runnable_elsewhere`), a sentence advising fewer threads (measured on 2 shared
    cores: the default training step ran 1.5x slower on 2 threads than on 1 beside one competing process);
    ``None`` otherwise."""
    if n <= 1 or ranks_per_node != 1:
        return None
    busy = runnable_elsewhere()
    if busy < 1:
        return None
    return (f"{busy} runnable thread(s) of other processes share these CPUs; beside busy processes fewer threads "
            f"are often faster (the count stays {n} so that results do not depend on the load: set "
            f"data.num_threads or ${ENV} to change it)")


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


_CV2_BEFORE_FORK: list[int] = []


def _cv2_single_before_fork() -> None:
    """``os.register_at_fork(before=...)``: hold OpenCV's pthreads pool to one thread across a fork.

    A forked child inherits the pool's bookkeeping but none of its threads; the child's ``cv2.setNumThreads``
    (:func:`worker_init_threads`) then waits forever for threads that do not exist (seen: DataLoader workers hung
    in ``setNumThreads`` after the parent had run OpenCV's HOG / resize on several threads). Reconfiguring in the
    parent, which owns the threads, before the fork and restoring it after gives the child a one-thread pool.
    """
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "getNumThreads"):
        n = cv2.getNumThreads()
        if n != 1:
            _CV2_BEFORE_FORK.append(n)
            cv2.setNumThreads(1)


def _cv2_restore_after_fork() -> None:
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and _CV2_BEFORE_FORK:
        cv2.setNumThreads(_CV2_BEFORE_FORK.pop())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_cv2_single_before_fork, after_in_parent=_cv2_restore_after_fork)


def worker_init_threads(worker_id: int) -> None:  # noqa: ARG001 - DataLoader's worker_init_fn signature
    """``DataLoader(worker_init_fn=...)``: one intra-op thread per worker (``phase_threads("worker")``), for torch
    and, when it is loaded (the ``video`` extra), OpenCV, whose own pool would otherwise fan out in every worker."""
    n = phase_threads("worker")
    torch.set_num_threads(n)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(n)
