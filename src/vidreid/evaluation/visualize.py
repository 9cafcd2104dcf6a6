"""Pictures of an evaluation, drawn with matplotlib (Agg, no display needed): the CMC curve and ranked-list grids
(query frames beside its top-k gallery, true matches framed green, false matches red).

Each picture has a ``*_figure`` function returning the matplotlib ``Figure`` (to save as PDF/SVG or restyle)
and a ``*_image`` function returning it rendered as a PIL RGB image (what W&B and the PNG files take).

Junk gallery items (same pid **and** same camera as the query, or gallery pid ``-1``) are left out of a
ranked list exactly as :func:`vidreid.evaluation.ranking.evaluate_ranking` leaves them out of the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from vidreid.evaluation.ranking import junk_mask

__all__ = [
    "MATCH_RGB",
    "MISMATCH_RGB",
    "RankedRow",
    "cmc_curve_figure",
    "cmc_curve_image",
    "figure_image",
    "ranked_gallery",
    "ranked_list_figure",
    "ranked_list_image",
    "select_queries",
]

MATCH_RGB = (0, 170, 0)
MISMATCH_RGB = (210, 0, 0)
CURVE_RGB = (31, 90, 180)
_DPI = 100


def _rgb(c: tuple[int, int, int]) -> tuple[float, float, float]:
    return tuple(v / 255 for v in c)


def figure_image(fig: Figure) -> Image.Image:
    """Render a matplotlib figure (Agg) to a PIL RGB image of its pixel size."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy(), "RGB")


def cmc_curve_figure(
    cmc: Sequence[float] | np.ndarray,
    title: str = "CMC",
    size: tuple[int, int] = (480, 320),
    marks: Sequence[int] = (1, 5, 10, 20),
) -> Figure:
    """The CMC curve as a matplotlib figure.

    Args:
        cmc: ``(R,)`` values in ``[0, 1]``; ``cmc[k-1]`` is rank-``k`` accuracy (``RankingResult.cmc``).
        title: drawn at the top (e.g. ``"val CMC, epoch 3"``).
        size: ``(width, height)`` in pixels.
        marks: ranks whose value is marked and printed on the curve (those ``<= R``).
    Returns:
        A figure of ``size`` pixels; x axis rank ``1..R``, y axis ``0..1``.
    Raises:
        ValueError: empty ``cmc`` or values outside ``[0, 1]``.
    """
    cmc = np.asarray(cmc, dtype=np.float64).ravel()
    if cmc.size == 0 or np.any(~np.isfinite(cmc)) or cmc.min() < 0 or cmc.max() > 1:
        raise ValueError(f"cmc: expected a non-empty array of values in [0, 1], got {cmc}")
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    ax = fig.add_subplot()
    ranks = np.arange(1, len(cmc) + 1)
    ax.plot(ranks, cmc, color=_rgb(CURVE_RGB), linewidth=2)
    shown = [m for m in marks if m <= len(cmc)]
    ax.plot(shown, cmc[np.asarray(shown, dtype=int) - 1], "o", color=_rgb(CURVE_RGB), markersize=5)
    for m in shown:
        ax.annotate(f"R{m} {cmc[m - 1]:.3f}", (m, cmc[m - 1]), textcoords="offset points", xytext=(4, -12),
                    fontsize=8)  # fmt: skip
    ax.set_xlim(0.5, len(cmc) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, color="0.85")
    fig.tight_layout()
    return fig


def cmc_curve_image(
    cmc: Sequence[float] | np.ndarray,
    title: str = "CMC",
    size: tuple[int, int] = (480, 320),
    marks: Sequence[int] = (1, 5, 10, 20),
) -> Image.Image:
    """:func:`cmc_curve_figure` rendered as a ``size`` PIL RGB image (the curve in :data:`CURVE_RGB`)."""
    return figure_image(cmc_curve_figure(cmc, title, size, marks))


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
    keep = ~junk_mask(q_pid, q_camid, gp, gc)  # the one junk rule, shared with evaluate_ranking
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


def _frame_array(frame: torch.Tensor) -> np.ndarray:
    if frame.dtype != torch.uint8 or frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"frames must be uint8 (3, H, W), got {frame.dtype} {tuple(frame.shape)}")
    return frame.permute(1, 2, 0).contiguous().numpy()


def ranked_list_figure(rows: Sequence[RankedRow], tile: tuple[int, int] = (96, 48), border: int = 3) -> Figure:
    """Ranked lists as one matplotlib figure: per row the query frames, a gap, then the ranked gallery tiles, each
    framed (axes spines of ``border`` pixels) :data:`MATCH_RGB` (true match) or :data:`MISMATCH_RGB`.

    ``fig.axes`` holds, row by row, the query tiles then the gallery tiles.

    Args:
        rows: the rows to draw (at least one).
        tile: ``(height, width)`` of each frame tile in pixels.
        border: frame thickness in pixels around gallery tiles.
    Raises:
        ValueError: no rows, a row whose ``is_match`` length differs from its gallery frames, or a frame that is
            not uint8 ``(3, H, W)``.
    """
    if not rows:
        raise ValueError("ranked_list_image: no rows to draw")
    for i, r in enumerate(rows):
        if len(r.is_match) != len(r.gallery_frames):
            raise ValueError(f"row {i}: {len(r.is_match)} match flags for {len(r.gallery_frames)} gallery frames")
    th, tw = tile
    pad, gap, label_h, foot_h = 4 + 2 * border, 16, 16, 14
    n_q = max(len(r.query_frames) for r in rows)
    n_g = max(len(r.gallery_frames) for r in rows)
    width = pad + n_q * (tw + pad) + gap + n_g * (tw + pad)
    row_h = label_h + th + foot_h + pad
    height = row_h * len(rows)
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")

    def axes(x: float, y_top: float):  # pixel position of a tile's top-left corner
        ax = fig.add_axes((x / width, 1 - (y_top + th) / height, tw / width, th / height))
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    for i, r in enumerate(rows):
        y0 = i * row_h
        fig.text(pad / width, 1 - (y0 + 2) / height, r.label, fontsize=8, va="top")
        y = y0 + label_h
        for j, f in enumerate(r.query_frames):
            ax = axes(pad + j * (tw + pad), y)
            ax.imshow(_frame_array(f), aspect="auto", interpolation="bilinear")
            for sp in ax.spines.values():
                sp.set_visible(False)
        x0 = pad + n_q * (tw + pad) + gap
        for j, (f, m) in enumerate(zip(r.gallery_frames, r.is_match)):
            ax = axes(x0 + j * (tw + pad), y)
            ax.imshow(_frame_array(f), aspect="auto", interpolation="bilinear")
            for sp in ax.spines.values():
                sp.set_color(_rgb(MATCH_RGB if m else MISMATCH_RGB))
                sp.set_linewidth(border * 72 / _DPI)
            text = r.gallery_labels[j] if r.gallery_labels else str(j + 1)
            ax.set_xlabel(text, fontsize=7, labelpad=1 + border)
    return fig


def ranked_list_image(rows: Sequence[RankedRow], tile: tuple[int, int] = (96, 48), border: int = 3) -> Image.Image:
    """:func:`ranked_list_figure` rendered as a PIL RGB image (same arguments and errors)."""
    return figure_image(ranked_list_figure(rows, tile, border))


def save_image(img: Image.Image, path: str | Path) -> Path:
    """Write ``img`` as PNG (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
