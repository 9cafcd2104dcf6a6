"""The stages of ``track.py``, each a small object built from its own config group by ``_target_``, and the typed
artifacts passed between them.

==============  ============================  ===================================================================
stage           config group (``_target_``)   artifact in -> artifact out
==============  ============================  ===================================================================
read            ``reader``: :class:`VideoReader`     video path -> :class:`Camera`; frames ``(index, (H, W, 3) BGR)``
detect          ``detector`` (``video.detect``)     frame -> :class:`~vidreid.video.detect.Detections`
track           ``tracker``: ``ByteTracker``        ``Detections`` -> :class:`~vidreid.video.track.TrackedBoxes`
refine          ``refine``: ``Refiner``             one video's rows -> rows (motion links, filled gaps; ``video.refine``)
tracklets       ``tracklets``: :class:`TrackletBuilder`  boxes -> crops on disk; rows -> :class:`Tracklets`
embed           ``embed``: :class:`Embedder`           :class:`Tracklets` -> ``(N, D)`` float32 embeddings
associate       ``associate``: :class:`Associator`     tracklets + embeddings -> :class:`Identities`
count           ``count``: :class:`Counter`            one camera's identity rows -> counts per window, line crossings
score           ``score``: :class:`Scorer`             MOT files + ground truth -> TrackEval metrics, count error
render          ``render``: :class:`Renderer`          video + identity rows -> annotated mp4 / GIF / stills
==============  ============================  ===================================================================

A stage swaps by config, e.g. ``python track.py tracker._target_=my.module.MyTracker`` (any class with the same
call signature). The per-video stages (read -> embed) produce a :class:`CameraRun`, which
:func:`save_camera_run` / :func:`load_camera_run` write and read (``track.py step=tracklets``, one folder per
video, then ``step=associate runs=[...]`` joins them; :mod:`vidreid.runs.track`). Wall time per stage is measured
by :class:`StageClock` around the stage calls, not inside the stages.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidreid.video.associate import (
    agglomerate,
    association_constraints,
    auto_threshold,
    cannot_link,
    cosine_distances,
)
from vidreid.video.count import count_error, line_crossings, window_counts
from vidreid.video.mot import MOTSequence, gt_rows, merge_gt_persons, persons_of, read_mot, resolve_gt, score_mot
from vidreid.video.reader import ReadReport, VideoInfo, iter_frames, probe_video, read_span
from vidreid.video.render import render_video, resolve_times
from vidreid.video.tracklets import (
    CropWriter,
    ForegroundMeter,
    Fragment,
    StaticRule,
    TrackRow,
    build_fragments,
    camera_folder,
    frame_files,
)

log = logging.getLogger(__name__)

__all__ = ["Associator", "Camera", "CameraRun", "Counter", "Embedder", "Identities", "Renderer", "Scorer",
           "StageClock", "TrackletBuilder", "Tracklets", "VideoReader", "load_camera_run", "save_camera_run",
           "track_camera"]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ artifacts
@dataclass(frozen=True)
class Camera:
    """One input video: camera id, file and what it holds (:class:`~vidreid.video.reader.VideoInfo`)."""

    camid: int
    video: Path
    info: VideoInfo


@dataclass
class Tracklets:
    """Tracker tracks grouped into :class:`~vidreid.video.tracklets.Fragment` s (crops attached): ``kept`` go on
    to re-ID, ``dropped`` are too short or static (``tracklets.min_length`` / ``min_displacement`` /
    ``static``)."""

    kept: list[Fragment]
    dropped: list[Fragment]


@dataclass
class CameraRun:
    """Everything the per-video stages produce for one camera.

    Attributes:
        camera: the video. rows: every tracked box (``identity`` -1 until association). frames: the frame indexes
            read and processed. times_s / tracked: per processed frame, its time (s) and number of tracked boxes.
        thumbnails: ``(time_s, (h, w, 3) RGB)`` film-strip frames for the count plot. detections: boxes detected.
        tracklets: its :class:`Tracklets`. embeddings: ``(len(tracklets.kept), D)`` float32 torch tensor.
        line: the identities' line crossings (:meth:`Counter.crossings`), once counted.
        read: what the pass over the video read (:class:`~vidreid.video.reader.ReadReport`: last frame decoded,
            declared frames not read, skipped ranges).
        backfilled: boxes the tracker held back until their track was confirmed, restored
            (:meth:`~vidreid.video.track.ByteTracker.pop_backfill`); flagged like interpolated boxes (scored, in
            ``tracks.csv``, never cropped).
    """

    camera: Camera
    rows: list[TrackRow] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    tracked: list[int] = field(default_factory=list)
    thumbnails: list[tuple[float, np.ndarray]] = field(default_factory=list)
    detections: int = 0
    tracklets: Tracklets | None = None
    embeddings: Any = None
    line: dict | None = None
    read: ReadReport | None = None
    backfilled: int = 0

    @property
    def span(self) -> int:
        """Frames ``[0, span)`` the read covered: the declared count, or up to the last frame decoded when
        decoding stopped early (:func:`~vidreid.video.reader.read_span`). Counts and render times use it."""
        return read_span(self.read, self.camera.info.num_frames)


@dataclass
class Identities:
    """The association's result: ``labels (N,)`` identity per kept tracklet (0..K-1), the ``(N, N)`` cosine
    ``distances``, the merge ``threshold`` used and the number of known-different (co-occurring) pairs."""

    labels: np.ndarray
    distances: np.ndarray
    threshold: float
    cannot_link_pairs: int

    @property
    def count(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


# ---------------------------------------------------------------------------------------------------- the clock
class StageClock:
    """Wall seconds per stage name, summed over calls: ``with clock("embed"): ...``, ``clock.wrap("detect", f)``
    (a callable that times each call) and ``clock.iterate("read", it)`` (times each ``next``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def wrap(self, name: str, fn: Callable) -> Callable:
        self.seconds.setdefault(name, 0.0)

        def timed(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)

        return timed

    def iterate(self, name: str, it: Iterator) -> Iterator:
        self.seconds.setdefault(name, 0.0)
        while True:
            t = time.perf_counter()
            item = next(it, None)
            self.add(name, time.perf_counter() - t)
            if item is None:
                return
            yield item

    def as_dict(self) -> dict[str, float]:
        """``{"<stage>_s": seconds}``."""
        return {f"{k}_s": v for k, v in self.seconds.items()}


# ------------------------------------------------------------------------------------------------------- stages
class VideoReader:
    """Read stage (``conf/reader``): probes a video and yields every ``stride``-th frame from ``start``.

    Args:
        stride: process every ``stride``-th frame (the render still shows all). start: first frame index.
        max_frames: cap on processed frames (``None``: all). default_fps: when the container reports none.
    """

    def __init__(self, stride: int = 2, start: int = 0, max_frames: int | None = None, default_fps: float = 25.0):
        self.stride, self.start, self.max_frames, self.default_fps = int(stride), int(start), max_frames, default_fps

    def probe(self, camid: int, video: Path) -> Camera:
        """Raises FileNotFoundError / ValueError naming the file (:func:`~vidreid.video.reader.probe_video`)."""
        return Camera(camid, Path(video), probe_video(video, default_fps=self.default_fps))

    def __call__(self, camera: Camera) -> Iterator[tuple[int, np.ndarray]]:
        return iter_frames(camera.video, stride=self.stride, start=self.start, max_frames=self.max_frames)


class TrackletBuilder:
    """Tracklets stage (``conf/tracklets``): writes each tracked box's crop while frames stream
    (:class:`~vidreid.video.tracklets.CropWriter`; real detections only), then groups the rows into tracklets and
    drops the short and the static ones (:func:`~vidreid.video.tracklets.build_fragments`).

    Args:
        size: crop ``[H, W]``; ``None`` = the checkpoint's input size (checked by ``track.check_checkpoint_size``).
        min_length: detected boxes a tracklet needs. min_displacement: px its feet must move to be moving.
        margin: box margin fraction. jpeg_quality: of the crops.
        background: ``auto`` (the default): ``suppress`` when the camera's source is a video file, ``keep`` for an
            image folder or a stream (logged) | ``keep`` (the crops as cut) | ``suppress``: each crop's pixels within ``background_threshold``
            (8-bit colour distance) of the camera's static background are set to the ImageNet-mean grey before the
            re-ID embedding and the colour term read them (:class:`~vidreid.video.tracklets.CropWriter`). The
            background is the per-pixel median of every ``background_step``-th frame of the whole video
            (:func:`~vidreid.video.background.median_background`), computed once per camera before tracking
            (PETS09-S2L1: 4.7 s); it needs a video file that can be read twice (``suppress`` on a camera stream
            raises). It assumes a static camera, as the default detector's foreground gate does; on a moving one the
            median is a smear that few crop pixels are close to, so little is suppressed. Measured in docs/video.md
            ("Background suppression of the crops").
        static: when a static track is still a person (:class:`~vidreid.video.tracklets.StaticRule` keys
            ``min_persistence``, ``min_foreground``, ``min_aspect``, and ``background``: the
            :class:`~vidreid.video.tracklets.ForegroundMeter` keys, run on every frame only when ``min_foreground``
            is set); ``None``: every static track is dropped (motion alone).

    Raises:
        ValueError: ``background`` not ``auto``, ``keep`` or ``suppress``; ``background_step < 1`` or
            ``background_threshold < 0``.
    """

    BACKGROUNDS = ("auto", "keep", "suppress")

    def __init__(self, size: Sequence[int] | None = None, min_length: int = 4, min_displacement: float = 20.0,
                 margin: float = 0.0, jpeg_quality: int = 95, static: dict | None = None, background: str = "auto",
                 background_threshold: float = 45.0, background_step: int = 4):  # fmt: skip
        self.size, self.min_length, self.min_displacement = size, int(min_length), float(min_displacement)
        self.margin, self.jpeg_quality = margin, jpeg_quality
        if background not in self.BACKGROUNDS:
            raise ValueError(f"tracklets.background={background!r}: expected one of {list(self.BACKGROUNDS)}")
        if int(background_step) < 1 or float(background_threshold) < 0:
            raise ValueError(f"tracklets.background_step={background_step} / background_threshold="
                             f"{background_threshold}: expected a frame step >= 1 and a colour distance >= 0")  # fmt: skip
        self.crop_background, self.background_threshold = str(background), float(background_threshold)
        self.background_step = int(background_step)
        static = dict(static) if static is not None else None
        self.background = dict(static.pop("background", None) or {}) if static is not None else {}
        self.static = StaticRule(**static) if static is not None else None

    def writer(self, root: Path, size: Sequence[int], camera: Camera | None = None) -> CropWriter:
        """The crop writer of one camera; with ``background=suppress`` (or ``auto`` and a video file) it holds
        ``camera``'s background image (:meth:`background_image`)."""
        mode = self.crop_background
        if mode == "auto":
            mode = "suppress" if camera is not None and Path(camera.video).is_file() else "keep"
            if mode == "keep":
                log.info("tracklets.background=auto: %s is not a video file; its crops keep their background",
                         None if camera is None else camera.video)  # fmt: skip
        bg = self.background_image(camera) if mode == "suppress" else None
        return CropWriter(root, size, quality=self.jpeg_quality, margin=self.margin, background=bg,
                          background_threshold=self.background_threshold)  # fmt: skip

    def background_image(self, camera: Camera | None) -> np.ndarray:
        """``camera``'s static background, ``(H, W, 3)`` uint8 BGR: the per-pixel median of every
        ``background_step``-th frame of its video (:func:`~vidreid.video.background.median_background`).

        Raises:
            ValueError: no camera, or its source is not a video file that can be read again (a folder, a stream;
                names it), or no frame decodes; the background's size differs from the video's.
        """
        from vidreid.video.background import median_background

        if camera is None or not Path(camera.video).is_file():
            src = None if camera is None else camera.video
            raise ValueError(f"tracklets.background=suppress needs a video file to build the background from, got "
                             f"{src!r}; expected a file OpenCV decodes (not an image folder or a live stream), or "
                             f"tracklets.background=keep")  # fmt: skip
        t = time.perf_counter()
        bg = median_background(camera.video, step=self.background_step)
        info = camera.info
        if bg.shape[:2] != (info.height, info.width):
            raise ValueError(f"background of {camera.video} is {bg.shape[1]}x{bg.shape[0]}, the video is "
                             f"{info.width}x{info.height}; expected one frame size")  # fmt: skip
        log.info("camera %d: background for crop suppression = median of every %d-th frame of %s (%.1f s)",
                 camera.camid, self.background_step, camera.video, time.perf_counter() - t)  # fmt: skip
        return bg

    def foreground_meter(self) -> ForegroundMeter | None:
        """A fresh background model for one video when the static rule weighs foreground, else ``None``."""
        if self.static is None or self.static.min_foreground is None:
            return None
        return ForegroundMeter(**self.background)

    def __call__(self, rows: Sequence[TrackRow], writer: CropWriter, stride: int = 1) -> Tracklets:
        kept, dropped = build_fragments(rows, self.min_length, self.min_displacement, static=self.static,
                                        stride=stride)  # fmt: skip
        writer.remove(dropped)
        writer.attach(kept)
        return Tracklets(kept, dropped)


def _subsample(paths: list[Path], max_frames: int | None) -> list[Path]:
    if not max_frames or len(paths) <= max_frames:
        return paths
    idx = np.linspace(0, len(paths) - 1, max_frames).round().astype(int)
    return [paths[i] for i in idx]


class Embedder:
    """Embed stage (``conf/embed``): each tracklet's crops (at most ``max_frames``, evenly spaced) through the
    checkpoint with :func:`vidreid.deploy.inference.embed` -> ``(N, D)`` float32 tensor.

    Args: as :func:`vidreid.deploy.inference.embed` (``backend`` pytorch | onnxruntime, ``precision`` fp32 | int8),
        plus ``backend="auto"`` (the default): onnxruntime when it is installed (the export extra, part of
        ``make install``), else PyTorch, with a log line saying why. The exported graph gives the same embeddings
        (cosine 1.000000 on PETS09-S2L1's 30 tracklets) ~6x faster on a 2-core CPU (docs/results.md); it is
        exported once per checkpoint and cached by the checkpoint's hash.
    """

    def __init__(self, max_frames: int | None = 32, batch_size: int = 8, device: str = "cpu", progress: bool = False,
                 backend: str = "auto", precision: str = "fp32", calibration_clips: int = 64,
                 cache_dir: str | None = None):  # fmt: skip
        self.max_frames, self.batch_size, self.device, self.progress = max_frames, batch_size, device, progress
        self.backend, self.precision, self.calibration_clips, self.cache_dir = (backend, precision,
                                                                                calibration_clips, cache_dir)

    def resolved_backend(self) -> str:
        """``backend``, with ``auto`` resolved: ``onnxruntime`` on a CPU device when onnxruntime and the ONNX
        exporter import, else ``pytorch``."""
        if self.backend != "auto":
            return self.backend
        if str(self.device) != "cpu":
            return "pytorch"
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            log.info("embed.backend=auto: PyTorch (%s; pip install -e '.[export]' for the ~6x faster onnxruntime)", e)
            return "pytorch"
        return "onnxruntime"

    def __call__(self, checkpoint: str | Path, fragments: Sequence[Fragment]):
        from vidreid.deploy.inference import embed

        items = [_subsample(frame_files(f.folder), self.max_frames) for f in fragments]
        return embed(checkpoint, items, batch_size=self.batch_size, device=self.device, progress=self.progress,
                     backend=self.resolved_backend(), precision=self.precision,
                     calibration_clips=self.calibration_clips, cache_dir=self.cache_dir)  # fmt: skip


class Associator:
    """Associate stage (``conf/associate``): tracklets -> identities by constrained agglomerative clustering of
    cosine distances (:mod:`vidreid.video.associate`; the keys are documented in ``conf/associate/default.yaml``).
    With ``color_weight > 0`` the distance is ``(1 - w) d_net + w d_colour``
    (:func:`vidreid.video.reassociate.fused_distances`; colour histograms of each tracklet's crops).

    Raises:
        ValueError: ``threshold`` neither a number nor ``auto``; ``color_weight`` outside ``[0, 1]``.
    """

    def __init__(self, threshold: float | str = "auto", auto_quantile: float = 0.05, auto_min_pairs: int = 1,
                 auto_fallback: float = 0.3, linkage: str = "average", time_constraint: bool = True,
                 motion_gate: bool = True, max_speed: float = 2.0, motion_margin: float = 1.0,
                 max_gap_s: float | None = None, hidden: bool = True, hidden_radius: float = 1.0,
                 hidden_border: float = 0.5, color_weight: float = 0.0, color_frames: int | None = 32):  # fmt: skip
        self.threshold, self.auto_quantile, self.auto_min_pairs = threshold, auto_quantile, auto_min_pairs
        self.auto_fallback, self.linkage, self.time_constraint = auto_fallback, linkage, bool(time_constraint)
        self.motion_gate, self.max_speed, self.motion_margin = bool(motion_gate), float(max_speed), float(motion_margin)
        self.max_gap_s = max_gap_s
        self.hidden, self.hidden_radius, self.hidden_border = bool(hidden), float(hidden_radius), float(hidden_border)
        if not 0.0 <= float(color_weight) <= 1.0:
            raise ValueError(f"associate.color_weight={color_weight}: expected a weight in [0, 1]")
        self.color_weight, self.color_frames = float(color_weight), color_frames

    def merge_threshold(self, dist: np.ndarray, forbid: np.ndarray) -> tuple[float, int]:
        """``threshold`` (a number) or, for ``auto``, :func:`~vidreid.video.associate.auto_threshold` with
        ``auto_fallback`` when the video has too few co-occurring tracklet pairs."""
        n_neg = int(np.triu(forbid, k=1).sum())
        if str(self.threshold) != "auto":
            try:
                return float(self.threshold), n_neg
            except ValueError:
                raise ValueError(f"associate.threshold={self.threshold!r}: expected a cosine distance or 'auto'") from None
        thr, n_neg = auto_threshold(dist, forbid, self.auto_quantile, self.auto_min_pairs)
        if thr is None:
            log.warning("associate.threshold=auto: only %d co-occurring tracklet pairs (< %d); using auto_fallback=%s",
                        n_neg, self.auto_min_pairs, self.auto_fallback)  # fmt: skip
            return float(self.auto_fallback), n_neg
        log.info("associate.threshold=auto: %.4f = %g-quantile of %d co-occurring (different-person) tracklet pairs",
                 thr, self.auto_quantile, n_neg)  # fmt: skip
        return thr, n_neg

    def distances(self, fragments: Sequence[Fragment], embeddings) -> np.ndarray:
        """``(N, N)`` appearance distances: the network's cosine distances, fused with the colour histograms'
        when ``color_weight > 0``."""
        if self.color_weight == 0.0:
            return cosine_distances(embeddings)
        from vidreid.video.reassociate import color_embeddings, fused_distances

        crops = [_subsample(frame_files(f.folder), self.color_frames) for f in fragments]
        net = embeddings.numpy() if hasattr(embeddings, "numpy") else np.asarray(embeddings)
        return fused_distances(net, color_embeddings(crops), self.color_weight)

    def __call__(self, fragments: Sequence[Fragment], embeddings, fps: dict[int, float],
                 frame_sizes: dict[int, tuple[int, int]] | None = None) -> Identities:  # fmt: skip
        """``frame_sizes``: ``{camid: (width, height)}`` px, for the hidden-in-place rule (off without them)."""
        dist = self.distances(fragments, embeddings)
        cams, starts, ends = [f.camid for f in fragments], [f.start for f in fragments], [f.end for f in fragments]
        threshold, n_neg = self.merge_threshold(dist, cannot_link(cams, starts, ends))
        sizes = [frame_sizes[c] for c in cams] if (self.hidden and frame_sizes) else None
        rules = association_constraints(
            cams, starts, ends, np.array([f.boxes[0] for f in fragments]), np.array([f.boxes[-1] for f in fragments]),
            [fps[c] for c in cams], time_constraint=self.time_constraint, motion=self.motion_gate,
            max_speed=self.max_speed, margin=self.motion_margin, max_gap_s=self.max_gap_s, frame_sizes=sizes,
            hidden_radius=self.hidden_radius, hidden_border=self.hidden_border,
        )  # fmt: skip
        labels = agglomerate(dist, threshold, rules, self.linkage)
        return Identities(np.asarray(labels), dist, threshold, n_neg)


class Counter:
    """Count stage (``conf/count``): distinct individuals per ``window_s`` window
    (:func:`~vidreid.video.count.window_counts`), the ``thumbnails`` film-strip frames of the count plot and, with
    a counting ``line = [x1, y1, x2, y2]`` (px, the same line in every camera), each identity's crossings in and out
    (:func:`~vidreid.video.count.line_crossings`: supervision's ``LineZone``, ``line_anchors`` box points,
    ``line_min_frames`` frames on the new side).

    Raises:
        ValueError: a malformed ``line`` or anchor (at construction, before any heavy work).
    """

    def __init__(self, window_s: float = 3.0, thumbnails: int = 10, line: Sequence[float] | None = None,
                 line_anchors: Sequence[str] = ("bottom_center",), line_min_frames: int = 1):  # fmt: skip
        self.window_s, self.thumbnails = window_s, int(thumbnails)
        self.line = [float(v) for v in line] if line is not None else None
        self.line_anchors, self.line_min_frames = [str(a) for a in line_anchors], int(line_min_frames)
        if self.line is not None:  # validate now: a bad line fails before any video is read
            line_crossings([], [], np.zeros((0, 4)), self.line, self.line_anchors, self.line_min_frames)

    def crossings(self, camera: Camera, rows: Sequence[TrackRow], key: str = "identity") -> dict | None:
        """Line crossings of one camera's ``rows`` per ``key`` (``identity`` or ``track_id``); ``None`` without a
        line."""
        if self.line is None:
            return None
        return line_crossings([r.frame for r in rows], [getattr(r, key) for r in rows],
                              np.array([[r.x1, r.y1, r.x2, r.y2] for r in rows], np.float64).reshape(-1, 4),
                              self.line, self.line_anchors, self.line_min_frames, camid=camera.camid)  # fmt: skip

    def check(self, camera: Camera) -> None:
        """Raises ValueError: the window is longer than the video (names both lengths), before any heavy work."""
        info = camera.info
        if self.window_s is not None and self.window_s > info.duration_s + 1e-9:
            raise ValueError(f"count.window_s={self.window_s} s is longer than video {camera.video} ({info.num_frames} "
                             f"frames at {info.fps:g} fps = {info.duration_s:.2f} s); expected at most "
                             f"{info.duration_s:.2f} s")  # fmt: skip

    def thumbnail_frames(self, info: VideoInfo) -> set[int]:
        return set(np.linspace(0, info.num_frames - 1, self.thumbnails + 2)[1:-1].round().astype(int).tolist())

    def __call__(self, camera: Camera, rows: Sequence[TrackRow], span: int | None = None) -> list[dict]:
        """Windows over frames ``[0, span)`` (default: the whole video; a truncated video's read frames, at least
        one window)."""
        info = camera.info
        return window_counts([r.frame for r in rows], [r.identity for r in rows], [r.track_id for r in rows],
                             info.fps, self.window_s, self.frames_counted(camera, span), camid=camera.camid)  # fmt: skip

    def frames_counted(self, camera: Camera, span: int | None) -> int:
        """``span`` (frames read), but at least one whole window and at most the declared length."""
        info = camera.info
        if span is None:
            return info.num_frames
        return max(int(span), min(info.num_frames, int(np.ceil(self.window_s * info.fps - 1e-9))))


class Scorer:
    """Score stage (``conf/score``): TrackEval (HOTA, MOTA, IDF1, ...) of the MOT files of one camera against its
    ground truth on the processed frames (:func:`~vidreid.video.mot.score_mot`), and the count error per window
    (ground-truth individuals counted on the same frames).

    ``persons``: groups of ground-truth ids that are one person who left the frame and came back (MOTChallenge
    ground truth gives each appearance a new id): ``auto`` (default) the shipped annotation
    (:data:`~vidreid.video.mot.PERSONS`), ``none``, or ``{sequence name: [[id, ...], ...]}``. For a sequence with
    groups the MOT files are scored twice: ``tracking`` against the ground truth as it is, ``tracking_persons``
    against the person-level ground truth (:func:`~vidreid.video.mot.merge_gt_persons`), which rewards a right
    re-entry merge.

    Raises:
        ValueError: a malformed ``persons`` (at construction, checked for the sequences it lists).
    """

    def __init__(self, persons: str | dict[str, Sequence[Sequence[int]]] | None = "auto"):
        if isinstance(persons, Mapping):
            for name in persons:
                persons_of(name, persons)
        else:
            persons_of("", persons)
        self.persons = persons

    def _score(self, seq: MOTSequence, mot: dict[str, Path], frames: list[int], persons=None) -> dict:
        try:
            return score_mot(seq, mot, frames=frames, persons=persons)
        except ValueError:  # e.g. one identity twice in a frame (associate.time_constraint=false): score each alone
            tracking = {}
            for k, p in mot.items():
                try:
                    tracking.update(score_mot(seq, {k: p}, frames=frames, persons=persons))
                except ValueError as e:
                    log.error("cannot score %s against %s: %s", p, seq.gt_path, e)
                    tracking[k] = {"error": str(e)}
            return tracking

    def load(self, gt: str | Path, camera: Camera) -> MOTSequence:
        """Read the ground truth of ``camera`` once, so that a bad file fails before any heavy work.

        Raises:
            FileNotFoundError / ValueError: from :func:`~vidreid.video.mot.resolve_gt`; ValueError: boxes past the
                video's last frame (names both), or a ``persons`` group that does not fit this ground truth
                (:func:`~vidreid.video.mot.merge_gt_persons`).
        """
        seq = resolve_gt(gt)
        arr = read_mot(seq.gt_path)
        groups = persons_of(seq.name, self.persons)
        if groups:
            merge_gt_persons(arr, groups, seq.gt_path)
        n = camera.info.num_frames
        if seq.num_frames is not None and seq.num_frames != n:
            log.warning("ground truth %s: seqinfo.ini gives %d frames, video %s has %d", seq.gt_path, seq.num_frames,
                        camera.video, n)  # fmt: skip
        if len(arr) and int(arr[:, 0].max()) > n:
            raise ValueError(f"ground truth {seq.gt_path} has boxes in MOT frame {int(arr[:, 0].max())} but video "
                             f"{camera.video} has {n} frames (MOT frame f = video frame f-1); expected the "
                             f"ground truth of this video")  # fmt: skip
        return seq

    def __call__(self, seq: MOTSequence, mot: dict[str, Path], frames: list[int], counts: list[dict],
                 camera: Camera, window_s: float, span: int | None = None) -> dict:  # fmt: skip
        """Scores on the processed ``frames`` only (frames not read are not misses); the count error over the
        windows of ``counts`` (frames ``[0, span)``) that hold at least one processed frame. ``truth_per_window``:
        the ground truth's individuals in every window of ``counts`` (for the count plot; not a metric).
        ``tracking_persons`` (only for a sequence with ``persons`` groups): the scores against the person-level ground truth.
        """
        tracking = self._score(seq, mot, frames)
        extra = {}
        groups = persons_of(seq.name, self.persons)
        if groups:
            extra["tracking_persons"] = self._score(seq, mot, frames, groups)
        g = gt_rows(read_mot(seq.gt_path), frames)
        info = camera.info
        n = max(c["end_frame"] for c in counts) if counts else info.num_frames
        truth = window_counts([r.frame for r in g], [r.identity for r in g], [r.track_id for r in g], info.fps,
                              window_s, n, camid=camera.camid)  # fmt: skip
        truth_per_window = [t["individuals"] for t in truth]  # every window of ``counts``, for the plot
        seen = {int(np.floor(f / info.fps / window_s + 1e-9)) for f in frames}
        counts, truth = [c for c in counts if c["window"] in seen], [c for c in truth if c["window"] in seen]
        return dict(gt=str(seq.gt_path), frames_scored=len(frames), tracking=tracking,
                    count=count_error(counts, truth), count_raw_tracks=count_error(counts, truth, key="raw_tracks"),
                    mot_files={k: str(p) for k, p in mot.items()}, truth_per_window=truth_per_window, **extra)


class Renderer:
    """Render stage (``conf/render``): the annotated mp4 / GIF / PNG stills of one camera
    (:func:`~vidreid.video.render.render_video`)."""

    def __init__(self, enabled: bool = True, video: bool = True, gif: bool = True,
                 gif_range_s: Sequence[float] = (20.0, 30.0), gif_width: int = 320, gif_stride: int = 2,
                 stills_s: Sequence[float] = (10.0, 30.0, 50.0, 70.0), still_width: int = 480):  # fmt: skip
        self.enabled, self.video, self.gif = bool(enabled), bool(video), bool(gif)
        self.gif_range_s, self.gif_width, self.gif_stride = tuple(gif_range_s), gif_width, gif_stride
        self.stills_s, self.still_width = list(stills_s), still_width

    def __call__(self, out: Path, camera: Camera, rows: Sequence[TrackRow], counts: Sequence[dict], window_s: float,
                 stride: int, start: int, suffix: str = "", span: int | None = None,
                 line: Sequence[float] | None = None, line_events: Sequence[dict] = ()) -> dict[str, str]:  # fmt: skip
        """Write the files of ``camera`` into ``out`` (processed frames ``start, start + stride, ...``; with a
        counting ``line``, drawn with the running totals of its ``line_events``); returns
        ``{"mp4<suffix>": path, "gif<suffix>": ..., "still_<frame><suffix>": ...}``. Still times and the GIF range
        past the end of the video (frames ``[0, span)``, default its declared length) are placed inside it, with a
        logged reason (:func:`~vidreid.video.render.resolve_times`)."""
        info = camera.info
        (out / "frames").mkdir(exist_ok=True)
        n = info.num_frames if span is None else int(span)
        times = resolve_times(self.stills_s, self.gif_range_s, n / info.fps, camera.video.name)
        stills = {int(round(s * info.fps)): out / "frames" / f"frame{suffix}_{int(round(s * info.fps)):04d}.png"
                  for s in times.stills_s if round(s * info.fps) < n}  # fmt: skip
        files = render_video(
            camera.video, rows, info.fps, out / f"annotated{suffix}.mp4" if self.video else None, counts=counts,
            window_s=window_s, gif=out / f"annotated{suffix}.gif" if self.gif else None, gif_range_s=times.gif_range_s,
            gif_width=self.gif_width, gif_stride=self.gif_stride, stills=stills, still_width=self.still_width,
            stride=stride, start=start, line=line, line_events=line_events,
        )  # fmt: skip
        return {f"{k}{suffix}": str(p) for k, p in files.items()}


# --------------------------------------------------------------------------------------- the per-video composition
def track_camera(camera: Camera, reader: VideoReader, detector: Callable, tracker: Any, writer: CropWriter,
                 counter: Counter, clock: StageClock, foreground: ForegroundMeter | None = None) -> CameraRun:  # fmt: skip
    """read -> detect -> track -> crops for every processed frame of one camera (one pass over the video); with a
    ``foreground`` background model, each tracked box's foreground fraction (``TrackRow.foreground``).

    Raises:
        ValueError: nothing detected in the whole video (names the video and the detector).
    """
    import cv2

    run, info, stride = CameraRun(camera), camera.info, reader.stride
    detect, update, crop = clock.wrap("detect", detector), clock.wrap("track", tracker.update), clock.wrap("crop", writer.write)
    measure = clock.wrap("foreground", foreground) if foreground is not None else None
    backfill = getattr(tracker, "pop_backfill", list)  # a swapped-in tracker without it restores nothing
    thumb_at = counter.thumbnail_frames(info)
    last_log = time.perf_counter()
    frames = reader(camera)
    for idx, frame in clock.iterate("read", frames):
        run.frames.append(idx)
        dets = detect(frame, idx)
        run.detections += len(dets)
        tracked = update(dets)
        crop(frame, camera.camid, idx, tracked.boxes, tracked.track_ids)
        fg = measure(frame, tracked.boxes) if measure is not None else np.full(len(tracked), np.nan)
        for (x1, y1, x2, y2), s, tid, f in zip(tracked.boxes, tracked.scores, tracked.track_ids, fg):
            run.rows.append(TrackRow(camera.camid, idx, int(tid), float(x1), float(y1), float(x2), float(y2), float(s),
                                     foreground=float(f)))  # fmt: skip
        for call, (x1, y1, x2, y2), s, tid in backfill():  # boxes held back until their track was confirmed: no crop
            run.rows.append(TrackRow(camera.camid, run.frames[call], int(tid), float(x1), float(y1), float(x2),
                                     float(y2), float(s), interpolated=True))  # fmt: skip
            run.backfilled += 1
        run.times_s.append(idx / info.fps)
        run.tracked.append(len(tracked))
        if any(abs(idx - a) < stride and idx >= a for a in thumb_at):
            small = cv2.resize(frame, (160, round(160 * frame.shape[0] / frame.shape[1])))
            run.thumbnails.append((idx / info.fps, small[:, :, ::-1].copy()))
        if time.perf_counter() - last_log > 30:
            log.info("camera %d: frame %d/%d, %d detections so far", camera.camid, idx, info.num_frames, run.detections)
            last_log = time.perf_counter()
    run.read = getattr(frames, "report", None)  # a swapped-in reader may yield plain frames: no report then
    if run.detections == 0:
        raise ValueError(f"no people detected in {camera.video} ({len(run.frames)} frames processed with "
                         f"{type(detector).__name__}); expected a video with visible people (for small "
                         f"people raise detector.upscale, or use another detector=...)")  # fmt: skip
    log.info("camera %d: %d frames processed, %d detections, %d tracked boxes (%d held back until their track was "
             "confirmed, restored)", camera.camid, len(run.frames), run.detections, len(run.rows), run.backfilled)  # fmt: skip
    return run


# ------------------------------------------------------------------------------- a camera run on disk (scale-out)
CAMERA_RUN_FILE = "camera_run.json"
_ROW_FIELDS = ("frame", "track_id", "x1", "y1", "x2", "y2", "score", "interpolated", "foreground")
_INT_FIELDS = ("frame", "track_id", "interpolated")


def save_camera_run(run: CameraRun, folder: Path, settings: dict) -> Path:
    """Write ``run`` into ``folder`` (which already holds its crops under ``tracklets/``): ``camera_run.json``
    (video, frames read, settings), ``camera_run.npz`` (boxes at full precision, per-frame counts, thumbnails,
    tracklet ids and embeddings). Read back exactly by :func:`load_camera_run`."""
    cam, tl = run.camera, run.tracklets
    meta = dict(video=str(cam.video), camid=cam.camid, fps=cam.info.fps, num_frames=cam.info.num_frames,
                width=cam.info.width, height=cam.info.height, frames=run.frames, detections=run.detections,
                kept=[f.track_id for f in tl.kept], dropped=[f.track_id for f in tl.dropped], settings=settings,
                read=run.read.to_dict() if run.read is not None else None)  # fmt: skip
    (folder / CAMERA_RUN_FILE).write_text(json.dumps(meta, indent=1))
    rows = {k: np.array([getattr(r, k) for r in run.rows], np.int64 if k in _INT_FIELDS else np.float64)
            for k in _ROW_FIELDS}  # fmt: skip
    thumbs = np.stack([t[1] for t in run.thumbnails]) if run.thumbnails else np.zeros((0, 1, 1, 3), np.uint8)
    np.savez(folder / "camera_run.npz", **rows, times_s=np.array(run.times_s, np.float64),
             tracked=np.array(run.tracked, np.int64), thumb_times=np.array([t[0] for t in run.thumbnails], np.float64),
             thumbs=thumbs, embeddings=np.asarray(run.embeddings.numpy(), np.float32))  # fmt: skip
    return folder


def load_camera_run(folder: str | Path, camid: int) -> CameraRun:
    """A :class:`CameraRun` saved by :func:`save_camera_run` (``track.py step=tracklets``), as camera ``camid``.

    Raises:
        FileNotFoundError: ``folder`` lacks ``camera_run.json`` / ``camera_run.npz`` / a tracklet's crop folder
            (names the path and what wrote it).
    """
    import torch

    folder = Path(folder)
    for name in (CAMERA_RUN_FILE, "camera_run.npz"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: expected the folder of a `track.py step=tracklets` "
                                    f"run (it holds {CAMERA_RUN_FILE}, camera_run.npz and tracklets/)")  # fmt: skip
    meta = json.loads((folder / CAMERA_RUN_FILE).read_text())
    z = np.load(folder / "camera_run.npz")
    info = VideoInfo(Path(meta["video"]), float(meta["fps"]), int(meta["num_frames"]), int(meta["width"]),
                     int(meta["height"]))  # fmt: skip
    run = CameraRun(Camera(camid, info.path, info), frames=[int(i) for i in meta["frames"]],
                    times_s=z["times_s"].tolist(), tracked=z["tracked"].tolist(), detections=int(meta["detections"]),
                    thumbnails=list(zip(z["thumb_times"].tolist(), list(z["thumbs"]))))  # fmt: skip
    n = len(z["frame"])
    defaults = {"interpolated": np.zeros(n, np.int64), "foreground": np.full(n, np.nan)}  # runs saved before them
    cols = {k: (z[k] if k in z.files else defaults[k]).tolist() for k in _ROW_FIELDS}
    run.rows = [TrackRow(camid, **{k: cols[k][i] for k in _ROW_FIELDS}) for i in range(n)]
    for r in run.rows:
        r.interpolated = bool(r.interpolated)
    # the tracklets as the per-video step built them (track ids recorded), crops where that step wrote them
    writer = CropWriter(folder / "tracklets", (8, 8))
    frags = {f.track_id: f for f in build_fragments(run.rows)[0]}
    kept = [frags[t] for t in meta["kept"]]
    dropped = [frags[t] for t in meta["dropped"]]
    for f in kept:
        f.folder = writer.folder(int(meta["camid"]), f.track_id)
        if not f.folder.is_dir():
            raise FileNotFoundError(f"{f.folder} not found: the crops of tracklet {f.track_id} of {folder}")
    run.tracklets = Tracklets(kept, dropped)
    run.embeddings = torch.from_numpy(z["embeddings"])
    run.read = ReadReport.from_dict(meta["read"]) if meta.get("read") else None
    return run


def camera_suffix(camid: int, multi: bool) -> str:
    """Output file suffix of a camera: ``""`` for a single camera, ``"_cam_a"`` ... otherwise."""
    return f"_{camera_folder(camid)}" if multi else ""
