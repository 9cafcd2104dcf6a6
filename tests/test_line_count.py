"""Line-crossing counts (vidreid.video.count.line_crossings on supervision's LineZone) on synthetic tracks whose
people cross a counting line a known number of times in each direction, and its drawing."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from vidreid.video.count import line_crossings, window_counts, window_line_counts, write_line_counts

LINE = [300, 0, 300, 480]  # vertical, drawn downwards: moving right (+x) is "in", moving left is "out"


def path(ident, xs, frames, y=400.0, h=100.0, w=30.0):
    """Boxes with feet at ``(x, y)`` for each ``x`` of ``xs`` at ``frames``."""
    return [(int(f), ident, (x - w / 2, y - h, x + w / 2, y)) for x, f in zip(xs, frames)]


def crossings(items, **kw):
    frames = [f for f, _, _ in items]
    ids = [i for _, i, _ in items]
    boxes = np.array([b for _, _, b in items])
    return line_crossings(frames, ids, boxes, kw.pop("line", LINE), **kw)


def scene():
    items = path(1, np.linspace(100, 500, 40), range(40))  # in once
    items += path(2, np.r_[np.linspace(500, 150, 20), np.linspace(150, 450, 20)], range(40))  # out, then in
    # 3 walks left and is missing for 10 frames while it crosses (occluded; one identity from two fragments)
    items += path(3, np.linspace(400, 350, 10), range(10)) + path(3, np.linspace(250, 200, 10), range(20, 30))
    items += path(4, np.linspace(50, 250, 40), range(40))  # stays on the left: never crosses
    items += path(-1, np.linspace(100, 500, 40), range(40))  # a dropped track: not counted
    return items


def test_counts_each_identity_and_direction():
    res = crossings(scene())
    assert (res["in"], res["out"]) == (2, 2)
    per = {p["identity"]: (p["in"], p["out"]) for p in res["per_identity"]}
    assert per == {1: (1, 0), 2: (1, 1), 3: (0, 1), 4: (0, 0)}
    first = [e for e in res["events"] if e["identity"] == 1]
    assert first == [{"frame": 20, "identity": 1, "direction": "in"}]  # x = 100 + 400 * 20 / 39 > 300 first at 20
    assert [e["frame"] for e in res["events"]] == sorted(e["frame"] for e in res["events"])
    assert next(e for e in res["events"] if e["identity"] == 3)["frame"] == 20  # counted when seen on the far side


def test_direction_follows_the_line_orientation():
    items = path(1, np.linspace(100, 500, 40), range(40))
    assert (crossings(items)["in"], crossings(items)["out"]) == (1, 0)
    assert (crossings(items, line=LINE[2:] + LINE[:2])["in"], crossings(items, line=LINE[2:] + LINE[:2])["out"]) \
        == (0, 1)  # fmt: skip
    up = [(f, 5, (290, y - 80, 310, y)) for f, y in enumerate(range(300, 0, -30))]
    res = crossings(up, line=[0, 150, 640, 150])  # horizontal line drawn rightwards: walking up the image is "in"
    assert (res["in"], res["out"]) == (1, 0)


def test_segment_limits_and_debounce():
    far = path(1, np.linspace(100, 500, 40), range(40), y=470)  # feet below the end of a short segment
    assert crossings(far, line=[300, 100, 300, 300])["in"] == 0
    # a 2-frame excursion over the line and back: a crossing pair for threshold 1, nothing for threshold 3
    xs = [250, 260, 270, 310, 312, 270, 260, 250]
    items = path(1, xs, range(len(xs)))
    assert (crossings(items)["in"], crossings(items)["out"]) == (1, 1)
    res = crossings(items, minimum_crossing_threshold=3)
    assert (res["in"], res["out"]) == (0, 0)


def test_bad_line_and_anchor_raise():
    with pytest.raises(ValueError, match="count.line"):
        crossings(scene(), line=[1, 2, 3])
    with pytest.raises(ValueError, match="count.line"):
        crossings(scene(), line=[5, 5, 5, 5])
    with pytest.raises(ValueError, match="anchors"):
        crossings(scene(), anchors=["feet"])


def test_window_and_identity_tables(tmp_path):
    items = scene()
    res = crossings(items)
    rows = window_counts([f for f, _, _ in items], [i for _, i, _ in items], [i for _, i, _ in items], fps=10.0,
                         window_s=1.0, num_frames=40)  # fmt: skip
    wins = window_line_counts(rows, res["events"])
    # 2 goes out at frame 11 and back in at 30; 1 in and 3 out at 20
    assert [(w["line_in"], w["line_out"]) for w in wins] == [(0, 0), (0, 1), (1, 1), (1, 0)]
    p = write_line_counts(tmp_path / "line_counts.csv", res["per_identity"])
    got = list(csv.DictReader(p.open()))
    assert [(r["identity"], r["in"], r["out"]) for r in got] == [("1", "1", "0"), ("2", "1", "1"), ("3", "0", "1"),
                                                                ("4", "0", "0")]  # fmt: skip


def test_draw_counting_line_marks_the_line_and_the_in_side():
    from vidreid.video.render import draw_counting_line

    img = np.zeros((480, 640, 3), np.uint8)
    draw_counting_line(img, LINE, 2, 1)
    assert tuple(img[240, 300]) == (0, 0, 255)  # the line, red (BGR)
    # the arrow from the midpoint points to the "in" side (+x for this line)
    right, left = img[236:245, 305:325, 2].sum(), img[236:245, 275:295, 2].sum()
    assert right > 3 * max(left, 1)


def test_line_counts_on_a_tracked_synthetic_video(tmp_path):
    """Synthetic clip -> detections (the true boxes, jittered) -> ByteTrack -> crossings of a vertical line at
    x = 160: one walker crosses rightwards ("in"), one leftwards ("out"), one stays on the left."""
    pytest.importorskip("cv2")
    from tests.video_synth import Walker, render_clip, write_det_txt
    from vidreid.video.detect import MOTFileDetector
    from vidreid.video.track import ByteTracker

    walkers = [Walker(1, 1, 40, 280, 200, 90), Walker(2, 2, 290, 60, 225, 100), Walker(3, 3, 20, 120, 150, 60)]
    frames, gt = render_clip(walkers, n=30)
    det = MOTFileDetector(write_det_txt(tmp_path / "det.txt", gt, jitter=1.0))
    tracker = ByteTracker(fps=10.0)
    fr, ids, boxes = [], [], []
    for t, frame in enumerate(frames):
        out = tracker.update(det(frame, t))
        fr += [t] * len(out)
        ids += out.track_ids.tolist()
        boxes += out.boxes.tolist()
    res = line_crossings(fr, ids, np.array(boxes), [160, 0, 160, 240])
    assert len(set(ids)) == 3
    assert (res["in"], res["out"]) == (1, 1)
    assert sorted((p["in"], p["out"]) for p in res["per_identity"]) == [(0, 0), (0, 1), (1, 0)]


def test_render_video_draws_the_line_with_running_totals(tmp_path):
    """The annotated video shows the counting line (red) on every frame; the totals count only crossings up to
    the frame shown (here: frame 1 shows "in 0", frame 3 "in 1")."""
    pytest.importorskip("cv2")
    from PIL import Image

    from tests.video_synth import write_video
    from vidreid.video.render import render_video

    frames = [np.full((120, 160, 3), 90, np.uint8) for _ in range(4)]
    video = write_video(tmp_path / "v.avi", frames)
    events = [{"frame": 2, "identity": 0, "direction": "in"}]
    stills = {1: tmp_path / "f1.png", 3: tmp_path / "f3.png"}
    render_video(video, [], 10.0, None, stills=stills, still_width=160, line=[80, 60, 80, 115], line_events=events)
    f1, f3 = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (stills[1], stills[3]))
    red = lambda img: (img[:, :, 0] > 180) & (img[:, :, 1] < 80) & (img[:, :, 2] < 80)  # noqa: E731
    assert red(f1)[70:110, 78:83].mean() > 0.5  # the line
    # the label next to the line's start changed from "in 0" to "in 1"
    diff = np.abs(f1 - f3).sum(2)
    label, rest = diff[38:58].sum(), diff[60:].sum()  # rows 0-24: the header with the frame number
    assert label > 1000 and label > 10 * rest
