"""Shared measurement helpers for ``make bench``: alternating repetitions, a competing process, CPU description,
and the output folder (gitignored: ``benchmarks/results/`` or ``$VIDREID_BENCH_DIR``)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDREID_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = Path(os.environ.get("VIDREID_BENCH_DIR", REPO / "benchmarks" / "results"))
LOADS = ("idle", "competing")


def cpu_description() -> str:
    """``"<model name>, <n> CPUs usable, AVX-512 bf16|AVX-512|AVX2"`` from /proc/cpuinfo and the affinity mask."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512 bf16" if "avx512_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    from vidreid.runtime.threads import available_cpus

    return f"{name}, {available_cpus()} CPUs usable, {isa}"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextmanager
def competing(active: bool) -> Iterator[None]:
    """With ``active``: one competing CPU-bound process (a Python busy loop) runs for the duration."""
    if not active:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get scheduled
        yield
    finally:
        proc.kill()
        proc.wait()


def alternate(fns: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Run the callables in alternating order ``repeats`` times (the order rotates each round, so a load change
    hits every method alike); returns ``({name: median seconds}, {name: last result})``."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, object] = {}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            results[name] = fns[name]()
            times[name].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}, results


def out_path(name: str) -> Path:
    """Where a benchmark writes its JSON (``benchmarks/results/<name>.json`` — untracked — or
    ``$VIDREID_BENCH_DIR/<name>.json``)."""
    return RESULTS / f"{name}.json"
