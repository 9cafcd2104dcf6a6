"""The MOG2 foreground gate on a detector's boxes (vidreid.video.background)."""

from __future__ import annotations

import numpy as np
import pytest

from vidreid.video.background import ForegroundGate, foreground_fraction
from vidreid.video.detect import Detections


def test_foreground_fraction_counts_pixels_inside_each_box():
    m = np.zeros((10, 20), bool)
    m[2:6, 4:8] = True  # 16 pixels
    f = foreground_fraction(m, np.array([[4, 2, 8, 6], [0, 0, 20, 10], [4, 2, 12, 6], [30, 30, 40, 40]]))
    np.testing.assert_allclose(f, [1.0, 16 / 200, 0.5, 0.0])
    # boxes in frame pixels, mask at half size: the box doubles
    np.testing.assert_allclose(foreground_fraction(m, np.array([[8, 4, 16, 12]]), scale=0.5), [1.0])


class _Fixed:
    """Three boxes every frame: a static one (score 0.35) over the still background, one (0.35) over a square
    that moves, and a confident static one (0.9); the static boxes lie below the square's path."""

    def __init__(self):
        self.calls = 0

    def __call__(self, frame, frame_index):
        self.calls += 1
        x = 10 + 30 * frame_index
        return Detections(np.array([[100, 62, 120, 80], [x, 20, x + 20, 60], [140, 62, 160, 80]], np.float32),
                          np.array([0.35, 0.35, 0.9], np.float32))


def _frames(n: int):
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (80, 400, 3), dtype=np.uint8)
    for i in range(n):
        f = bg.copy()
        x = 10 + 30 * i
        f[20:60, x:x + 20] = 255 - f[20:60, x:x + 20]  # the moving object (30 px a frame: never where it was)
        yield i, f


def test_gate_drops_the_uncertain_static_box_keeps_moving_and_confident_ones():
    pytest.importorskip("cv2")
    det = _Fixed()
    gate = ForegroundGate(det, min_foreground=0.3, keep_score=0.5, scale=1.0, warmup=1)
    outs = [gate(f, i) for i, f in _frames(12)]
    assert det.calls == 12
    assert len(outs[0]) == 3  # warm-up: nothing checked
    for d in outs[3:]:
        assert len(d) == 2
        np.testing.assert_allclose(d.scores, [0.35, 0.9])  # the moving box and the confident still box
        assert d.boxes[0, 1] == 20  # the uncertain box kept is the moving one (the static one, y 62, is gone)
    gate_all = ForegroundGate(_Fixed(), min_foreground=0.3, keep_score=None, scale=1.0)
    last = [gate_all(f, i) for i, f in _frames(12)][-1]
    np.testing.assert_allclose(last.scores, [0.35])  # every static box dropped, the moving one kept


def test_gate_restarts_on_a_new_video_and_validates():
    pytest.importorskip("cv2")
    gate = ForegroundGate(_Fixed(), scale=1.0, warmup=2)
    for i, f in _frames(5):
        gate(f, i)
    assert gate._seen == 5
    d = gate(next(_frames(1))[1], 0)  # frame index back to 0: a new video
    assert gate._seen == 1 and len(d) == 3
    with pytest.raises(ValueError, match="min_foreground"):
        ForegroundGate(_Fixed(), min_foreground=1.5)


def test_median_background_removes_a_walker_and_keeps_the_scene(tmp_path):
    """A person crossing a static scene covers each pixel in few frames: the per-pixel median of the frames is
    the scene without them (up to the MJPG codec's error); frame_range and step pick the frames."""
    import cv2

    from vidreid.video.background import median_background

    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8), (9, 9), 0)
    path = tmp_path / "walk.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(20):
        frame = scene.copy()
        frame[20:50, 4 * i:4 * i + 10] = (0, 0, 255)  # a red person walking right
        out.write(frame)
    out.release()
    bg = median_background(path, step=1)
    assert bg.shape == (64, 96, 3) and bg.dtype == np.uint8
    assert np.abs(bg.astype(int) - scene).mean() < 6  # codec error only (a mean of the frames is ~10 off)
    red = (bg[..., 2].astype(int) - bg[..., 0] > 150) & (bg[..., 2].astype(int) - bg[..., 1] > 150)
    assert red.sum() == 0
    first = median_background(path, step=1, frame_range=(0, 1))  # one frame: the walker stays
    assert np.abs(first[30, 5].astype(int) - (0, 0, 255)).max() < 40
    with pytest.raises(ValueError, match="no frame decoded"):
        median_background(path, frame_range=(50, 60))
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        median_background(tmp_path / "nope.avi")


def test_median_background_holds_at_most_max_frames_on_a_doubling_grid(tmp_path):
    """max_frames bounds memory: 20 frames at step 1 with max_frames=8 thin to every 2nd frame at the 9th and to
    every 4th at the next overflow, so the median is exactly that of frames 0, 4, 8, 12, 16; with room for all
    frames it is the median of all 20."""
    import cv2

    from vidreid.video.background import median_background

    rng = np.random.default_rng(2)
    path = tmp_path / "noise.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(20):
        out.write(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    out.release()
    cap, decoded = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        decoded.append(f)
    cap.release()
    assert len(decoded) == 20

    def med(ix):
        return np.median(np.stack([decoded[i] for i in ix]), axis=0).round().astype(np.uint8)

    assert np.array_equal(median_background(path, step=1, max_frames=8), med([0, 4, 8, 12, 16]))
    assert np.array_equal(median_background(path, step=1, max_frames=100), med(range(20)))
    assert np.array_equal(median_background(path, step=3, frame_range=(2, 20), max_frames=3), med([2, 8, 14]))
    with pytest.raises(ValueError, match="max_frames=0"):
        median_background(path, max_frames=0)


def test_suppress_background_greys_the_background_and_keeps_the_person():
    """Pixels within the threshold of the background become FILL_BGR; the person's pixels are kept unchanged;
    the mask hugs the person (the 5x5 smoothing and the 3x3 dilation widen it by at most 3 pixels)."""
    from vidreid.video.background import FILL_BGR, suppress_background

    rng = np.random.default_rng(1)
    bg = rng.integers(60, 200, (40, 24, 3)).astype(np.uint8)
    crop = np.clip(bg.astype(int) + rng.integers(-8, 9, bg.shape), 0, 255).astype(np.uint8)  # sensor noise
    crop[10:30, 8:16] = (20, 240, 30)  # the person: far from any background colour
    out, mask = suppress_background(crop, bg, threshold=45.0)
    assert mask[10:30, 8:16].all()
    grown = np.zeros_like(mask)
    grown[7:33, 5:19] = True
    assert not (mask & ~grown).any()
    assert (out[mask] == crop[mask]).all()
    assert (out[~mask] == np.array(FILL_BGR, np.uint8)).all() and (~mask).sum() > 0.6 * mask.size
    # a threshold above every colour distance suppresses everything; 0 keeps the noisy background too
    assert not suppress_background(crop, bg, threshold=500.0)[1].any()
    assert suppress_background(crop, bg, threshold=0.0)[1].mean() > 0.9
    with pytest.raises(ValueError, match="same box"):
        suppress_background(crop, bg[:-1])
    with pytest.raises(ValueError, match="threshold=-1"):
        suppress_background(crop, bg, threshold=-1)
