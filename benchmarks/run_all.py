"""Run every benchmark in turn (``make bench``); each prints its table and writes benchmarks/results/<name>.json.

    python benchmarks/run_all.py [--quick]

``--quick`` skips the slow re-ranking sizes and uses the smallest model batch.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    jobs = [
        ["bench_ranking.py"],
        ["bench_reranking.py"] + (["--sizes", "2000"] if a.quick else []),
        ["bench_pipeline.py"],
        ["bench_models.py"],
        ["bench_index.py"] + (["--sizes", "100000"] if a.quick else []),
    ]
    failed = []
    for job in jobs:
        print(f"\n=== {' '.join(job)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / job[0]), *job[1:]], cwd=HERE.parent).returncode != 0:
            failed.append(job[0])
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
