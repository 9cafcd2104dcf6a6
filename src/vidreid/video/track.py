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
        backfill: keep the detections a track was matched to before it got its id (``sv.ByteTrack`` gives a
            track started after the first frame no id in its first frame, and none before
            ``minimum_consecutive_frames`` matches) and hand them back, with the id, from :meth:`pop_backfill`
            once the track is confirmed (offline: the video is processed whole, so a confirmed track's first boxes
            are known). ``False``: those boxes stay untracked, as in ``sv.ByteTrack``.
    """

    def __init__(self, fps: float, track_activation_threshold: float = 0.5, lost_track_buffer: int = 30,
                 minimum_matching_threshold: float = 0.8, minimum_consecutive_frames: int = 2,
                 backfill: bool = True):  # fmt: skip
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
        self.backfill = bool(backfill)
        self._calls = 0  # update() calls so far = the processed-frame index of the current call
        self._pending: dict[int, list[tuple[int, np.ndarray, float]]] = {}  # internal track id -> held-back boxes
        self._ready: list[tuple[int, np.ndarray, float, int]] = []

    def update(self, dets: Detections) -> TrackedBoxes:
        """Advance the tracker by one processed frame; return the detections that belong to a confirmed track."""
        sv_dets = self._sv.Detections(xyxy=dets.boxes.astype(np.float32).reshape(-1, 4),
                                      confidence=dets.scores.astype(np.float32), class_id=np.zeros(len(dets), int))  # fmt: skip
        out = self.tracker.update_with_detections(sv_dets)
        if self.backfill:
            self._hold_back(sv_dets, out)
        self._calls += 1
        if len(out) == 0:
            return TrackedBoxes(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        return TrackedBoxes(out.xyxy.astype(np.float32), out.confidence.astype(np.float32),
                            out.tracker_id.astype(np.int64))  # fmt: skip

    def _hold_back(self, dets, out) -> None:
        """Record this frame's detections that ``sv.ByteTrack`` matched to a not-yet-confirmed track (the
        detections it returned without an id, assigned one-to-one to this frame's unconfirmed tracks by IoU >= 0.5,
        as ``sv.ByteTrack`` assigns detections to tracks for its output), and move the held-back boxes of tracks
        confirmed now to the ready list."""
        from scipy.optimize import linear_sum_assignment

        t = self.tracker
        alive = {tr.internal_track_id: tr for tr in (*t.tracked_tracks, *t.lost_tracks)}
        for iid in [k for k in self._pending if k not in alive]:  # removed before confirmation: never output
            del self._pending[iid]
        no_id = t.external_id_counter.NO_ID
        waiting = [tr for tr in t.tracked_tracks if tr.external_track_id == no_id and tr.frame_id == t.frame_id]
        given = {tuple(b) for b in np.asarray(out.xyxy).round(3).tolist()} if len(out) else set()
        free = [i for i, b in enumerate(np.asarray(dets.xyxy).round(3).tolist()) if tuple(b) not in given]
        if waiting and free:
            boxes = dets.xyxy[free]
            tracks = np.array([tr.tlbr for tr in waiting], dtype=np.float64).reshape(-1, 4)
            iou = self._sv.box_iou_batch(boxes, tracks)
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] >= 0.5:
                    i = free[r]
                    self._pending.setdefault(waiting[c].internal_track_id, []).append(
                        (self._calls, dets.xyxy[i].astype(np.float32), float(dets.confidence[i])))
        for iid in [k for k in self._pending if alive[k].external_track_id != no_id]:
            ext = int(alive[iid].external_track_id)
            self._ready.extend((call, box, score, ext) for call, box, score in self._pending.pop(iid))

    def pop_backfill(self) -> list[tuple[int, np.ndarray, float, int]]:
        """The held-back boxes of tracks confirmed since the last call: ``[(processed-frame index (0-based
        update() call), box (4,) xyxy px, score, track id)]``; empty when ``backfill`` is off."""
        ready, self._ready = self._ready, []
        return ready
