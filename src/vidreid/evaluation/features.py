"""Chunked, streaming test-time feature extraction over tracklets (docs/methods.md §1.4 all-frames test, §2.4 dense)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidreid.data.batch import TestBatch

__all__ = ["DEFAULT_MAX_CLIPS_PER_FORWARD", "embed_tracklet_batch"]

# the one default of ``evaluation.max_clips_per_forward`` (the config value wins; the clip groups interpolate it)
DEFAULT_MAX_CLIPS_PER_FORWARD = 32


@torch.no_grad()
def embed_tracklet_batch(
    model: nn.Module,
    batch: TestBatch,
    max_clips_per_forward: int = DEFAULT_MAX_CLIPS_PER_FORWARD,
) -> Tensor:
    """Embed a batch of test tracklets: the average of each tracklet's clip embeddings.

    Clips of all tracklets in ``batch`` go through the network together in chunks of at most
    ``max_clips_per_forward`` clips (T frames each), and only the frames of the current chunk are decoded
    (:class:`~vidreid.data.video_dataset.TrackletFrames`), so memory is bounded by the chunk whatever the tracklet
    length or batch size.

    Args:
        model: eval-mode network mapping uint8 clips ``(n, T, 3, H, W)`` to ``(n, D)``; ``ReIDNet`` normalises
            uint8 input with its ``pixel_mean/pixel_std`` buffers (the run's ``data.transforms.mean/std``).
        batch: a :class:`~vidreid.data.batch.TestBatch` (per-tracklet frames and clip positions).
        max_clips_per_forward: clips per forward (``evaluation.max_clips_per_forward``).

    Returns:
        ``(len(batch), D)`` float32 embeddings on the model's device.

    Raises:
        ValueError: ``max_clips_per_forward < 1``.
    """
    if max_clips_per_forward < 1:
        raise ValueError(f"evaluation.max_clips_per_forward={max_clips_per_forward}: expected >= 1")
    device = next(model.parameters()).device
    counts = torch.tensor([len(c) for c in batch.clips], dtype=torch.long)
    owners = torch.repeat_interleave(torch.arange(len(batch)), counts)
    ends = torch.cumsum(counts, 0).tolist()
    total = int(counts.sum())
    sums: Tensor | None = None
    for start in range(0, total, max_clips_per_forward):
        stop = min(total, start + max_clips_per_forward)
        # the chunk's clips, one slice per tracklet it touches; only their frames get decoded
        pieces = []
        for i, end in enumerate(ends):
            begin = end - int(counts[i])
            a, b = max(start, begin), min(stop, end)
            if a < b:
                pieces.append(batch.frames[i][batch.clips[i][a - begin : b - begin].cpu()])
        clips = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        del pieces
        emb = model(clips.to(device, non_blocking=True)).float()
        if sums is None:
            sums = torch.zeros(len(batch), emb.shape[1], device=device)
        sums.index_add_(0, owners[start:stop].to(device), emb)
        del clips, emb
    return sums / counts.to(device).clamp_min(1)[:, None]
