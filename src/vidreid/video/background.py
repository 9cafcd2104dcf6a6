"""A static camera's background model as a gate on a detector's false positives.

:class:`ForegroundGate` wraps any detector (``detector(frame_bgr, frame_index) -> Detections``) and keeps a box only
when enough of its pixels are foreground in OpenCV's MOG2 background model (Zivkovic, "Improved adaptive
Gaussian mixture model for background subtraction", ICPR 2004; ``cv2.createBackgroundSubtractorMOG2``), updated
with every frame the gate is called on. Boxes scoring at least ``keep_score`` pass unchecked: a confident
detection of a person who stands still (whom the background model absorbs after a while) is not dropped; the
gate only judges the detector's uncertain boxes, where a COCO detector's false positives on static structures
(posters, railings, parked objects) sit. Measured in docs/video.md ("CenterNet").
"""

from __future__ import annotations

import numpy as np

from vidreid.video.detect import Detections

__all__ = ["ForegroundGate", "foreground_fraction"]


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
