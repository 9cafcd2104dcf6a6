"""Rendering stage: the annotated video (mp4), a short GIF and still PNG frames, with each tracked box drawn in
its identity's colour and labelled ``ID <identity>`` (``t<track id>`` = the raw tracker id underneath), and a
header with the time, the window and its count of distinct individuals.

Labels stay inside the frame and below the header, and do not cover each other (:func:`place_labels`); the still
times and the GIF range are fitted to the video's length (:func:`resolve_times`), with a logged reason whenever
they move.
"""

from __future__ import annotations

import colorsys
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidreid.video.reader import iter_frames
from vidreid.video.tracklets import TrackRow

__all__ = ["SHEET_LEGEND", "RenderTimes", "annotate", "draw_counting_line", "identity_colour", "identity_sheet", "place_labels",
           "render_video", "resolve_times"]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderTimes:
    """Still times and GIF range that lie inside a video (:func:`resolve_times`).

    Attributes:
        stills_s: still times in seconds, each in ``[0, duration)``.
        gif_range_s: ``(start, end)`` seconds with ``0 <= start < end <= duration``.
        notes: why a configured time moved (empty when every configured time fits); also logged.
    """

    stills_s: tuple[float, ...]
    gif_range_s: tuple[float, float]
    notes: tuple[str, ...] = ()


def resolve_times(stills_s: Sequence[float], gif_range_s: Sequence[float], duration_s: float,
                  video: str | Path = "the video") -> RenderTimes:  # fmt: skip
    """Fit the configured still times and GIF range to a video of ``duration_s`` seconds.

    - Stills inside ``[0, duration)`` are kept; those at or past the end are dropped. When none is left, the same
      number of stills are spread evenly over the video, at ``duration * k / (n + 1)``, ``k = 1..n``.
    - A GIF range that starts at or past the end becomes the last ``end - start`` seconds of the video (the whole
      video when it is shorter); one that ends past the end is cut at the end.

    Every change is logged (a warning naming ``video``) and returned in :attr:`RenderTimes.notes`.

    Args:
        stills_s: configured still times (s). gif_range_s: configured ``(start, end)`` (s). duration_s: the video's
            length (frames read / fps). video: the name used in the notes.
    Raises:
        ValueError: ``duration_s <= 0``, a negative time, or a GIF range with ``end <= start``.
    """
    duration = float(duration_s)
    if not duration > 0:
        raise ValueError(f"video {video}: duration {duration_s} s, expected > 0")
    stills = [float(t) for t in stills_s]
    a, b = (float(x) for x in gif_range_s)
    if any(t < 0 for t in stills) or a < 0 or b <= a:
        raise ValueError(f"render times: stills_s={stills}, gif_range_s={[a, b]}; expected times >= 0 and a GIF "
                         f"range with end > start")  # fmt: skip
    notes = []
    kept = [t for t in stills if t < duration]
    if len(kept) < len(stills):
        late = ", ".join(f"{t:g}" for t in stills if t >= duration)
        if kept:
            notes.append(f"stills at {late} s lie past the end of {video} ({duration:.2f} s): not drawn")
        else:
            kept = [round(duration * k / (len(stills) + 1), 3) for k in range(1, len(stills) + 1)]
            notes.append(f"stills at {late} s lie past the end of {video} ({duration:.2f} s): drawn at "
                         f"{', '.join(f'{t:g}' for t in kept)} s instead")  # fmt: skip
    gif = (a, b)
    if a >= duration:
        gif = (max(0.0, duration - (b - a)), duration)
        notes.append(f"GIF range {a:g}-{b:g} s starts past the end of {video} ({duration:.2f} s): "
                     f"{gif[0]:g}-{gif[1]:g} s drawn instead")  # fmt: skip
    elif b > duration:
        gif = (a, duration)
        notes.append(f"GIF range {a:g}-{b:g} s ends past the end of {video} ({duration:.2f} s): cut to "
                     f"{a:g}-{duration:g} s")  # fmt: skip
    for n in notes:
        log.warning("render: %s", n)
    return RenderTimes(tuple(kept), gif, tuple(notes))


def _overlap(r: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> int:
    return max(0, min(r[2], q[2]) - max(r[0], q[0])) * max(0, min(r[3], q[3]) - max(r[1], q[1]))


def place_labels(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]], frame_size: tuple[int, int],
                 top: int = 0) -> list[tuple[int, int, int, int]]:  # fmt: skip
    """Label rectangles ``(x1, y1, x2, y2)`` (pixels, exclusive ends) for boxes, inside the frame, below ``top``
    and not overlapping one another where the frame has room.

    Each label of ``sizes[i] = (w, h)`` tries, in order: above its box's top-left corner, inside it under the top
    edge, under the box's bottom edge; each clamped into ``[0, W) x [top, H)``; then the same spots moved down or up
    by whole label heights. The first spot free of the labels placed so far is taken (labels are placed top to
    bottom, left to right); when none is free, the spot that overlaps least. Greedy placement, as in map labelling.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2`` pixel boxes. sizes: ``(w, h)`` label sizes. frame_size: ``(H, W)``.
        top: rows reserved at the top (the header band).
    Returns:
        one rectangle per box, in the order of ``boxes``.
    """
    fh, fw = frame_size
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))
    placed: dict[int, tuple[int, int, int, int]] = {}
    for i in order:
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        w, h = (int(v) for v in sizes[i])
        w, h = min(w, fw), min(h, max(1, fh - top))
        anchors = [(x1, y1 - h), (x1, y1), (x1, y2)]
        shifts = [0] + [s * k * h for k in range(1, max(2, (fh - top) // max(h, 1)) + 1) for s in (1, -1)]
        best, best_cost = None, None
        for dy in shifts:
            for ax, ay in anchors:
                x = min(max(ax, 0), fw - w)
                y = min(max(ay + dy, top), fh - h)
                r = (x, y, x + w, y + h)
                cost = sum(_overlap(r, q) for q in placed.values())
                if best_cost is None or cost < best_cost:
                    best, best_cost = r, cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        placed[i] = best
    return [placed[i] for i in range(len(boxes))]


def identity_colour(identity: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per identity (golden-ratio hue steps); grey for -1."""
    if identity < 0:
        return (160, 160, 160)
    h = (identity * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return (int(b * 255), int(g * 255), int(r * 255))


def annotate(frame: np.ndarray, rows: Sequence[TrackRow], header: str = "", scale: float = 1.0) -> np.ndarray:
    """A copy of ``frame`` (BGR) with ``rows``' boxes and labels drawn, and ``header`` on a band at the top.

    Boxes are drawn first, then the labels at the spots :func:`place_labels` gives (inside the frame, below the
    header band, not over one another)."""
    import cv2

    out = frame.copy()
    th = max(1, round(2 * scale))
    band = int(24 * scale) if header else 0
    font, fs = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale
    labels, sizes = [], []
    for r in rows:
        cv2.rectangle(out, (int(r.x1), int(r.y1)), (int(r.x2), int(r.y2)), identity_colour(r.identity), th)
        labels.append(f"ID {r.identity} t{r.track_id}" if r.identity >= 0 else f"t{r.track_id}")
        (tw, tht), _ = cv2.getTextSize(labels[-1], font, fs, 1)
        sizes.append((tw + 4, tht + 5))
    spots = place_labels([(r.x1, r.y1, r.x2, r.y2) for r in rows], sizes, out.shape[:2], top=band)
    for r, label, (x1, y1, x2, y2) in zip(rows, labels, spots):
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), identity_colour(r.identity), -1)
        cv2.putText(out, label, (x1 + 2, y2 - 4), font, fs, (0, 0, 0), 1, cv2.LINE_AA)
    if header:
        cv2.rectangle(out, (0, 0), (out.shape[1], band), (0, 0, 0), -1)
        cv2.putText(out, header, (6, int(17 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
    return out


def draw_counting_line(frame: np.ndarray, line: Sequence[float], n_in: int, n_out: int, scale: float = 1.0
                       ) -> np.ndarray:  # fmt: skip
    """Draw the counting line ``[x1, y1, x2, y2]`` (:func:`vidreid.video.count.line_crossings`) on ``frame`` (BGR,
    in place; also returned): the line, a short arrow from its midpoint towards the ``in`` side (the left-hand side
    walking from start to end on the image), and ``in <n_in>  out <n_out>`` next to its start."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in line)
    th = max(1, round(2 * scale))
    cv2.line(frame, (round(x1), round(y1)), (round(x2), round(y2)), (255, 255, 255), th + 2, cv2.LINE_AA)
    cv2.line(frame, (round(x1), round(y1)), (round(x2), round(y2)), (0, 0, 255), th, cv2.LINE_AA)
    dx, dy = x2 - x1, y2 - y1
    norm = max(1e-9, (dx * dx + dy * dy) ** 0.5)
    mx, my = (x1 + x2) / 2, (y1 + y2) / 2
    ax, ay = mx + 25 * scale * dy / norm, my - 25 * scale * dx / norm  # left-hand normal in image coordinates
    cv2.arrowedLine(frame, (round(mx), round(my)), (round(ax), round(ay)), (0, 0, 255), th, cv2.LINE_AA,
                    tipLength=0.35)  # fmt: skip
    label = f"in {n_in}  out {n_out}"
    (tw, tht), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
    px, py = int(min(max(0, x1), frame.shape[1] - tw - 6)), int(min(max(tht + 6, y1 - 6), frame.shape[0] - 2))
    cv2.rectangle(frame, (px, py - tht - 6), (px + tw + 6, py + 2), (0, 0, 0), -1)
    cv2.putText(frame, label, (px + 3, py - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), 1,
                cv2.LINE_AA)  # fmt: skip
    return frame


def render_video(video: str | Path, rows: Sequence[TrackRow], fps: float, out_mp4: str | Path | None,
                 counts: Sequence[dict] = (), window_s: float = 3.0, gif: str | Path | None = None,
                 gif_range_s: tuple[float, float] = (0.0, 10.0), gif_width: int = 384, gif_stride: int = 2,
                 stills: dict[int, Path] | None = None, still_width: int = 480, stride: int = 1,
                 start: int = 0, line: Sequence[float] | None = None,
                 line_events: Sequence[dict] = ()) -> dict[str, Path]:  # fmt: skip
    """Decode ``video`` once and write the annotated mp4 (every frame, at ``fps``), a GIF of the frames in
    ``gif_range_s`` (every ``gif_stride``-th frame, ``gif_width`` px wide) and PNG stills (``{frame: path}``).

    Frames the pipeline skipped (``stride``: it processed frames ``start, start + stride, ...``) show the boxes of
    the last processed frame. With a counting ``line``, it is drawn (:func:`draw_counting_line`) with the running
    totals of ``line_events`` (:func:`vidreid.video.count.line_crossings` events) up to each frame.
    Returns the written files ``{"mp4", "gif", "still_<frame>"}``.
    """
    import cv2
    from PIL import Image

    by_frame: dict[int, list[TrackRow]] = {}
    for r in rows:
        by_frame.setdefault(r.frame, []).append(r)
    count_of = {int(c["window"]): int(c["individuals"]) for c in counts}
    stills = dict(stills or {})
    writer, files, gif_frames = None, {}, []
    for idx, frame in iter_frames(video):
        current = by_frame.get(idx - (idx - start) % stride, []) if idx >= start else []
        t = idx / fps
        w = int(t // window_s)
        header = f"t={t:5.1f}s  frame {idx}  window {w} ({w * window_s:g}-{(w + 1) * window_s:g}s): " \
                 f"{count_of.get(w, 0)} individuals"  # fmt: skip
        img = annotate(frame, current, header)
        if line is not None:
            draw_counting_line(img, line, sum(e["direction"] == "in" and e["frame"] <= idx for e in line_events),
                               sum(e["direction"] == "out" and e["frame"] <= idx for e in line_events))  # fmt: skip
        if out_mp4 is not None:
            if writer is None:
                files["mp4"] = Path(out_mp4)
                writer = cv2.VideoWriter(str(out_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (img.shape[1], img.shape[0]))  # fmt: skip
                if not writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {out_mp4} (no mp4v encoder in this OpenCV build)")
            writer.write(img)
        if gif is not None and gif_range_s[0] <= t < gif_range_s[1] and idx % gif_stride == 0:
            small = cv2.resize(img, (gif_width, round(img.shape[0] * gif_width / img.shape[1])),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            gif_frames.append(Image.fromarray(small[:, :, ::-1]))
        if idx in stills:
            small = cv2.resize(img, (still_width, round(img.shape[0] * still_width / img.shape[1])),
                               interpolation=cv2.INTER_AREA)  # fmt: skip
            Image.fromarray(small[:, :, ::-1]).quantize(colors=128).save(stills[idx], optimize=True)
            files[f"still_{idx}"] = Path(stills[idx])
    if writer is not None:
        writer.release()
    if gif is not None and gif_frames:
        pal = [f.quantize(colors=96, method=Image.Quantize.MEDIANCUT) for f in gif_frames]
        pal[0].save(gif, save_all=True, append_images=pal[1:], duration=int(1000 * gif_stride / fps), loop=0,
                    optimize=True)  # fmt: skip
        files["gif"] = Path(gif)
    return files


#: the line at the top of :func:`identity_sheet`
SHEET_LEGEND = ("Each row: one identity joined from several tracklets. Per tracklet (tN = its tracker id): "
                "its first crop, then its last crop; a gap between tracklets.")  # fmt: skip


def identity_sheet(identities: Sequence[dict], run_dir: str | Path, out: str | Path, max_rows: int = 10,
                   per_tracklet: int = 2, only_merged: bool = True) -> Path | None:  # fmt: skip
    """A contact sheet of identities (``identities.json``'s ``identities`` list): one row per identity, for each of
    its tracklets ``per_tracklet`` crops (first and last), separated by a gap and captioned ``tN first`` /
    ``tN last`` (``tN only`` for a one-crop tracklet), under a legend line (:data:`SHEET_LEGEND`) — to check by
    eye whether the fragments merged into one identity show one person. ``only_merged``: rows only for identities
    made of two or more tracklets. Returns the PNG path, or ``None`` when there is no row."""
    from PIL import Image, ImageDraw

    rows = [i for i in identities if len(i["tracklets"]) > 1 or not only_merged][:max_rows]
    if not rows:
        return None
    run_dir = Path(run_dir)
    cells: list[list[tuple[str, Image.Image | None]]] = []
    cw = ch = 0
    for ident in rows:
        line: list[tuple[str, Image.Image | None]] = []
        for t in ident["tracklets"]:
            files = sorted((run_dir / t["folder"]).glob("*.jpg"))
            picks = [files[0], files[-1]][:per_tracklet] if len(files) > 1 else files[:1]
            names = ["only"] if len(picks) == 1 else ["first", "last"]
            for p, what in zip(picks, names):
                im = Image.open(p).convert("RGB")
                cw, ch = max(cw, im.width), max(ch, im.height)
                line.append((f"t{t['track_id']} {what}", im))
            line.append(("", None))  # gap between tracklets
        cells.append(line[:-1])
    label_w, gap, legend_h = 44, 8, 16
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(label_w + max(sum(cw if im is not None else gap for _, im in line) for line in cells),
                int(draw.textlength(SHEET_LEGEND)) + 8)  # fmt: skip
    sheet = Image.new("RGB", (width, legend_h + len(cells) * (ch + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), SHEET_LEGEND, fill=(0, 0, 0))
    for r, (ident, line) in enumerate(zip(rows, cells)):
        y = legend_h + r * (ch + 14)
        draw.text((4, y + ch // 2), f"ID {ident['identity']}", fill=(0, 0, 0))
        x = label_w
        for name, im in line:
            if im is None:
                x += gap
                continue
            sheet.paste(im, (x, y))
            draw.text((x + 2, y + ch), name, fill=(80, 80, 80))
            x += cw
    sheet.save(out, optimize=True)
    return Path(out)
