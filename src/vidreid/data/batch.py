"""``TestBatch``: a batch of test tracklets as the evaluation, ``predict_step`` and the export read it (typed,
instead of a list of string-keyed dicts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TestBatch"]


@dataclass
class TestBatch:
    """``B`` test tracklets (:class:`~vidreid.data.video_dataset.TestTrackletDataset` items collated by
    :func:`~vidreid.data.video_dataset.collate_tracklets`). Tracklets differ in frame and clip counts, so frames
    and clips stay per-tracklet lists; Lightning moves every tensor field to the device (dataclass support of
    ``move_data_to_device``).

    Attributes:
        frames: ``B`` uint8 tensors ``(F_i, 3, H, W)``: the frames the clips use, resized to the input size.
        clips: ``B`` int64 tensors ``(n_clips_i, T)``: positions into ``frames[i]`` of each clip.
        pids, camids: ``(B,)`` int64 (camids 0-based). is_query: ``(B,)`` bool.
        timestamps: ``(B,)`` float64 mean global frame number (st-ReID), NaN when unknown.
        indices: ``(B,)`` int64 dataset indices (queries first, then the gallery).
    """

    __test__ = False  # not a pytest class

    frames: list[Tensor]
    clips: list[Tensor]
    pids: Tensor
    camids: Tensor
    is_query: Tensor
    timestamps: Tensor
    indices: Tensor

    def __len__(self) -> int:
        return len(self.frames)

    @classmethod
    def collate(cls, items: list[dict]) -> TestBatch:
        """Collate ``TestTrackletDataset`` items (dicts with ``frames, clips, pid, camid, is_query, timestamp,
        index``)."""
        return cls(
            frames=[it["frames"] for it in items],
            clips=[it["clips"] for it in items],
            pids=torch.tensor([it["pid"] for it in items], dtype=torch.long),
            camids=torch.tensor([it["camid"] for it in items], dtype=torch.long),
            is_query=torch.tensor([bool(it["is_query"]) for it in items], dtype=torch.bool),
            timestamps=torch.tensor([float(it.get("timestamp", float("nan"))) for it in items], dtype=torch.float64),
            indices=torch.tensor([it["index"] for it in items], dtype=torch.long),
        )
