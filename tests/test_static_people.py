"""People who stand still are people: on a synthetic street clip, a person waiting in place (shifting weight),
a person standing perfectly still and a static false box on a parked van (a detector's false positive that
flickers) are all static tracks; the evidence rule (vidreid.video.tracklets.StaticRule) keeps both people and
drops the van, where the motion-only rule dropped all three."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("supervision")

from PIL import Image  # noqa: E402

from tests.video_synth import background  # noqa: E402
from vidreid.data.synthetic_people import Painter, draw_person, sample_identity  # noqa: E402
from vidreid.video.detect import Detections  # noqa: E402
from vidreid.video.track import ByteTracker  # noqa: E402
from vidreid.video.tracklets import ForegroundMeter, StaticRule, TrackRow, build_fragments, static_evidence  # noqa: E402

VAN = (200.0, 120.0, 236.0, 190.0)  # the part of the van the detector fires on (person-like aspect)


def person_layer(size, ident, x, y, height, view, phase):
    layer = Image.new("RGBA", (size[1], size[0]), (0, 0, 0, 0))
    draw_person(Painter(layer, x, y, 1.0), ident, view, height, phase=phase)
    return layer


def clip(n=40, size=(240, 320)):
    """Frames and the detections per frame ``[(box, score)]``: 1 = a person waiting (weight shifts: the legs and
    arms move, the feet stay), weakly detected (score 0.65 in 3 frames of 5); 2 = a person standing perfectly
    still from the first frame, well detected (0.9 every frame); the van's false box (0.6 in 3 frames of 5); 3 = a
    walker (0.9)."""
    bg = background(*size)
    bg[110:195, 170:300] = (90, 95, 100)  # a parked van: part of the static background
    bg[180:195, 180:200] = bg[180:195, 270:290] = (20, 20, 20)
    rng = np.random.default_rng(3)
    idents = [sample_identity(np.random.default_rng(s)) for s in (11, 12, 13)]
    frames, dets = [], []
    for t in range(n):
        canvas = Image.fromarray(bg.copy())
        found = []
        waiting = person_layer(size, idents[0], 60, 200, 90, "front", 0.5 * math.sin(0.9 * t))
        still = person_layer(size, idents[1], 120, 205, 95, "front", 0.0)
        walker = person_layer(size, idents[2], 20 + 7 * t, 230, 100, "right", 0.6 * t)
        for layer, score, seen in ((waiting, 0.65, t % 5 not in (1, 3)), (still, 0.9, True), (walker, 0.9, True)):
            canvas.paste(layer, (0, 0), layer)
            if seen:
                found.append((layer.getbbox(), score))
        if t % 5 not in (0, 2):
            found.append((VAN, 0.6))
        img = np.asarray(canvas)[:, :, ::-1].copy()
        frames.append(np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8))  # sensor noise
        dets.append(found)
    return frames, dets


@pytest.fixture(scope="module")
def tracked():
    """ByteTrack over the clip with the background model measuring each tracked box."""
    frames, dets = clip()
    tracker = ByteTracker(fps=10.0)
    meter = ForegroundMeter()
    rows = []
    for t, (frame, found) in enumerate(zip(frames, dets)):
        d = Detections(np.array([b for b, _ in found], np.float32), np.array([s for _, s in found], np.float32))
        out = tracker.update(d)
        fg = meter(frame, out.boxes)
        for box, s, tid, f in zip(out.boxes, out.scores, out.track_ids, fg):
            rows.append(TrackRow(0, t, int(tid), *map(float, box), float(s), foreground=float(f)))
    return rows


def kind(frag):
    """Which object a fragment follows, by its median box centre x."""
    cx = float(np.median((frag.boxes[:, 0] + frag.boxes[:, 2]) / 2))
    if abs(cx - (VAN[0] + VAN[2]) / 2) < 5:
        return "van"
    return {60: "waiting", 120: "still"}.get(int(round(cx / 60) * 60), "walker")


def test_motion_only_rule_drops_the_people_who_stand_still(tracked):
    kept, dropped = build_fragments(tracked, min_length=4, min_displacement=20)
    assert sorted(kind(f) for f in dropped) == ["still", "van", "waiting"]
    assert [kind(f) for f in kept] == ["walker"]


def test_evidence_keeps_still_people_and_drops_the_static_false_box(tracked):
    kept, dropped = build_fragments(tracked, min_length=4, min_displacement=20, static=StaticRule())
    assert sorted(kind(f) for f in kept) == ["still", "waiting", "walker"]
    assert [kind(f) for f in dropped] == ["van"]
    ev = {kind(f): f.meta["static"] for f in kept + dropped if "static" in f.meta}
    # the waiting person is kept by the background model alone, the still one by the detector alone
    assert ev["waiting"]["persistence"] < 0.5 <= ev["still"]["persistence"]
    assert ev["waiting"]["foreground"] > 0.01 > ev["still"]["foreground"]
    assert ev["van"]["persistence"] < 0.5 and ev["van"]["foreground"] < 0.01
    assert ev["van"]["detected_fraction"] == pytest.approx(0.6, abs=0.1)
    # each cue alone keeps only its person
    fg_only = build_fragments(tracked, 4, 20, static=StaticRule(min_persistence=None))[0]
    det_only = build_fragments(tracked, 4, 20, static=StaticRule(min_foreground=None))[0]
    assert sorted(kind(f) for f in fg_only) == ["waiting", "walker"]
    assert sorted(kind(f) for f in det_only) == ["still", "walker"]


def test_static_evidence_counts_interpolated_boxes_as_missed():
    rows = [TrackRow(0, t, 1, 10, 10, 30, 60, 0.8, interpolated=t % 2 == 1, foreground=0.2) for t in range(0, 20, 2)]
    assert static_evidence(rows, stride=2)["detected_fraction"] == 1.0  # every processed frame has a box
    rows = [TrackRow(0, t, 1, 10, 10, 30, 60, 0.8, interpolated=t % 2 == 1, foreground=0.2) for t in range(10)]
    ev = static_evidence(rows)
    assert ev["detected_fraction"] == pytest.approx(0.5)
    assert ev["persistence"] == pytest.approx(0.4)
    assert ev["aspect"] == pytest.approx(2.5)
    wide = [TrackRow(0, t, 1, 0, 0, 80, 40, 1.0) for t in range(5)]
    assert not StaticRule().is_person(static_evidence(wide))  # wider than tall: not a standing person
    with pytest.raises(ValueError, match="min_persistence"):
        StaticRule(min_persistence=2.0)
