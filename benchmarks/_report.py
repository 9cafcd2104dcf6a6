"""Shared benchmark output: a rich table on stdout and the same rows as JSON.

A row measured without a competing process of the benchmark's own is labelled ``"idle"`` only when the machine was
measured idle: the 1-minute load average before the benchmark started (``make bench`` passes the one it read
before its first benchmark in ``$VIDREID_BENCH_START_LOAD``; a benchmark run on its own reads it when this module
is imported) below :data:`IDLE_LOAD`. Otherwise the row says ``"no competitor"`` — other work may have shared the
cores.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

IDLE_LOAD = 0.5  # 1-minute load average below which the machine counts as measured idle
NO_COMPETITOR = ("idle", "no competitor")  # the labels of rows measured without the benchmark's competing process


def start_load() -> float:
    """The 1-minute load average before the benchmark's own work: ``$VIDREID_BENCH_START_LOAD`` when set (by
    ``run_all.py``), else the value read when this module was imported."""
    env = os.environ.get("VIDREID_BENCH_START_LOAD")
    return float(env) if env else _IMPORT_LOAD


_IMPORT_LOAD = os.getloadavg()[0]


def load_label(label: str, load_1min: float | None = None) -> str:
    """``"idle"`` only when measured idle (``load_1min``, default :func:`start_load`, below :data:`IDLE_LOAD`);
    ``"no competitor"`` for an ``"idle"`` row on a machine that was not; any other label unchanged."""
    if label != "idle":
        return label
    load = start_load() if load_1min is None else load_1min
    return "idle" if load < IDLE_LOAD else "no competitor"


def environment() -> dict:
    """Where the numbers were taken: Python, torch, threads, CPU count, load average, CUDA device if any."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "load_1min_before_start": round(start_load(), 2),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name(0)
    return env


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report(title: str, rows: list[dict], out: Path | str | None) -> None:
    """Print ``rows`` as a table titled ``title`` and, if ``out`` is given, write them as JSON there.

    The JSON is ``{"title", "timestamp", "environment", "rows"}``; columns are the union of the rows' keys
    in first-seen order (a missing value prints as an empty cell and is absent from that row's JSON).
    """
    rows = [{**row, "load": load_label(row["load"])} if "load" in row else row for row in rows]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row[c]) if c in row else "" for c in columns))
    console = Console(width=max(Console().width, 200))
    console.print(table)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "title": title,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": environment(),
            "rows": rows,
        }
        out.write_text(json.dumps(payload, indent=2) + "\n")
        console.print(f"wrote {out}")
