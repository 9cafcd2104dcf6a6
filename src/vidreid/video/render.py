"""Rendering stage: the annotated video (mp4), a short GIF and still PNG frames, with each tracked box drawn in
its identity's colour and labelled ``ID <identity>`` (``t<track id>`` = the raw tracker id underneath), and a
header with the time, the window and its count of distinct individuals.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidreid.video.reader import iter_frames
from vidreid.video.tracklets import TrackRow

__all__ = ["annotate", "draw_counting_line", "identity_colour", "identity_sheet", "render_video"]


def identity_colour(identity: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per identity (golden-ratio hue steps); grey for -1."""
    if identity < 0:
        return (160, 160, 160)
    h = (identity * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return (int(b * 255), int(g * 255), int(r * 255))


def annotate(frame: np.ndarray, rows: Sequence[TrackRow], header: str = "", scale: float = 1.0) -> np.ndarray:
    """A copy of ``frame`` (BGR) with ``rows``' boxes and labels drawn, and ``header`` on a band at the top."""
    import cv2

    out = frame.copy()
    th = max(1, round(2 * scale))
    for r in rows:
        c = identity_colour(r.identity)
        p1, p2 = (int(r.x1), int(r.y1)), (int(r.x2), int(r.y2))
        cv2.rectangle(out, p1, p2, c, th)
        label = f"ID {r.identity} t{r.track_id}" if r.identity >= 0 else f"t{r.track_id}"
        (tw, tht), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, 1)
        y = max(tht + 4, p1[1])
        cv2.rectangle(out, (p1[0], y - tht - 4), (p1[0] + tw + 4, y), c, -1)
        cv2.putText(out, label, (p1[0] + 2, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    if header:
        cv2.rectangle(out, (0, 0), (out.shape[1], int(24 * scale)), (0, 0, 0), -1)
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



def identity_sheet(identities: Sequence[dict], run_dir: str | Path, out: str | Path, max_rows: int = 10,
                   per_tracklet: int = 2, only_merged: bool = True) -> Path | None:  # fmt: skip
    """A contact sheet of identities (``identities.json``'s ``identities`` list): one row per identity, for each of
    its tracklets ``per_tracklet`` crops (first and last), separated by a gap and labelled with the tracker id — to
    check by eye whether the fragments merged into one identity show one person. ``only_merged``: rows only for
    identities made of two or more tracklets. Returns the PNG path, or ``None`` when there is no row."""
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
            for p in picks:
                im = Image.open(p).convert("RGB")
                cw, ch = max(cw, im.width), max(ch, im.height)
                line.append((f"t{t['track_id']}", im))
            line.append(("", None))  # gap between tracklets
        cells.append(line[:-1])
    label_w, gap = 44, 8
    width = label_w + max(sum(cw if im is not None else gap for _, im in line) for line in cells)
    sheet = Image.new("RGB", (width, len(cells) * (ch + 14)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (ident, line) in enumerate(zip(rows, cells)):
        y = r * (ch + 14)
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
