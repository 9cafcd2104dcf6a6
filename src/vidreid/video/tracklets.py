"""Tracklet stage: the track table (one row per tracked box), tracker tracks cut into tracklets (one raw track
of one camera = one tracklet), and their crops written in the PRID-2011 ``multi_shot`` folder layout that the
suite's loaders read (docs/methods.md §0.1; :mod:`vidreid.data.datasets.prid2011`)::

    <out>/tracklets/multi_shot/cam_a/track_0007/000123.jpg     camera 0, tracker id 7, video frame 123
    <out>/identities/multi_shot/cam_a/person_0002/000123.jpg   the same crop under its re-ID identity

Each folder is one tracklet (frames in temporal order by name), readable by :func:`vidreid.embed`, and the
identity folders, with ``identities/splits.json`` when two cameras are given, by the PRID-2011 parser
(``dataset=prid2011 dataset.root=<out>/identities dataset.split_file=splits.json``).
"""

from __future__ import annotations

import csv
import math
import shutil
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["CropWriter", "ForegroundMeter", "Fragment", "StaticRule", "TrackRow", "build_fragments", "camera_folder",
           "read_track_table", "static_evidence", "write_track_table"]  # fmt: skip

TRACK_COLUMNS = ("camid", "frame", "time_s", "track_id", "identity", "x1", "y1", "x2", "y2", "score", "interpolated")
# columns a track table must have (``interpolated`` came later: tables without it read as all detected)
REQUIRED_COLUMNS = TRACK_COLUMNS[:-1]


def camera_folder(camid: int) -> str:
    """PRID-style camera folder name: 0 -> ``cam_a``, 1 -> ``cam_b``, ... (``cam_26`` from 26 on)."""
    if camid < 0:
        raise ValueError(f"camera id must be >= 0, got {camid}")
    return f"cam_{string.ascii_lowercase[camid]}" if camid < 26 else f"cam_{camid}"


@dataclass
class TrackRow:
    """One tracked box: camera, 0-based video frame, tracker id (per camera), box ``x1, y1, x2, y2`` in pixels,
    detection score, and the identity assigned by re-ID association (-1 = none: the track was dropped).

    ``interpolated``: the box was filled in by offline refinement (:mod:`vidreid.video.refine`) in a frame where
    the tracker had no detection; such boxes go to ``tracks.csv``, the MOT files and the scores, but no crop is
    cut from them (crops come from real detections only). ``foreground``: fraction of the box's pixels that the
    background model (:class:`ForegroundMeter`) marked as foreground in this frame (NaN: not measured)."""

    camid: int
    frame: int
    track_id: int
    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    identity: int = -1
    interpolated: bool = False
    foreground: float = math.nan


@dataclass
class Fragment:
    """One tracklet: the boxes of tracker id ``track_id`` in camera ``camid`` (frames ascending).

    ``frames (n,)`` int, ``boxes (n, 4)`` float xyxy, ``folder``: where its crops are, ``identity``: assigned by
    :mod:`vidreid.video.associate` (-1 before).
    """

    camid: int
    track_id: int
    frames: np.ndarray
    boxes: np.ndarray
    folder: Path | None = None
    identity: int = -1
    meta: dict = field(default_factory=dict)

    @property
    def start(self) -> int:
        return int(self.frames[0])

    @property
    def end(self) -> int:
        return int(self.frames[-1])

    def __len__(self) -> int:
        return len(self.frames)

    def displacement(self) -> float:
        """Largest distance (px) of a box's bottom-centre (the feet) from the first one's: ~0 for a static
        false positive (a parked van, a pole), large for a walking person."""
        feet = np.stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2, self.boxes[:, 3]], axis=1)
        return float(np.linalg.norm(feet - feet[0], axis=1).max())

    def overlaps(self, other: Fragment) -> bool:
        """Same camera and intersecting ``[start, end]`` frame intervals: two people seen at the same time."""
        return self.camid == other.camid and self.start <= other.end and other.start <= self.end


class ForegroundMeter:
    """A static camera's background model: OpenCV's MOG2 (Gaussian-mixture background subtraction, Zivkovic,
    ICPR 2004; ``cv2.createBackgroundSubtractorMOG2``) updated with every processed frame, and the fraction of
    foreground pixels inside given boxes — evidence that something in a box moves at the pixel level (a person
    shifting weight, gesturing, talking) even when the box itself stays put; a parked van stays background.

    Args:
        learning_rate: MOG2's fixed update rate per frame (``1 / learning_rate`` frames of memory: 200 by
            default, 20 s at 10 frames/s). Fixed because MOG2's automatic rate, ``1 / min(frames seen, history)``,
            learns everything in the first frames — a waiting person's repeated small movements included.
        var_threshold: squared Mahalanobis distance a pixel must exceed to be foreground (MOG2's
            ``varThreshold``). scale: the frame is resized by this factor before modelling (speed; boxes are
            scaled alike). Shadows count as foreground (``detectShadows`` off: a person's shadow moves with them).
    Raises:
        ValueError: ``scale`` or ``learning_rate`` not in ``(0, 1]``.
    """

    def __init__(self, learning_rate: float = 0.005, var_threshold: float = 16.0, scale: float = 0.5):
        import cv2

        if not 0 < scale <= 1 or not 0 < learning_rate <= 1:
            raise ValueError(f"foreground meter: expected 0 < scale <= 1 and 0 < learning_rate <= 1, got "
                             f"scale={scale}, learning_rate={learning_rate}")  # fmt: skip
        self.scale, self.learning_rate = float(scale), float(learning_rate)
        self.model = cv2.createBackgroundSubtractorMOG2(history=max(1, round(1 / learning_rate)),
                                                        varThreshold=float(var_threshold), detectShadows=False)  # fmt: skip
        self._first = True

    def __call__(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Update the model with ``frame`` (BGR ``(H, W, 3)``; the first frame initialises it) and return, for
        ``boxes (N, 4)`` xyxy px of this frame, the ``(N,)`` float fraction of foreground pixels inside each (0 for
        a box outside the frame)."""
        import cv2

        small = frame if self.scale == 1 else cv2.resize(frame, None, fx=self.scale, fy=self.scale,
                                                         interpolation=cv2.INTER_AREA)  # fmt: skip
        mask = self.model.apply(small, learningRate=1.0 if self._first else self.learning_rate) > 0
        self._first = False
        h, w = mask.shape
        out = np.zeros(len(boxes), np.float64)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4) * self.scale):
            a, b = int(max(0, np.floor(x1))), int(max(0, np.floor(y1)))
            c, d = int(min(w, np.ceil(x2))), int(min(h, np.ceil(y2)))
            if c > a and d > b:
                out[i] = float(mask[b:d, a:c].mean())
        return out


@dataclass
class StaticRule:
    """When a static track (feet moving less than ``min_displacement`` px) is still a person (``tracklets.static``).

    Motion alone cannot tell a parked van the detector fires on from a person who waits or talks in place, so
    a static track is kept on evidence that it is a person; a moving track is never judged by this rule:

    - **detector persistence** ``>= min_persistence``: the sum of its detection scores over the number of
      processed frames its life spans (= mean score x fraction of frames detected). A person standing in view is
      found in nearly every frame at the detector's usual score; a detector's false positive on a static
      structure flickers (HOG on a van, fused with a second detector that does not agree, scores half and comes
      and goes). Ground-truth boxes used as detections score 1 in every frame: always kept.
    - **or foreground** ``>= min_foreground`` (when measured, :class:`ForegroundMeter`): the median over its
      detected boxes of the fraction of pixels the background model marks as foreground — a still person moves
      at the pixel level, a parked vehicle does not; the median, so that a passer-by crossing in front of the
      van for a few frames does not count. (A person present from the first frame who never stirs is background to MOG2,
      hence the detector cue above.)
    - and its median box aspect ``height / width >= min_aspect`` (a box wider than tall is not a standing or
      sitting person).

    ``min_persistence`` / ``min_foreground`` ``None`` switch a cue off; with both off every static track is
    dropped (the motion-only rule).
    """

    min_persistence: float | None = 0.5
    min_foreground: float | None = 0.01
    min_aspect: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_persistence", "min_foreground"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 1:
                raise ValueError(f"tracklets.static.{name}={v}: expected a fraction in [0, 1] or null")
        if self.min_aspect < 0:
            raise ValueError(f"tracklets.static.min_aspect={self.min_aspect}: expected >= 0")

    def is_person(self, evidence: dict) -> bool:
        """Whether :func:`static_evidence` ``evidence`` shows a person (see the class docstring)."""
        if evidence["aspect"] < self.min_aspect:
            return False
        if self.min_persistence is not None and evidence["persistence"] >= self.min_persistence:
            return True
        fg = evidence["foreground"]
        return self.min_foreground is not None and not math.isnan(fg) and fg >= self.min_foreground


def static_evidence(rows: Sequence[TrackRow], stride: int = 1) -> dict:
    """The evidence :class:`StaticRule` weighs for one track's ``rows`` (frames ascending; interpolated boxes
    count as missed): ``persistence`` (sum of detected scores / processed frames spanned, with frame ``stride``),
    ``detected_fraction``, ``mean_score`` (detected boxes), ``foreground`` (median over the measured detected
    boxes; NaN if none) and ``aspect`` (median box height / width).

    Raises:
        ValueError: no rows, or ``stride < 1``.
    """
    if not rows or stride < 1:
        raise ValueError(f"static_evidence: expected rows and stride >= 1, got {len(rows)} rows, stride={stride}")
    real = [r for r in rows if not r.interpolated]
    span = (rows[-1].frame - rows[0].frame) // stride + 1
    scores = np.array([r.score for r in real], np.float64)
    fg = np.array([r.foreground for r in real], np.float64)
    fg = fg[~np.isnan(fg)]
    hw = np.array([(r.y2 - r.y1) / max(r.x2 - r.x1, 1e-6) for r in rows])
    return dict(persistence=float(scores.sum() / span), detected_fraction=len(real) / span,
                mean_score=float(scores.mean()) if len(real) else 0.0,
                foreground=float(np.median(fg)) if len(fg) else math.nan, aspect=float(np.median(hw)))  # fmt: skip


def build_fragments(rows: Iterable[TrackRow], min_length: int = 1, min_displacement: float = 0.0,
                    static: StaticRule | None = None, stride: int = 1) -> tuple[list[Fragment], list[Fragment]]:  # fmt: skip
    """Group ``rows`` by ``(camid, track_id)`` into :class:`Fragment` s, sorted by ``(camid, start, track_id)``.

    Returns ``(kept, dropped)``: dropped are tracklets with fewer than ``min_length`` detected (not interpolated)
    boxes, and static ones, whose feet move less than ``min_displacement`` px over their life — all of them
    without a ``static`` rule, else those the rule does not show to be a person (:class:`StaticRule`;
    ``stride``: the frame stride of the rows). A static track's evidence is in ``fragment.meta["static"]``.
    """
    groups: dict[tuple[int, int], list[TrackRow]] = {}
    for r in rows:
        groups.setdefault((r.camid, r.track_id), []).append(r)
    kept, dropped = [], []
    for (cam, tid), rs in groups.items():
        rs.sort(key=lambda r: r.frame)
        frag = Fragment(cam, tid, np.array([r.frame for r in rs], np.int64),
                        np.array([[r.x1, r.y1, r.x2, r.y2] for r in rs], np.float32))  # fmt: skip
        ok = sum(not r.interpolated for r in rs) >= min_length
        if ok and frag.displacement() < min_displacement:
            if static is None:
                ok = False
            else:
                frag.meta["static"] = static_evidence(rs, stride)
                ok = static.is_person(frag.meta["static"])
        (kept if ok else dropped).append(frag)
    key = lambda f: (f.camid, f.start, f.track_id)  # noqa: E731
    return sorted(kept, key=key), sorted(dropped, key=key)


class CropWriter:
    """Writes each tracked box's crop, resized to the re-ID model's input ``size = (H, W)``, to
    ``<root>/multi_shot/<cam>/track_<id>/<frame>.jpg`` while the video is processed (one pass).

    Args:
        root: the tracklet root (``<run>/tracklets``). size: ``(H, W)`` of the crops. quality: JPEG quality.
        margin: fraction of the box height added above/below and of its width left/right before cropping.
        background: the camera's static background image, ``(H, W, 3)`` uint8 BGR of the frame's size
            (:func:`vidreid.video.background.median_background`), or ``None`` (the crops as cut). When given, the
            same region of it is cut with each box (margin included, clipped to the frame) and the crop's pixels
            within ``background_threshold`` of it (8-bit colour distance) are set to
            :data:`~vidreid.video.background.FILL_BGR` (:func:`~vidreid.video.background.suppress_background`)
            before the resize.
    Raises:
        ValueError: ``size`` below 8x8; ``background`` not ``(H, W, 3)``; ``background_threshold < 0``.
    """

    def __init__(self, root: str | Path, size: Sequence[int], quality: int = 95, margin: float = 0.0,
                 background: np.ndarray | None = None, background_threshold: float = 45.0):  # fmt: skip
        self.root, self.size, self.quality, self.margin = Path(root), (int(size[0]), int(size[1])), int(quality), margin
        if min(self.size) < 8:
            raise ValueError(f"crop size must be at least 8x8 pixels, got {self.size}")
        if background is not None and (background.ndim != 3 or background.shape[2] != 3):
            raise ValueError(f"crop writer: background of shape {background.shape}, expected an (H, W, 3) BGR image")
        if background_threshold < 0:
            raise ValueError(f"crop writer: background_threshold={background_threshold}, expected a colour "
                             "distance >= 0")  # fmt: skip
        self.background = None if background is None else np.asarray(background, np.uint8)
        self.background_threshold = float(background_threshold)

    def folder(self, camid: int, track_id: int) -> Path:
        return self.root / "multi_shot" / camera_folder(camid) / f"track_{track_id:04d}"

    def write(self, frame: np.ndarray, camid: int, frame_index: int, boxes: np.ndarray, track_ids: np.ndarray) -> None:
        """Crop ``boxes (N, 4)`` from ``frame`` (BGR) and write them under their track folders (background pixels
        greyed out when the writer holds a background image).

        Raises:
            ValueError: the writer's background image is not of ``frame``'s size (names both).
        """
        import cv2

        from vidreid.video.background import suppress_background  # imports the detectors (torch): only when used

        h, w = frame.shape[:2]
        bg = self.background
        if bg is not None and bg.shape != frame.shape:
            raise ValueError(f"crop writer: background image {bg.shape} and frame {frame.shape} differ in size; "
                             "expected the background of this camera's video")  # fmt: skip
        for (x1, y1, x2, y2), tid in zip(boxes, track_ids):
            mx, my = self.margin * (x2 - x1), self.margin * (y2 - y1)
            a, b = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
            c, d = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
            if c - a < 2 or d - b < 2:
                continue
            crop = frame[b:d, a:c]
            if bg is not None:
                crop = suppress_background(crop, bg[b:d, a:c], self.background_threshold)[0]
            crop = cv2.resize(crop, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
            out = self.folder(camid, int(tid))
            out.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / f"{frame_index:06d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, self.quality])

    def relabel(self, links: dict[tuple[int, int], int]) -> None:
        """Move the crops of relabelled tracks (``{(camid, old_id): new_id}``, :func:`vidreid.video.refine.link_tracks`)
        into their new track's folder (linked tracks never share a frame, so no crop is overwritten)."""
        for (cam, old), new in links.items():
            src, dst = self.folder(cam, old), self.folder(cam, new)
            if not src.is_dir() or src == dst:
                continue
            dst.mkdir(parents=True, exist_ok=True)
            for p in src.glob("*.jpg"):
                p.replace(dst / p.name)
            shutil.rmtree(src, ignore_errors=True)

    def remove(self, fragments: Iterable[Fragment]) -> None:
        """Delete the crop folders of dropped tracklets."""
        for f in fragments:
            shutil.rmtree(self.folder(f.camid, f.track_id), ignore_errors=True)

    def attach(self, fragments: Iterable[Fragment]) -> None:
        """Set each fragment's ``folder`` (and keep only frames whose crop exists)."""
        for f in fragments:
            f.folder = self.folder(f.camid, f.track_id)


def frame_files(folder: Path) -> list[Path]:
    """The crops of one tracklet folder in temporal order."""
    return sorted(folder.glob("*.jpg"))


def write_identity_folders(fragments: Sequence[Fragment], root: str | Path, num_cameras: int) -> Path:
    """Copy (hard-link when possible) each fragment's crops to ``<root>/multi_shot/<cam>/person_<identity>/``;
    with two or more cameras also write ``<root>/splits.json`` (one split: no train ids, test = the identities
    seen in both ``cam_a`` and ``cam_b``) so the PRID-2011 parser reads them as query (cam_a) / gallery (cam_b)."""
    import json
    import os

    root = Path(root)
    if root.exists():
        shutil.rmtree(root)
    seen: dict[int, set[int]] = {}
    for f in fragments:
        if f.identity < 0 or f.folder is None:
            continue
        dst = root / "multi_shot" / camera_folder(f.camid) / f"person_{f.identity:04d}"
        dst.mkdir(parents=True, exist_ok=True)
        for src in frame_files(f.folder):
            try:
                os.link(src, dst / src.name)
            except OSError:
                shutil.copy2(src, dst / src.name)
        seen.setdefault(f.identity, set()).add(f.camid)
    if num_cameras >= 2:
        both = sorted(f"person_{i:04d}" for i, cams in seen.items() if {0, 1} <= cams)
        (root / "splits.json").write_text(json.dumps([{"train": [], "test": both}], indent=1))
    return root


def write_track_table(path: str | Path, rows: Sequence[TrackRow], fps: Sequence[float] | dict[int, float]) -> Path:
    """Write ``tracks.csv``: :data:`TRACK_COLUMNS`, one line per tracked box (``time_s = frame / fps``;
    ``interpolated`` 1 for a box filled in by refinement, 0 for a detection)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(TRACK_COLUMNS)
        for r in sorted(rows, key=lambda r: (r.camid, r.frame, r.track_id)):
            w.writerow([r.camid, r.frame, f"{r.frame / fps[r.camid]:.3f}", r.track_id, r.identity,
                        f"{r.x1:.1f}", f"{r.y1:.1f}", f"{r.x2:.1f}", f"{r.y2:.1f}", f"{r.score:.3f}",
                        int(r.interpolated)])  # fmt: skip
    return path


def read_track_table(path: str | Path) -> list[TrackRow]:
    """Read a ``tracks.csv`` written by :func:`write_track_table`.

    Raises:
        FileNotFoundError: missing file. ValueError: a header without the :data:`TRACK_COLUMNS` (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"track table not found: {path}")
    with path.open() as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing} (expected {','.join(TRACK_COLUMNS)})")
        return [TrackRow(int(r["camid"]), int(r["frame"]), int(r["track_id"]), float(r["x1"]), float(r["y1"]),
                         float(r["x2"]), float(r["y2"]), float(r["score"]), int(r["identity"]),
                         interpolated=r.get("interpolated", "0") == "1") for r in reader]  # fmt: skip
