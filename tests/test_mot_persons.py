"""Person-level ground truth (``score.persons``): MOTChallenge gives a person who leaves the frame and comes back a
new id; merging a group of ids into one person scores a right re-entry merge as right. And the association's
default links a re-entry across any gap (``associate.max_gap_s: null``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("trackeval")

from vidreid.video.mot import merge_gt_persons, persons_of, read_mot, score_mot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _mot(path: Path, rows) -> Path:
    """Write MOT rows ``(frame, id, left)`` with a 40x100 box at ``top = 20``."""
    path.write_text("".join(f"{f},{i},{x},20,40,100,1,-1,-1,-1\n" for f, i, x in rows))
    return path


def _reentry(tmp_path: Path):
    """One person: ground-truth id 1 in frames 1-10, gone, back as id 2 in frames 21-30 (30-frame sequence).
    Tracker ``one`` keeps one id across the re-entry; tracker ``two`` gives each appearance its own id."""
    gt = _mot(tmp_path / "gt.txt", [(f, 1 if f <= 10 else 2, 100 + 3 * f) for f in [*range(1, 11), *range(21, 31)]])
    one = _mot(tmp_path / "one.txt", [(f, 7, 100 + 3 * f) for f in [*range(1, 11), *range(21, 31)]])
    two = _mot(tmp_path / "two.txt", [(f, 7 if f <= 10 else 8, 100 + 3 * f) for f in [*range(1, 11), *range(21, 31)]])
    return gt, {"one": one, "two": two}


def test_person_level_ground_truth_scores_a_kept_identity_across_a_re_entry_as_right(tmp_path):
    """Against the per-appearance ids, keeping one identity across the re-entry matches only 10 of 20 boxes to
    one ground-truth id (IDF1 = 2*10 / (20 + 20) = 0.5) and two ids are perfect; against the person-level ground
    truth (ids 1 and 2 are one person) it is the other way round, with one identity switch (MOTA 1 - 1/20) and
    HOTA sqrt(1/2) for the split person. Detection (recall) is the same either way."""
    gt, trackers = _reentry(tmp_path)
    mot = score_mot(gt, trackers, num_frames=30)
    per = score_mot(gt, trackers, num_frames=30, persons=[[1, 2]])
    assert mot["one"]["IDF1"] == pytest.approx(0.5) and mot["two"]["IDF1"] == pytest.approx(1.0)
    assert per["one"]["IDF1"] == pytest.approx(1.0) and per["two"]["IDF1"] == pytest.approx(0.5)
    assert (mot["one"]["gt_ids"], per["one"]["gt_ids"]) == (2, 1)
    assert (mot["one"]["IDSW"], mot["two"]["IDSW"], per["one"]["IDSW"], per["two"]["IDSW"]) == (0, 0, 0, 1)
    assert per["two"]["MOTA"] == pytest.approx(0.95) and per["one"]["HOTA"] == pytest.approx(1.0)
    assert mot["one"]["HOTA"] == pytest.approx(0.5**0.5) and per["two"]["HOTA"] == pytest.approx(0.5**0.5)
    assert all(s[k]["recall"] == 1.0 for s in (mot, per) for k in ("one", "two"))


def test_merge_gt_persons_relabels_each_group_to_its_first_id_and_names_bad_groups(tmp_path):
    gt, _ = _reentry(tmp_path)
    arr = read_mot(gt)
    merged = merge_gt_persons(arr, [[2, 1]], gt)
    assert set(merged[:, 1].astype(int)) == {2} and set(arr[:, 1].astype(int)) == {1, 2}  # input untouched
    with pytest.raises(ValueError, match=r"names id 5, which is not in the ground truth"):
        merge_gt_persons(arr, [[1, 5]], gt)
    with pytest.raises(ValueError, match=r"id 1 is in two persons groups"):
        merge_gt_persons(arr, [[1, 2], [1]], gt)
    both = _mot(tmp_path / "both.txt", [(1, 1, 10), (1, 2, 300), (2, 1, 12)])
    with pytest.raises(ValueError, match=r"two boxes in frame 1.*never visible at the same time"):
        merge_gt_persons(read_mot(both), [[1, 2]], both)


def test_the_shipped_pets09_s2l1_persons_fit_its_ground_truth(shared_data):
    """The shipped PETS09-S2L1 groups (``score.persons: auto``): 19 ground-truth ids, 10 people, no group with
    two boxes in one frame (:func:`merge_gt_persons` raises otherwise)."""
    persons = persons_of("PETS09-S2L1", yaml.safe_load((ROOT / "conf" / "score" / "trackeval.yaml").read_text())["persons"])
    gt = shared_data / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt"
    arr = read_mot(gt)
    merged = merge_gt_persons(arr, persons, gt)
    assert (len(np.unique(arr[:, 1])), len(np.unique(merged[:, 1]))) == (19, 10)


def test_scorer_adds_person_level_scores_only_for_a_listed_sequence_and_rejects_malformed_groups(tmp_path):
    from vidreid.runs.track_stages import Scorer
    from vidreid.video.mot import resolve_gt

    gt, trackers = _reentry(tmp_path)
    seq = resolve_gt(gt)  # a bare gt.txt: its name is the file stem, "gt"
    scorer = Scorer(persons={"gt": [[1, 2]]})
    assert persons_of(seq.name, scorer.persons) == [[1, 2]] and persons_of("other", scorer.persons) is None
    assert scorer._score(seq, trackers, list(range(30)))["one"]["IDF1"] == pytest.approx(0.5)
    assert scorer._score(seq, trackers, list(range(30)), [[1, 2]])["one"]["IDF1"] == pytest.approx(1.0)
    assert persons_of("PETS09-S2L1", Scorer().persons)[0] == [1, 19] and persons_of("TUD-Campus") is None
    assert persons_of("PETS09-S2L1", "none") is None
    with pytest.raises(ValueError, match=r"persons for gt: \[1, 2\]: expected a list of lists"):
        Scorer(persons={"gt": [1, 2]})
    with pytest.raises(ValueError, match=r"persons='all': expected 'auto', 'none'"):
        Scorer(persons="all")


def test_association_links_a_re_entry_across_any_gap_by_default():
    """Two tracklets of one camera 10 s apart with the same appearance: the default association (any gap) makes
    them one identity; the old 2 s limit (``associate.max_gap_s=2``) keeps them apart. A third tracklet seen at the
    same time as the first (a different person) stays apart either way."""
    import torch

    from vidreid.runs.track_stages import Associator
    from vidreid.video.tracklets import Fragment

    def frag(tid, start, x):
        frames = np.arange(start, start + 20)
        boxes = np.tile([x, 100.0, x + 40.0, 200.0], (20, 1))
        return Fragment(0, tid, frames, boxes)

    frags = [frag(1, 0, 300.0), frag(2, 120, 300.0), frag(3, 0, 500.0)]
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0]])
    fps = {0: 10.0}
    assert Associator(threshold=0.3, color_weight=0.0)(frags, emb, fps).labels.tolist() == [0, 0, 1]
    assert Associator(threshold=0.3, color_weight=0.0, max_gap_s=2.0)(frags, emb, fps).labels.tolist() == [0, 1, 2]
