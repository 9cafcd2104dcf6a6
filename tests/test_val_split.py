"""Validation split of held-out training identities: counts, determinism, the camera cut of
query/gallery, and the datamodule serving it instead of the test split."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from vidreid.data.tracklet import ReIDDataset, Tracklet
from vidreid.data.val_split import num_val_identities, split_validation


def _t(pid: int, cam: int, k: int) -> Tracklet:
    return Tracklet((Path(f"/x/{pid}/{cam}/{k}.jpg"),), pid, cam)


def _train(num_pids: int = 40, seed_layout: int = 0) -> list[Tracklet]:
    """pid p has tracklets in cameras (p % 3) + 1 .. (two or three cameras), 1-2 per camera; pid 0 one camera."""
    out = []
    for p in range(num_pids):
        cams = [0] if p == 0 else list(range(2 + p % 2))
        for c in cams:
            for k in range(1 + (p + c) % 2):
                out.append(_t(p, c, k))
    return out


@pytest.mark.parametrize(
    ("value", "num_pids", "expected"),
    [(None, 80, 0), (0, 80, 0), (0.0, 80, 0), (0.1, 80, 8), (0.1, 37, 4), (0.1, 8, 2), (0.05, 10, 2), (5, 80, 5),
     (8.0, 80, 8)],
)
def test_num_val_identities(value, num_pids, expected):
    assert num_val_identities(value, num_pids) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [(-0.1, ">= 0"), (1, "one identity"), (2.5, "whole count"), (79, "leaving 1"), (True, "fraction"), ("a", "fraction")],
)
def test_num_val_identities_rejects(value, match):
    with pytest.raises(ValueError, match=match):
        num_val_identities(value, 80)


def test_split_partitions_relabels_and_cuts_by_camera():
    train = _train()
    s = split_validation(train, 0.25, seed=3, queries_per_id=2)
    assert len(s.val_pids) == 10 and 0 not in s.val_pids  # pid 0 has one camera: never eligible
    # a partition of the tracklets: every frame path appears exactly once
    before = Counter(t.frames for t in train)
    after = Counter(t.frames for t in s.train + s.query + s.gallery)
    assert before == after
    # training pids relabelled 0..N-1 in sorted order of the kept originals
    kept = sorted({t.pid for t in train} - set(s.val_pids))
    assert sorted({t.pid for t in s.train}) == list(range(30))
    first = {t.frames: t.pid for t in s.train}
    for t in train:
        if t.pid in kept:
            assert first[t.frames] == kept.index(t.pid)
    # query/gallery hold exactly the held-out identities, with their original pids
    assert {t.pid for t in s.query} == {t.pid for t in s.gallery} == set(s.val_pids)
    for p in s.val_pids:
        q = [t for t in s.query if t.pid == p]
        g = [t for t in s.gallery if t.pid == p]
        assert 1 <= len(q) <= 2
        assert len({t.camid for t in q}) == len(q)  # queries of one identity come from distinct cameras
        for t in q:  # every query has a valid (other-camera) match
            assert any(x.camid != t.camid for x in g)
    # two queries whenever possible: 3 cameras, or 2 cameras with >= 2 tracklets each (so that each query keeps
    # an other-camera gallery item); otherwise one
    counts = {p: sum(t.pid == p for t in s.query) for p in s.val_pids}
    for p in s.val_pids:
        per_cam = Counter(t.camid for t in train if t.pid == p)
        two = len(per_cam) >= 3 or min(per_cam.values()) >= 2
        assert counts[p] == (2 if two else 1), (p, per_cam)
    assert set(counts.values()) == {1, 2}  # the layout exercises both cases


def test_split_is_deterministic_per_seed():
    train = _train()
    a, b = split_validation(train, 0.2, seed=7), split_validation(train, 0.2, seed=7)
    assert a == b
    others = {split_validation(train, 0.2, seed=s).val_pids for s in range(5)}
    assert len(others) > 1  # the seed chooses the identities


def test_zero_keeps_training_set_and_too_few_eligible_fails():
    train = _train(6)
    s = split_validation(train, 0, seed=0)
    assert s.train == train and s.query == [] and s.gallery == [] and s.val_pids == ()
    single_cam = [_t(p, 0, k) for p in range(10) for k in range(2)] + [_t(10, 0, 0), _t(10, 1, 0)]
    with pytest.raises(ValueError, match=r"asks for 2 validation identities, but only 1 of 11"):
        split_validation(single_cam, 2, seed=0)


def test_datamodule_validates_on_held_out_training_ids_not_on_test():
    from vidreid.data.datamodule import ReIDDataModule

    train = _train(20)
    query = [_t(100 + p, 0, 0) for p in range(5)]
    gallery = [_t(100 + p, 1, 0) for p in range(5)]
    data = ReIDDataset("toy", train, query, gallery)
    kw = dict(clip={"seq_len": 1}, sampler={"name": "pk", "num_identities": 2, "num_instances": 2},
              transforms={"size": [8, 4]}, num_workers=0)  # fmt: skip
    dm = ReIDDataModule(data, val_identities=0.2, **kw)
    dm.setup("fit")
    assert dm.num_classes == 16 and data.num_train_pids == 20  # the caller's dataset object is not modified
    val_items = dm.val_dataloader().dataset.dataset.items
    test_items = dm.test_dataloader().dataset.dataset.items
    val_frames = {t.frames for t, _ in val_items}
    assert {t.frames for t, _ in test_items} == {t.frames for t in query + gallery}
    assert not val_frames & {t.frames for t, _ in test_items}
    assert not val_frames & {t.frames for t in dm.data.train}
    assert {t.pid for t, _ in val_items} == set(dm.val_split.val_pids)
    assert sum(q for _, q in val_items) == len(dm.val_split.query)

    dm0 = ReIDDataModule(data, val_identities=0, **kw)
    dm0.setup("fit")
    assert dm0.val_dataloader() == [] and dm0.num_classes == 20


def test_max_test_tracklets_samples_by_identity_and_keeps_every_querys_match():
    """A prefix cut of a test set ordered by identity (queries of pids 1..40, gallery of pids 40..1) keeps 10
    queries whose matches all lie beyond the 40 kept gallery items: no query would count. Sampling by identity
    keeps each kept query's match, stays within the caps and is a function of the seed."""
    from vidreid.data.datamodule import cap_test_set
    query = [_t(pid, 0, 0) for pid in range(1, 41)]
    gallery = [_t(pid, 1 + k, k) for pid in range(40, 0, -1) for k in range(3)] + [_t(0, 2, 9) for _ in range(8)]
    prefix_q, prefix_g = query[:10], gallery[:40]
    assert not {t.pid for t in prefix_q} & {t.pid for t in prefix_g}  # the old cut: every positive dropped
    q, g = cap_test_set(query, gallery, 40, seed=0)
    assert len(g) <= 40 and 1 <= len(q) <= 10
    for t in q:
        assert any(x.pid == t.pid and x.camid != t.camid for x in g), t.pid
    assert len(q) == 10 and len(g) == 40  # 10 ids x 3 matches + 10 distractors/other ids fill the budget
    assert [t.pid for t in q] == [t.pid for t in query if t.pid in {x.pid for x in q}]  # dataset order kept
    assert cap_test_set(query, gallery, 40, seed=0) == (q, g)
    assert cap_test_set(query, gallery, 40, seed=1) != (q, g)
    assert cap_test_set(query, gallery, 10_000) == (query, gallery)
    big = [_t(pid, 1 + k % 3, k) for pid in range(1, 41) for k in range(6)]  # no identity's 6 matches fit in 4
    q4, g4 = cap_test_set(query, big, 4)
    assert len(q4) == 1 and len(g4) == 4 and all(t.pid == q4[0].pid for t in g4)
    with pytest.raises(ValueError, match="max_test_tracklets=0"):
        cap_test_set(query, gallery, 0)
