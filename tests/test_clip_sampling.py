"""Clip sampling schemes (METHODS.md §1.4, §2.4) on hand-computed cases."""

import numpy as np
import pytest

from vidreid.data.clip_sampling import (
    ClipSampler,
    all_frames,
    begin_interval,
    dense,
    evenly,
    random_interval,
    restricted_random,
)


def rng(seed=0):
    return np.random.default_rng(seed)


def test_restricted_random_one_frame_per_block():
    # n=20, T=4: b=5, blocks [0,5) [5,10) [10,15) [15,20)
    for s in range(50):
        idx = restricted_random(20, 4, rng(s))
        assert idx.shape == (4,)
        assert all(lo <= i < lo + 5 for i, lo in zip(idx, (0, 5, 10, 15)))
    # n=23, T=4: b=5, remainder block is [15, 23) and can reach 22
    seen = {int(restricted_random(23, 4, rng(s))[3]) for s in range(300)}
    assert min(seen) == 15 and max(seen) == 22


def test_restricted_random_pads_with_last_frame():
    assert restricted_random(3, 6, rng()).tolist() == [0, 1, 2, 2, 2, 2]


def test_random_interval_stride_and_window():
    # n=70, T=8: s=8 (70 >= 64); window start w ∈ [0, 70-64-1 = 5]; frame k lies in [w + 8k, w + 8k + 8)
    starts = set()
    for s in range(200):
        idx = random_interval(70, 8, rng(s))
        offsets = idx - 8 * np.arange(8)
        w_lo, w_hi = offsets.max() - 7, offsets.min()
        assert w_lo <= w_hi and w_hi >= 0 and w_lo <= 5
        starts.add(int(idx[0]))
    assert max(starts) <= 5 + 7
    # n=20, T=8: s=2; window start in [0, 3]
    for s in range(50):
        idx = random_interval(20, 8, rng(s))
        offsets = idx - 2 * np.arange(8)
        assert offsets.max() - offsets.min() <= 1 and 0 <= offsets.min() and offsets.max() <= 3 + 1


def test_random_interval_short_sorted_with_replacement():
    idx = random_interval(3, 8, rng(1))
    assert idx.shape == (8,) and np.all(np.diff(idx) >= 0) and idx.max() <= 2


def test_evenly():
    assert evenly(20, 4).tolist() == [[0, 5, 10, 15]]
    assert evenly(2, 4).tolist() == [[0, 1, 1, 1]]


def test_begin_interval():
    # s=8 needs n >= 57
    assert begin_interval(57, 8).tolist() == [[0, 8, 16, 24, 32, 40, 48, 56]]
    assert begin_interval(56, 8).tolist() == [[0, 4, 8, 12, 16, 20, 24, 28]]
    assert begin_interval(8, 8).tolist() == [list(range(8))]
    assert begin_interval(3, 8).tolist() == [[0, 1, 2, 0, 1, 2, 0, 1]]


def test_dense():
    # n=10, T=4: I=2, clips [0,2,4,6], [1,3,5,7]; frames 8, 9 dropped
    assert dense(10, 4).tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert dense(3, 4).tolist() == [[0, 1, 2, 0]]
    big = dense(2000, 4, max_clips=200)
    assert big.shape == (200, 4) and big[0].tolist() == [0, 500, 1000, 1500]
    window = dense(2000, 4, rng(0), max_clips=200)
    assert window.shape == (200, 4) and np.all(np.diff(window[:, 0]) == 1)


def test_all_frames_covers_every_frame():
    # n=10, T=4: pad 2 → append frames 8, 9, sorted: 0..7, 8, 8, 9, 9 → n_c = 3
    clips = all_frames(10, 4)
    padded = [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9]
    expect = [[padded[j + k * 3] for k in range(4)] for j in range(3)]
    assert clips.tolist() == expect
    for n in (1, 3, 7, 8, 9, 33, 900):
        c = all_frames(n, 8)
        assert c.shape[1] == 8 and set(c.ravel().tolist()) == set(range(n))
        assert c.shape[0] == -(-n // 8)


def test_clip_sampler_validates():
    with pytest.raises(ValueError, match="train_scheme"):
        ClipSampler(train_scheme="nope")
    with pytest.raises(ValueError, match="empty tracklet"):
        ClipSampler().train(0, rng())
    cs = ClipSampler(seq_len=4, test_scheme="dense", dense_max_clips=2)
    assert cs.test(100).shape == (2, 4)
