"""track.py on damaged video: a truncated and a partly overwritten copy of a synthetic clip whose frames carry
their own index, run with a detector that reads the index from the pixels (its boxes follow the frame's content,
as a real detector's do). The run must say what was not read (log and summary.json) and count and score only the
frames that were read, each under its own number."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("cv2")
pytest.importorskip("supervision")

from tests.conftest import compose  # noqa: E402
from tests.video_synth import (  # noqa: E402
    Walker,
    overwritten_copy,
    render_clip,
    stamp_numbers,
    truncated_copy,
    write_det_txt,
    write_gt_txt,
    write_video,
)

N = 40  # frames at 10 fps: four 1 s count windows


def _run(tmp_path: Path, ckpt: Path, damage, *extra: str):
    from vidreid.runs.track import run_track

    frames, gt = render_clip([Walker(1, 11, 30, 290, 130, 80), Walker(2, 22, 290, 30, 220, 100)], n=N)
    video = damage(write_video(tmp_path / "clip.avi", stamp_numbers(frames)), tmp_path / "damaged.avi")
    det, gt_file = write_det_txt(tmp_path / "det.txt", gt), write_gt_txt(tmp_path / "gt.txt", gt)
    out = tmp_path / "run"
    cfg = compose("track", [f"checkpoint={ckpt}", f"videos={video}", "detector=mot_file",
                            "detector._target_=tests.video_synth.StampedMOTDetector", f"detector.path={det}",
                            "reader.stride=1", "tracker.minimum_consecutive_frames=1", "count.window_s=1.0",
                            "associate.threshold=0.5", f"gt={gt_file}", *extra], output_dir=out)  # fmt: skip
    summary = run_track(cfg)
    assert json.loads((out / "summary.json").read_text())["read"] == summary["read"]
    return summary, json.loads((out / "metrics.json").read_text()), video, out


def test_a_truncated_video_is_reported_and_only_its_frames_read_are_counted_and_scored(tmp_path, tiny_checkpoint,
                                                                                       caplog):  # fmt: skip
    """Before: exit 0 and no word that the video stopped early; the count windows after the last decodable frame
    were compared with the ground truth as if the video went on. The default stills (10-70 s) and GIF range
    (20-30 s) lie past the end of this 4 s clip: they are placed inside what was read."""
    with caplog.at_level(logging.WARNING):
        summary, m, video, out = _run(tmp_path, tiny_checkpoint, lambda a, b: truncated_copy(a, b, 0.6),
                                      "render.video=false")  # fmt: skip
    (read,) = summary["read"]
    n = read["frames_read"]
    assert 15 < n < 35 and read["stopped_early"] and read["last_frame"] == n - 1 and read["missing"] == N - n
    assert (read["declared_frames"], read["skipped"], read["video"]) == (N, [], str(video))
    assert len(summary["damaged_videos"]) == 1 and str(video) in summary["damaged_videos"][0]
    assert f"last frame decoded {n - 1}" in caplog.text and f"{N - n} declared frames not read" in caplog.text
    assert summary["frames_processed"] == [n] and m["cameras"][0]["frames_scored"] == n
    windows = -(-n // 10)
    assert len(summary["individuals_per_window"]) == len(m["count"]["truth"]) == windows < 4
    assert m["count"]["mae"] == 0.0 and m["tracking"]["reid"]["MOTA"] > 0.95  # unread frames are not misses
    stills = sorted(p.name for p in (out / "frames").iterdir())
    assert len(stills) == 4 and all(int(p[6:10]) < n for p in stills) and (out / "annotated.gif").is_file()


def test_an_overwritten_video_keeps_its_frame_numbers_and_lists_the_gap(tmp_path, tiny_checkpoint):
    """Before: OpenCV dropped the damaged frames without a word and every later frame took a lost one's number,
    so the boxes of frame f were scored against the ground truth of an earlier frame (MOTA 0.125 on this clip)."""
    summary, m, _, _ = _run(tmp_path, tiny_checkpoint, lambda a, b: overwritten_copy(a, b, 0.5, 0.1),
                            "render.enabled=false")  # fmt: skip
    (read,) = summary["read"]
    ((a, b),) = read["skipped"]
    assert 10 < a <= b < 35 and read["last_frame"] == N - 1 and read["missing"] == b - a + 1
    assert not read["stopped_early"] and m["cameras"][0]["frames_scored"] == N - (b - a + 1)
    assert m["tracking"]["raw"]["MOTA"] > 0.95 and m["tracking"]["reid"]["MOTA"] > 0.95
    assert len(m["count"]["truth"]) == 4 and m["count"]["mae"] == 0.0
