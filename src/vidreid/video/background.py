"""A static camera's background model as a gate on a detector's false positives.

:class:`ForegroundGate` wraps any detector (``detector(frame_bgr, frame_index) -> Detections``) and keeps a box only
when enough of its pixels are foreground in OpenCV's MOG2 background model (Zivkovic, "Improved adaptive
Gaussian mixture model for background subtraction", ICPR 2004; ``cv2.createBackgroundSubtractorMOG2``), updated
with every frame the gate is called on. Boxes scoring at least ``keep_score`` pass unchecked: a confident
detection of a person who stands still (whom the background model absorbs after a while) is not dropped; the
gate only judges the detector's uncertain boxes, where a COCO detector's false positives on static structures
(posters, railings, parked objects) sit. Measured in docs/video.md ("CenterNet").

:func:`median_background` and :func:`suppress_background` are the same static camera's background as an image, used
to grey out the background pixels of person crops before re-ID (``dataset=mot_tracklets dataset.background=suppress``;
measured in docs/results.md, "Background suppression").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidreid.video.detect import Detections

__all__ = ["FILL_BGR", "ForegroundGate", "foreground_fraction", "median_background", "suppress_background"]

#: the fill of suppressed background pixels, BGR: the ImageNet mean colour (0.485, 0.456, 0.406) x 255, i.e. zero
#: after the network's input normalisation
FILL_BGR = (104, 116, 124)


def foreground_fraction(mask: np.ndarray, boxes: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Fraction of foreground pixels of ``mask (h, w)`` bool inside each of ``boxes (N, 4)`` ``x1, y1, x2, y2``
    (frame pixels; the mask is the frame scaled by ``scale``), via an integral image. ``(N,)`` float64; a box
    with no pixel inside the mask gives 0."""
    h, w = mask.shape
    ii = np.zeros((h + 1, w + 1), np.int64)
    ii[1:, 1:] = np.cumsum(np.cumsum(mask, 0, dtype=np.int64), 1)
    b = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    x1, x2 = (np.clip(np.floor(b[:, i]), 0, w).astype(np.int64) for i in (0, 2))
    y1, y2 = (np.clip(np.floor(b[:, i]), 0, h).astype(np.int64) for i in (1, 3))
    area = (x2 - x1) * (y2 - y1)
    fg = ii[y2, x2] - ii[y1, x2] - ii[y2, x1] + ii[y1, x1]
    return np.where(area > 0, fg / np.maximum(area, 1), 0.0)


class ForegroundGate:
    """A detector whose boxes below ``keep_score`` must cover at least ``min_foreground`` MOG2 foreground.

    Args:
        detector: the wrapped detector (or a Hydra-instantiated config).
        min_foreground: minimum foreground fraction of a checked box's pixels.
        keep_score: boxes scoring at least this pass unchecked (``None``: every box is checked).
        history, var_threshold: MOG2's ``history`` (frames) and ``varThreshold`` (squared Mahalanobis distance);
            shadows are not detected (``detectShadows=False``).
        scale: the frame is resized by this factor before the background model (speed: 0.5 costs ~2 ms a
            768x576 frame, 1.0 ~8 ms, one thread).
        warmup: frames after a (re)start during which no box is checked (the model has not learnt the background;
            its first frame is all foreground anyway).
    A frame index that does not increase (a new video) restarts the model.

    Raises:
        ValueError: ``min_foreground`` outside ``[0, 1]`` or ``scale`` outside ``(0, 1]``.
    """

    def __init__(self, detector, min_foreground: float = 0.15, keep_score: float | None = 0.5, history: int = 500,
                 var_threshold: float = 16.0, scale: float = 0.5, warmup: int = 1):  # fmt: skip
        if not 0.0 <= min_foreground <= 1.0 or not 0.0 < scale <= 1.0:
            raise ValueError(f"ForegroundGate: min_foreground must be in [0, 1] and scale in (0, 1], got "
                             f"min_foreground={min_foreground}, scale={scale}")  # fmt: skip
        if not callable(detector):
            raise ValueError(f"ForegroundGate: detector must be callable, got {type(detector).__name__}")
        self.detector = detector
        self.min_foreground, self.keep_score = float(min_foreground), keep_score
        self.history, self.var_threshold, self.scale, self.warmup = int(history), float(var_threshold), float(scale), int(warmup)
        self._model = None
        self._last = -1
        self._seen = 0

    def _mask(self, frame: np.ndarray, frame_index: int) -> np.ndarray:
        import cv2

        if self._model is None or frame_index <= self._last:
            self._model = cv2.createBackgroundSubtractorMOG2(history=self.history, varThreshold=self.var_threshold,
                                                             detectShadows=False)  # fmt: skip
            self._seen = 0
        self._last = frame_index
        self._seen += 1
        img = frame if self.scale == 1.0 else cv2.resize(frame, None, fx=self.scale, fy=self.scale,
                                                          interpolation=cv2.INTER_AREA)  # fmt: skip
        return self._model.apply(img) > 0

    def __call__(self, frame: np.ndarray, frame_index: int = 0) -> Detections:
        mask = self._mask(frame, frame_index)
        d = self.detector(frame, frame_index)
        if len(d) == 0 or self._seen <= self.warmup:
            return d
        keep = foreground_fraction(mask, d.boxes, self.scale) >= self.min_foreground
        if self.keep_score is not None:
            keep |= d.scores >= float(self.keep_score)
        return Detections(d.boxes[keep], d.scores[keep])


def median_background(video: str | Path, step: int = 4, frame_range: tuple[int, int] | None = None,
                      max_frames: int = 200) -> np.ndarray:
    """A static camera's background image: the per-pixel median of every ``step``-th frame of ``video``.

    People who walk through the scene cover a pixel in fewer than half of the frames and vanish from the median;
    one who stands still for more than half of them stays in it (and is then not suppressed). The temporal-median
    background is the classic one of background subtraction (e.g. Cucchiara et al., "Detecting moving objects,
    ghosts and shadows in video streams", TPAMI 2003).

    Args:
        video: any file OpenCV decodes. step: frame stride (PETS09-S2L1's 795 frames: 199 frames, ~0.3 GB).
        frame_range: ``[first, end)`` 0-based frames to take the median over (``None``: the whole video).
        max_frames: memory bound: whenever more than this many frames are held, every other one is dropped and
            the stride doubles, so a long video is sampled evenly at a coarser step (at most ``max_frames`` frames
            in memory, plus their stack for the median: ~0.5 GB at 768x576, ~2.5 GB at 1080p). PETS09-S2L1 and
            TUD-Campus at step 4 (199 and 18 frames) are never thinned.
    Returns:
        ``(H, W, 3)`` uint8 BGR.
    Raises:
        FileNotFoundError: no file at ``video``. ValueError: ``step < 1`` or ``max_frames < 1``, or no frame
            decoded in the range.
    """
    import cv2

    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video not found: {video} (expected a video file for the background model)")
    if int(step) < 1 or int(max_frames) < 1:
        raise ValueError(f"median_background: step={step}, max_frames={max_frames}; expected ints >= 1")
    first, end = (0, None) if frame_range is None else (int(frame_range[0]), int(frame_range[1]))
    cap = cv2.VideoCapture(str(video))
    frames, idx, stride = [], 0, int(step)
    try:
        while end is None or idx < end:
            if not cap.grab():
                break
            if idx >= first and (idx - first) % stride == 0:
                ok, frame = cap.retrieve()
                if ok:
                    frames.append((idx, frame))
                if len(frames) > int(max_frames):  # keep the frames on the doubled stride's grid
                    stride *= 2
                    frames = [(i, f) for i, f in frames if (i - first) % stride == 0]
            idx += 1
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"median_background: no frame decoded from {video} in frames [{first}, {end}) "
                         "(expected a video OpenCV can decode, with frames in the range)")  # fmt: skip
    return np.median(np.stack([f for _, f in frames]), axis=0).round().astype(np.uint8)


def suppress_background(crop: np.ndarray, background: np.ndarray, threshold: float = 45.0,
                        fill: tuple[int, int, int] = FILL_BGR) -> tuple[np.ndarray, np.ndarray]:
    """Grey out the pixels of a person crop that look like the static background behind it.

    Both images are smoothed (5x5 Gaussian); a pixel is foreground where the Euclidean distance of the two colours
    exceeds ``threshold`` (8-bit units, 0..441). The mask is opened (3x3: isolated noise pixels go) and dilated (3x3:
    the person's outline is kept), and every background pixel is set to ``fill``. Eliminating the background of
    re-ID crops follows Tian et al., "Eliminating background-bias for robust person re-identification", CVPR 2018;
    here the static camera's own background stands in for their human parsing. The threshold, 45, is the best of
    20 / 30 / 45 for the colour histogram on PETS09-S2L1 and on TUD-Campus alike (docs/results.md, "Background
    suppression").

    Args:
        crop: ``(h, w, 3)`` uint8 BGR, a box of a frame. background: the same box of the background image, same
            shape. threshold: colour distance above which a pixel is foreground. fill: BGR of suppressed pixels.
    Returns:
        ``(crop with the background filled (h, w, 3) uint8, foreground mask (h, w) bool)``.
    Raises:
        ValueError: ``crop`` and ``background`` differ in shape or are not ``(h, w, 3)``, or ``threshold < 0``.
    """
    import cv2

    if crop.shape != background.shape or crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"suppress_background: crop {crop.shape} and background {background.shape} must both be "
                         "(h, w, 3) images of the same box")  # fmt: skip
    if threshold < 0:
        raise ValueError(f"suppress_background: threshold={threshold}, expected a colour distance >= 0")
    a = cv2.GaussianBlur(crop, (5, 5), 0).astype(np.float32)
    b = cv2.GaussianBlur(background, (5, 5), 0).astype(np.float32)
    mask = (np.linalg.norm(a - b, axis=2) > float(threshold)).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    mask = cv2.dilate(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), kernel) > 0
    out = np.where(mask[..., None], crop, np.asarray(fill, np.uint8)[None, None])
    return out.astype(np.uint8), mask
