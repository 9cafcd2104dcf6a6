"""Clip sampling schemes (docs/methods.md §1.4, §2.4) on hand-computed cases."""

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


def test_begin_interval_strides_are_relative_to_t():
    """PSTA ``video_loader.py`` l.157-176: strides T, T/2, T/4, T/8 (the old code used 8, 4, 2, 1 at every T)."""
    assert begin_interval(25, 4).tolist() == [[0, 4, 8, 12]]  # s=4, not 8 (old: [0, 8, 16, 24])
    assert begin_interval(13, 4).tolist() == [[0, 4, 8, 12]]
    assert begin_interval(12, 4).tolist() == [[0, 2, 4, 6]]
    assert begin_interval(7, 4).tolist() == [[0, 2, 4, 6]]
    assert begin_interval(6, 4).tolist() == [[0, 1, 2, 3]]
    assert begin_interval(4, 4).tolist() == [[0, 1, 2, 3]]
    assert begin_interval(3, 4).tolist() == [[0, 1, 2, 0]]
    assert begin_interval(121, 16).tolist() == [list(range(0, 128, 8))]
    assert begin_interval(31, 16).tolist() == [list(range(0, 32, 2))]  # s=2 ...
    assert begin_interval(30, 16).tolist() == [[i % 30 for i in range(16)]]  # ... and never s=1 at T=16: loop


def reference_begin_interval(n, t):
    """Loop transcription of the reference's Begin_interval branches (``out`` = frame positions)."""
    paths = list(range(n))
    interval, num = t, t - 1
    for stride in (interval, int(interval / 2), int(interval / 4), int(interval / 8)):
        if len(paths) >= stride * num + 1:
            if stride == 0:
                raise ValueError("slice step cannot be zero")  # what the reference's paths[0:1:0] raises
            return paths[0 : stride * num + 1 : stride]
    out = paths[0:interval]
    while len(out) < interval:
        for index in out:
            if len(out) >= interval:
                break
            out.append(index)
    return out


@pytest.mark.parametrize("t", [4, 8])
def test_begin_interval_equals_reference_loop(t):
    for n in range(1, 90):
        try:
            ref = reference_begin_interval(n, t)
        except ValueError:  # T=4, n<4: the reference crashes; we loop the frames
            assert t == 4 and n < 4
            ref = [i % n for i in range(t)]
        assert begin_interval(n, t).tolist() == [ref], n


def test_dense():
    # n=10, T=4: I=2, clips [0,2,4,6], [1,3,5,7]; frames 8, 9 dropped
    assert dense(10, 4).tolist() == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert dense(3, 4).tolist() == [[0, 1, 2, 0]]
    big = dense(2000, 4, max_clips=200)
    assert big.shape == (200, 4) and big[0].tolist() == [0, 500, 1000, 1500]
    window = dense(2000, 4, rng(0), max_clips=200)
    assert window.shape == (200, 4) and np.all(np.diff(window[:, 0]) == 1)


def test_dense_random_window_start_range():
    """The reference keeps clips[sp : sp + 200] with sp = int(random.random() * (N - 200)) ∈ [0, N - 201]: with
    N = 203 clips the start is 0, 1 or 2, never 3 (the old code drew [0, N - 200])."""
    starts = {int(dense(812, 4, rng(s), max_clips=200)[0, 0]) for s in range(300)}  # I = 203 clips
    assert starts == {0, 1, 2}
    assert {int(dense(804, 4, rng(s), max_clips=200)[0, 0]) for s in range(20)} == {0}  # N = 201: only 0


def reference_loop_padding(n, t):
    """Loop transcription of STAFormer ``utils/video_loader.py`` ``loop_padding`` on frame positions."""
    paths = list(range(n))
    exp_len = -(-n // t) * t
    while len(paths) != exp_len:
        lack = exp_len - len(paths)
        if len(paths) > lack:
            paths.extend(paths[-lack:])
        else:
            paths.extend(paths)
    return sorted(paths)


@pytest.mark.parametrize("t", [4, 8])
def test_all_frames_padding_equals_reference(t):
    for n in range(1, 41):
        padded = reference_loop_padding(n, t)
        n_c = len(padded) // t
        expect = [[padded[j + k * n_c] for k in range(t)] for j in range(n_c)]  # reshape(T, n_c).permute
        assert all_frames(n, t).tolist() == expect, n


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
