"""The benchmark summary (benchmarks/run_all.py, benchmarks/_report.py): quick runs give ratios without verdicts,
and a row says "idle" only when the machine was measured idle."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setenv("VIDREID_BENCH_DIR", str(tmp_path))
    for name in ("_measure", "_report", "run_all"):
        sys.modules.pop(name, None)
    import _report
    import run_all

    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    yield _report, run_all, tmp_path
    for name in ("_measure", "_report", "run_all"):
        sys.modules.pop(name, None)


def _threads_rows(tmp_path, rows):
    (tmp_path / "threads.json").write_text(json.dumps({"rows": rows}))


def test_idle_only_when_measured_idle(bench, monkeypatch, capsys):
    _report, _, tmp_path = bench
    monkeypatch.setenv("VIDREID_BENCH_START_LOAD", "3.2")  # the machine had other work when the benchmark began
    assert _report.load_label("idle") == "no competitor"
    assert _report.load_label("competing") == "competing"
    _report.report("t", [{"load": "idle", "x": 1.0}], tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["rows"][0]["load"] == "no competitor"
    assert "no competitor" in capsys.readouterr().out
    monkeypatch.setenv("VIDREID_BENCH_START_LOAD", "0.1")
    assert _report.load_label("idle") == "idle"


def test_quick_summary_has_no_verdicts(bench):
    _, run_all, tmp_path = bench
    _threads_rows(tmp_path, [
        {"load": "no competitor", "setting": "default (2)", "torch_threads": 2, "x_best_setting": 1.6,
         "clips_per_s": 30.0},
        {"load": "competing", "setting": "default (2)", "torch_threads": 2, "x_best_setting": 1.5,
         "clips_per_s": 20.0},
    ])
    quick = run_all.summary(verdicts=False)
    assert quick and all("met" not in r and "bar" not in r for r in quick)
    full = run_all.summary()
    assert [r["met"] for r in full] == ["NO", "-"]  # beside a competitor the default's speed is information
