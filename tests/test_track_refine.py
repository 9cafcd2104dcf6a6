"""track.py with the refine stage, the static rule and a counting line on a synthetic clip: the occluded walker's
two tracker fragments become one track by motion linking, its missed boxes are filled (flagged, not cropped, scored),
and the line counts each walker's crossing against the ground truth's."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("cv2")
pytest.importorskip("supervision")

from tests.test_track_stages import _clip, _common  # noqa: E402


def _run(tmp_path, ckpt, det, gt, video, *extra):
    from tests.conftest import compose
    from vidreid.runs.track import run_track

    out = tmp_path / "run"
    common = [o for o in _common(ckpt, det) if not o.startswith("refine.")]  # the association tests pin it off
    summary = run_track(compose("track", common + [f"videos={video}", f"gt={gt}", *extra],
                                output_dir=out))  # fmt: skip
    return out, summary


def test_refine_links_fills_and_counts_line_crossings(tmp_path, tiny_checkpoint):
    from vidreid.video.tracklets import read_track_table

    (video,), det, gt = _clip(tmp_path)
    out, s = _run(tmp_path, tiny_checkpoint, det, gt, video, "refine.interpolate=linear", "count.line=[160,0,160,240]")
    # walker 1 is hidden in frames 10-15: without refinement 3 raw tracks (test_track_stages), here 2
    assert s["raw_tracks"] == 2 and s["identities"] == 2
    rows = read_track_table(out / "tracks.csv")
    filled = sorted(r.frame for r in rows if r.interpolated)
    # the hidden frames, and the first frame back when the new fragment began a frame late
    assert filled[:6] == list(range(10, 16)) and set(filled) <= set(range(10, 17))
    assert s["interpolated_boxes"] == len(filled)
    # crops only from detections: the linked track's folder holds its detected frames, none of the filled ones
    linked = next(r.track_id for r in rows if r.interpolated)
    crops = sorted(int(p.stem) for p in (out / "tracklets/multi_shot/cam_a" / f"track_{linked:04d}").glob("*.jpg"))
    assert crops == [r.frame for r in sorted(rows, key=lambda r: r.frame) if r.track_id == linked and not r.interpolated]
    assert not set(crops) & set(filled)
    m = json.loads((out / "metrics.json").read_text())
    assert m["cameras"][0]["line"] == {"in": 1, "out": 1, "truth_in": 1, "truth_out": 1, "abs_error": 0}
    assert s["line"]["in"] == 1 and s["line"]["out"] == 1
    per_id = list(csv.DictReader((out / "line_counts.csv").open()))
    assert sorted((r["in"], r["out"]) for r in per_id) == [("0", "1"), ("1", "0")]
    counts = list(csv.DictReader((out / "counts.csv").open()))
    assert sum(int(c["line_in"]) for c in counts) == 1 and sum(int(c["line_out"]) for c in counts) == 1
    # the filled boxes are scored: the walker is absent (not annotated) while hidden, so those 6 count as false
    # positives, and the re-ID ids cover every ground-truth box
    assert m["tracking"]["reid"]["recall"] == pytest.approx(1.0) and m["tracking"]["reid"]["FP"] == 6


def test_bad_counting_line_fails_before_any_video_is_read(tmp_path):
    from hydra.errors import InstantiationException

    from tests.conftest import compose
    from vidreid.runs.track import run_track

    cfg = compose("track", ["count.line=[1,2,3]", "render.enabled=false"], output_dir=tmp_path / "run")
    with pytest.raises(InstantiationException, match=r"count.line=\[1.0, 2.0, 3.0\]: expected \[x1, y1, x2, y2\]"):
        run_track(cfg)


def test_camera_run_keeps_the_refined_row_fields(tmp_path):
    """``step=tracklets`` folders carry each row's ``interpolated`` flag and ``foreground`` fraction to the joint
    step (and folders saved before those fields read as detected / unmeasured)."""
    import math

    import numpy as np
    import torch

    from vidreid.runs.track_stages import Camera, CameraRun, Tracklets, load_camera_run, save_camera_run
    from vidreid.video.reader import VideoInfo
    from vidreid.video.tracklets import CropWriter, TrackRow, build_fragments

    info = VideoInfo(tmp_path / "v.avi", 10.0, 20, 320, 240)
    rows = [TrackRow(0, t, 3, 10.0 + t, 20.0, 40.0 + t, 100.0, 0.9, interpolated=t == 2, foreground=0.1 * t)
            for t in range(5)]  # fmt: skip
    writer = CropWriter(tmp_path / "tracklets", (32, 16))
    frame = np.zeros((240, 320, 3), np.uint8)
    for r in rows:
        if not r.interpolated:
            writer.write(frame, 0, r.frame, np.array([[r.x1, r.y1, r.x2, r.y2]]), np.array([r.track_id]))
    kept, dropped = build_fragments(rows)
    run = CameraRun(Camera(0, info.path, info), rows=rows, frames=list(range(5)), tracklets=Tracklets(kept, dropped),
                    embeddings=torch.zeros(1, 4))  # fmt: skip
    save_camera_run(run, tmp_path, {})
    back = load_camera_run(tmp_path, 0)
    assert [(r.frame, r.interpolated, round(r.foreground, 6)) for r in back.rows] == \
        [(t, t == 2, round(0.1 * t, 6)) for t in range(5)]  # fmt: skip
    z = dict(np.load(tmp_path / "camera_run.npz"))
    np.savez(tmp_path / "camera_run.npz", **{k: v for k, v in z.items() if k not in ("interpolated", "foreground")})
    old = load_camera_run(tmp_path, 0)
    assert not any(r.interpolated for r in old.rows) and all(math.isnan(r.foreground) for r in old.rows)
