"""Background suppression of track.py's crops (``tracklets.background=suppress``): the crop writer greys out the
pixels of each box that match the camera's median background and keeps the person's, and the config option
reaches the writer of each camera (through :class:`~vidreid.runs.track_stages.TrackletBuilder` and a whole run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from vidreid.video.background import FILL_BGR, median_background  # noqa: E402
from vidreid.video.reader import iter_frames  # noqa: E402
from vidreid.video.tracklets import CropWriter  # noqa: E402

H, W, N = 120, 160, 24
PERSON_BGR = (40, 40, 220)  # a red "person"
PW, PH = 20, 40  # its box, px


def _texture() -> np.ndarray:
    """A static textured BGR background: 8 px squares of random colours far from the fill and the person."""
    rng = np.random.default_rng(3)
    tiles = rng.integers(150, 256, (H // 8, W // 8, 3)).astype(np.uint8)
    tiles[..., 2] = rng.integers(0, 90, (H // 8, W // 8))  # little red: never near the person's colour
    return np.kron(tiles, np.ones((8, 8, 1), np.uint8))


def _person_box(t: int) -> tuple[int, int, int, int]:
    """The person's box in frame ``t``: walking from the left edge (box touching it) to the right edge."""
    x1 = round((W - PW) * t / (N - 1))
    return x1, 50, x1 + PW, 50 + PH


def _video(path: Path) -> Path:
    """``N`` frames of the texture with the person's rectangle moving across it, as an MJPG .avi."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert vw.isOpened()
    bg = _texture()
    for t in range(N):
        f = bg.copy()
        x1, y1, x2, y2 = _person_box(t)
        f[y1:y2, x1:x2] = PERSON_BGR
        vw.write(f)
    vw.release()
    return path


def _region(box, margin: float) -> tuple[int, int, int, int]:
    """The pixels CropWriter cuts for ``box`` with ``margin`` (clipped to the frame): ``a, b, c, d``."""
    x1, y1, x2, y2 = box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    return (int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my))), int(min(W, np.ceil(x2 + mx))),
            int(min(H, np.ceil(y2 + my))))  # fmt: skip


def test_median_background_of_the_synthetic_video_is_the_texture(tmp_path):
    """The person covers each pixel in under half of the frames: the median is the texture (up to MJPG error)."""
    bg = median_background(_video(tmp_path / "clip.avi"), step=1)
    assert bg.shape == (H, W, 3)
    assert np.abs(bg.astype(int) - _texture()).mean() < 4


@pytest.mark.parametrize("frame_index", [0, 9, N - 1])  # the box at the left edge (clipped), inside, at the right
def test_crop_writer_with_background_fills_the_background_and_keeps_the_person(tmp_path, frame_index):
    """Crops cut with a margin of 0.5 (the crop is 4x the box; clipped at the frame's edge) and written at the cut
    size (no resampling): every pixel more than 6 px outside the person's box is the fill, every pixel more than 4
    px inside it the person's colour (JPEG error <= 12 a channel); without a background the same crop is the
    frame's pixels as before (the texture around the person)."""
    video = _video(tmp_path / "clip.avi")
    bg = median_background(video, step=1)
    frames = dict(iter_frames(video))
    frame, box = frames[frame_index], _person_box(frame_index)
    a, b, c, d = _region(box, 0.5)
    size = (d - b, c - a)
    boxes, tids = np.array([box], np.float32), np.array([3])
    with_bg = CropWriter(tmp_path / "bg", size, margin=0.5, background=bg)
    with_bg.write(frame, 0, frame_index, boxes, tids)
    plain = CropWriter(tmp_path / "keep", size, margin=0.5)
    plain.write(frame, 0, frame_index, boxes, tids)
    crop = cv2.imread(str(with_bg.folder(0, 3) / f"{frame_index:06d}.jpg")).astype(int)
    kept = cv2.imread(str(plain.folder(0, 3) / f"{frame_index:06d}.jpg")).astype(int)
    assert crop.shape == kept.shape == (d - b, c - a, 3)

    # the person's box in crop coordinates, shrunk by 4 px / grown by 6 px (the blur and the dilation widen the
    # mask by ~3 px, the JPEG's 8x8 blocks ring ~2 px further at the red / grey edge)
    x1, y1, x2, y2 = box[0] - a, box[1] - b, box[2] - a, box[3] - b
    yy, xx = np.mgrid[: d - b, : c - a]
    inside = (xx >= x1 + 4) & (xx < x2 - 4) & (yy >= y1 + 4) & (yy < y2 - 4)
    outside = (xx < x1 - 6) | (xx >= x2 + 6) | (yy < y1 - 6) | (yy >= y2 + 6)
    assert inside.sum() > 300 and outside.sum() > 1000
    assert np.abs(crop[outside] - np.array(FILL_BGR)).max() <= 12
    assert np.abs(crop[inside] - np.array(PERSON_BGR)).max() <= 12
    # the writer without a background is unchanged: the frame's own pixels (the person and the texture)
    expect = cv2.imdecode(cv2.imencode(".jpg", frame[b:d, a:c], [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
    assert np.array_equal(kept, expect.astype(int))
    assert np.abs(kept[outside] - np.array(FILL_BGR)).min(axis=0).max() > 12  # not grey


def test_crop_writer_rejects_a_background_of_another_size(tmp_path):
    writer = CropWriter(tmp_path, (16, 8), background=np.zeros((H + 2, W, 3), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        writer.write(np.zeros((H, W, 3), np.uint8), 0, 0, np.array([[10, 10, 30, 50]], np.float32), np.array([1]))
    with pytest.raises(ValueError, match="expected an"):
        CropWriter(tmp_path, (16, 8), background=np.zeros((H, W), np.uint8))


def _stages(overrides: list[str], tmp_path: Path):
    from tests.conftest import compose
    from vidreid.runs.track import Stages

    return Stages.from_config(compose("track", overrides, output_dir=tmp_path / "run"))


def test_the_config_option_reaches_each_cameras_crop_writer(tmp_path, monkeypatch):
    """``tracklets.background=suppress`` (+ threshold, step) from the command line: the stage builds each camera's
    writer with that video's median background (of every ``background_step``-th frame) and the threshold;
    ``keep`` builds it without and never reads the video for a background; ``auto`` (the default) suppresses for a
    video file and keeps for a folder of images."""
    import vidreid.video.background as background

    calls = []

    def spy(video, step=4, frame_range=None):
        calls.append((Path(video), step))
        return median_background(video, step, frame_range)

    monkeypatch.setattr(background, "median_background", spy)
    video = _video(tmp_path / "clip.avi")
    st = _stages(["tracklets.background=suppress", "tracklets.background_threshold=30",
                  "tracklets.background_step=3"], tmp_path)  # fmt: skip
    camera = st.reader.probe(0, video)
    w = st.tracklets.writer(tmp_path / "tl", (64, 32), camera)
    assert calls == [(video, 3)]
    assert w.background is not None and w.background_threshold == 30.0
    assert np.array_equal(w.background, median_background(video, step=3))
    keep = _stages(["tracklets.background=keep"], tmp_path)
    assert keep.tracklets.writer(tmp_path / "tl", (64, 32), keep.reader.probe(0, video)).background is None
    assert len(calls) == 1
    auto = _stages([], tmp_path)
    assert auto.tracklets.crop_background == "auto"
    w = auto.tracklets.writer(tmp_path / "tl", (64, 32), auto.reader.probe(0, video))
    assert calls[1:] == [(video, 4)] and np.array_equal(w.background, median_background(video, step=4))
    from vidreid.runs.track_stages import Camera

    assert auto.tracklets.writer(tmp_path / "tl", (64, 32), Camera(0, tmp_path, None)).background is None
    assert len(calls) == 2  # a folder of images: no background, no error


def test_suppress_needs_a_video_file_and_a_known_mode(tmp_path):
    from vidreid.runs.track_stages import Camera, TrackletBuilder

    st = TrackletBuilder(background="suppress")
    with pytest.raises(ValueError, match="needs a video file"):
        st.writer(tmp_path / "tl", (64, 32), Camera(0, tmp_path, None))  # a folder, not a video file
    with pytest.raises(ValueError, match="needs a video file"):
        st.writer(tmp_path / "tl", (64, 32), None)
    with pytest.raises(ValueError, match="tracklets.background='grey'"):
        TrackletBuilder(background="grey")


def test_track_run_with_suppress_writes_greyed_crops(tmp_path, tiny_checkpoint):
    """A whole ``track.py`` run on the synthetic street clip with ``tracklets.background=suppress``: its crops are
    largely the fill (the people's surroundings), and the summary records the mode (the plain crops hold no fill:
    the clip's background is far from it, see the crop writer's test)."""
    from tests.conftest import compose
    from tests.test_track_stages import _clip, _common
    from vidreid.runs.track import run_track

    (video,), det, _ = _clip(tmp_path)

    def grey_fraction(out: Path) -> float:
        crops = [cv2.imread(str(p)).astype(int) for p in sorted((out / "tracklets").rglob("*.jpg"))]
        assert crops
        return float(np.mean([(np.abs(c - np.array(FILL_BGR)).max(axis=2) <= 6).mean() for c in crops]))

    out = tmp_path / "run"
    cfg = compose("track", _common(tiny_checkpoint, det) + [f"videos={video}", "tracklets.background=suppress",
                                                            "tracklets.margin=0.2"], output_dir=out)  # fmt: skip
    s = run_track(cfg)
    assert s["crop_background"] == {"mode": "suppress", "threshold": 45.0, "step": 4}
    assert json.loads((out / "summary.json").read_text())["crop_background"]["mode"] == "suppress"
    assert "background_s" in s["timings_s"]
    assert grey_fraction(out) > 0.2
