"""Tracking stage: link per-frame person detections into tracks with ByteTrack (Zhang et al., ECCV 2022) as
implemented by ``supervision`` (``sv.ByteTrack``: Kalman motion model, IoU matching of high- then low-score
detections, lost-track buffer). No tracker is implemented here; this module adapts our :class:`Detections`
and frame stride to it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vidreid.video.detect import Detections

__all__ = ["ByteTracker", "TrackedBoxes"]


@dataclass
class TrackedBoxes:
    """Tracked detections of one frame: ``boxes (N, 4)`` xyxy pixels, ``scores (N,)``, ``track_ids (N,)`` int64
    (positive, unique per tracker instance = per camera)."""

    boxes: np.ndarray
    scores: np.ndarray
    track_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.track_ids)


class ByteTracker:
    """``sv.ByteTrack`` for one video (one camera).

    Args:
        fps: frame rate of the *processed* frames (video fps / frame stride): ByteTrack scales its lost-track
            buffer with it.
        track_activation_threshold: detections scoring at least this start tracks / are matched first
            (ByteTrack's high-score set); lower scores are only matched to existing tracks.
        lost_track_buffer: frames (at 30 fps; ByteTrack rescales to ``fps``) a lost track is kept for re-matching.
        minimum_matching_threshold: IoU-cost threshold of the matching (higher = more permissive).
        minimum_consecutive_frames: a track gets an id only after this many consecutive matches.
    """

    def __init__(self, fps: float, track_activation_threshold: float = 0.5, lost_track_buffer: int = 30,
                 minimum_matching_threshold: float = 0.8, minimum_consecutive_frames: int = 2):  # fmt: skip
        import supervision as sv

        if fps <= 0:
            raise ValueError(f"tracker fps must be > 0, got {fps}")
        with warnings.catch_warnings():  # sv.ByteTrack announces its move to the `trackers` package
            warnings.simplefilter("ignore")
            self._sv = sv
            self.tracker = sv.ByteTrack(
                track_activation_threshold=track_activation_threshold, lost_track_buffer=lost_track_buffer,
                minimum_matching_threshold=minimum_matching_threshold, frame_rate=fps,
                minimum_consecutive_frames=minimum_consecutive_frames,
            )  # fmt: skip

    def update(self, dets: Detections) -> TrackedBoxes:
        """Advance the tracker by one processed frame; return the detections that belong to a confirmed track."""
        sv_dets = self._sv.Detections(xyxy=dets.boxes.astype(np.float32).reshape(-1, 4),
                                      confidence=dets.scores.astype(np.float32), class_id=np.zeros(len(dets), int))  # fmt: skip
        out = self.tracker.update_with_detections(sv_dets)
        if len(out) == 0:
            return TrackedBoxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        return TrackedBoxes(out.xyxy.astype(np.float32), out.confidence.astype(np.float32),
                            out.tracker_id.astype(np.int64))  # fmt: skip
