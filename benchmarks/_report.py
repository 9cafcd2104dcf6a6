"""Shared benchmark output: a rich table on stdout and the same rows as JSON."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table


def environment() -> dict:
    """Where the numbers were taken: Python, torch, threads, CPU count, load average, CUDA device if any."""
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
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
