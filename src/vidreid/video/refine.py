"""Offline track refinement: a video is processed whole, so a track's future is known when its past is fixed.
Three steps on the tracker's boxes (:class:`~vidreid.video.tracklets.TrackRow` s), before tracklets are built
and associated by re-ID:

1. **Motion linking** (:func:`link_tracks`, the AFLink idea of StrongSORT++, Du et al., IEEE TMM 2023, §III-C,
   without its learned model): a track that ends and another that starts shortly after in the same camera are
   one person when the first one's constant-velocity extrapolation lands where the second one begins (and the
   second one's backward extrapolation lands where the first one ended), at a consistent box size. Candidate
   pairs are scored by that prediction error in body heights and matched one-to-one (Hungarian,
   ``scipy.optimize.linear_sum_assignment``) under a cost threshold; two tracks that co-exist in time are never
   linked, nor a track that leaves through the image border with one that enters through it (an exit and an
   entry are two people, or a re-entry that re-ID association judges). The linked track keeps the earlier
   track's id.
2. **Interpolation** (:func:`interpolate_tracks`): a track's missed boxes across short gaps (at most ``max_gap``
   video frames between two of its boxes) are filled on the processed-frame grid, by linear interpolation of
   ``x1, y1, x2, y2`` (StrongSORT++'s linear interpolation; ByteTrack's offline variant does the same).
3. **Gaussian-smoothed interpolation** (``method="gsi"``, GSI of StrongSORT++ §III-D): after the linear fill, each
   box coordinate of a track is smoothed over time by Gaussian-process regression with an RBF kernel whose
   length scale grows as the track gets shorter, ``l = clip(tau * log(tau^3 / n), 1 / tau, tau^2)`` frames
   (``n`` boxes, ``tau = 10``, the paper's setting). Here the GP has an explicit observation noise: a linear
   trend is the prior mean, the noise variance is estimated from the second differences of the detected
   coordinates (white noise ``s^2`` gives ``Var(y[t+1] - 2 y[t] + y[t-1]) = 6 s^2``; constant-velocity motion
   gives 0) and the signal variance from the detrended residual, so the smoothing adapts to each track's
   jitter; the posterior mean is ``trend + K (K + (s_n^2 / s_f^2) I)^-1 (y - trend)`` (a small Cholesky solve,
   numpy/scipy only). (The paper's code relies on scikit-learn's default ``alpha = 1e-10`` and the kernel's
   numerical conditioning; this formulation makes the noise level a measured quantity instead.)

Filled boxes are flagged ``interpolated=True`` (their score: the linear interpolation of the two detections'
scores); crops are cut only from real detections, while ``tracks.csv``, the MOT files and the scores include
them. All functions return new rows and leave their input unchanged. Frame numbers are video frames; with a
frame stride ``s`` the tracker saw frames ``start, start + s, ...`` and only those are filled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from vidreid.video.tracklets import TrackRow

__all__ = ["Refiner", "gsi_length_scale", "gp_smooth", "interpolate_tracks", "link_tracks", "refine_tracks"]


def _groups(rows: Iterable[TrackRow]) -> dict[tuple[int, int], list[TrackRow]]:
    groups: dict[tuple[int, int], list[TrackRow]] = {}
    for r in rows:
        groups.setdefault((r.camid, r.track_id), []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r.frame)
        frames = [r.frame for r in rs]
        if len(set(frames)) != len(frames):
            dup = next(f for f in frames if frames.count(f) > 1)
            raise ValueError(f"track {rs[0].track_id} of camera {rs[0].camid} has two boxes in frame {dup}; "
                             f"expected at most one box per track and frame")  # fmt: skip
    return groups


def _box(r: TrackRow) -> np.ndarray:
    return np.array([r.x1, r.y1, r.x2, r.y2], np.float64)


def interpolate_tracks(rows: Sequence[TrackRow], max_gap: int, stride: int = 1, method: str = "linear",
                       tau: float = 10.0) -> list[TrackRow]:  # fmt: skip
    """Fill each track's missed boxes across gaps of at most ``max_gap`` missing video frames.

    For two consecutive boxes of a track at frames ``a < b`` with ``b - a - 1 <= max_gap`` (and ``b - a > stride``),
    boxes are added at ``a + stride, a + 2 * stride, ... < b`` with ``box(t) = box(a) + (box(b) - box(a)) (t - a) /
    (b - a)``, ``score`` interpolated the same way and ``interpolated=True``. ``method="gsi"`` then smooths every
    box of the track (detected and filled) by :func:`gp_smooth` with :func:`gsi_length_scale`; detected boxes keep
    ``interpolated=False``; a track long enough that the length scale falls under half the frame spacing is left
    as filled. ``identity`` is copied from the earlier box.

    Args:
        rows: tracked boxes (any order, several cameras/tracks). max_gap: missing video frames a gap may have
            (0: no filling). stride: the frame stride the tracker ran at (filled frames stay on its grid).
        method: ``linear`` or ``gsi``. tau: GSI's ``tau`` (frames; the paper's 10).
    Returns:
        New rows sorted by ``(camid, track_id, frame)``.
    Raises:
        ValueError: ``max_gap < 0``, ``stride < 1``, an unknown ``method``, or a track with two boxes in one frame.
    """
    if max_gap < 0 or stride < 1:
        raise ValueError(f"interpolate: max_gap must be >= 0 and stride >= 1, got max_gap={max_gap}, stride={stride}")
    if method not in ("linear", "gsi"):
        raise ValueError(f"refine.interpolate={method!r}: expected linear, gsi or null")
    out: list[TrackRow] = []
    for (_cam, _tid), rs in sorted(_groups(rows).items()):
        filled: list[TrackRow] = [replace(rs[0])]
        for a, b in zip(rs[:-1], rs[1:]):
            gap = b.frame - a.frame
            if stride < gap and gap - 1 <= max_gap:
                ba, bb = _box(a), _box(b)
                for t in range(a.frame + stride, b.frame, stride):
                    w = (t - a.frame) / gap
                    x1, y1, x2, y2 = ba + (bb - ba) * w
                    filled.append(replace(a, frame=t, x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2),
                                          score=float(a.score + (b.score - a.score) * w), interpolated=True))  # fmt: skip
            filled.append(replace(b))
        length_scale = gsi_length_scale(len(filled), tau)
        # a length scale under half the sample spacing correlates no two samples: nothing to smooth (and tracks of
        # >= tau^3 boxes, clipped to 1 / tau, would cost an n x n solve for nothing)
        if method == "gsi" and len(filled) >= 3 and length_scale >= stride / 2:
            t = np.array([r.frame for r in filled], np.float64)
            boxes = np.array([[r.x1, r.y1, r.x2, r.y2] for r in filled], np.float64)
            real = np.array([not r.interpolated for r in filled])
            smooth = gp_smooth(t, boxes, length_scale, observed=real, stride=stride)
            filled = [replace(r, x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]))
                      for r, b in zip(filled, smooth)]  # fmt: skip
        out += filled
    return out


def gsi_length_scale(n: int, tau: float = 10.0) -> float:
    """GSI's RBF length scale (frames) for a track of ``n`` boxes (StrongSORT++ §III-D):
    ``clip(tau * log(tau^3 / n), 1 / tau, tau^2)`` — longer for shorter tracks (fewer boxes to pin the path).

    Raises:
        ValueError: ``n < 1`` or ``tau <= 0``.
    """
    if n < 1 or tau <= 0:
        raise ValueError(f"gsi_length_scale: expected n >= 1 and tau > 0, got n={n}, tau={tau}")
    return float(np.clip(tau * math.log(tau**3 / n), 1.0 / tau, tau**2))


def _noise_variance(t: np.ndarray, y: np.ndarray, observed: np.ndarray, stride: int) -> float:
    """White-noise variance of ``y (n,)`` from the second differences of three consecutive observed samples on the
    ``stride`` grid (median-based: ``1.4826 * MAD`` is the Gaussian sigma, robust to the odd turn)."""
    idx = np.flatnonzero(observed[:-2] & observed[1:-1] & observed[2:]
                         & (t[1:-1] - t[:-2] == stride) & (t[2:] - t[1:-1] == stride))  # fmt: skip
    if len(idx) < 3:
        return 0.0
    d2 = y[idx + 2] - 2 * y[idx + 1] + y[idx]
    sigma = 1.4826 * np.median(np.abs(d2 - np.median(d2)))
    return float(sigma**2 / 6.0)


def gp_smooth(t: np.ndarray, y: np.ndarray, length_scale: float, observed: np.ndarray | None = None,
              stride: int = 1, min_noise_ratio: float = 1e-6) -> np.ndarray:  # fmt: skip
    """Posterior mean of Gaussian-process regression of each column of ``y`` over time ``t`` (see module docstring).

    Each column ``y[:, k]`` is modelled as ``trend(t) + f(t) + e`` with ``trend`` its least-squares line,
    ``f ~ GP(0, s_f^2 exp(-(t - t')^2 / (2 l^2)))`` and white noise ``e ~ N(0, s_n^2)``; ``s_n^2`` is estimated from
    the second differences of the ``observed`` samples, ``s_f^2 = max(var(y - trend) - s_n^2, s_n^2)``. A column
    without measurable noise is returned unchanged.

    Args:
        t: ``(n,)`` frame numbers (strictly increasing). y: ``(n, d)`` values (e.g. ``x1, y1, x2, y2`` px).
        length_scale: RBF length scale in frames. observed: ``(n,)`` bool, samples that are measurements (filled
            ones are excluded from the noise estimate; all by default). stride: spacing of consecutive samples.
        min_noise_ratio: floor of ``s_n^2 / s_f^2`` (keeps the solve well conditioned).
    Returns:
        ``(n, d)`` float64 smoothed values.
    Raises:
        ValueError: mismatched shapes, non-increasing ``t`` or ``length_scale <= 0``.
    """
    from scipy.linalg import cho_factor, cho_solve

    t = np.asarray(t, np.float64)
    y = np.asarray(y, np.float64)
    y2 = y.reshape(len(y), -1)
    n = len(t)
    if y2.shape[0] != n or t.ndim != 1:
        raise ValueError(f"gp_smooth: t {t.shape} and y {y.shape} must have the same first dimension")
    if n > 1 and (np.diff(t) <= 0).any():
        raise ValueError("gp_smooth: t must be strictly increasing")
    if length_scale <= 0:
        raise ValueError(f"gp_smooth: length_scale must be > 0, got {length_scale}")
    obs = np.ones(n, bool) if observed is None else np.asarray(observed, bool)
    if n < 3:
        return y2.copy().reshape(y.shape)
    design = np.stack([np.ones(n), t - t.mean()], 1)
    k = np.exp(-0.5 * ((t[:, None] - t[None, :]) / length_scale) ** 2)
    out = y2.copy()
    for c in range(y2.shape[1]):
        col = y2[:, c]
        coef, *_ = np.linalg.lstsq(design, col, rcond=None)
        trend = design @ coef
        resid = col - trend
        s_n = _noise_variance(t, col, obs, stride)
        if s_n <= 0:
            continue
        s_f = max(float(resid.var()) - s_n, s_n)
        ratio = max(s_n / s_f, min_noise_ratio)
        factor = cho_factor(k + ratio * np.eye(n), lower=True)
        out[:, c] = trend + k @ cho_solve(factor, resid)
    return out.reshape(y.shape)


def _feet(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], 1)


def _velocity(frames: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Least-squares velocity (px/frame) of ``points (k, 2)`` over ``frames (k,)``; zero for a single point."""
    if len(frames) < 2:
        return np.zeros(2)
    tc = frames - frames.mean()
    return (tc[:, None] * (points - points.mean(0))).sum(0) / (tc**2).sum()


def link_tracks(rows: Sequence[TrackRow], fps: float, max_gap: int, window: int = 5, pos_tol: float = 0.25,
                vel_tol: float = 0.5, max_size_ratio: float = 1.5, max_cost: float = 1.0,
                frame_size: Sequence[int] | None = None, border: float = 0.01
                ) -> tuple[list[TrackRow], dict[tuple[int, int], int]]:  # fmt: skip
    """Link track fragments of one person by motion alone (module docstring, step 1).

    For tracks ``i``, ``j`` of one camera with ``end_i < start_j`` and ``start_j - end_i - 1 <= max_gap`` frames,
    the feet (bottom-centre) velocity of each is fitted over its last / first ``window`` boxes; ``i``'s last feet
    position moved forward by its velocity over the gap is compared with ``j``'s first, and ``j``'s first moved
    back by ``j``'s velocity with ``i``'s last. The mean of the two errors, over the mean box height ``h`` of the two
    boxes at the cut, is measured against a tolerance that grows with the gap ``dt`` (seconds):
    ``cost = err / (h * (pos_tol + vel_tol * dt))``. A pair is a candidate when ``cost <= max_cost`` and its box
    heights differ by at most ``max_size_ratio``; candidates are matched one-to-one (each track gets at most one
    successor and one predecessor) by ``scipy.optimize.linear_sum_assignment``, and chains ``i -> j -> k`` become
    one track with the id of its first fragment. Tracks that co-exist in time are never candidates; with
    ``frame_size``, neither is a pair whose first track's last box or second track's first box touches the image
    border (within ``border`` x the frame's width / height): the person left or came into view there.

    Args:
        rows: tracked boxes. fps: frame rate of the frame numbers. max_gap: largest number of missing frames
            between two linked fragments. window: boxes used for each velocity. pos_tol: body heights of slack at
            the cut (box jitter). vel_tol: body heights per second of slack (velocity error, turns).
        max_size_ratio: largest ratio of the two box heights at the cut. max_cost: the cost threshold.
        frame_size: ``(width, height)`` of the video in px (``None``: no border rule). border: the border's
            width as a fraction of the frame's width (left/right) and height (top/bottom).
    Returns:
        ``(rows, links)``: new rows with the linked tracks' ids replaced, and ``{(camid, old_id): new_id}`` for
        every relabelled track.
    Raises:
        ValueError: ``fps <= 0``, ``max_gap < 0``, ``window < 1``, negative tolerances, ``max_size_ratio < 1``.
    """
    from scipy.optimize import linear_sum_assignment

    if fps <= 0 or max_gap < 0 or window < 1 or pos_tol < 0 or vel_tol < 0 or max_size_ratio < 1 or max_cost <= 0:
        raise ValueError(f"refine.link: expected fps > 0, max_gap >= 0, window >= 1, pos_tol, vel_tol >= 0, "
                         f"max_size_ratio >= 1, max_cost > 0; got fps={fps}, max_gap={max_gap}, window={window}, "
                         f"pos_tol={pos_tol}, vel_tol={vel_tol}, max_size_ratio={max_size_ratio}, "
                         f"max_cost={max_cost}")  # fmt: skip
    if frame_size is not None and (len(frame_size) != 2 or min(frame_size) <= 0 or not 0 <= border < 0.5):
        raise ValueError(f"refine.link: expected frame_size (width, height) > 0 and 0 <= border < 0.5, got "
                         f"frame_size={frame_size}, border={border}")  # fmt: skip

    def at_border(r: TrackRow) -> bool:
        if frame_size is None:
            return False
        bw, bh = border * frame_size[0], border * frame_size[1]
        return r.x1 <= bw or r.y1 <= bh or r.x2 >= frame_size[0] - bw or r.y2 >= frame_size[1] - bh

    groups = _groups(rows)
    keys = sorted(groups, key=lambda k: (k[0], groups[k][0].frame, k[1]))
    n = len(keys)
    info = []
    for k in keys:
        rs = groups[k]
        frames = np.array([r.frame for r in rs], np.float64)
        feet = _feet(np.array([_box(r) for r in rs]))
        info.append(dict(cam=k[0], start=rs[0].frame, end=rs[-1].frame, first=feet[0], last=feet[-1],
                         h_first=rs[0].y2 - rs[0].y1, h_last=rs[-1].y2 - rs[-1].y1,
                         enters=at_border(rs[0]), leaves=at_border(rs[-1]),
                         v_first=_velocity(frames[:window], feet[:window]),
                         v_last=_velocity(frames[-window:], feet[-window:])))  # fmt: skip
    big = 1e6
    cost = np.full((n, n), big)
    for i, a in enumerate(info):
        for j, b in enumerate(info):
            gap = b["start"] - a["end"]
            if a["cam"] != b["cam"] or gap <= 0 or gap - 1 > max_gap or a["leaves"] or b["enters"]:
                continue
            ha, hb = a["h_last"], b["h_first"]
            if min(ha, hb) <= 0 or max(ha, hb) / min(ha, hb) > max_size_ratio:
                continue
            fwd = np.linalg.norm(a["last"] + a["v_last"] * gap - b["first"])
            bwd = np.linalg.norm(b["first"] - b["v_first"] * gap - a["last"])
            c = (fwd + bwd) / 2 / ((ha + hb) / 2 * (pos_tol + vel_tol * gap / fps))
            if c <= max_cost:
                cost[i, j] = c
    nxt: dict[int, int] = {}
    if n and (cost < big).any():
        ri, ci = linear_sum_assignment(cost)
        nxt = {int(i): int(j) for i, j in zip(ri, ci) if cost[i, j] < big}
    has_prev = set(nxt.values())
    links: dict[tuple[int, int], int] = {}
    for i in range(n):
        if i in has_prev or i not in nxt:
            continue
        head, j = keys[i][1], nxt[i]
        while True:
            links[keys[j]] = head
            if j not in nxt:
                break
            j = nxt[j]
    out = [replace(r, track_id=links.get((r.camid, r.track_id), r.track_id)) for r in rows]
    return out, links


def refine_tracks(rows: Sequence[TrackRow], fps: float, stride: int = 1, interpolate: str | None = "linear",
                  max_gap: int = 20, link: bool = False, link_max_gap: int | None = None, tau: float = 10.0,
                  **link_kwargs) -> tuple[list[TrackRow], dict[tuple[int, int], int]]:  # fmt: skip
    """The refinement steps in StrongSORT++'s order: :func:`link_tracks` (``link``; gap ``link_max_gap``, default
    ``max_gap``), then :func:`interpolate_tracks` (``interpolate``: ``linear``, ``gsi`` or ``None``), which also
    fills the gaps between linked fragments. Returns ``(rows, links)`` (``links`` empty without linking)."""
    links: dict[tuple[int, int], int] = {}
    out = list(rows)
    if link:
        out, links = link_tracks(out, fps, max_gap if link_max_gap is None else link_max_gap, **link_kwargs)
    if interpolate is not None:
        out = interpolate_tracks(out, max_gap, stride=stride, method=interpolate, tau=tau)
    return out, links


class Refiner:
    """The refinement stage (``conf/refine``): :func:`refine_tracks` with its gaps in seconds, so that one setting
    serves videos of any frame rate; every step is switchable (all off in this class's defaults; ``conf/refine``
    turns on GSI and linking, by measurement).

    Args:
        interpolate: ``linear``, ``gsi`` or ``None`` (no filling). max_gap_s: longest gap filled (seconds).
        tau: GSI's ``tau`` (frames). link: motion linking on/off. link_max_gap_s: longest gap linked (seconds).
        link_pos_tol, link_vel_tol, link_max_size_ratio, link_border: :func:`link_tracks`'s ``pos_tol``,
            ``vel_tol``, ``max_size_ratio`` and ``border``.
    Raises:
        ValueError: an unknown ``interpolate`` or a negative gap.
    """

    def __init__(self, interpolate: str | None = None, max_gap_s: float = 1.0, tau: float = 10.0, link: bool = False,
                 link_max_gap_s: float = 1.0, link_pos_tol: float = 0.25, link_vel_tol: float = 0.5,
                 link_max_size_ratio: float = 1.5, link_border: float = 0.01):  # fmt: skip
        if interpolate not in (None, "linear", "gsi"):
            raise ValueError(f"refine.interpolate={interpolate!r}: expected linear, gsi or null")
        if max_gap_s < 0 or link_max_gap_s < 0:
            raise ValueError(f"refine.max_gap_s={max_gap_s}, refine.link_max_gap_s={link_max_gap_s}: expected >= 0")
        self.interpolate, self.max_gap_s, self.tau = interpolate, float(max_gap_s), float(tau)
        self.link, self.link_max_gap_s = bool(link), float(link_max_gap_s)
        self.link_kwargs = dict(pos_tol=float(link_pos_tol), vel_tol=float(link_vel_tol),
                                max_size_ratio=float(link_max_size_ratio), border=float(link_border))  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.interpolate is not None or self.link

    def __call__(self, rows: Sequence[TrackRow], fps: float, stride: int = 1,
                 frame_size: Sequence[int] | None = None) -> tuple[list[TrackRow], dict[tuple[int, int], int]]:  # fmt: skip
        """Refine one camera's rows (``fps``: the video's frame rate; ``frame_size``: ``(width, height)`` for the
        linking's border rule). Returns ``(rows, links)`` as :func:`refine_tracks`."""
        if not self.enabled:
            return list(rows), {}
        return refine_tracks(rows, fps, stride=stride, interpolate=self.interpolate,
                             max_gap=int(round(self.max_gap_s * fps)), link=self.link,
                             link_max_gap=int(round(self.link_max_gap_s * fps)), tau=self.tau,
                             frame_size=frame_size, **self.link_kwargs)  # fmt: skip
