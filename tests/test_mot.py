"""MOTChallenge IO and scoring (vidreid.video.mot, TrackEval) and counting against ground truth: the scorer
reproduces py-motmetrics' published TUD-Campus result, the MOT writer round-trips, scoring on a frame subset
(reader.stride) and the per-window count error."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trackeval")

from vidreid.video.count import count_error, plot_counts, window_counts  # noqa: E402
from vidreid.video.mot import gt_rows, read_mot, resolve_gt, score_mot, write_mot  # noqa: E402
from vidreid.video.tracklets import TrackRow  # noqa: E402

DATA = Path(__file__).parent / "data" / "motmetrics"


def test_scorer_reproduces_motmetrics_published_tud_campus_result(shared_data):
    """py-motmetrics' test_motchallenge_files scores its shipped TUD-Campus tracker output at IDF1 0.557659,
    IDP 0.729730, IDR 0.451253, recall 0.582173, precision 0.941441, FP 13, FN 150, IDSW 7, MOTA 0.526462
    (tests/data/motmetrics/SOURCE.md); TrackEval through score_mot must give the same numbers."""
    s = score_mot(shared_data / "mot15" / "TUD-Campus", {"t": DATA / "TUD-Campus_test.txt"})["t"]
    for k, v in dict(IDF1=0.557659, IDP=0.729730, IDR=0.451253, recall=0.582173, precision=0.941441,
                     MOTA=0.526462).items():  # fmt: skip
        assert s[k] == pytest.approx(v, abs=1e-6), k
    assert (s["FP"], s["FN"], s["IDSW"], s["MT"], s["PT"], s["ML"]) == (13, 150, 7, 1, 6, 1)
    assert (s["gt_ids"], s["gt_boxes"], s["pred_boxes"]) == (8, 359, 222)
    assert 0.3 < s["HOTA"] < s["IDF1"]


def _rows():
    """Two people over 6 frames; the tracker switches person 1's id at frame 3 (ids 1 -> 3); re-ID gives
    person 1 identity 0 throughout and person 2 identity 1; one box of a dropped track (identity -1)."""
    rows = []
    for t in range(6):
        rows.append(TrackRow(0, t, 1 if t < 3 else 3, 10.0 + 5 * t, 20.0, 40.0 + 5 * t, 100.0, 0.9, 0))
        rows.append(TrackRow(0, t, 2, 200.0 - 4 * t, 30.0, 236.0 - 4 * t, 120.5, 0.75, 1))
    rows.append(TrackRow(0, 4, 9, 400.0, 10.0, 420.0, 60.0, 0.4, -1))
    return rows


def test_mot_writer_round_trip(tmp_path):
    rows = _rows()
    raw = read_mot(write_mot(tmp_path / "raw.txt", rows, ids="track"))
    reid = read_mot(write_mot(tmp_path / "reid.txt", rows, ids="identity"))
    assert raw.shape == (13, 10) and reid.shape == (12, 10)  # the identity -1 box is not written as an identity
    assert raw[:, 0].min() == 1 and raw[:, 0].max() == 6  # 1-based frames
    assert (raw[:, 7:] == -1).all() and (reid[:, 7:] == -1).all()
    first = raw[(raw[:, 0] == 2) & (raw[:, 1] == 2)][0]  # frame index 1, track 2
    assert first[2:7].tolist() == pytest.approx([196.0, 30.0, 36.0, 90.5, 0.75])
    assert sorted(set(reid[:, 1].astype(int))) == [1, 2]  # identities 0, 1 written as 1, 2
    assert sorted(set(raw[:, 1].astype(int))) == [1, 2, 3, 9]
    assert (tmp_path / "raw.txt").read_text().splitlines()[0] == "1,1,10.00,20.00,30.00,80.00,0.9000,-1,-1,-1"
    # written ground truth scored against itself: perfect; the tracker's id switch costs IDSW 1 and IDF1
    gt_file = write_mot(tmp_path / "gt.txt", [replace(r, score=1.0) for r in rows if r.identity >= 0], ids="identity")
    s = score_mot(gt_file, {"raw": tmp_path / "raw.txt", "reid": tmp_path / "reid.txt"})
    assert s["reid"]["IDF1"] == pytest.approx(1.0) and s["reid"]["MOTA"] == pytest.approx(1.0)
    assert s["reid"]["HOTA"] == pytest.approx(1.0) and s["reid"]["IDSW"] == 0
    assert s["raw"]["IDSW"] == 1 and s["raw"]["FP"] == 1  # the switch, and the dropped track's box
    assert s["raw"]["MOTA"] == pytest.approx(1 - 2 / 12)
    assert s["raw"]["IDF1"] == pytest.approx(2 * 9 / (13 + 12))  # 9 = 3 (person 1's longer id) + 6 (person 2)


def test_scoring_only_the_processed_frames(tmp_path):
    """A tracker run at stride 2 has boxes on even frames only: scored on all frames it misses half the ground
    truth; scored on its processed frames (frames=...) it is perfect."""
    rows = [replace(r, score=1.0) for r in _rows() if r.identity >= 0]  # gt.txt conf 1: evaluated
    gt_file = write_mot(tmp_path / "gt.txt", rows, ids="identity")
    pred = write_mot(tmp_path / "p.txt", [r for r in rows if r.frame % 2 == 0], ids="identity")
    full = score_mot(gt_file, {"p": pred})["p"]
    sub = score_mot(gt_file, {"p": pred}, frames=[0, 2, 4])["p"]
    assert full["recall"] == pytest.approx(0.5) and full["FN"] == 6
    assert sub["recall"] == pytest.approx(1.0) and sub["MOTA"] == pytest.approx(1.0) and sub["gt_boxes"] == 6


def test_mot_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_mot(tmp_path / "nope.txt")
    (tmp_path / "bad.txt").write_text("1,1,0,0,10,20,1\n2,1,x,0,10,20\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_mot(tmp_path / "bad.txt")
    (tmp_path / "zero.txt").write_text("0,1,0,0,10,20,1\n")
    with pytest.raises(ValueError, match=r"zero.txt:1: expected a 1-based frame"):
        read_mot(tmp_path / "zero.txt")
    with pytest.raises(FileNotFoundError, match=r"gt/gt.txt"):
        resolve_gt(tmp_path)
    (tmp_path / "g.txt").write_text("3,1,0,0,10,20,1,-1,-1,-1\n")
    with pytest.raises(ValueError, match=r"frame 3 but the sequence has 2 frames"):
        score_mot(tmp_path / "g.txt", {"p": tmp_path / "g.txt"}, num_frames=2)


def test_mot_sequence_folder_is_resolved(shared_data):
    seq = resolve_gt(shared_data / "mot15" / "PETS09-S2L1")
    assert (seq.name, seq.num_frames, seq.fps) == ("PETS09-S2L1", 795, 7.0)
    gt = read_mot(seq.gt_path)
    assert len(gt) == 4650 and len(set(gt[:, 1].astype(int))) == 19


def test_count_error_against_ground_truth_counts(tmp_path):
    """Ground truth: 3 people in window 0, 2 in window 1, 1 in window 2; predicted identities 3, 3, 0 ->
    absolute errors 0, 1, 1: MAE 2/3, bias (0 + 1 - 1) / 3 = 0."""
    fps, n = 10, 90
    truth = window_counts([0, 1, 2, 35, 36, 70], [1, 2, 3, 1, 2, 4], [1, 2, 3, 1, 2, 4], fps, 3, n)
    pred = window_counts([0, 5, 9, 30, 31, 32], [0, 1, 2, 0, 1, 5], [7, 8, 9, 7, 8, 10], fps, 3, n)
    e = count_error(pred, truth)
    assert e["truth"] == [3, 2, 1] and e["predicted"] == [3, 3, 0] and e["abs_error"] == [0, 1, 1]
    assert e["mae"] == pytest.approx(2 / 3) and e["bias"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="differ from ground-truth windows"):
        count_error(pred[:2], truth)
    plot_counts(tmp_path / "c.png", pred, truth=e["truth"])
    assert (tmp_path / "c.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="2 ground-truth counts for 3 windows"):
        plot_counts(tmp_path / "c.png", pred, truth=[1, 2])


def test_gt_rows_skip_ignored_boxes_and_keep_processed_frames():
    gt = np.array([[1, 5, 0, 0, 10, 20, 1, -1, -1, -1], [2, 5, 1, 0, 10, 20, 0, -1, -1, -1],
                   [3, 6, 2, 0, 10, 20, 1, -1, -1, -1]], float)  # fmt: skip
    rows = gt_rows(gt)
    assert [(r.frame, r.identity, r.x2) for r in rows] == [(0, 5, 10.0), (2, 6, 12.0)]
    assert [r.frame for r in gt_rows(gt, frames=[2])] == [2]


def test_an_id_twice_in_one_frame_is_a_clear_error(tmp_path):
    (tmp_path / "gt.txt").write_text("1,1,0,0,10,20,1,-1,-1,-1\n")
    (tmp_path / "p.txt").write_text("1,4,0,0,10,20,1,-1,-1,-1\n1,4,50,0,10,20,1,-1,-1,-1\n")
    with pytest.raises(ValueError, match=r"TrackEval could not score .*p.txt"):
        score_mot(tmp_path / "gt.txt", {"p": tmp_path / "p.txt"})
