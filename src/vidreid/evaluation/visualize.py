"""Pictures of an evaluation, drawn with PIL only: the CMC curve and ranked-list grids (query frames beside
its top-k gallery, true matches framed green, false matches red).

Junk gallery items (same pid **and** same camera as the query, or gallery pid ``-1``) are left out of a
ranked list exactly as :func:`vidreid.evaluation.ranking.evaluate_ranking` leaves them out of the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "MATCH_RGB",
    "MISMATCH_RGB",
    "RankedRow",
    "cmc_curve_image",
    "ranked_gallery",
    "ranked_list_image",
    "select_queries",
]

MATCH_RGB = (0, 170, 0)
MISMATCH_RGB = (210, 0, 0)
_BG = (255, 255, 255)
_FG = (20, 20, 20)
_GRID = (215, 215, 215)
_CURVE = (31, 90, 180)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def cmc_curve_image(
    cmc: Sequence[float] | np.ndarray,
    title: str = "CMC",
    size: tuple[int, int] = (480, 320),
    marks: Sequence[int] = (1, 5, 10, 20),
) -> Image.Image:
    """The CMC curve as an RGB image.

    Args:
        cmc: ``(R,)`` values in ``[0, 1]``; ``cmc[k-1]`` is rank-``k`` accuracy (``RankingResult.cmc``).
        title: drawn at the top (e.g. ``"val CMC, epoch 3"``).
        size: ``(width, height)`` in pixels.
        marks: ranks whose value is printed beside the curve (those ``<= R``).
    Returns:
        A ``size`` PIL image; x axis rank ``1..R``, y axis ``0..1`` (grid every 0.2).
    Raises:
        ValueError: empty ``cmc`` or values outside ``[0, 1]``.
    """
    cmc = np.asarray(cmc, dtype=np.float64).ravel()
    if cmc.size == 0 or np.any(~np.isfinite(cmc)) or cmc.min() < 0 or cmc.max() > 1:
        raise ValueError(f"cmc: expected a non-empty array of values in [0, 1], got {cmc}")
    w, h = size
    left, right, top, bottom = 44, 16, 28, 34
    img = Image.new("RGB", size, _BG)
    d = ImageDraw.Draw(img)
    font = _font(12)
    pw, ph = w - left - right, h - top - bottom

    def xy(rank: float, value: float) -> tuple[float, float]:
        x = left + (0.5 if len(cmc) == 1 else (rank - 1) / (len(cmc) - 1)) * pw
        return x, top + (1.0 - value) * ph

    for v in np.linspace(0, 1, 6):
        y = top + (1 - v) * ph
        d.line([(left, y), (left + pw, y)], fill=_GRID)
        d.text((4, y - 7), f"{v:.1f}", fill=_FG, font=font)
    d.rectangle([left, top, left + pw, top + ph], outline=_FG)
    for r in sorted({1, len(cmc), *[m for m in marks if m <= len(cmc)]}):
        x, _ = xy(r, 0)
        d.line([(x, top + ph), (x, top + ph + 4)], fill=_FG)
        d.text((x - 4, top + ph + 6), str(r), fill=_FG, font=font)
    d.text((left + pw / 2 - 12, h - 14), "rank", fill=_FG, font=font)
    d.text((left, 6), title, fill=_FG, font=font)
    pts = [xy(r + 1, float(v)) for r, v in enumerate(cmc)]
    if len(pts) > 1:
        d.line(pts, fill=_CURVE, width=2)
    for m in marks:
        if m <= len(cmc):
            x, y = xy(m, float(cmc[m - 1]))
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_CURVE)
            text = f"R{m} {cmc[m - 1]:.3f}"
            tw = d.textlength(text, font=font)
            tx = x + 5 if x + 5 + tw <= left + pw else x - 5 - tw  # keep labels inside the plot
            ty = y + 3 if y + 17 <= top + ph else y - 17
            d.text((tx, ty), text, fill=_FG, font=font)
    return img


def select_queries(ap: Sequence[float] | np.ndarray, n: int) -> tuple[list[int], list[int]]:
    """Indices of the ``n`` best and ``n`` worst queries by average precision.

    Queries with NaN AP (no positive in the gallery) are ignored. Ties are broken by the lower index.
    Returns ``(best, worst)``: best in decreasing AP, worst in increasing AP.
    """
    ap = np.asarray(ap, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(ap))
    order = valid[np.lexsort((valid, -ap[valid]))]  # AP descending, index ascending
    worst = valid[np.lexsort((valid, ap[valid]))]
    return order[:n].tolist(), worst[:n].tolist()


def ranked_gallery(
    dist_row: torch.Tensor | np.ndarray,
    q_pid: int,
    q_camid: int,
    g_pids: torch.Tensor | np.ndarray,
    g_camids: torch.Tensor | np.ndarray,
    k: int,
) -> tuple[list[int], list[bool]]:
    """The top-``k`` gallery columns of one query after junk removal, nearest first.

    Args:
        dist_row: ``(Ng,)`` distances of the query to the gallery (smaller = more similar).
        q_pid, q_camid: the query's ids. g_pids, g_camids: ``(Ng,)``.
    Returns:
        ``(columns, is_match)``; ties in distance keep the lower column first (stable sort).
    """
    dist = np.asarray(dist_row, dtype=np.float64)
    gp, gc = np.asarray(g_pids), np.asarray(g_camids)
    keep = ~(((gp == q_pid) & (gc == q_camid)) | (gp == -1))
    cols = np.flatnonzero(keep)
    cols = cols[np.argsort(dist[cols], kind="stable")][:k]
    return cols.tolist(), (gp[cols] == q_pid).tolist()


@dataclass
class RankedRow:
    """One row of a ranked-list grid.

    Attributes:
        query_frames: uint8 ``(3, H, W)`` frames of the query tracklet (a few, evenly spaced).
        gallery_frames: uint8 ``(3, H, W)``, one representative frame per ranked gallery tracklet.
        is_match: per gallery item, whether it has the query's pid.
        label: text above the row (e.g. ``"q17 pid 4 cam 1 AP 0.52"``).
        gallery_labels: optional text under each gallery tile (e.g. the distance).
    """

    query_frames: Sequence[torch.Tensor]
    gallery_frames: Sequence[torch.Tensor]
    is_match: Sequence[bool]
    label: str = ""
    gallery_labels: Sequence[str] | None = None


def _tile(frame: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"frames must be uint8 (3, H, W), got {frame.dtype} {tuple(frame.shape)}")
    img = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy(), "RGB")
    return img.resize((size[1], size[0]), Image.BILINEAR)


def ranked_list_image(rows: Sequence[RankedRow], tile: tuple[int, int] = (96, 48), border: int = 3) -> Image.Image:
    """Stack ranked lists into one RGB image: per row the query frames, a gap, then the ranked gallery
    tiles, each framed :data:`MATCH_RGB` (true match) or :data:`MISMATCH_RGB`.

    Args:
        rows: the rows to draw (at least one).
        tile: ``(height, width)`` of each frame tile in pixels (frames are resized to it).
        border: frame thickness in pixels around gallery tiles.
    Raises:
        ValueError: no rows, or a row whose ``is_match`` length differs from its gallery frames.
    """
    if not rows:
        raise ValueError("ranked_list_image: no rows to draw")
    th, tw = tile
    pad, gap, label_h, foot_h = 4, 16, 16, 14
    cell_w = tw + 2 * border + pad
    n_q = max(len(r.query_frames) for r in rows)
    n_g = max(len(r.gallery_frames) for r in rows)
    width = pad + n_q * (tw + pad) + gap + n_g * cell_w
    row_h = label_h + th + 2 * border + foot_h + pad
    img = Image.new("RGB", (width, row_h * len(rows)), _BG)
    d = ImageDraw.Draw(img)
    font = _font(11)
    for i, r in enumerate(rows):
        if len(r.is_match) != len(r.gallery_frames):
            raise ValueError(f"row {i}: {len(r.is_match)} match flags for {len(r.gallery_frames)} gallery frames")
        y0 = i * row_h
        d.text((pad, y0 + 2), r.label, fill=_FG, font=font)
        y = y0 + label_h + border
        for j, f in enumerate(r.query_frames):
            img.paste(_tile(f, tile), (pad + j * (tw + pad), y))
        x0 = pad + n_q * (tw + pad) + gap
        d.line([(x0 - gap // 2, y), (x0 - gap // 2, y + th)], fill=_GRID, width=2)
        for j, (f, m) in enumerate(zip(r.gallery_frames, r.is_match)):
            x = x0 + j * cell_w
            d.rectangle([x, y - border, x + tw + 2 * border - 1, y + th + border - 1], fill=MATCH_RGB if m else MISMATCH_RGB)
            img.paste(_tile(f, tile), (x + border, y))
            text = r.gallery_labels[j] if r.gallery_labels else str(j + 1)
            d.text((x + border, y + th + border + 1), text, fill=_FG, font=font)
    return img


def save_image(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
