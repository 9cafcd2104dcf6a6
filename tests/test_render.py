"""vidreid.video.render: still times and GIF range fitted to a short video (TUD-Campus is 2.84 s; the default
stills at 10-70 s and GIF at 20-30 s drew nothing), labels of a crowded frame inside the frame and apart, and the
identity sheet's legend."""

from __future__ import annotations

import logging
from itertools import combinations

import numpy as np
import pytest

pytest.importorskip("cv2")

from tests.video_synth import numbered_frames, write_video  # noqa: E402
from vidreid.video.render import (  # noqa: E402
    SHEET_LEGEND,
    annotate,
    identity_colour,
    identity_sheet,
    place_labels,
    render_video,
    resolve_times,
)
from vidreid.video.tracklets import TrackRow  # noqa: E402

STILLS, GIF = (10.0, 30.0, 50.0, 70.0), (20.0, 30.0)


def test_times_past_the_end_of_a_short_video_are_placed_inside_it_with_a_logged_reason(caplog):
    with caplog.at_level(logging.WARNING, logger="vidreid.video.render"):
        t = resolve_times(STILLS, GIF, 2.84, "TUD-Campus.mp4")
    assert t.stills_s == pytest.approx((0.568, 1.136, 1.704, 2.272))
    assert t.gif_range_s == (0.0, 2.84) and len(t.notes) == 2
    assert caplog.text.count("TUD-Campus.mp4") == 2 and "past the end" in caplog.text


def test_times_inside_a_long_video_are_kept_and_partly_late_ones_are_cut(caplog):
    with caplog.at_level(logging.WARNING, logger="vidreid.video.render"):
        t = resolve_times(STILLS, GIF, 79.5, "vtest.avi")
    assert (t.stills_s, t.gif_range_s, t.notes) == (STILLS, GIF, ()) and not caplog.records
    t = resolve_times(STILLS, (35.0, 45.0), 40.0)
    assert t.stills_s == (10.0, 30.0) and t.gif_range_s == (35.0, 40.0) and len(t.notes) == 2
    assert resolve_times((1.0,), (50.0, 60.0), 4.0).gif_range_s == (0.0, 4.0)  # shorter than the range: all of it
    with pytest.raises(ValueError, match="duration"):
        resolve_times(STILLS, GIF, 0.0)
    with pytest.raises(ValueError, match="end > start"):
        resolve_times(STILLS, (30.0, 20.0), 60.0)


def test_a_short_video_gets_its_stills_and_gif(tmp_path):
    fps, n = 10.0, 28  # 2.8 s
    video = write_video(tmp_path / "short.avi", numbered_frames(n), fps=fps)
    t = resolve_times(STILLS, GIF, n / fps, video)
    stills = {int(round(s * fps)): tmp_path / f"frame_{int(round(s * fps)):04d}.png" for s in t.stills_s}
    rows = [TrackRow(0, i, 1, 20, 40, 60, 110, 0.9, identity=0) for i in range(n)]
    files = render_video(video, rows, fps, None, gif=tmp_path / "a.gif", gif_range_s=t.gif_range_s, gif_stride=2,
                         stills=stills)  # fmt: skip
    assert {k for k in files if k.startswith("still_")} == {f"still_{i}" for i in stills}
    assert len(stills) == 4 and all(p.is_file() for p in stills.values()) and (tmp_path / "a.gif").is_file()


def _crowd() -> tuple[list[tuple[float, float, float, float]], list[TrackRow]]:
    """A group of 8 people side by side (boxes 30 px wide, 14 px apart) near the top, one at the right edge and
    one at the bottom of a 240x320 frame."""
    boxes = [(10 + 14 * i, 30 + 3 * (i % 2), 40 + 14 * i, 120) for i in range(8)]
    boxes += [(290, 100, 319, 200), (150, 200, 190, 239)]
    rows = [TrackRow(0, 0, 10 + i, *b, 0.9, identity=i) for i, b in enumerate(boxes)]
    return boxes, rows


def test_labels_of_a_crowded_frame_stay_inside_and_apart():
    boxes, _ = _crowd()
    sizes = [(70, 17)] * len(boxes)
    rects = place_labels(boxes, sizes, (240, 320), top=24)
    for x1, y1, x2, y2 in rects:
        assert 0 <= x1 < x2 <= 320 and 24 <= y1 < y2 <= 240 and (x2 - x1, y2 - y1) == (70, 17)
    overlaps = [(i, j) for (i, a), (j, b) in combinations(enumerate(rects), 2)
                if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])]  # fmt: skip
    assert overlaps == []
    # a label that fits above its box stays there
    assert place_labels([(100, 100, 140, 200)], [(70, 17)], (240, 320), top=24) == [(100, 83, 170, 100)]


def test_annotate_draws_each_label_where_it_was_placed():
    import cv2

    boxes, rows = _crowd()
    frame = np.full((240, 320, 3), 255, np.uint8)
    out = annotate(frame, rows, header="t=0.0s")
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = []
    for r in rows:
        (tw, th), _ = cv2.getTextSize(f"ID {r.identity} t{r.track_id}", font, 0.45, 1)
        sizes.append((tw + 4, th + 5))
    for r, (x1, y1, _, _) in zip(rows, place_labels(boxes, sizes, (240, 320), top=24)):
        assert tuple(int(v) for v in out[y1 + 1, x1 + 1]) == identity_colour(r.identity)
    assert (out[:24] == 0).mean() > 0.8  # the header band is drawn last, over nothing but itself


def test_identity_sheet_has_a_legend_and_first_last_captions(tmp_path):
    from PIL import Image

    idents = []
    for k in range(2):
        tracks = []
        for j in range(2):
            folder = tmp_path / "tracklets" / f"p{k}_{j}"
            folder.mkdir(parents=True)
            for f in range(3):
                Image.fromarray(np.full((64, 32, 3), 40 * f + 60, np.uint8)).save(folder / f"{f:04d}.jpg")
            tracks.append({"track_id": 10 * k + j, "folder": f"tracklets/p{k}_{j}"})
        idents.append({"identity": k, "tracklets": tracks})
    out = identity_sheet(idents, tmp_path, tmp_path / "sheet.png")
    im = np.asarray(Image.open(out).convert("L"))
    assert im.shape[0] == 16 + 2 * (64 + 14)  # the legend band above the rows
    assert (im[:14] < 100).sum() > 50 and (im[:14] < 100).any(axis=0).nonzero()[0].max() > 300
    assert "first crop" in SHEET_LEGEND and "last crop" in SHEET_LEGEND
