"""Counting stage (STICC's PETS2009 demo, "individual counts over 3-second intervals"): the number of distinct
individuals per time window, from the track table, with re-ID identities and with raw tracker ids side by side
(their difference is the tracker's fragmentation), as CSV and as a matplotlib plot under the video timeline; with
a ground truth, the same count from its ids (:func:`window_counts` on the ground-truth boxes) and the error per
window (:func:`count_error`), drawn as a line in the plot.

Line-crossing counts (:func:`line_crossings`, ``count.line=[x1,y1,x2,y2]``): each identity's crossings of a
counting line in each direction, decided by ``supervision``'s :class:`sv.LineZone` (its side test and its
``minimum_crossing_threshold`` debounce; no geometry here), with totals, per-identity counts and per-window
counts (:func:`window_line_counts`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["LINE_COLUMNS", "count_error", "line_crossings", "plot_counts", "window_counts", "window_line_counts",
           "write_counts", "write_line_counts"]  # fmt: skip

COUNT_COLUMNS = ("camid", "window", "start_s", "end_s", "start_frame", "end_frame", "individuals", "raw_tracks",
                 "detections")  # fmt: skip


def window_counts(frames: Sequence[int], identities: Sequence[int], track_ids: Sequence[int], fps: float,
                  window_s: float, num_frames: int, camid: int = 0) -> list[dict]:  # fmt: skip
    """Distinct individuals per window of ``window_s`` seconds.

    Window ``k`` holds frames ``f`` with ``k * window_s <= f / fps < (k + 1) * window_s``; the last window is
    cut at the end of the video (``num_frames``). A box counts if its identity is >= 0 (re-ID identity) or for
    ``raw_tracks`` by its tracker id.

    Args:
        frames, identities, track_ids: one entry per tracked box (the track table's columns, one camera).
        fps: video frame rate. window_s: window length in seconds. num_frames: video length in frames.
    Returns:
        One dict per window with :data:`COUNT_COLUMNS` (``end_frame`` exclusive).
    Raises:
        ValueError: ``window_s <= 0``, or a window longer than the video (names both lengths), or ``fps <= 0``.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    duration = num_frames / fps
    if window_s <= 0:
        raise ValueError(f"count.window_s must be > 0 seconds, got {window_s}")
    if window_s > duration + 1e-9:
        raise ValueError(f"count.window_s={window_s} s is longer than the video ({num_frames} frames at {fps:g} fps "
                         f"= {duration:.2f} s); expected a window of at most {duration:.2f} s")  # fmt: skip
    fr = np.asarray(frames, np.int64)
    ids = np.asarray(identities, np.int64)
    tids = np.asarray(track_ids, np.int64)
    if not (len(fr) == len(ids) == len(tids)):
        raise ValueError(f"frames/identities/track_ids lengths differ: {len(fr)}, {len(ids)}, {len(tids)}")
    n_windows = math.ceil(duration / window_s - 1e-9)
    win = np.floor(fr / fps / window_s + 1e-9).astype(np.int64)
    rows = []
    for k in range(n_windows):
        sel = win == k
        start_f = math.ceil(k * window_s * fps - 1e-9)
        end_f = min(num_frames, math.ceil((k + 1) * window_s * fps - 1e-9))
        rows.append(dict(camid=camid, window=k, start_s=round(k * window_s, 3),
                         end_s=round(min((k + 1) * window_s, duration), 3), start_frame=start_f, end_frame=end_f,
                         individuals=len(set(ids[sel & (ids >= 0)].tolist())),
                         raw_tracks=len(set(tids[sel].tolist())), detections=int(sel.sum())))  # fmt: skip
    return rows


LINE_COLUMNS = ("camid", "identity", "in", "out", "first_frame", "last_frame")
ANCHORS = ("bottom_center", "center", "top_center", "top_left", "top_right", "bottom_left", "bottom_right",
           "center_left", "center_right")  # fmt: skip


def _check_line(line: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in line)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[:2] == vals[2:]:
        raise ValueError(f"count.line={list(line) if line is not None else None}: expected [x1, y1, x2, y2] pixel "
                         f"coordinates of two distinct points")  # fmt: skip
    return vals  # type: ignore[return-value]


def line_crossings(frames: Sequence[int], identities: Sequence[int], boxes: np.ndarray, line: Sequence[float],
                   anchors: Sequence[str] = ("bottom_center",), minimum_crossing_threshold: int = 1,
                   camid: int = 0) -> dict:  # fmt: skip
    """Count each identity's crossings of the directed line ``line = [x1, y1, x2, y2]`` (pixels, one camera).

    Every identity gets its own ``sv.LineZone(start, end, triggering_anchors, minimum_crossing_threshold)`` fed
    its boxes in frame order (``sv.LineZone.trigger``); feeding it only that identity's boxes keeps its side
    across the frames it is missing (occlusions, fragments joined by re-ID), where one zone for all identities
    would forget a track after two absent frames. Directions are supervision's: walking along ``start -> end``
    as drawn on the image (``y`` down), ``in`` is a crossing from the right-hand side to the left-hand side and
    ``out`` the reverse (for ``line = [0, 100, 200, 100]``, moving up the image is ``in``). The default anchor is
    the feet (bottom centre of the box): the point on the ground plane, so a person is on one side at a time.

    Args:
        frames, identities: ``(N,)`` one entry per box (identities < 0 are ignored). boxes: ``(N, 4)`` xyxy px.
        line: the counting line. anchors: box points that must all be on the new side (``sv.Position`` names,
            lower case, e.g. ``bottom_center``). minimum_crossing_threshold: boxes on the new side before a
            crossing counts. camid: the camera, copied to the rows.
    Returns:
        ``{"line": [x1, y1, x2, y2], "in": total, "out": total, "per_identity": [{camid, identity, in, out,
        first_frame, last_frame}, ...] (every identity seen, :data:`LINE_COLUMNS`), "events": [{"frame", "identity",
        "direction"}, ...] (in frame order)}``.
    Raises:
        ValueError: a malformed ``line``, an unknown anchor, mismatched lengths, ``minimum_crossing_threshold < 1``.
    """
    import supervision as sv

    x1, y1, x2, y2 = _check_line(line)
    bad = [a for a in anchors if str(a).lower() not in ANCHORS]
    if bad or not anchors:
        raise ValueError(f"count.line_anchors={list(anchors)}: expected names from {list(ANCHORS)}")
    if minimum_crossing_threshold < 1:
        raise ValueError(f"count.line_min_frames must be >= 1, got {minimum_crossing_threshold}")
    fr = np.asarray(frames, np.int64)
    ids = np.asarray(identities, np.int64)
    bx = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not (len(fr) == len(ids) == len(bx)):
        raise ValueError(f"frames/identities/boxes lengths differ: {len(fr)}, {len(ids)}, {len(bx)}")
    positions = [sv.Position[str(a).upper()] for a in anchors]
    per_id, events = [], []
    for ident in sorted(set(ids[ids >= 0].tolist())):
        sel = np.flatnonzero(ids == ident)
        sel = sel[np.argsort(fr[sel], kind="stable")]
        zone = sv.LineZone(sv.Point(x1, y1), sv.Point(x2, y2), triggering_anchors=positions,
                           minimum_crossing_threshold=int(minimum_crossing_threshold))  # fmt: skip
        for k in sel:
            det = sv.Detections(xyxy=bx[k : k + 1].astype(np.float32), tracker_id=np.array([1]))
            c_in, c_out = zone.trigger(det)
            if c_in[0] or c_out[0]:
                events.append(dict(frame=int(fr[k]), identity=int(ident), direction="in" if c_in[0] else "out"))
        per_id.append(dict(camid=camid, identity=int(ident), **{"in": zone.in_count, "out": zone.out_count},
                           first_frame=int(fr[sel[0]]), last_frame=int(fr[sel[-1]])))  # fmt: skip
    events.sort(key=lambda e: (e["frame"], e["identity"]))
    return {"line": [x1, y1, x2, y2], "in": sum(p["in"] for p in per_id), "out": sum(p["out"] for p in per_id),
            "per_identity": per_id, "events": events}  # fmt: skip


def window_line_counts(rows: Sequence[dict], events: Sequence[dict]) -> list[dict]:
    """Copies of the :func:`window_counts` ``rows`` (one camera) with ``line_in`` / ``line_out``: the crossings
    (:func:`line_crossings` ``events``) whose frame falls in each window's ``[start_frame, end_frame)``."""
    out = []
    for r in rows:
        sel = [e for e in events if r["start_frame"] <= e["frame"] < r["end_frame"]]
        out.append(dict(r, line_in=sum(e["direction"] == "in" for e in sel),
                        line_out=sum(e["direction"] == "out" for e in sel)))  # fmt: skip
    return out


def write_line_counts(path: str | Path, per_identity: Sequence[dict]) -> Path:
    """Write the per-identity crossings (:func:`line_crossings`'s ``per_identity``, all cameras) as CSV
    (:data:`LINE_COLUMNS`)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LINE_COLUMNS)
        w.writeheader()
        w.writerows(per_identity)
    return path


def count_error(predicted: Sequence[dict], truth: Sequence[dict], key: str = "individuals") -> dict:
    """Per-window counting error of ``predicted`` against ``truth`` (both :func:`window_counts` rows of the same
    windows, e.g. the re-ID identities and the ground-truth ids of one video).

    Returns:
        ``{"mae": mean |predicted - truth| over the windows, "bias": mean (predicted - truth), "truth": [...],
        "predicted": [...], "abs_error": [...]}`` (per-window lists in window order).
    Raises:
        ValueError: the two lists cover different windows (names both).
    """
    pw = [(r["camid"], r["window"]) for r in predicted]
    tw = [(r["camid"], r["window"]) for r in truth]
    if pw != tw:
        raise ValueError(f"count_error: predicted windows {pw} differ from ground-truth windows {tw}")
    p = np.array([r[key] for r in predicted], np.float64)
    t = np.array([r["individuals"] for r in truth], np.float64)
    err = np.abs(p - t)
    return dict(mae=float(err.mean()) if len(err) else 0.0, bias=float((p - t).mean()) if len(err) else 0.0,
                truth=t.astype(int).tolist(), predicted=p.astype(int).tolist(), abs_error=err.astype(int).tolist())


def write_counts(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write the window counts as CSV (:data:`COUNT_COLUMNS`, then ``line_in, line_out`` when the rows have
    them: :func:`window_line_counts`)."""
    path = Path(path)
    extra = [k for k in ("line_in", "line_out") if rows and k in rows[0]]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COUNT_COLUMNS) + extra)
        w.writeheader()
        w.writerows(rows)
    return path


def plot_counts(path: str | Path, rows: Sequence[dict], thumbnails: Sequence[tuple[float, np.ndarray]] = (),
                per_frame: tuple[np.ndarray, np.ndarray] | None = None, title: str = "",
                truth: Sequence[int] | None = None) -> Path:  # fmt: skip
    """Draw the per-window counts (bars: re-ID individuals; step line: raw tracker ids) under a film strip of the
    video (``thumbnails``: ``[(time_s, RGB image)]``), optionally with the per-frame number of tracked people
    (``per_frame = (time_s, count)``) and the ground-truth individuals per window (``truth``, one per row: a
    black step line). Saved as PNG (``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    t0 = np.array([r["start_s"] for r in rows])
    t1 = np.array([r["end_s"] for r in rows])
    total = float(t1.max()) if len(rows) else 1.0
    n_strip = 1 if thumbnails else 0
    fig, axes = plt.subplots(n_strip + 1, 1, figsize=(10, 4.2 if thumbnails else 3.2), dpi=100,
                             gridspec_kw={"height_ratios": [0.75, 2.0] if thumbnails else [1.0]}, sharex=True)  # fmt: skip
    axes = np.atleast_1d(axes)
    if thumbnails:
        ax = axes[0]
        step = total / len(thumbnails)
        for i, (_, img) in enumerate(thumbnails):
            ax.imshow(img, extent=(i * step, (i + 1) * step, 0, 1), aspect="auto")
        ax.set_xlim(0, total)
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.set_title(title or "video timeline")
    ax = axes[-1]
    ax.bar(t0, [r["individuals"] for r in rows], width=t1 - t0, align="edge", color="#4c72b0", alpha=0.8,
           edgecolor="white", label="individuals per window (re-ID identities)")  # fmt: skip
    ax.step(np.r_[t0, t1[-1:]], np.r_[[r["raw_tracks"] for r in rows], rows[-1]["raw_tracks"]] if rows else [],
            where="post", color="#dd8452", lw=1.8, label="raw tracker ids per window")  # fmt: skip
    if truth is not None and rows:
        truth = list(truth)
        if len(truth) != len(rows):
            raise ValueError(f"plot_counts: {len(truth)} ground-truth counts for {len(rows)} windows")
        ax.step(np.r_[t0, t1[-1:]], np.r_[truth, truth[-1]], where="post", color="black", lw=1.8, ls="--",
                label="ground truth individuals per window")  # fmt: skip
    if per_frame is not None:
        ax.plot(per_frame[0], per_frame[1], color="0.3", lw=0.8, alpha=0.7, label="people tracked in the frame")
    for r in rows:
        ax.text((r["start_s"] + r["end_s"]) / 2, r["individuals"] + 0.1, str(r["individuals"]), ha="center",
                va="bottom", fontsize=7)  # fmt: skip
    ax.set_xlim(0, total)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("count")
    ax.legend(loc="upper left", fontsize=7, ncol=3)
    ax.set_ylim(0, max([r["raw_tracks"] for r in rows] + list(truth or []) + [1]) * 1.35)
    if not thumbnails and title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
