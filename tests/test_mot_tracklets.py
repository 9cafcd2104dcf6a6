"""dataset=mot_tracklets: real video tracklets cut from MOT15 ground truth (vidreid.data.datasets.mot_tracklets)."""

from __future__ import annotations

import numpy as np
import pytest

from vidreid.data.datasets.mot_tracklets import MOTTracklets, cut_tracklets
from vidreid.video.mot import read_mot


def _stats(cut):
    later = {t["pid"] for t in cut if t["segment"] > 0}
    q = [t for t in cut if t["segment"] == 0 and t["pid"] in later]
    g = [t for t in cut if t["segment"] > 0]
    return [(len(x), len({t["pid"] for t in x}), sum(len(t["frames"]) for t in x)) for x in (q, g)]


def test_statistics_on_the_real_pets09_ground_truth(shared_data):
    """PETS09-S2L1: 4,650 boxes of 19 people (174 marked conf 0, left out); the default cut (person halves,
    chunks <= 16, 8 boxes dropped either side of the split) gives 136 query tracklets (19 ids, 2,084 boxes) and
    136 gallery tracklets (19 ids, 2,075 boxes); the video-halves split keeps only the 2 people seen in both
    halves after the boundary gap."""
    gt = read_mot(shared_data / "mot15" / "PETS09-S2L1" / "gt" / "gt.txt")[:, :7]
    assert gt.shape == (4650, 7) and int((gt[:, 6] == 0).sum()) == 174
    cut = cut_tracklets(gt, 795)
    assert _stats(cut) == [(136, 19, 2084), (136, 19, 2075)]
    assert max(len(t["frames"]) for t in cut) == 16 and min(len(t["frames"]) for t in cut) >= 4
    for t in cut:  # consecutive frames, one segment each
        assert (np.diff(t["frames"]) == 1).all()
    by_pid = {}
    for t in cut:
        by_pid.setdefault(t["pid"], []).append(t)
    for ts in by_pid.values():  # every query frame of a person precedes its gallery frames by > the gap
        q_end = max(int(t["frames"][-1]) for t in ts if t["segment"] == 0)
        g_start = min(int(t["frames"][0]) for t in ts if t["segment"] == 1)
        assert g_start - q_end > 16
    assert _stats(cut_tracklets(gt, 795, split="time")) == [(36, 2, 557), (142, 11, 2230)]


def test_cut_tracklets_breaks_at_gaps_and_chunks():
    rows = [[f, 7, 0, 0, 10, 20, 1] for f in [*range(1, 11), *range(14, 20)]]  # a 3-frame occlusion
    cut = cut_tracklets(np.array(rows, float), 40, chunk_len=4, num_segments=1, min_len=2)
    assert [t["frames"].tolist() for t in cut] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [13, 14, 15, 16], [17, 18]]
    with pytest.raises(ValueError, match="min_len=5 > chunk_len=4"):
        cut_tracklets(np.array(rows, float), 40, chunk_len=4, min_len=5)


def test_parser_crops_the_tud_campus_video_and_reuses_its_cache(shared_data, tmp_path):
    """The whole parser on TUD-Campus (its mp4, 71 frames): the contract's query/gallery with segment camids,
    crops of the ground-truth box size, a cache reused by the next construction."""
    from PIL import Image

    ds = MOTTracklets(shared_data / "mot15" / "TUD-Campus", cache_dir=tmp_path)
    rows = {r["subset"]: r for r in ds.statistics()}
    assert (rows["query"]["tracklets"], rows["query"]["ids"], rows["query"]["frames"]) == (10, 7, 121)
    assert (rows["gallery"]["tracklets"], rows["gallery"]["ids"], rows["gallery"]["frames"]) == (10, 7, 117)
    assert rows["train"]["tracklets"] == 0
    assert {t.camid for t in ds.query} == {0} and {t.camid for t in ds.gallery} == {1}
    t = ds.query[0]
    gt = read_mot(shared_data / "mot15" / "TUD-Campus" / "gt" / "gt.txt")[:, :7]
    box = gt[(gt[:, 1] == t.pid) & (gt[:, 0] == t.frame_ids[0] + 1)][0]
    with Image.open(t.frames[0]) as im:
        x1, y1, x2, y2 = max(0, box[2]), max(0, box[3]), min(640, box[2] + box[4]), min(480, box[3] + box[5])
        assert abs(im.width - (x2 - x1)) <= 2 and abs(im.height - (y2 - y1)) <= 2
    stamp = t.frames[0].stat().st_mtime_ns
    MOTTracklets(shared_data / "mot15" / "TUD-Campus", cache_dir=tmp_path)
    assert t.frames[0].stat().st_mtime_ns == stamp  # not rewritten


def test_missing_sequence_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing .*gt.txt"):
        MOTTracklets(tmp_path, video=tmp_path / "v.mp4")



def test_frame_range_keeps_only_those_frames(shared_data, tmp_path):
    """frame_range=[35, 71] (the held-out protocol's "second half"): every tracklet's frames lie in the range, the
    pieces are those of the range's ground truth alone (frames shifted by 35), and the crops get their own cache."""
    seq = shared_data / "mot15" / "TUD-Campus"
    ds = MOTTracklets(seq, cache_dir=tmp_path, frame_range=[35, 71])
    items = ds.query + ds.gallery
    assert items and all(35 <= f < 71 for t in items for f in t.frame_ids)
    gt = read_mot(seq / "gt" / "gt.txt")[:, :7]
    sub = gt[(gt[:, 0] - 1 >= 35) & (gt[:, 0] - 1 < 71)].copy()
    sub[:, 0] -= 35
    cut = cut_tracklets(sub, 36)
    later = {t["pid"] for t in cut if t["segment"] > 0}
    expected = [(t["pid"], t["segment"], tuple(int(f) + 35 for f in t["frames"])) for t in cut
                if t["segment"] > 0 or t["pid"] in later]  # fmt: skip
    assert sorted((t.pid, t.camid, t.frame_ids) for t in items) == sorted(expected)
    assert (tmp_path / "mot_tracklets_TUD-Campus_f35-71").is_dir()
    with pytest.raises(ValueError, match="frame_range"):
        MOTTracklets(seq, cache_dir=tmp_path, frame_range=[40, 40])


def test_background_suppression_greys_out_the_scene_behind_each_crop(shared_data, tmp_path):
    """background="suppress" on TUD-Campus: the same tracklets and crop sizes, in their own cache folder; much of
    each crop becomes the ImageNet-mean grey (the scene), while the crops as cut have almost none of it."""
    from PIL import Image

    from vidreid.video.background import FILL_BGR

    seq = shared_data / "mot15" / "TUD-Campus"
    keep = MOTTracklets(seq, cache_dir=tmp_path)
    sup = MOTTracklets(seq, cache_dir=tmp_path, background="suppress")
    assert (tmp_path / "mot_tracklets_TUD-Campus_bg45-4").is_dir() and sup.extra["background"] == "suppress"
    assert [(t.pid, t.camid, t.frame_ids) for t in keep.query + keep.gallery] == \
        [(t.pid, t.camid, t.frame_ids) for t in sup.query + sup.gallery]  # fmt: skip
    fill = np.array(FILL_BGR[::-1], int)  # RGB

    def grey_fraction(ds):
        fr = []
        for t in ds.query[:5]:
            with Image.open(t.frames[0]) as im:
                fr.append((np.abs(np.asarray(im.convert("RGB"), int) - fill).max(axis=2) <= 12).mean())
        return float(np.mean(fr))

    assert grey_fraction(keep) < 0.05 and grey_fraction(sup) > 0.25
    for a, b in zip(keep.query[:5], sup.query[:5]):
        with Image.open(a.frames[0]) as x, Image.open(b.frames[0]) as y:
            assert x.size == y.size
    with pytest.raises(ValueError, match="background='blur'"):
        MOTTracklets(seq, cache_dir=tmp_path, background="blur")


def test_person_level_pids_relabel_the_same_tracklets(shared_data, tmp_path):
    """``persons``: the same tracklets (frames, segments, crops), with each group's ids given the group's first id;
    ``auto`` leaves TUD-Campus (no re-entry in the shipped annotation) as it is; a group of two people seen at
    once is refused, naming the ids."""
    seq = shared_data / "mot15" / "TUD-Campus"
    base = MOTTracklets(seq, cache_dir=tmp_path)
    merged = MOTTracklets(seq, cache_dir=tmp_path, persons=[[6, 7]])  # 6: frames 1-9, 7: frames 24-71
    auto = MOTTracklets(seq, cache_dir=tmp_path, persons="auto")
    key = lambda ds: [(t.frames, t.camid) for t in ds.query + ds.gallery]  # noqa: E731
    assert key(merged) == key(base) == key(auto)
    before = [t.pid for t in base.query + base.gallery]
    after = [t.pid for t in merged.query + merged.gallery]
    assert 7 in before and after == [6 if p == 7 else p for p in before]
    assert [t.pid for t in auto.query + auto.gallery] == before
    with pytest.raises(ValueError, match=r"persons group \[3, 7\] has two boxes in frame 24"):
        MOTTracklets(seq, cache_dir=tmp_path, persons=[[3, 7]])
