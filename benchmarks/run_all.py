"""``make bench``: every benchmark in turn, then one summary table of the performance bars, each a ratio measured in
one run (1 and N threads, idle and beside one competing process).

    python benchmarks/run_all.py [--quick] [--cython-dir DIR]

Each benchmark prints its own table and writes JSON to ``benchmarks/results/`` (untracked; or
``$VIDREID_BENCH_DIR``); the summary goes to ``summary.json`` there. ``--quick`` (a few minutes): one repetition,
no competing process, re-ranking at 2,000 items and shorter loops — for checking that everything runs, not for the
numbers: its summary gives the ratios without verdicts (its sizes cannot meet the bars). Rows say "idle" only when
the machine was measured idle before the first benchmark (``_report.load_label``), else "no competitor".
The Cython references of the ranking row need ``benchmarks/build_cython_refs.py`` once (``--cython-dir`` or
``$VIDREID_CYTHON_REFS``); without them the ranking row compares against the project's numpy reference only.
The model benchmark (``bench_models.py``) runs with ``--models``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import RESULTS, cpu_description, load_average  # noqa: E402
from _report import NO_COMPETITOR, report  # noqa: E402


def _load(name: str) -> list[dict]:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


def summary(verdicts: bool = True) -> list[dict]:
    """One row per performance bar from the benchmarks' JSON; ``verdicts=False`` (quick runs) leaves out the bar
    and the met column: quick sizes are for checking that everything runs."""
    rows: list[dict] = []

    def add(work, load, threads, ratio, bar, ok, detail=""):
        row = {"work": work, "load": load, "threads": threads, "ratio": ratio}
        if verdicts:
            row |= {"bar": bar, "met": "-" if bar == "-" else "yes" if ok else "NO"}
        rows.append(row | {"detail": detail})

    rank = _load("ranking")
    for load in ("idle", "competing"):
        sel = {r["method"]: r for r in rank if (r["load"] in NO_COMPETITOR if load == "idle" else r["load"] == load)}
        if not sel:
            continue
        same = all(r["same_metrics"] for r in sel.values())
        for ref, bar in (("torchreid Cython", 10.0), ("fast-reid Cython", 10.0), ("numpy per-query loop (reference)", None)):
            if ref in sel:
                x = sel[ref]["x_vidreid_default"]
                add(f"ranking 1980x11310 vs {ref}", load, "1 (default)", x, f">= {bar}x" if bar else "-",
                    (bar is None or x >= bar) and same, "identical metrics" if same else "METRICS DIFFER")
        for name, r in sel.items():
            if name.startswith("vidreid (") and "default" not in name:
                add(f"ranking: {name} vs default threads", load, r["threads"], r["x_vidreid_default"],
                    "(default within 1.3x of best)", r["x_vidreid_default"] >= 1 / 1.3)
    rr = _load("reranking")
    for r in rr:
        if r["threads"].startswith("default") and "speedup" in r:
            load, idle = r["load"], r["load"] in NO_COMPETITOR
            add(f"re-ranking N={r['N']} vs numpy re_ranking ({r['numpy']})", load, r["threads"], r["speedup"],
                ">= 20x", r["speedup"] >= 20, f"max |diff| {r.get('max_abs_diff', float('nan')):.1e}")
            # the default follows the usable CPUs, not the load (same command, same numbers): beside a competitor
            # fewer threads may be faster, which the run's log says; that row is information
            add(f"re-ranking N={r['N']}: default vs best thread setting", load, r["threads"], r["x_best_setting"],
                "<= 1.3x" if idle else "-", r["x_best_setting"] <= 1.3)
    for r in _load("loader"):
        if "in process" in r["work"]:
            add("training-clip loading per core vs decode_jpeg floor", r["load"], 1, r["fraction_of_floor"],
                ">= 0.70", r["fraction_of_floor"] >= 0.70, f"{r['frames_per_s']} vs {r['decode_floor_frames_per_s']} frames/s")
            if "fraction_of_simplejpeg_floor" in r:
                add("training-clip loading per core vs simplejpeg floor (information)", r["load"], 1,
                    r["fraction_of_simplejpeg_floor"], "-", True, f"{r['simplejpeg_floor_frames_per_s']} frames/s")
        else:
            add(r["work"] + " vs floor (information)", r["load"], 1, r["fraction_of_floor"], "-", True)
    for r in _load("extraction_memory"):
        if r.get("growth_900_over_128") is not None:
            add("all-frames extraction memory growth 900 vs 128 frames", "idle", 1, r["growth_900_over_128"],
                "<= 1.10", r["growth_900_over_128"] <= 1.10, f"{r['growth_mib']} MiB at 900 frames")
    for r in _load("threads"):
        if r["setting"].startswith("default"):
            idle = r["load"] in NO_COMPETITOR
            add("default training loop: default threads vs best setting", r["load"], r["torch_threads"],
                r["x_best_setting"], "<= 1.3x" if idle else "-", r["x_best_setting"] <= 1.3,
                f"{r['clips_per_s']} clips/s")
    for r in _load("track"):  # track.py per stage (information): the re-ID share of the pipeline's time
        if r["stage"].startswith("re-ID"):
            add(f"track.py PETS09-S2L1 stride 1 ({r['frames']} frames, {r['detector']}): re-ID share of the time",
                "as measured", 1, r["share_of_total"], "-", True, f"{r['frames_per_s']} frames/s for re-ID alone")
    for r in _load("deploy"):  # full runs only (a quick run's rows carry no verdicts)
        if "target embed >= 0.85 forward" not in r:
            continue
        if r["backend"] != "eager fp32":
            add(f"{r['backend']} vs eager fp32 forward (256x128, T=4)", "as measured", r["threads"], r["forward_x_eager"],
                ">= 2x" if r["backend"] == "ORT int8" else "-", r["backend"] != "ORT int8" or r["forward_x_eager"] >= 2)
        add(f"embed {r['backend']} vs its pure forward", "as measured", r["threads"], r["embed_fraction_of_forward"],
            ">= 0.85", r["embed_fraction_of_forward"] >= 0.85)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cython-dir", default=os.environ.get("VIDREID_CYTHON_REFS"))
    ap.add_argument("--models", action="store_true", help="also run bench_models.py (slow)")
    ap.add_argument("--summary-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    quick = ["--quick"] if a.quick else []
    jobs = [
        ["bench_ranking.py", *quick] + (["--cython-dir", a.cython_dir] if a.cython_dir else []),
        ["bench_reranking.py", *quick] + (["--sizes", "2000"] if a.quick else []),
        ["bench_loader.py", *quick],
        ["bench_threads.py", *quick],
        ["bench_index.py"] + (["--sizes", "100000", "--hnsw-max", "0"] if a.quick else []),
        ["bench_track.py", *quick],
        ["bench_deploy.py", *quick],  # the pretrained checkpoint from $VIDREID_DEPLOY_CKPT, else an untrained network
    ]
    if a.models:
        jobs.append(["bench_models.py"])
    failed = []
    start_load = load_average()
    os.environ["VIDREID_BENCH_START_LOAD"] = str(start_load[0])  # what "idle" is judged by in every benchmark
    for job in [] if a.summary_only else jobs:
        print(f"\n=== {' '.join(job)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / job[0]), *job[1:]], cwd=HERE.parent).returncode != 0:
            failed.append(job[0])
    rows = summary(verdicts=not a.quick)
    what = "quick smoke run, ratios without verdicts" if a.quick else "performance bars"
    report(f"{what} on {cpu_description()}; load average {start_load} at start, {load_average()} at end",
           rows, RESULTS / "summary.json")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
