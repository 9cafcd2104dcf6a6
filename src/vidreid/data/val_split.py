"""A validation split of held-out *training* identities, with a query/gallery cut by camera.

Why: validating on the test split tunes checkpoints and sweeps on test data (the "best epoch on test" habit of
some reference code bases). Here a fraction of the training identities is removed from training and evaluated
like the test protocol: each held-out identity gives query tracklets from distinct cameras, and its remaining
tracklets form the gallery; a query is scored against the other-camera gallery items of its identity (same
pid + same camera is junk, as in the test ranking). The identities and queries are drawn from ``seed`` only, so
a run and its resume, or two processes of a DDP run, see the same split.

The paper recipes keep "no validation" (``data.val_identities: 0``), as their reference code does, and report
the final-epoch test; see ``docs/datasets.md``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vidreid.data.tracklet import Tracklet, relabel

__all__ = ["ValidationSplit", "num_val_identities", "split_validation"]


@dataclass(frozen=True)
class ValidationSplit:
    """Result of :func:`split_validation`.

    Attributes:
        train: the training tracklets of the identities kept for training, in their original order, pids
            relabelled to ``0..N-1`` (sorted order of the original pid, as :func:`~vidreid.data.tracklet.relabel`).
        query: validation queries (at most ``queries_per_id`` per held-out identity, from distinct cameras),
            keeping the original training pid; ordered by (pid, original position).
        gallery: every other tracklet of the held-out identities, same pid convention and order.
        val_pids: the held-out original training pids, sorted.
    """

    train: list[Tracklet]
    query: list[Tracklet]
    gallery: list[Tracklet]
    val_pids: tuple[int, ...]


def num_val_identities(val_identities: float | int | None, num_pids: int) -> int:
    """How many identities ``val_identities`` holds out of ``num_pids``.

    ``None``/``0`` → 0 (no validation split); a float in ``(0, 1)`` → that fraction of ``num_pids``, rounded
    half up, at least 2; an integer ``n >= 2`` (or an integral float such as ``8.0``) → ``n``. One identity is
    refused: its gallery would hold only its own tracklets, so every metric would be 1.

    Raises:
        ValueError: a negative value, a bool, a non-integral value >= 1, a count of 1, or a count that leaves
            fewer than 2 training identities (the message names the value and ``num_pids``).
    """
    if val_identities is None:
        return 0
    if isinstance(val_identities, bool) or not isinstance(val_identities, int | float):
        raise ValueError(f"data.val_identities must be a fraction in [0, 1) or a count, got {val_identities!r}")
    v = float(val_identities)
    if v < 0:
        raise ValueError(f"data.val_identities must be >= 0, got {val_identities!r}")
    if v == 0:
        return 0
    if v < 1:
        n = max(2, int(np.floor(v * num_pids + 0.5)))
    elif v.is_integer():
        n = int(v)
    else:
        raise ValueError(f"data.val_identities={val_identities!r}: expected a fraction < 1 or a whole count")
    if n < 2:
        raise ValueError(
            f"data.val_identities={val_identities!r}: a validation split of one identity ranks only that "
            "identity's own tracklets (every metric is 1); hold out at least 2, or 0 for no validation"
        )
    if num_pids - n < 2:
        raise ValueError(
            f"data.val_identities={val_identities!r} holds out {n} of {num_pids} training identities, leaving "
            f"{num_pids - n}; at least 2 must remain for training (use a smaller value or 0 for no validation)"
        )
    return n


def _pick_queries(
    items: Sequence[tuple[int, Tracklet]], queries_per_id: int, rng: np.random.Generator
) -> list[int]:
    """Positions (into ``items``) of the queries of one identity: cameras visited in a random order, one
    random tracklet per camera, accepted only if every query keeps a gallery item from another camera."""
    by_cam: dict[int, list[int]] = defaultdict(list)
    for k, (_, t) in enumerate(items):
        by_cam[t.camid].append(k)
    cams = sorted(by_cam)
    chosen: list[int] = []
    for c in (cams[i] for i in rng.permutation(len(cams))):
        if len(chosen) == queries_per_id:
            break
        cand = by_cam[c][int(rng.integers(len(by_cam[c])))]
        trial = [*chosen, cand]
        gallery_cams = [items[k][1].camid for k in range(len(items)) if k not in trial]
        if all(any(gc != items[q][1].camid for gc in gallery_cams) for q in trial):
            chosen = trial
    return chosen


def split_validation(
    train: Sequence[Tracklet],
    val_identities: float | int | None,
    seed: int = 0,
    queries_per_id: int = 2,
) -> ValidationSplit:
    """Hold out training identities as a validation query/gallery split.

    Only identities seen by at least two cameras are eligible (a query needs an other-camera match). The
    held-out identities are the first ``n`` of a permutation of the eligible pids drawn with
    ``numpy.random.default_rng(seed)``; for each (in pid order) the same generator picks up to
    ``queries_per_id`` queries from distinct cameras, each leaving at least one gallery tracklet of that identity
    in another camera (:func:`_pick_queries`). The result depends only on the tracklets and ``seed``.

    Args:
        train: training tracklets of a parser (pids ``0..N-1``).
        val_identities: see :func:`num_val_identities` (``0``/``None``: the training set is returned
            unchanged and query/gallery are empty).
        seed: the run seed (``data.seed``).
        queries_per_id: queries per held-out identity (>= 1).

    Returns:
        :class:`ValidationSplit`.

    Raises:
        ValueError: bad ``val_identities``/``queries_per_id``, or fewer eligible identities than requested
            (the message gives both counts).
    """
    if queries_per_id < 1:
        raise ValueError(f"queries_per_id must be >= 1, got {queries_per_id}")
    train = list(train)
    pids = sorted({t.pid for t in train})
    n = num_val_identities(val_identities, len(pids))
    if n == 0:
        return ValidationSplit(train, [], [], ())
    by_pid: dict[int, list[tuple[int, Tracklet]]] = defaultdict(list)
    for i, t in enumerate(train):
        by_pid[t.pid].append((i, t))
    eligible = [p for p in pids if len({t.camid for _, t in by_pid[p]}) >= 2]
    if len(eligible) < n:
        raise ValueError(
            f"data.val_identities={val_identities!r} asks for {n} validation identities, but only "
            f"{len(eligible)} of {len(pids)} training identities are seen by two or more cameras"
        )
    rng = np.random.default_rng(seed)
    val_pids = sorted(eligible[i] for i in rng.permutation(len(eligible))[:n])
    query: list[Tracklet] = []
    gallery: list[Tracklet] = []
    for p in val_pids:
        items = by_pid[p]
        q = set(_pick_queries(items, queries_per_id, rng))
        query += [t for k, (_, t) in enumerate(items) if k in q]
        gallery += [t for k, (_, t) in enumerate(items) if k not in q]
    held = set(val_pids)
    kept = relabel(t for t in train if t.pid not in held)
    return ValidationSplit(kept, query, gallery, tuple(val_pids))
