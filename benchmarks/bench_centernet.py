"""CenterNet (``detector=centernet``) side by side: PyTorch vs onnxruntime, 1 vs 2 threads, tiles batched through
the network vs one window at a time.

Usage: ``python benchmarks/bench_centernet.py [--frames 10] [--threads 1 2] [--repeats 3]``

Real PETS09-S2L1 frames (evenly spaced); every configuration runs on all of them in turn, the order rotating
between repetitions (``alternate``), so a load change hits every configuration alike; the table gives the median
over repetitions of the wall time per frame and the process CPU time per frame. ``batched`` runs the full frame and
the 2x2 tiles as one batch of 5 (the detector's way); ``single`` runs the same 5 windows one at a time. The
onnxruntime graph is exported once into the ONNX cache (``$VIDREID_CACHE_DIR``). JSON:
``benchmarks/results/centernet.json`` (untracked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import SHARED, cpu_description, load_average, out_path  # noqa: E402
from _report import report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from vidreid.video.centernet import CenterNetDetector
    from vidreid.video.reader import probe_video, read_frames

    video = SHARED / "pets2009-vtest" / "vtest.avi"
    if not video.is_file():
        sys.exit(f"real data absent: {video}")
    n = probe_video(video).num_frames
    idx = np.linspace(0, n - 1, args.frames).round().astype(int).tolist()
    frames = read_frames(video, idx)
    configs = {}
    for th in args.threads:
        for backend in ("torch", "onnxruntime"):
            full = CenterNetDetector(backend=backend, threads=th, score_threshold=0.3)
            tiled = CenterNetDetector(backend=backend, threads=th, score_threshold=0.3, tiles=[2, 2])
            configs[f"{backend} full frame, {th} thr"] = (th, full, None)
            configs[f"{backend} 2x2 tiles + full, batched, {th} thr"] = (th, tiled, None)
            configs[f"{backend} 2x2 tiles + full, single, {th} thr"] = (th, tiled, "single")

    def run(th: int, det: CenterNetDetector, mode: str | None) -> None:
        torch.set_num_threads(th)
        for i in idx:
            f = frames[i]
            if mode == "single":
                for x1, y1, x2, y2 in det.windows(*f.shape[:2]):
                    det.raw(det._prepare(f[y1:y2, x1:x2])[0][None])
            else:
                det(f, i)

    for cfg in configs.values():  # warm-up
        run(*cfg)
    wall: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    names = list(configs)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            run(*configs[name])
            cpu[name].append((time.process_time() - c0) / len(idx))
            wall[name].append((time.perf_counter() - t0) / len(idx))
    rows = [{"configuration": k, "ms/frame": round(1000 * float(np.median(wall[k])), 1),
             "cpu ms/frame": round(1000 * float(np.median(cpu[k])), 1),
             "frames/s": round(1 / float(np.median(wall[k])), 2)} for k in names]  # fmt: skip
    title = (f"CenterNet on {len(idx)} PETS09-S2L1 frames, median of {args.repeats} ({cpu_description()}; "
             f"load {load_average()})")  # fmt: skip
    report(title, rows, out_path("centernet"))


if __name__ == "__main__":
    main()
