"""track.py speed per stage: frames/s of read, detect, track, crop, embed and associate on PETS09-S2L1
(``../shared/data/pets2009-vtest/vtest.avi``, 768x576) at ``reader.stride=1``, and the re-ID share of the total.

    python benchmarks/bench_track.py [--quick] [--checkpoint CKPT] [--detector hog|mot_file] [--against "K=V ..."]
                                     [-- OVERRIDES]

The stage times are the ones ``vidreid.runs.track.run_track`` records in its ``summary.json`` (``timings_s``):
read = decoding (``VideoCapture.read``), detect = the configured detector, track = ByteTrack, crop = cutting and
writing the tracklet crops, embed = ``vidreid.embed`` on the kept tracklets (checkpoint load, crop decoding,
batching and the network), associate = distances + constrained agglomerative clustering. Rendering is off.
``--detector mot_file`` feeds the ground-truth boxes (the association-only protocol: no detector cost).
``--quick``: the first 60 frames. The checkpoint defaults to the one ``make demo`` trains; the embed cost depends
on its network (MobileNetV2 at 256x128 for ``experiment=pku_reid_pretrained``), not on its weights.
``--against "embed.backend=pytorch"``: also run the defaults with those overrides in the same process, first, and
report both side by side with the end-to-end ratio (the machine's load moves both alike). End to end = the run's
``total_s`` (every stage, refinement, writing; rendering off).
Prints a table and writes ``benchmarks/results/track.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import REPO, RESULTS, SHARED, cpu_description, load_average  # noqa: E402
from _report import report  # noqa: E402

STAGES = ("read", "detect", "track", "crop", "embed", "associate")
REID = ("crop", "embed", "associate")  # the stages re-ID adds to a detector + tracker


def _compose(overrides: list[str], out: Path):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="track", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first 60 frames only")
    ap.add_argument("--checkpoint", default=str(REPO / "logs/demo/reid_model/checkpoints/last.ckpt"))
    ap.add_argument("--detector", default=None, help="detector config (default: conf/track.yaml's)")
    ap.add_argument("--out", default=str(RESULTS / "track.json"))
    ap.add_argument("--against", default=None, help="space-separated overrides of a second configuration, run first")
    ap.add_argument("overrides", nargs="*", help="extra track.py overrides")
    a = ap.parse_args()
    ckpt = Path(a.checkpoint)
    if not ckpt.is_file():
        print(f"bench_track: skipped, no re-ID checkpoint at {ckpt} (run `make demo` once, or pass --checkpoint)")
        return
    video = SHARED / "pets2009-vtest" / "vtest.avi"
    if not video.is_file():
        print(f"bench_track: skipped, {video} not found (set VIDREID_SHARED_DATA)")
        return
    import torch

    from vidreid.runs.track import run_track

    torch.set_num_threads(1)
    over = [f"checkpoint={ckpt}", f"videos={video}", "reader.stride=1", "render.enabled=false"]
    if a.detector:
        over.append(f"detector={a.detector}")
        if a.detector == "mot_file":
            over.append(f"detector.path={SHARED / 'mot15/PETS09-S2L1/gt/gt.txt'}")
    if a.quick:
        over += ["reader.max_frames=60", "count.window_s=3.0"]
    over += a.overrides
    load0 = load_average()
    configs = ([("against: " + a.against, a.against.split())] if a.against else []) + [("defaults", [])]
    rows = []
    end_to_end = {}
    for name, extra in configs:
        with tempfile.TemporaryDirectory(prefix="bench_track_") as tmp:
            s = run_track(_compose(over + extra, Path(tmp)))
        rows += _rows(s, name, a.quick)
        end_to_end[name] = s["timings_s"]["total_s"]
    if a.against:
        base = end_to_end[configs[0][0]]
        for r in rows:
            r["end_to_end_speedup_vs_against"] = round(base / end_to_end[r["config"]], 2)
    det = rows[-1]["detector"]
    report(f"track.py per stage on PETS09-S2L1 (vtest.avi 768x576, stride 1, {rows[-1]['frames']} frames, {det}, "
           f"1 torch thread) on {cpu_description()}; load average {load0} at start, {load_average()} at end", rows,
           a.out)  # fmt: skip


def _rows(s: dict, name: str, quick: bool) -> list[dict]:
    t = s["timings_s"]
    frames = sum(s["frames_processed"])
    total = sum(t[f"{k}_s"] for k in STAGES)
    reid = sum(t[f"{k}_s"] for k in REID)
    det = s["detector"].get("_target_", "?").rsplit(".", 1)[-1]
    rows = [{"stage": k, "seconds": t[f"{k}_s"], "frames_per_s": round(frames / t[f"{k}_s"], 2) if t[f"{k}_s"] > 0 else None,
             "share_of_total": round(t[f"{k}_s"] / total, 3)} for k in STAGES]  # fmt: skip
    rows.append({"stage": "all six stages", "seconds": round(total, 2), "frames_per_s": round(frames / total, 2),
                 "share_of_total": 1.0})  # fmt: skip
    rows.append({"stage": "re-ID (crop + embed + associate)", "seconds": round(reid, 2),
                 "frames_per_s": round(frames / max(reid, 1e-9), 2), "share_of_total": round(reid / total, 3)})  # fmt: skip
    rows.append({"stage": "end to end (total_s)", "seconds": round(t["total_s"], 2),
                 "frames_per_s": round(frames / t["total_s"], 2), "share_of_total": None})  # fmt: skip
    for r in rows:
        r.update(config=name, frames=frames, tracklets=s["raw_tracks"], detector=det, quick=quick)
    return rows


if __name__ == "__main__":
    main()
