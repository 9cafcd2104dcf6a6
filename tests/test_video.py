"""vidreid.video: detector on real PETS2009 frames, ByteTrack continuity on a synthetic clip with known boxes,
association of fragments, window counting, crops in the PRID layout, errors with clear messages."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")
pytest.importorskip("supervision")

from tests.video_synth import Walker, render_clip, write_det_txt, write_video  # noqa: E402
from vidreid.video.associate import agglomerate, auto_threshold, cannot_link, cosine_distances  # noqa: E402
from vidreid.video.count import plot_counts, window_counts, write_counts  # noqa: E402
from vidreid.video.detect import Detections, HOGPeopleDetector, MOTFileDetector  # noqa: E402
from vidreid.video.reader import iter_frames, probe_video, read_frames  # noqa: E402
from vidreid.video.track import ByteTracker  # noqa: E402
from vidreid.video.tracklets import CropWriter, TrackRow, build_fragments, read_track_table, write_track_table  # noqa: E402

VTEST = "pets2009-vtest/vtest.avi"
WALKERS = [Walker(1, 11, 30, 290, 130, 80), Walker(2, 22, 290, 30, 220, 100, hidden=(12, 13, 14))]


# ------------------------------------------------------------------------------------------------ reader / detector
def test_vtest_is_read_with_its_frame_rate_and_size(shared_data):
    info = probe_video(shared_data / VTEST)
    assert (info.fps, info.num_frames, info.width, info.height) == (10.0, 795, 768, 576)
    idx = [i for i, _ in iter_frames(shared_data / VTEST, stride=3, start=5, max_frames=4)]
    assert idx == [5, 8, 11, 14]


def test_hog_detector_finds_people_on_real_vtest_frames(shared_data):
    """Frames 0/200/400 of vtest.avi each show >= 5 walking people; the default detector must find several per
    frame, with upright person-shaped boxes of plausible size (PETS2009 people: ~80-200 px tall)."""
    frames = read_frames(shared_data / VTEST, [0, 200, 400])
    det = HOGPeopleDetector(upscale=1.5, scale=1.1, min_height=40)
    counts = []
    for f in frames.values():
        d = det(f, 0)
        counts.append(len(d))
        h = d.boxes[:, 3] - d.boxes[:, 1]
        w = d.boxes[:, 2] - d.boxes[:, 0]
        assert ((h / w > 1.6) & (h / w < 4.0)).all(), (h / w)
        assert ((h > 40) & (h < 320)).all(), h
        assert ((d.scores > 0) & (d.scores <= 1)).all()
    assert min(counts) >= 2 and sum(counts) >= 9, counts


def test_hog_detector_finds_nobody_on_a_blank_frame():
    assert len(HOGPeopleDetector()(np.full((240, 320, 3), 127, np.uint8), 0)) == 0


# ------------------------------------------------------------------------------------------------ tracker
def _track_clip(tmp_path: Path, walkers, lost_track_buffer: int = 30):
    frames, gt = render_clip(walkers)
    det = MOTFileDetector(write_det_txt(tmp_path / "det.txt", gt))
    tracker = ByteTracker(fps=10, lost_track_buffer=lost_track_buffer, minimum_consecutive_frames=1)
    assign: dict[int, list[tuple[int, int]]] = {}  # pid -> [(frame, track id)]
    rows = []
    for t, f in enumerate(frames):
        tb = tracker.update(det(f, t))
        for box, tid, s in zip(tb.boxes, tb.track_ids, tb.scores):
            # match each tracked box to the ground-truth person it came from (IoU > 0.8)
            best = max(gt[t], key=lambda g: _iou(box, g[1]))
            assert _iou(box, best[1]) > 0.8
            assign.setdefault(best[0], []).append((t, int(tid)))
            rows.append(TrackRow(0, t, int(tid), *map(float, box), float(s)))
    return frames, gt, assign, rows


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_bytetrack_keeps_one_id_per_synthetic_person_through_a_3_frame_occlusion(tmp_path):
    frames, gt, assign, _ = _track_clip(tmp_path, WALKERS)
    ids1 = {tid for _, tid in assign[1]}
    ids2 = {tid for _, tid in assign[2]}
    assert len(ids1) == 1 and len(ids2) == 1 and ids1 != ids2, (ids1, ids2)
    # every visible box is tracked (the first frame is confirmed at once: minimum_consecutive_frames=1)
    assert len(assign[1]) == 30 and len(assign[2]) == 27
    # person 2 comes back after its occlusion under the same id
    assert {t for t, _ in assign[2]} == set(range(30)) - {12, 13, 14}


@pytest.mark.parametrize("backfill", [True, False])
def test_bytetrack_restores_the_boxes_held_back_before_a_track_is_confirmed(tmp_path, backfill):
    """A person entering at frame 5 (after the first frame) with minimum_consecutive_frames=3: sv.ByteTrack gives
    the track its id at its third match, so frames 5 and 6 come out untracked; with backfill they come back from
    pop_backfill with that id and the detections' own boxes, and nothing else does."""
    walkers = [Walker(1, 11, 30, 290, 130, 80), Walker(2, 22, 290, 30, 220, 100, hidden=(0, 1, 2, 3, 4))]
    frames, gt = render_clip(walkers)
    det = MOTFileDetector(write_det_txt(tmp_path / "det.txt", gt))
    tracker = ByteTracker(fps=10, minimum_consecutive_frames=3, backfill=backfill)
    seen: dict[int, dict[int, np.ndarray]] = {}  # track id -> {frame: box}
    restored = []
    for t, f in enumerate(frames):
        tb = tracker.update(det(f, t))
        for box, tid in zip(tb.boxes, tb.track_ids):
            seen.setdefault(int(tid), {})[t] = box
        for call, box, _score, tid in tracker.pop_backfill():
            assert call < t and call not in seen[tid]
            seen[tid][call] = box
            restored.append((call, tid))
    ids = {tid: min(fr) for tid, fr in seen.items()}
    (early,) = [tid for tid in ids if 0 in seen[tid] or 2 in seen[tid]]
    (late,) = [tid for tid in ids if tid != early]
    if backfill:  # both tracks' first two frames (the first-frame track too: 1 match < 3) come back
        assert sorted(restored) == [(0, early), (1, early), (5, late), (6, late)]
        assert sorted(seen[early]) == list(range(30)) and sorted(seen[late]) == list(range(5, 30))
        for t in (5, 6):  # the detection's own box, not the Kalman estimate
            truth = next(b for p, b in gt[t] if p == 2)
            np.testing.assert_allclose(seen[late][t], truth, atol=1.0)
    else:
        assert restored == [] and sorted(seen[early]) == list(range(2, 30))
        assert sorted(seen[late]) == list(range(7, 30))


def test_bytetrack_fragments_a_person_hidden_longer_than_its_buffer(tmp_path):
    """With a lost-track buffer of 1 frame, a 6-frame occlusion splits the person into two tracker ids —
    the fragmentation re-ID association must undo."""
    walkers = [Walker(1, 11, 30, 290, 130, 80, hidden=tuple(range(10, 16))), Walker(2, 22, 290, 30, 220, 100)]
    _, _, assign, _ = _track_clip(tmp_path, walkers, lost_track_buffer=3)
    before = {tid for t, tid in assign[1] if t < 10}
    after = {tid for t, tid in assign[1] if t >= 16}
    assert len(before) == 1 and len(after) == 1 and before != after


# ------------------------------------------------------------------------------------------------ tracklets + association
def test_crops_are_written_in_the_prid_layout_and_fragments_of_one_person_are_associated(tmp_path):
    """Fragmented synthetic person 1 (two tracker ids) + person 2: the crops land in PRID multi_shot folders of
    the requested size, and constrained agglomeration of colour-histogram embeddings gives 2 identities with
    both fragments of person 1 together."""
    from PIL import Image

    from vidreid.data.tracklet import Tracklet
    from vidreid.evaluation.baselines import color_histogram_embeddings

    walkers = [Walker(1, 11, 30, 290, 130, 80, hidden=tuple(range(10, 16))), Walker(2, 22, 290, 30, 220, 100)]
    frames, gt, assign, rows = _track_clip(tmp_path, walkers, lost_track_buffer=3)
    writer = CropWriter(tmp_path / "tracklets", (64, 32))
    for t, f in enumerate(frames):
        rs = [r for r in rows if r.frame == t]
        writer.write(f, 0, t, np.array([[r.x1, r.y1, r.x2, r.y2] for r in rs]).reshape(-1, 4),
                     np.array([r.track_id for r in rs]))  # fmt: skip
    frags, dropped = build_fragments(rows, min_length=3)
    writer.attach(frags)
    assert not dropped and len(frags) == 3
    for f in frags:
        files = sorted(f.folder.glob("*.jpg"))
        assert f.folder.parent.name == "cam_a" and f.folder.parent.parent.name == "multi_shot"
        assert [int(p.stem) for p in files] == f.frames.tolist()
        with Image.open(files[0]) as im:
            assert im.size == (32, 64)
    emb = color_histogram_embeddings([Tracklet(tuple(sorted(f.folder.glob('*.jpg'))), -1, 0) for f in frags],
                                     size=(64, 32))
    dist = cosine_distances(emb)
    forbid = cannot_link([f.camid for f in frags], [f.start for f in frags], [f.end for f in frags])
    pid_of = {tid: pid for pid, items in assign.items() for _, tid in items}
    person = np.array([pid_of[f.track_id] for f in frags])
    same, diff = dist[person[:, None] == person[None, :]], dist[person[:, None] != person[None, :]]
    assert same[same > 0].max() < diff.min()  # the embedding separates the people
    thr = (same[same > 0].max() + diff.min()) / 2
    labels = agglomerate(dist, thr, forbid)
    assert len(set(labels.tolist())) == 2
    assert (labels[person == 1] == labels[person == 1][0]).all() and labels[person == 2][0] != labels[person == 1][0]


def test_agglomerate_matches_scipy_average_linkage_without_constraints():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((6, 16))
    x = np.repeat(centres, 5, axis=0) + 0.35 * rng.standard_normal((30, 16))
    d = cosine_distances(x)
    for thr in (0.2, 0.5, 0.9):
        ours = agglomerate(d, thr)
        ref = fcluster(linkage(squareform(d, checks=False), "average"), t=thr, criterion="distance")
        # same partition (labels may be numbered differently)
        assert len(set(zip(ours.tolist(), ref.tolist()))) == len(set(ours.tolist())) == len(set(ref.tolist()))


def test_time_overlap_forbids_merges_even_through_a_third_tracklet():
    """A-B and B-C are close, A and C overlap in time in one camera: A and C must end in different identities;
    across cameras the same times do not constrain."""
    d = np.array([[0, 0.1, 0.12], [0.1, 0, 0.11], [0.12, 0.11, 0]])
    same_cam = cannot_link([0, 0, 0], [0, 50, 10], [20, 60, 30])  # A=[0,20] and C=[10,30] overlap
    assert same_cam[0, 2] and same_cam[2, 0] and not same_cam[0, 1] and not same_cam[1, 2]
    lab = agglomerate(d, 0.5, same_cam)
    assert lab[0] != lab[2] and len(set(lab.tolist())) == 2
    assert len(set(agglomerate(d, 0.5, cannot_link([0, 0, 1], [0, 50, 10], [20, 60, 30])).tolist())) == 1
    assert len(set(agglomerate(d, 0.5).tolist())) == 1


def test_auto_threshold_is_the_quantile_of_co_occurring_pairs():
    d = np.array([[0, 0.2, 0.4, 0.9], [0.2, 0, 0.6, 0.3], [0.4, 0.6, 0, 0.5], [0.9, 0.3, 0.5, 0]])
    f = cannot_link([0, 0, 0, 0], [0, 0, 0, 100], [10, 10, 10, 110])  # 0,1,2 co-occur: pairs 0.2, 0.4, 0.6
    thr, n = auto_threshold(d, f, quantile=0.5, min_pairs=1)
    assert n == 3 and thr == pytest.approx(0.4)
    assert auto_threshold(d, f, min_pairs=4) == (None, 3)


# ------------------------------------------------------------------------------------------------ counting
def test_window_counts_on_a_hand_made_track_table():
    """10 fps, 3 s windows, 70 frames (7 s: windows [0,3) [3,6) [6,7)). Identity 0 (tracks 1 and 4: one
    fragmented person) is seen in windows 0 and 1, identity 1 (track 2) in windows 0 and 2, identity 2 (track 3)
    only at frame 30 (window 1), and a dropped track (identity -1) in window 2."""
    table = [(0, 0, 1), (29, 0, 1), (35, 0, 4), (5, 1, 2), (65, 1, 2), (30, 2, 3), (69, -1, 9)]
    frames, ids, tids = zip(*table)
    rows = window_counts(frames, ids, tids, fps=10, window_s=3, num_frames=70)
    assert [r["individuals"] for r in rows] == [2, 2, 1]
    assert [r["raw_tracks"] for r in rows] == [2, 2, 2]  # window 1: tracks 4 and 3 (identity 0 and 2)
    assert [(r["start_frame"], r["end_frame"]) for r in rows] == [(0, 30), (30, 60), (60, 70)]
    assert rows[-1]["end_s"] == 7.0


def test_window_longer_than_the_video_is_an_error_naming_both_lengths():
    with pytest.raises(ValueError, match=r"window_s=90 s is longer than the video \(795 frames at 10 fps = 79.50 s\)"):
        window_counts([], [], [], fps=10, window_s=90, num_frames=795)


def test_count_csv_and_plot_are_written(tmp_path):
    rows = window_counts([0, 40], [0, 1], [1, 2], fps=10, window_s=3, num_frames=70)
    write_counts(tmp_path / "c.csv", rows)
    with (tmp_path / "c.csv").open() as f:
        assert [int(r["individuals"]) for r in csv.DictReader(f)] == [1, 1, 0]
    thumbs = [(0.0, np.zeros((30, 40, 3), np.uint8))] * 3
    plot_counts(tmp_path / "c.png", rows, thumbs, (np.array([0.0, 4.0]), np.array([1, 1])), title="t")
    assert (tmp_path / "c.png").stat().st_size > 5000


def test_track_table_round_trip(tmp_path):
    rows = [TrackRow(0, 3, 7, 1.0, 2.0, 30.0, 80.0, 0.9, 2), TrackRow(1, 5, 1, 4.0, 5.0, 40.0, 90.0, 0.5, -1)]
    write_track_table(tmp_path / "t.csv", rows, {0: 10.0, 1: 25.0})
    back = read_track_table(tmp_path / "t.csv")
    assert [(r.camid, r.frame, r.track_id, r.identity, r.x2) for r in back] == [(0, 3, 7, 2, 30.0), (1, 5, 1, -1, 40.0)]
    assert "0.200" in (tmp_path / "t.csv").read_text()  # time_s of camera 1, frame 5 at 25 fps


def test_static_tracks_are_dropped():
    rows = [TrackRow(0, t, 1, 10, 10, 30, 60, 1.0) for t in range(10)]  # a parked van
    rows += [TrackRow(0, t, 2, 10 + 5 * t, 10, 30 + 5 * t, 60, 1.0) for t in range(10)]  # walks 45 px
    rows += [TrackRow(0, t, 3, 10 + 5 * t, 10, 30 + 5 * t, 60, 1.0) for t in range(2)]  # too short
    kept, dropped = build_fragments(rows, min_length=4, min_displacement=20)
    assert [f.track_id for f in kept] == [2] and sorted(f.track_id for f in dropped) == [1, 3]


# ------------------------------------------------------------------------------------------------ errors
def _fake_checkpoint(path: Path, size=(128, 64)) -> Path:
    """A checkpoint file holding only the saved settings (the size check reads nothing else)."""
    torch.save({"hyper_parameters": {"net": {}}, "datamodule_hyper_parameters": {
        "transforms": {"size": list(size)}, "clip": {"seq_len": 4}}}, path)  # fmt: skip
    return path


def _cfg(tmp_path: Path, **over):
    from tests.conftest import compose

    args = [f"checkpoint={_fake_checkpoint(tmp_path / 'm.ckpt')}", "render.enabled=false"]
    args += [f"{k}={v}" for k, v in over.items()]
    return compose("track", args, output_dir=tmp_path / "run")


def test_missing_video_is_named(tmp_path):
    from vidreid.runs.track import run_track

    with pytest.raises(FileNotFoundError, match="video not found: .*nope.avi"):
        run_track(_cfg(tmp_path, videos=str(tmp_path / "nope.avi")))


def test_a_folder_without_one_video_is_named(tmp_path, shared_data):
    from vidreid.runs.track import run_track
    from vidreid.video.mot import sequence_video

    assert sequence_video(shared_data / "mot15" / "TUD-Campus").name == "TUD-Campus.mp4"  # a MOT sequence folder
    (tmp_path / "seq").mkdir()
    with pytest.raises(FileNotFoundError, match=r"seq is a folder with 0 video files"):
        run_track(_cfg(tmp_path, videos=str(tmp_path / "seq")))


def test_undecodable_video_is_named(tmp_path):
    from vidreid.runs.track import run_track

    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"RIFF....AVI garbage" * 100)
    with pytest.raises(ValueError, match="bad.avi"):
        run_track(_cfg(tmp_path, videos=str(bad)))


def test_checkpoint_of_another_input_size_is_an_error(tmp_path):
    from vidreid.runs.track import run_track

    with pytest.raises(ValueError, match=r"trained on 128x64 .* tracklets.size=\[256, 128\]"):
        run_track(_cfg(tmp_path, **{"tracklets.size": "[256,128]"}))


def test_video_without_people_is_an_error(tmp_path):
    from vidreid.runs.track import run_track

    empty = write_video(tmp_path / "empty.avi", [np.full((240, 320, 3), 120, np.uint8)] * 12)
    with pytest.raises(ValueError, match=r"no people detected in .*empty.avi \(6 frames processed"):
        run_track(_cfg(tmp_path, videos=str(empty), **{"count.window_s": 1.0}))


def test_window_longer_than_the_video_fails_before_any_work(tmp_path):
    from vidreid.runs.track import run_track

    clip = write_video(tmp_path / "c.avi", [np.full((240, 320, 3), 120, np.uint8)] * 20)
    with pytest.raises(ValueError, match=r"count.window_s=3.0 s is longer than video .*c.avi \(20 frames at 10 fps"):
        run_track(_cfg(tmp_path, videos=str(clip)))
    assert not (tmp_path / "run" / "tracklets").exists()


def test_empty_detections_object():
    d = Detections.empty()
    assert len(d) == 0 and d.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        Detections(np.zeros((2, 4)), np.zeros(1))


def test_mot_file_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="det.txt"):
        MOTFileDetector(tmp_path / "det.txt")
    (tmp_path / "d.txt").write_text("1,-1,1,2,3,4,0.5\n2,x\n")
    with pytest.raises(ValueError, match=r"d.txt:2"):
        MOTFileDetector(tmp_path / "d.txt")


# ------------------------------------------------------------------------------------------------ end to end
def test_track_py_end_to_end_on_a_synthetic_clip(tmp_path, tiny_checkpoint):
    """The whole pipeline (mot_file detector; refinement off: this is the association's test, the refine stage's is
    tests/test_track_refine.py) on the synthetic clip with a fragmented person: person 1, hidden in
    frames 10-15, comes back under a new tracker id (3 raw tracks); re-ID association merges its two fragments into
    one identity (person 2 overlaps both in time, so the only allowed merge is the right one), which the scorer
    sees against the ground truth: re-ID IDF1 0.99 (no id switch) above the raw ids' 0.80. Also tracks.csv, identities.json, counts
    (equal to the ground truth's per window), MOT files, crops per identity, annotated mp4/GIF."""
    from tests.conftest import compose
    from tests.video_synth import write_gt_txt
    from vidreid.runs.track import run_track
    from vidreid.video.mot import read_mot

    walkers = [Walker(1, 11, 30, 290, 130, 80, hidden=tuple(range(10, 16))), Walker(2, 22, 290, 30, 220, 100)]
    frames, gt = render_clip(walkers)
    video = write_video(tmp_path / "clip.avi", frames)
    det = write_det_txt(tmp_path / "det.txt", gt)
    gt_file = write_gt_txt(tmp_path / "gt.txt", gt)
    out = tmp_path / "run"
    cfg = compose("track", [f"checkpoint={tiny_checkpoint}", f"videos={video}", "detector=mot_file",
                            f"detector.path={det}", "reader.stride=1", "tracker.lost_track_buffer=3",
                            "tracker.minimum_consecutive_frames=1", "count.window_s=1.0", "render.gif_range_s=[0,2]",
                            "render.stills_s=[1.0]", "associate.threshold=0.5", f"gt={gt_file}",
                            "refine.interpolate=null", "refine.link=false"], output_dir=out)  # fmt: skip
    summary = run_track(cfg)
    assert summary["raw_tracks"] == 3 and summary["identities"] == 2
    ids = json.loads((out / "identities.json").read_text())["identities"]
    merged = [i for i in ids if len(i["tracklets"]) == 2]
    assert len(merged) == 1 and merged[0]["first_s"] == 0.0 and merged[0]["last_s"] == 2.9  # person 1: frames 0-29
    # ByteTrack confirms the new track one frame after the person reappears (frame 16); the box it held back in
    # frame 16 is restored (tracker.backfill), so all 54 boxes are tracked
    assert sorted((t["start_frame"], t["end_frame"]) for t in merged[0]["tracklets"]) == [(0, 9), (16, 29)]
    m = json.loads((out / "metrics.json").read_text())
    raw, reid = m["tracking"]["raw"], m["tracking"]["reid"]
    assert reid["IDF1"] == pytest.approx(1.0) and reid["MOTA"] == pytest.approx(1.0)
    assert reid["IDSW"] == 0 and reid["pred_ids"] == 2 and raw["pred_ids"] == 3
    assert raw["IDSW"] == 1 and raw["IDF1"] < 0.85 and raw["MOTA"] == pytest.approx(53 / 54)
    assert m["count"]["truth"] == [2, 2, 2] and m["count"]["mae"] == 0.0 and m["cameras"][0]["frames_scored"] == 30
    assert len(read_mot(out / "mot_raw.txt")) == len(read_mot(out / "mot_reid.txt")) == 54
    for name in ("tracks.csv", "identities.json", "counts.csv", "counts.png", "annotated.mp4", "annotated.gif",
                 "tracklets.npz", "frames/frame_0010.png", "mot_raw.txt", "mot_reid.txt", "metrics.json"):
        assert (out / name).is_file(), name
    assert len(list((out / "identities" / "multi_shot" / "cam_a").iterdir())) == summary["identities"]
    with (out / "counts.csv").open() as f:
        counts = list(csv.DictReader(f))
    assert len(counts) == 3 and all(int(c["individuals"]) <= int(c["raw_tracks"]) for c in counts)
    z = np.load(out / "tracklets.npz")
    assert z["embeddings"].shape[0] == 3 and (z["pids"] >= 0).all()



def test_multi_camera_identities_cross_cameras_and_load_with_the_prid_parser(tmp_path, tiny_checkpoint):
    """Two cameras showing the same two people at the same time: no time rule across cameras, so each person's
    tracklets of both cameras form one identity (identical crops: distance 0) while the two people, seen together
    in each camera, stay apart; the identity folders + splits.json read back with the PRID-2011 parser."""
    from tests.conftest import compose
    from vidreid.data.datasets.prid2011 import PRID2011
    from vidreid.runs.track import run_track

    frames, gt = render_clip([Walker(1, 11, 30, 290, 130, 80), Walker(2, 22, 290, 30, 220, 100)], n=20)
    v0, v1 = write_video(tmp_path / "cam0.avi", frames), write_video(tmp_path / "cam1.avi", frames)
    det = write_det_txt(tmp_path / "det.txt", gt)
    out = tmp_path / "run"
    cfg = compose("track", [f"checkpoint={tiny_checkpoint}", f"videos=[{v0},{v1}]", "detector=mot_file",
                            f"detector.path={det}", "reader.stride=1", "tracker.minimum_consecutive_frames=1",
                            "count.window_s=1.0", "render.enabled=false", "associate.threshold=0.001"],
                  output_dir=out)  # fmt: skip
    s = run_track(cfg)
    assert s["raw_tracks"] == 4 and s["identities"] == 2
    ids = json.loads((out / "identities.json").read_text())["identities"]
    assert all(i["cameras"] == [0, 1] for i in ids)
    ds = PRID2011(out / "identities", split_file="splits.json")
    assert len(ds.query) == 2 and len(ds.gallery) == 2
    assert sorted(t.pid for t in ds.query) == sorted(t.pid for t in ds.gallery) == [0, 1]
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    with (out / "counts.csv").open() as f:
        assert {r["camid"] for r in csv.DictReader(f)} == {"0", "1"}
    assert (out / "counts_cam_a.png").is_file() and (out / "counts_cam_b.png").is_file()


@pytest.mark.slow
def test_whole_pets2009_video_end_to_end(shared_data, tmp_path, tiny_checkpoint):
    """track.py on all 795 frames of vtest.avi (the default detector, stride 2) scored against the MOT15
    PETS09-S2L1 ground truth on the 398 processed frames: 27 three-second windows with a plausible number of people
    each (the scene shows ~3-10 walkers at a time, the ground truth's count per window within 2 of ours on average),
    fewer identities than raw tracks, TrackEval's numbers for both id sets with the detector's precision/recall in
    the range measured at stride 1 (0.86 / 0.68 for HOG), an annotated mp4 of every frame."""
    import cv2

    from tests.conftest import compose
    from vidreid.runs.track import run_track

    out = tmp_path / "run"
    cfg = compose("track", [f"checkpoint={tiny_checkpoint}", f"videos={shared_data / VTEST}",
                            f"gt={shared_data / 'mot15' / 'PETS09-S2L1'}"], output_dir=out)  # fmt: skip
    s = run_track(cfg)
    assert len(s["individuals_per_window"]) == 27
    assert all(1 <= c <= 15 for c in s["individuals_per_window"]), s["individuals_per_window"]
    assert 10 <= s["raw_tracks"] and s["identities"] <= s["raw_tracks"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["cameras"][0]["frames_scored"] == 398 and len(m["count"]["truth"]) == 27
    assert m["count"]["mae"] < 2.0 and 3 <= max(m["count"]["truth"]) <= 10
    for k in ("raw", "reid"):
        t = m["tracking"][k]
        assert t["gt_ids"] == 19 and t["precision"] > 0.7 and t["recall"] > 0.5 and t["MOTA"] > 0.3, (k, t)
        assert 0.2 < t["IDF1"] <= 1 and 0.2 < t["HOTA"] <= 1, (k, t)
    assert m["tracking"]["reid"]["pred_ids"] == s["identities"]
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 795
    cap.release()


def test_torchvision_detector_plugs_in_from_a_local_weights_file(tmp_path):
    """The torchvision path: a state dict file of the configured architecture loads (here untrained weights, so
    only the plumbing is checked: boxes inside the frame, scores >= the threshold); a missing file and weights of
    another architecture are clear errors; nothing is downloaded."""
    import torchvision.models.detection as D

    from vidreid.video.detect import TorchvisionDetector

    arch = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    torch.save(getattr(D, arch)(weights=None, weights_backbone=None).state_dict(), tmp_path / "w.pth")
    det = TorchvisionDetector(tmp_path / "w.pth", arch=arch, score_threshold=0.0)
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    d = det(frame, 0)
    assert d.boxes.shape[1] == 4 and (d.boxes[:, [0, 2]] <= 160).all() and (d.boxes[:, [1, 3]] <= 120).all()
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        TorchvisionDetector(tmp_path / "nope.pth", arch=arch)
    with pytest.raises(ValueError, match="is not a state dict of fasterrcnn_resnet50_fpn"):
        TorchvisionDetector(tmp_path / "w.pth", arch="fasterrcnn_resnet50_fpn")
