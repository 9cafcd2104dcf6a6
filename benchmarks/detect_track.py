"""A detector's boxes through the tracker alone (ByteTrack, no re-ID, no tracklet filtering), scored with TrackEval:
which ``tracker.track_activation_threshold`` belongs to a detector's score scale.

Usage: ``python benchmarks/detect_track.py --seq PETS09-S2L1 --detector centernet [--det-file det.txt]
[--min-score 0.3] [--activation 0.3 0.35 0.4 0.5] [--backend onnxruntime] [--gate 0.15 0.5]``

The detector (a name of ``bench_detect.VARIANTS`` or ``conf/detector/<name>.yaml``) runs once on every frame
(stride 1) and its boxes are written to ``benchmarks/results/det_<seq>_<detector>.txt`` (MOTChallenge det format,
untracked), or ``--det-file`` is read instead (any MOT det file, e.g. another detector's dump). Boxes scoring
below ``--min-score`` are dropped; then, per activation threshold, ``vidreid.video.track.ByteTracker`` (the other
tracker settings as ``conf/track.yaml``: lost-track buffer 30, matching 0.8, 2 consecutive frames) tracks them
at the video's frame rate (``--gate``: after :class:`vidreid.video.background.ForegroundGate` dropped the boxes
below its unchecked score that cover too little MOG2 foreground), and :func:`vidreid.video.mot.score_mot` scores the raw track ids
(HOTA / MOTA / IDF1 / IDSW / precision / recall). The table also gives the detector's time per frame (wall and
process CPU, 1 thread) when it ran here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _measure import SHARED, cpu_description, load_average, out_path  # noqa: E402
from _report import report  # noqa: E402
from bench_detect import SEQS, detector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", default="PETS09-S2L1", choices=sorted(SEQS))
    ap.add_argument("--detector", default="centernet")
    ap.add_argument("--det-file", default=None, help="read these MOT detections instead of running the detector")
    ap.add_argument("--backend", default=None, help="override the detector's backend (centernet)")
    ap.add_argument("--min-score", type=float, default=0.0)
    ap.add_argument("--activation", type=float, nargs="+", default=[0.3, 0.35, 0.4, 0.45, 0.5])
    ap.add_argument("--gate", type=float, nargs="*", default=None,
                    help="MOG2 ForegroundGate: min_foreground [keep_score]; boxes gated before tracking")
    args = ap.parse_args()
    import torch

    from vidreid.video.detect import Detections, MOTFileDetector
    from vidreid.video.mot import score_mot, write_mot
    from vidreid.video.reader import iter_frames, probe_video
    from vidreid.video.track import ByteTracker
    from vidreid.video.tracklets import TrackRow

    torch.set_num_threads(1)
    video = SEQS[args.seq]
    info = probe_video(video)
    timing = {}
    if args.det_file:
        det_path = Path(args.det_file)
    else:
        det = detector(args.detector) if args.backend is None else detector(args.detector, backend=args.backend)
        det_path = out_path(f"det_{args.seq}_{args.detector}").with_suffix(".txt")
        wall, cpu, lines = [], [], []
        for fi, frame in iter_frames(video):
            t0, c0 = time.perf_counter(), time.process_time()
            d = det(frame, fi)
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - t0)
            lines += [f"{fi + 1},-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n"
                      for (x1, y1, x2, y2), s in zip(d.boxes, d.scores)]  # fmt: skip
        det_path.write_text("".join(lines))
        timing = {"detector ms/frame": round(1000 * float(np.median(wall)), 1),
                  "detector cpu ms/frame": round(1000 * float(np.median(cpu)), 1)}  # fmt: skip
    dets = MOTFileDetector(det_path, min_score=args.min_score)
    blank = np.zeros((info.height, info.width, 1), np.uint8)  # the detector clips boxes to the frame's size
    per_frame = [dets(blank, fi) for fi in range(info.num_frames)]
    gate_label = ""
    if args.gate is not None:
        from vidreid.video.background import ForegroundGate

        min_fg = args.gate[0] if args.gate else 0.15
        keep = args.gate[1] if len(args.gate) > 1 else 0.5
        gate = ForegroundGate(lambda f, i: per_frame[i], min_foreground=min_fg, keep_score=keep)
        t0 = time.process_time()
        per_frame = [gate(frame, fi) for fi, frame in iter_frames(video)]
        timing["gate cpu ms/frame"] = round(1000 * (time.process_time() - t0) / len(per_frame), 1)
        gate_label = f" + MOG2 gate (fg >= {min_fg}, unchecked >= {keep})"
    rows = []
    for thr in args.activation:
        tracker = ByteTracker(info.fps, track_activation_threshold=thr)
        out: list[TrackRow] = []
        for fi in range(info.num_frames):
            d = per_frame[fi]
            t = tracker.update(Detections(d.boxes, d.scores))
            out += [TrackRow(0, fi, int(i), *map(float, b), float(s)) for b, s, i in zip(t.boxes, t.scores, t.track_ids)]
        with tempfile.TemporaryDirectory() as tmp:
            mot = write_mot(Path(tmp) / "raw.txt", out)
            s = score_mot(SHARED / "mot15" / args.seq, {"raw": mot}, num_frames=info.num_frames)["raw"]
        rows.append({"detector": (args.detector if not args.det_file else det_path.name) + gate_label,
                     "min score": args.min_score,
                     "activation": thr, **{k: round(s[k], 3) for k in ("HOTA", "MOTA", "IDF1")}, "IDSW": s["IDSW"],
                     "precision": round(s["precision"], 3), "recall": round(s["recall"], 3), **timing})  # fmt: skip
    title = (f"Raw ByteTrack ids on {args.seq} (every frame; detections {det_path}; 1 thread; {cpu_description()}; "
             f"load {load_average()})")  # fmt: skip
    report(title, rows, out_path(f"detect_track_{args.seq}_{args.detector}" + ("_gate" if gate_label else "")))


if __name__ == "__main__":
    main()
