"""Association stage: tracklet fragments -> global identities by re-ID distance under time constraints.

Method: constrained agglomerative clustering (hierarchical clustering with cannot-link constraints, e.g.
Davidson & Ravi, SDM 2005). Every tracklet starts as its own cluster; the two closest clusters are merged while
their linkage distance is below ``threshold``; clusters that hold two tracklets overlapping in time in the same
camera (two people visible at once) are never merged. Distances are cosine distances ``1 - cos`` of the
L2-normalised tracklet embeddings (the evaluation's ``distance=cosine``); the cluster distance is the average
(UPGMA; default), single or complete linkage, updated by the Lance–Williams formula.

Why agglomerative and not a one-to-one (Hungarian) assignment: a person may be cut into any number of fragments
(re-entry, occlusion, track switches), so identities are not a matching between two sets; a threshold on the
linkage distance also decides the number of identities, which is unknown. Across cameras there is no time rule
(cameras may overlap in time), only the distance.

Threshold: a fixed cosine distance, or ``auto``: the ``q``-quantile (default 5 %) of the distances between
tracklets that overlap in time in one camera — pairs known to be *different* people in this very video, under
its lighting and resolution — so a merge needs a pair closer than 95 % of the known different-person pairs.
This adapts to the model's distance scale (a checkpoint trained with triplet + softmax on another set puts
different people at cosine distances anywhere from ~0.1 to ~1) without labels.

Further cannot-link rules (:func:`association_constraints`, ``conf/track.yaml`` ``associate``): spatio-temporal
gating (:func:`motion_gate`: a person cannot reappear farther away than they can walk in the gap) and a gap limit
(:func:`gap_limit`: same-camera merges only across short gaps). docs/video.md ("Detection and association:
measured choices") gives the IDF1 each rule gives on PETS09-S2L1 and TUD-Campus, and why the defaults hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["agglomerate", "association_constraints", "auto_threshold", "cannot_link", "cosine_distances", "gap_limit",
           "hidden_in_place", "motion_gate"]  # fmt: skip


def cosine_distances(emb: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N, N)`` float64 cosine distances ``1 - <a, b> / (|a| |b|)`` in ``[0, 2]`` of ``emb (N, D)``.

    Raises:
        ValueError: ``emb`` is not 2-D or holds a non-finite value.
    """
    e = emb.detach().cpu().double().numpy() if isinstance(emb, torch.Tensor) else np.asarray(emb, np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {e.shape}")
    if not np.isfinite(e).all():
        raise ValueError("embeddings contain NaN/inf")
    e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
    return np.clip(1.0 - e @ e.T, 0.0, 2.0)


def cannot_link(camids: Sequence[int], starts: Sequence[int], ends: Sequence[int]) -> np.ndarray:
    """``(N, N)`` bool: tracklets ``i != j`` in the same camera whose ``[start, end]`` frame intervals intersect."""
    c, s, e = (np.asarray(x, np.int64) for x in (camids, starts, ends))
    if not (len(c) == len(s) == len(e)):
        raise ValueError(f"camids/starts/ends lengths differ: {len(c)}, {len(s)}, {len(e)}")
    if (e < s).any():
        i = int(np.flatnonzero(e < s)[0])
        raise ValueError(f"tracklet {i}: end frame {e[i]} before start frame {s[i]}")
    m = (c[:, None] == c[None, :]) & (s[:, None] <= e[None, :]) & (s[None, :] <= e[:, None])
    np.fill_diagonal(m, False)
    return m


def _end_to_start(first_boxes: np.ndarray, last_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dist, h)``, both ``(N, N)`` px: ``dist[i, j]`` from tracklet ``i``'s last feet point (bottom centre of
    ``last_boxes[i]``) to ``j``'s first (``first_boxes[j]``), and ``h[i, j]`` the mean height of those two boxes
    (the scale of a person at that depth): the geometry of "``j`` is ``i`` seen again"."""
    feet_start = np.stack([(first_boxes[:, 0] + first_boxes[:, 2]) / 2, first_boxes[:, 3]], 1)
    feet_end = np.stack([(last_boxes[:, 0] + last_boxes[:, 2]) / 2, last_boxes[:, 3]], 1)
    dist = np.linalg.norm(feet_start[None, :, :] - feet_end[:, None, :], axis=2)
    h = ((last_boxes[:, 3] - last_boxes[:, 1])[:, None] + (first_boxes[:, 3] - first_boxes[:, 1])[None, :]) / 2
    return dist, h


def motion_gate(camids: Sequence[int], starts: Sequence[int], ends: Sequence[int], first_boxes: np.ndarray,
                last_boxes: np.ndarray, fps: float | Sequence[float], max_speed: float = 2.0, margin: float = 1.0
                ) -> np.ndarray:  # fmt: skip
    """``(N, N)`` bool: same-camera tracklet pairs that one person cannot be, because the later one starts
    farther from where the earlier one ended than a walker can go in the gap (spatio-temporal gating, the
    motion cue of tracklet association, e.g. Zhang, Li & Nevatia, CVPR 2008).

    The earlier tracklet's last box and the later one's first box give the feet (bottom centre) positions
    ``p_end``, ``p_start`` in pixels and the gap ``dt = (start - end) / fps`` seconds; with ``h`` the mean height
    of the two boxes (px, the scale of a person at that depth), the pair is forbidden when
    ``|p_start - p_end| > h * (margin + max_speed * dt)``. Units are body heights and seconds, so one setting
    serves any resolution and frame rate: ``max_speed = 2`` body heights/s is ~3.4 m/s for a 1.7 m person (a
    run; walking is ~0.8), ``margin = 1`` body height absorbs box jitter at the cut. Pairs overlapping in time
    are not judged here (see :func:`cannot_link`); different cameras never are.

    Args:
        camids, starts, ends: ``(N,)`` camera, first and last frame of each tracklet.
        first_boxes, last_boxes: ``(N, 4)`` ``x1, y1, x2, y2`` pixel boxes at the first and last frame.
        fps: frame rate of the frame numbers (one value, or one per tracklet's camera).
    Raises:
        ValueError: mismatched lengths, a non-positive ``fps``, or negative ``max_speed`` / ``margin``.
    """
    c, s, e = (np.asarray(x, np.int64) for x in (camids, starts, ends))
    fb, lb = np.asarray(first_boxes, np.float64).reshape(-1, 4), np.asarray(last_boxes, np.float64).reshape(-1, 4)
    n = len(c)
    if not (len(s) == len(e) == len(fb) == len(lb) == n):
        raise ValueError(f"motion_gate: lengths differ (camids {n}, starts {len(s)}, ends {len(e)}, "
                         f"first_boxes {len(fb)}, last_boxes {len(lb)})")  # fmt: skip
    f = np.broadcast_to(np.asarray(fps, np.float64), (n,))
    if (f <= 0).any():
        raise ValueError(f"motion_gate: fps must be > 0, got {fps}")
    if max_speed < 0 or margin < 0:
        raise ValueError(f"motion_gate: max_speed and margin must be >= 0, got {max_speed}, {margin}")
    dist, h = _end_to_start(fb, lb)
    dt = (s[None, :] - e[:, None]) / f[:, None]
    later = (c[:, None] == c[None, :]) & (dt > 0)
    bad = later & (dist > h * (margin + max_speed * dt))
    return bad | bad.T


def gap_limit(camids: Sequence[int], starts: Sequence[int], ends: Sequence[int], fps: float | Sequence[float],
              max_gap_s: float) -> np.ndarray:  # fmt: skip
    """``(N, N)`` bool: same-camera tracklet pairs separated by more than ``max_gap_s`` seconds (the later one's
    first frame minus the earlier one's last frame, over ``fps``): association then only re-links a person the
    tracker lost for a moment (occlusion, a missed detection), not a re-entry after a long absence."""
    c, s, e = (np.asarray(x, np.int64) for x in (camids, starts, ends))
    f = np.broadcast_to(np.asarray(fps, np.float64), (len(c),))
    if (f <= 0).any() or max_gap_s < 0:
        raise ValueError(f"gap_limit: fps must be > 0 and max_gap_s >= 0, got fps={fps}, max_gap_s={max_gap_s}")
    gap = np.maximum(s[None, :] - e[:, None], s[:, None] - e[None, :]) / f[:, None]
    return (c[:, None] == c[None, :]) & (gap > max_gap_s)


def hidden_in_place(camids: Sequence[int], starts: Sequence[int], ends: Sequence[int], first_boxes: np.ndarray,
                    last_boxes: np.ndarray, frame_sizes: Sequence[tuple[float, float]], radius: float = 1.0,
                    border: float = 0.5) -> np.ndarray:  # fmt: skip
    """``(N, N)`` bool, ``[i, j]`` true when tracklet ``j`` may be tracklet ``i`` seen again after an occlusion,
    however long: same camera, ``j`` starts after ``i`` ends, ``i`` vanished away from the frame border (its last
    box farther than ``border`` box widths from every edge: it did not walk out), ``j`` appeared away from the
    border, and ``j``'s first feet point (bottom centre) lies within ``radius`` body heights (mean height of the
    two boxes) of ``i``'s last one: the person was hidden (behind a sign, a pillar, another person) or stood
    undetected, and came back where they vanished.

    Why: MOTChallenge ground truth keeps one id through an occlusion but gives a person who leaves the frame and
    comes back a new id (PETS09-S2L1 and TUD-Campus: no ground-truth id has a gap of even one frame, and PETS's
    ids 9 and 5 are one man who exits right at frame 519 and re-enters right at 576), so re-linking across long
    gaps is right by that convention, and by a user's, only for a person hidden in place.

    Args:
        camids, starts, ends, first_boxes, last_boxes: as :func:`motion_gate`.
        frame_sizes: ``(width, height)`` px of each tracklet's camera, ``(N, 2)``.
        radius: body heights between where ``i`` vanished and ``j`` appeared. border: box widths from the edge.
    Raises:
        ValueError: mismatched lengths or negative ``radius`` / ``border``.
    """
    c, s, e = (np.asarray(x, np.int64) for x in (camids, starts, ends))
    fb, lb = np.asarray(first_boxes, np.float64).reshape(-1, 4), np.asarray(last_boxes, np.float64).reshape(-1, 4)
    wh = np.asarray(frame_sizes, np.float64).reshape(-1, 2)
    if not (len(s) == len(e) == len(fb) == len(lb) == len(wh) == len(c)):
        raise ValueError(f"hidden_in_place: lengths differ (camids {len(c)}, starts {len(s)}, ends {len(e)}, "
                         f"boxes {len(fb)}/{len(lb)}, frame_sizes {len(wh)})")  # fmt: skip
    if radius < 0 or border < 0:
        raise ValueError(f"hidden_in_place: radius and border must be >= 0, got {radius}, {border}")

    def inside(b: np.ndarray) -> np.ndarray:
        g = border * (b[:, 2] - b[:, 0])
        return (b[:, 0] > g) & (b[:, 1] > g) & (wh[:, 0] - b[:, 2] > g) & (wh[:, 1] - b[:, 3] > g)

    dist, h = _end_to_start(fb, lb)
    later = (c[:, None] == c[None, :]) & (s[None, :] > e[:, None])
    return later & inside(lb)[:, None] & inside(fb)[None, :] & (dist <= radius * h)


def association_constraints(camids: Sequence[int], starts: Sequence[int], ends: Sequence[int],
                            first_boxes: np.ndarray, last_boxes: np.ndarray, fps: float | Sequence[float], *,
                            time_constraint: bool = True, motion: bool = True, max_speed: float = 2.0,
                            margin: float = 1.0, max_gap_s: float | None = None,
                            frame_sizes: Sequence[tuple[float, float]] | None = None, hidden_radius: float = 1.0,
                            hidden_border: float = 0.5) -> np.ndarray:  # fmt: skip
    """The cannot-link matrix of :func:`agglomerate` from the configured rules (``conf/track.yaml``
    ``associate``): :func:`cannot_link` (``time_constraint``) | :func:`motion_gate` (``motion``) |
    :func:`gap_limit` (``max_gap_s`` not ``None``), the gap limit lifted for the pairs of :func:`hidden_in_place`
    when ``frame_sizes`` (``(N, 2)`` width, height per tracklet) are given. ``(N, N)`` bool."""
    n = len(camids)
    forbid = np.zeros((n, n), bool)
    if time_constraint:
        forbid |= cannot_link(camids, starts, ends)
    if motion:
        forbid |= motion_gate(camids, starts, ends, first_boxes, last_boxes, fps, max_speed, margin)
    if max_gap_s is not None:
        gap = gap_limit(camids, starts, ends, fps, max_gap_s)
        if frame_sizes is not None:
            hid = hidden_in_place(camids, starts, ends, first_boxes, last_boxes, frame_sizes, hidden_radius,
                                  hidden_border)  # fmt: skip
            gap &= ~(hid | hid.T)
        forbid |= gap
    return forbid


def agglomerate(dist: np.ndarray, threshold: float, forbid: np.ndarray | None = None,
                linkage: str = "average") -> np.ndarray:  # fmt: skip
    """Constrained agglomerative clustering of ``N`` items (see module docstring).

    Args:
        dist: ``(N, N)`` symmetric distances. threshold: merge while the closest allowed pair of clusters is
            at linkage distance ``<= threshold``. forbid: ``(N, N)`` bool cannot-link pairs (none if ``None``).
        linkage: ``average`` (mean pairwise distance), ``single`` (min) or ``complete`` (max).
    Returns:
        ``(N,)`` int64 cluster labels ``0..K-1``, numbered by the first item of each cluster (item order).
    Raises:
        ValueError: non-square ``dist``, mismatched ``forbid`` or unknown ``linkage``.
    Cost: ``O(N^3)`` time, ``O(N^2)`` memory — fine for the hundreds of tracklets of a video.
    """
    if linkage not in ("average", "single", "complete"):
        raise ValueError(f"linkage must be average, single or complete, got {linkage!r}")
    d = np.array(dist, np.float64, copy=True)
    n = d.shape[0]
    if d.ndim != 2 or d.shape[1] != n:
        raise ValueError(f"distance matrix must be square, got shape {d.shape}")
    f = np.zeros((n, n), bool) if forbid is None else np.array(forbid, bool, copy=True)
    if f.shape != (n, n):
        raise ValueError(f"cannot-link matrix shape {f.shape} != distance matrix shape {(n, n)}")
    f = f | f.T
    size = np.ones(n)
    alive = np.ones(n, bool)
    members = [[i] for i in range(n)]
    big = np.inf
    work = d.copy()
    work[f] = big
    np.fill_diagonal(work, big)
    while n > 1:
        flat = int(np.argmin(work))
        i, j = divmod(flat, work.shape[1])
        if not np.isfinite(work[i, j]) or work[i, j] > threshold:
            break
        if i > j:
            i, j = j, i
        # Lance-Williams update of cluster i := i ∪ j
        if linkage == "average":
            new = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        elif linkage == "single":
            new = np.minimum(d[i], d[j])
        else:
            new = np.maximum(d[i], d[j])
        d[i], d[:, i] = new, new
        f[i] = f[i] | f[j]
        f[:, i] = f[i]
        size[i] += size[j]
        members[i] += members[j]
        members[j] = []
        alive[j] = False
        work[i] = np.where(f[i] | ~alive, big, d[i])
        work[:, i] = work[i]
        work[i, i] = big
        work[j, :] = big
        work[:, j] = big
    labels = np.full(len(members), -1, np.int64)
    clusters = sorted((min(m), m) for m in members if m)
    for k, (_, m) in enumerate(clusters):
        labels[m] = k
    return labels


def auto_threshold(dist: np.ndarray, forbid: np.ndarray, quantile: float = 0.05, min_pairs: int = 10
                   ) -> tuple[float | None, int]:  # fmt: skip
    """The ``quantile`` of ``dist`` over the cannot-link pairs ``forbid`` (each unordered pair once) and the
    number of such pairs; ``(None, n)`` when fewer than ``min_pairs`` exist (then use a fixed threshold).

    Raises:
        ValueError: ``quantile`` outside ``[0, 1]`` or mismatched shapes.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"associate.auto_quantile must be in [0, 1], got {quantile}")
    d, f = np.asarray(dist), np.asarray(forbid, bool)
    if d.shape != f.shape:
        raise ValueError(f"distance matrix {d.shape} and cannot-link matrix {f.shape} differ in shape")
    neg = d[np.triu(f | f.T, k=1)]
    if len(neg) < min_pairs:
        return None, len(neg)
    return float(np.quantile(neg, quantile)), len(neg)
