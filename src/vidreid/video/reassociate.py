"""Association redone on a finished ``track.py`` run: the same tracks and crops, another re-ID checkpoint, gap limit
or appearance fusion — the measurement tool of docs/video.md ("Learning from unlabelled video"), so that models are
compared on identical detections and tracks, and the appearance-fusion distance that the association stage can use.

:func:`fused_distances` is the weighted appearance distance ``(1 - w) d_net + w d_colour`` of the network's and the
colour histogram's cosine distances (:mod:`vidreid.evaluation.baselines`); :func:`reassociate` reads a run folder
(``tracks.csv``, ``tracklets.npz``, ``tracklets/``), embeds each tracklet's crops, applies the rules of
``conf/track.yaml`` ``associate`` (:func:`vidreid.video.associate.association_constraints`, auto threshold) and
scores the re-ID identities with TrackEval against a ground truth when given (labels are read only to score).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidreid.video.associate import agglomerate, association_constraints, auto_threshold, cannot_link, cosine_distances
from vidreid.video.tracklets import build_fragments, camera_folder, frame_files, read_track_table

log = logging.getLogger(__name__)

__all__ = ["RunTracklets", "color_embeddings", "fused_distances", "load_run_tracklets", "reassociate"]


def fused_distances(net_emb: np.ndarray, color_emb: np.ndarray | None = None, color_weight: float = 0.0) -> np.ndarray:
    """``(N, N)`` appearance distances ``(1 - w) * d_net + w * d_colour`` (``w = color_weight``), each a cosine
    distance in ``[0, 2]`` (:func:`vidreid.video.associate.cosine_distances`) of ``net_emb (N, D)`` and
    ``color_emb (N, C)``; ``w = 0`` is the network alone. With L2-normalised rows this equals the cosine distance of
    the concatenation ``[sqrt(1 - w) n, sqrt(w) c]`` (how ``evaluate.py fusion.color_weight`` scores it).

    Raises:
        ValueError: ``w`` outside ``[0, 1]``, ``w > 0`` without ``color_emb``, or row counts that differ.
    """
    if not 0.0 <= color_weight <= 1.0:
        raise ValueError(f"color_weight={color_weight}: expected a weight in [0, 1]")
    d = cosine_distances(net_emb)
    if color_weight == 0.0:
        return d
    if color_emb is None or len(color_emb) != len(net_emb):
        raise ValueError(f"color_weight={color_weight} needs one colour embedding per tracklet "
                         f"({len(net_emb)}), got {None if color_emb is None else len(color_emb)}")  # fmt: skip
    return (1.0 - color_weight) * d + color_weight * cosine_distances(color_emb)


def color_embeddings(folders: list[list[Path]], size: tuple[int, int] = (128, 64)) -> np.ndarray:
    """``(N, C)`` colour-histogram embeddings (:func:`vidreid.evaluation.baselines.color_histogram_embeddings`) of
    tracklets given as lists of crop files."""
    from vidreid.data.tracklet import Tracklet
    from vidreid.evaluation.baselines import color_histogram_embeddings

    return color_histogram_embeddings([Tracklet(tuple(f), 0, 0) for f in folders], size=size).numpy()


@dataclass
class RunTracklets:
    """The kept tracklets of a ``track.py`` run: fragments (with boxes), their crop files, all tracked rows, fps."""

    run: Path
    fragments: list
    crops: list[list[Path]]
    rows: list
    fps: float
    extra: dict = field(default_factory=dict)


def load_run_tracklets(run: str | Path, max_frames: int | None = 32) -> RunTracklets:
    """The tracklets kept by a ``track.py`` run (those in its ``tracklets.npz``), rebuilt from ``tracks.csv``.

    Raises:
        FileNotFoundError: a missing ``tracks.csv`` / ``tracklets.npz`` / crop folder (names the run folder).
    """
    run = Path(run)
    for name in ("tracks.csv", "tracklets.npz"):
        if not (run / name).is_file():
            raise FileNotFoundError(f"track run {run}: missing {name}")
    rows = read_track_table(run / "tracks.csv")
    with np.load(run / "tracklets.npz") as z:
        keep = set(zip(z["camids"].tolist(), z["track_ids"].tolist()))
    frags, _ = build_fragments([r for r in rows if (r.camid, r.track_id) in keep])
    crops = []
    for f in frags:
        folder = run / "tracklets" / "multi_shot" / camera_folder(f.camid) / f"track_{f.track_id:04d}"
        files = frame_files(folder)
        if not files:
            raise FileNotFoundError(f"track run {run}: no crops in {folder}")
        if max_frames and len(files) > max_frames:
            files = [files[i] for i in np.linspace(0, len(files) - 1, max_frames).round().astype(int)]
        crops.append(files)
    import csv

    with (run / "tracks.csv").open() as fh:
        rate = [(int(r["frame"]), float(r["time_s"])) for r in csv.DictReader(fh) if float(r["time_s"]) > 0]
    fps = float(np.median([f / t for f, t in rate])) if rate else 25.0
    return RunTracklets(run, frags, crops, rows, fps)


def reassociate(run: RunTracklets, net_emb: np.ndarray, out: str | Path, gt: str | Path | None = None, *,
                color_emb: np.ndarray | None = None, color_weight: float = 0.0, max_gap_s: float | None = None,
                quantile: float = 0.05, fallback: float = 0.3, motion: bool = True, max_speed: float = 2.0,
                margin: float = 1.0, linkage: str = "average",
                frame_size: tuple[int, int] | None = None,
                persons: list[list[int]] | None = None) -> dict:  # fmt: skip
    """Associate ``run``'s tracklets from ``net_emb (N, D)`` (one row per ``run.fragments``) with the rules of
    ``conf/track.yaml`` ``associate``, write ``out/mot_raw.txt`` and ``out/mot_reid.txt`` and, with ``gt``, score
    both with TrackEval. The defaults are ``associate``'s except two that a run folder cannot supply by itself: the
    colour weight (pass ``color_emb`` and ``color_weight=0.3`` for the default) and the hidden-in-place rule (pass
    the video's ``frame_size`` = ``(width, height)`` px to apply it, radius 1 body height, border 0.5 box widths).
    ``persons``: ground-truth id groups of one person each (``conf/score`` ``persons``): also score against the
    person-level ground truth (``scores_persons``).

    Returns:
        ``{identities, tracklets, threshold, cannot_link_pairs, scores: {raw: {...}, reid: {...}}}`` and, with
        ``persons``, ``scores_persons`` alike.
    """
    from vidreid.video.mot import score_mot, write_mot

    frags = run.fragments
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cams, starts, ends = [f.camid for f in frags], [f.start for f in frags], [f.end for f in frags]
    dist = fused_distances(net_emb, color_emb, color_weight)
    forbid = cannot_link(cams, starts, ends)
    thr, n_neg = auto_threshold(dist, forbid, quantile, min_pairs=1)
    thr = fallback if thr is None else thr
    rules = association_constraints(cams, starts, ends, np.array([f.boxes[0] for f in frags]),
                                    np.array([f.boxes[-1] for f in frags]), run.fps, motion=motion,
                                    max_speed=max_speed, margin=margin, max_gap_s=max_gap_s,
                                    frame_sizes=None if frame_size is None else [frame_size] * len(frags))  # fmt: skip
    labels = agglomerate(dist, thr, rules, linkage)
    ident = {(f.camid, f.track_id): int(lab) for f, lab in zip(frags, labels)}
    kept = []
    for r in run.rows:
        if (r.camid, r.track_id) in ident:
            r.identity = ident[(r.camid, r.track_id)]
            kept.append(r)
    mot = {"raw": write_mot(out / "mot_raw.txt", kept, ids="track"),
           "reid": write_mot(out / "mot_reid.txt", kept, ids="identity")}  # fmt: skip
    res = dict(identities=int(labels.max()) + 1, tracklets=len(frags), threshold=float(thr), cannot_link_pairs=n_neg)
    if gt is not None:
        res["scores"] = score_mot(gt, mot)
        if persons:
            res["scores_persons"] = score_mot(gt, mot, persons=persons)
    return res
