"""Offline track refinement (vidreid.video.refine): interpolation, GSI smoothing and motion linking on synthetic
tracks with known gaps."""

from __future__ import annotations

import numpy as np
import pytest

from vidreid.video.refine import gp_smooth, gsi_length_scale, interpolate_tracks, link_tracks, refine_tracks
from vidreid.video.tracklets import TrackRow


def walk(tid, frames, x0=100.0, vx=3.0, y=200.0, h=80.0, w=30.0, score=0.9, cam=0, noise=None):
    """Boxes of one person walking right at ``vx`` px/frame, feet at ``y``; ``noise (len(frames), 4)`` added."""
    rows = []
    for k, t in enumerate(frames):
        box = np.array([x0 + vx * t, y - h, x0 + vx * t + w, y])
        if noise is not None:
            box = box + noise[k]
        rows.append(TrackRow(cam, int(t), tid, *map(float, box), score))
    return rows


def by_frame(rows, tid):
    return {r.frame: r for r in rows if r.track_id == tid}


def test_linear_interpolation_fills_short_gaps_exactly_and_flags_them():
    frames = [0, 1, 2, 6, 7, 20, 21]  # gap of 3 missing frames (3..5), then 12 missing (8..19)
    rows = walk(1, frames)
    rows[3].score = 0.5  # frame 6
    out = interpolate_tracks(rows, max_gap=5)
    got = by_frame(out, 1)
    assert sorted(got) == [0, 1, 2, 3, 4, 5, 6, 7, 20, 21]  # the 12-frame gap is left open
    for t in (3, 4, 5):
        r = got[t]
        assert r.interpolated
        assert (r.x1, r.y1, r.x2, r.y2) == pytest.approx((100 + 3 * t, 120, 130 + 3 * t, 200))
        assert r.score == pytest.approx(0.9 + (0.5 - 0.9) * (t - 2) / 4)
    assert not any(got[t].interpolated for t in frames)
    assert len(rows) == len(frames)  # input untouched


def test_interpolation_respects_the_stride_grid():
    rows = walk(4, [0, 2, 10, 12])  # stride 2: frames 4, 6, 8 were processed and missed
    got = by_frame(interpolate_tracks(rows, max_gap=7, stride=2), 4)
    assert sorted(got) == [0, 2, 4, 6, 8, 10, 12]
    assert got[6].x1 == pytest.approx(100 + 18)
    assert sorted(by_frame(interpolate_tracks(rows, max_gap=6, stride=2), 4)) == [0, 2, 10, 12]  # 7 missing > 6


def test_gsi_length_scale_follows_the_paper_formula():
    assert gsi_length_scale(100) == pytest.approx(10 * np.log(10))
    assert gsi_length_scale(5000) == pytest.approx(0.1)  # clipped below at 1 / tau
    assert gsi_length_scale(1) == pytest.approx(10 * np.log(1000))


def test_gsi_reduces_known_jitter_and_keeps_a_straight_walk():
    rng = np.random.default_rng(0)
    frames = np.arange(60)
    noise = rng.normal(0, 3.0, (60, 4))
    clean = walk(1, frames)
    noisy = walk(1, frames, noise=noise)
    out = interpolate_tracks(noisy, max_gap=5, method="gsi")
    truth = np.array([[r.x1, r.y1, r.x2, r.y2] for r in clean])
    before = np.sqrt(((np.array([[r.x1, r.y1, r.x2, r.y2] for r in noisy]) - truth) ** 2).mean())
    after = np.sqrt(((np.array([[r.x1, r.y1, r.x2, r.y2] for r in out]) - truth) ** 2).mean())
    assert before == pytest.approx(3.0, rel=0.15)
    assert after < 0.5 * before
    # noise-free straight walk: no measurable noise, nothing changes
    exact = interpolate_tracks(clean, max_gap=5, method="gsi")
    assert np.allclose([[r.x1, r.y1] for r in exact], truth[:, :2])


def test_gsi_fills_gaps_and_flags_them():
    rng = np.random.default_rng(1)
    frames = [t for t in range(40) if not 15 <= t < 19]
    rows = walk(2, frames, noise=rng.normal(0, 2.0, (len(frames), 4)))
    got = by_frame(interpolate_tracks(rows, max_gap=4, method="gsi"), 2)
    assert sorted(got) == list(range(40))
    assert [t for t, r in got.items() if r.interpolated] == [15, 16, 17, 18]
    assert got[16].x1 == pytest.approx(100 + 48, abs=3.0)


def test_gp_smooth_rejects_bad_input():
    with pytest.raises(ValueError, match="strictly increasing"):
        gp_smooth(np.array([0, 2, 1]), np.zeros((3, 1)), 5.0)
    with pytest.raises(ValueError, match="refine.interpolate"):
        interpolate_tracks(walk(1, [0, 1]), 3, method="cubic")


def test_link_joins_a_broken_walk_and_not_a_coexisting_or_far_track():
    # person A walks right, lost for 6 frames (tracker ids 1 -> 2); person B walks left (ids 3 -> 4), lost for 4
    rows = walk(1, range(0, 20)) + walk(2, range(27, 45))
    rows += walk(3, range(0, 15), x0=600, vx=-4, y=300, h=100) + walk(4, range(20, 40), x0=600, vx=-4, y=300, h=100)
    # a track on person A's path that co-exists with both 1 and 2 (a duplicate): linked to neither
    rows += walk(5, range(18, 30), x0=100, vx=3)
    # a track starting after 3 ended but far away (a jump of ~6 body heights): not linked
    rows += walk(6, range(18, 30), x0=100, vx=-4, y=300, h=100)
    out, links = link_tracks(rows, fps=10.0, max_gap=10)
    assert links == {(0, 2): 1, (0, 4): 3}
    assert sorted({r.frame for r in out if r.track_id == 1}) == list(range(0, 20)) + list(range(27, 45))
    assert {r.track_id for r in out} == {1, 3, 5, 6}


def test_link_chains_and_gap_limit():
    rows = walk(1, range(0, 10)) + walk(2, range(13, 20)) + walk(3, range(24, 30))
    _, links = link_tracks(rows, fps=10.0, max_gap=5)
    assert links == {(0, 2): 1, (0, 3): 1}
    _, links = link_tracks(rows, fps=10.0, max_gap=2)  # 13 - 9 - 1 = 3 missing frames > 2
    assert links == {}


def test_link_is_one_to_one_by_cost():
    # two candidates for the successor of 1: 2 continues the walk, 3 starts 15 px off it (within tolerance)
    rows = walk(1, range(0, 10)) + walk(2, range(12, 20)) + walk(3, range(12, 20), x0=115)
    _, links = link_tracks(rows, fps=10.0, max_gap=5)
    assert links == {(0, 2): 1}
    _, links = link_tracks(walk(1, range(0, 10)) + walk(3, range(12, 20), x0=115), fps=10.0, max_gap=5)
    assert links == {(0, 3): 1}


def test_link_never_joins_an_exit_and_an_entry_at_the_border():
    # 1 walks out through the right border (x2 reaches 640 at frame 170), 2 comes in there 5 frames later
    rows = walk(1, range(150, 171), x0=100) + walk(2, range(176, 190), x0=100)
    assert link_tracks(rows, fps=10.0, max_gap=10)[1] == {(0, 2): 1}  # no frame size: motion alone links them
    assert link_tracks(rows, fps=10.0, max_gap=10, frame_size=(640, 480))[1] == {}
    assert link_tracks(rows, fps=10.0, max_gap=10, frame_size=(1280, 480))[1] == {(0, 2): 1}


def test_link_refuses_a_size_jump():
    rows = walk(1, range(0, 10)) + walk(2, range(12, 20), h=160)
    assert link_tracks(rows, fps=10.0, max_gap=5)[1] == {}


def test_refine_links_then_fills_the_link_gap():
    rows = walk(1, range(0, 10)) + walk(2, range(14, 20))
    out, links = refine_tracks(rows, fps=10.0, interpolate="linear", max_gap=5, link=True)
    assert links == {(0, 2): 1}
    got = by_frame(out, 1)
    assert sorted(got) == list(range(20))
    assert [t for t, r in sorted(got.items()) if r.interpolated] == [10, 11, 12, 13]


def test_track_table_keeps_the_interpolated_flag_and_crops_follow_links(tmp_path):
    from vidreid.video.tracklets import CropWriter, read_track_table, write_track_table

    rows = walk(1, [0, 3])
    out = interpolate_tracks(rows, max_gap=2)
    write_track_table(tmp_path / "tracks.csv", out, {0: 10.0})
    back = read_track_table(tmp_path / "tracks.csv")
    assert [r.interpolated for r in back] == [False, True, True, False]
    # an older table without the column reads as all detected
    lines = (tmp_path / "tracks.csv").read_text().splitlines()
    (tmp_path / "old.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    assert not any(r.interpolated for r in read_track_table(tmp_path / "old.csv"))
    writer = CropWriter(tmp_path / "tracklets", (32, 16))
    frame = np.full((300, 400, 3), 128, np.uint8)
    writer.write(frame, 0, 5, np.array([[10, 10, 40, 90]]), np.array([2]))
    writer.write(frame, 0, 1, np.array([[10, 10, 40, 90]]), np.array([1]))
    writer.relabel({(0, 2): 1})
    assert sorted(p.name for p in writer.folder(0, 1).glob("*.jpg")) == ["000001.jpg", "000005.jpg"]
    assert not writer.folder(0, 2).exists()


def test_refiner_stage_converts_seconds_and_is_off_by_default():
    from vidreid.video.refine import Refiner

    rows = walk(1, range(0, 10)) + walk(2, range(14, 20))
    out, links = Refiner()(rows, fps=10.0)
    assert links == {} and len(out) == len(rows) and not any(r.interpolated for r in out)
    out, links = Refiner(interpolate="linear", max_gap_s=0.5, link=True, link_max_gap_s=0.5)(rows, fps=10.0)
    assert links == {(0, 2): 1} and sum(r.interpolated for r in out) == 4
    out, links = Refiner(interpolate="linear", max_gap_s=0.2, link=True, link_max_gap_s=0.2)(rows, fps=10.0)
    assert links == {} and not any(r.interpolated for r in out)  # 4 missing frames = 0.4 s > 0.2 s
    with pytest.raises(ValueError, match="refine.interpolate"):
        Refiner(interpolate="spline")


def test_gsi_leaves_a_track_longer_than_its_length_scale_reaches_unchanged():
    import time

    rng = np.random.default_rng(2)
    rows = walk(1, range(1200), noise=rng.normal(0, 2.0, (1200, 4)))
    t0 = time.perf_counter()
    out = interpolate_tracks(rows, max_gap=5, method="gsi")
    assert time.perf_counter() - t0 < 5.0  # no 1200 x 1200 solve
    assert [(r.x1, r.y2) for r in out] == [(r.x1, r.y2) for r in rows]  # length scale 0.1 frame: nothing to smooth
