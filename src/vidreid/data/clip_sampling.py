"""Temporal clip sampling: pure functions from a tracklet length (and an rng) to frame indices.

Training schemes return one clip ``(T,)``; test schemes return the clips covering a tracklet ``(n_clips, T)``.
All indices are ``int64`` positions into the tracklet's (sorted) frame list. Padding of short tracklets
follows each method's reference code (docs/methods.md §1.4 STAFormer, §2.4 PSTA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN_SCHEMES = ("restricted_random", "random_interval", "evenly", "begin_interval")
TEST_SCHEMES = ("evenly", "begin_interval", "dense", "all_frames")


def _check(n: int, t: int) -> None:
    if n < 1:
        raise ValueError(f"empty tracklet: length {n}, expected at least 1 frame")
    if t < 1:
        raise ValueError(f"clip length T must be >= 1, got {t}")


def _pad_last(n: int, t: int) -> np.ndarray:
    """Indices ``0..n-1`` padded to ``t`` by repeating the last frame (STAFormer, docs/methods.md §1.4 step 1)."""
    return np.concatenate([np.arange(n), np.full(max(t - n, 0), n - 1)]).astype(np.int64)


def _loop(n: int, t: int) -> np.ndarray:
    """The first frames looped to length ``t``: ``0, 1, .., n-1, 0, 1, ..`` (PSTA's short-tracklet rule)."""
    return (np.arange(t) % n).astype(np.int64)


def restricted_random(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """STAFormer/SINet training clip (docs/methods.md §1.4): pad short tracklets with the last frame, split into
    T−1 blocks of ``b = ⌊n/T⌋`` frames plus a remainder block ``[(T−1)b, n)``, one uniform frame from each.

    Returns ``(T,)`` sorted indices.
    """
    _check(n, t)
    if n < t:
        return _pad_last(n, t)
    b = n // t
    starts = np.arange(t) * b
    ends = np.append(starts[1:], n)
    return (starts + np.floor(rng.random(t) * (ends - starts)).astype(np.int64)).astype(np.int64)


def random_interval(n: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """PSTA "Random_interval" training clip (docs/methods.md §2.4).

    The largest stride ``s ∈ {8, 4, 2, 1}`` with ``n ≥ T·s``; a start uniform in ``[0, max(0, n − T·s − 1)]``;
    one uniform frame from each consecutive ``s``-frame sub-window. If ``n < T``: ``T`` indices drawn with
    replacement, sorted. Returns ``(T,)``.
    """
    _check(n, t)
    if n < t:
        return np.sort(rng.integers(0, n, size=t)).astype(np.int64)
    s = next(s for s in (8, 4, 2, 1) if n >= t * s)
    start = int(rng.integers(0, max(0, n - t * s - 1) + 1))
    return (start + np.arange(t) * s + rng.integers(0, s, size=t)).astype(np.int64)


def evenly(n: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """STAFormer "sampled" test clip: frames ``0, b, 2b, …, (T−1)b`` with ``b = ⌊n/T⌋`` (docs/methods.md §1.4);
    short tracklets padded with the last frame. Returns ``(1, T)``."""
    _check(n, t)
    if n < t:
        return _pad_last(n, t)[None]
    return (np.arange(t) * (n // t)).astype(np.int64)[None]


def begin_interval_strides(t: int) -> tuple[int, ...]:
    """The strides PSTA's "Begin_interval" tries, largest first: ``T, ⌊T/2⌋, ⌊T/4⌋, ⌊T/8⌋`` without zeros
    (WangYQ9/VideoReID_PSTA ``video_loader.py`` l.157–176: ``interval = seq_len`` then ``int(interval/2)``, …).
    ``(8, 4, 2, 1)`` at T = 8, ``(4, 2, 1)`` at T = 4, ``(16, 8, 4, 2)`` at T = 16."""
    return tuple(s for s in dict.fromkeys((t, t // 2, t // 4, t // 8)) if s > 0)


def begin_interval(n: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """PSTA "Begin_interval" single test clip (docs/methods.md §2.4): the first stride ``s`` of
    :func:`begin_interval_strides` (``T, T/2, T/4, T/8``, relative to T as in the reference) with
    ``n ≥ s(T−1)+1``; frames ``0, s, …, s(T−1)``. Otherwise the first frames looped to T. Returns ``(1, T)``.

    At T < 8 the reference's last stride ``int(T/8)`` is 0 and its slice ``[0:1:0]`` raises; here a zero stride is
    skipped, so such tracklets loop like the reference's final branch."""
    _check(n, t)
    for s in begin_interval_strides(t):
        if n >= s * (t - 1) + 1:
            return (np.arange(t) * s).astype(np.int64)[None]
    return _loop(n, t)[None]


def dense(n: int, t: int, rng: np.random.Generator | None = None, max_clips: int | None = 200) -> np.ndarray:
    """PSTA "dense" test clips (docs/methods.md §2.4): ``I = ⌊n/T⌋``, clip ``j < I`` = frames ``j, j+I, …, j+(T−1)I``
    (frames beyond ``I·T`` dropped); ``n ≤ T`` loops one clip. With ``N > max_clips`` clips a contiguous
    window of ``max_clips`` is kept: random when ``rng`` is given — the start uniform in ``[0, N − max_clips − 1]``,
    as the reference's ``int(random.random() * (N − max_seq_len))`` (``video_loader.py`` l.144–146; never the
    last window), non-deterministic — otherwise the first ``max_clips`` (deterministic). ``max_clips=None`` keeps
    all. Returns ``(n_clips, T)``."""
    _check(n, t)
    if n <= t:
        return _loop(n, t)[None]
    interval = n // t
    clips = np.arange(interval)[:, None] + np.arange(t)[None, :] * interval
    if max_clips is not None and len(clips) > max_clips:
        start = int(rng.integers(0, len(clips) - max_clips)) if rng is not None else 0
        clips = clips[start : start + max_clips]
    return clips.astype(np.int64)


def all_frames(n: int, t: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """STAFormer all-frames test (docs/methods.md §1.4): pad to a multiple of T by appending the tracklet's last
    frames and re-sorting (duplicates sit beside their originals), then strided tiling: with ``n_c = n'/T``,
    clip ``j < n_c`` uses padded positions ``j, j+n_c, …, j+(T−1)n_c``. Every frame is in some clip.
    The padding equals the reference's ``loop_padding`` (HWZhou99/STAFormer ``utils/video_loader.py`` l.137–151:
    it appends the last ``pad`` frames, or doubles the list while it is shorter than the shortfall, until the
    length is a multiple of T, then sorts): the same multiset of frames for every ``n``. Returns ``(n_c, T)``."""
    _check(n, t)
    pad = (-n) % t
    tail = np.arange(n)[-pad:] if pad else np.empty(0, np.int64)
    while len(tail) < pad:
        tail = np.concatenate([tail, np.arange(n)[-(pad - len(tail)) :]])
    padded = np.sort(np.concatenate([np.arange(n), tail]))
    n_c = len(padded) // t
    return padded[np.arange(n_c)[:, None] + np.arange(t)[None, :] * n_c].astype(np.int64)


_TRAIN = {
    "restricted_random": restricted_random,
    "random_interval": random_interval,
    "evenly": lambda n, t, rng: evenly(n, t)[0],
    "begin_interval": lambda n, t, rng: begin_interval(n, t)[0],
}


@dataclass
class ClipSampler:
    """The ``clip`` config node: a training scheme and a test scheme at clip length ``seq_len``.

    Args:
        seq_len: T, frames per clip.
        train_scheme: one of :data:`TRAIN_SCHEMES`.
        test_scheme: one of :data:`TEST_SCHEMES`.
        dense_max_clips: clip cap of the ``dense`` scheme (PSTA: 200); ``None`` = no cap.

    How many test clips go through the network at once is not a sampling choice: it is
    ``evaluation.max_clips_per_forward`` (:func:`vidreid.evaluation.features.embed_tracklet_batch`).

    Raises:
        ValueError: unknown scheme names (listing the valid ones) or ``seq_len < 1``.
    """

    seq_len: int = 8
    train_scheme: str = "restricted_random"
    test_scheme: str = "all_frames"
    dense_max_clips: int | None = 200

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"clip.seq_len must be >= 1, got {self.seq_len}")
        if self.train_scheme not in TRAIN_SCHEMES:
            raise ValueError(f"clip.train_scheme={self.train_scheme!r}; expected one of {TRAIN_SCHEMES}")
        if self.test_scheme not in TEST_SCHEMES:
            raise ValueError(f"clip.test_scheme={self.test_scheme!r}; expected one of {TEST_SCHEMES}")

    def train(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """One training clip ``(T,)`` for a tracklet of ``n`` frames."""
        return _TRAIN[self.train_scheme](n, self.seq_len, rng)

    def test(self, n: int) -> np.ndarray:
        """The test clips ``(n_clips, T)`` for a tracklet of ``n`` frames (deterministic)."""
        if self.test_scheme == "dense":
            return dense(n, self.seq_len, None, self.dense_max_clips)
        return {"evenly": evenly, "begin_interval": begin_interval, "all_frames": all_frames}[self.test_scheme](
            n, self.seq_len
        )
