"""Chunked test-time feature extraction over tracklets (METHODS.md §1.4 all-frames test, §2.4 dense)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vidreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_uint8


@torch.no_grad()
def embed_tracklet_batch(
    model: nn.Module,
    batch: Sequence[dict],
    max_clips_per_forward: int = 32,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """Embed a batch of test tracklets: the average of each tracklet's clip embeddings.

    Clips of all tracklets in ``batch`` are forwarded together in chunks of at most ``max_clips_per_forward``
    clips (T frames each), so memory is bounded by the chunk whatever the tracklet length or batch size.

    Args:
        model: eval-mode network mapping ``(n, T, 3, H, W)`` float to ``(n, D)``.
        batch: items of :class:`vidreid.data.video_dataset.TestTrackletDataset`.
    Returns:
        ``(len(batch), D)`` float32 embeddings on the model's device.
    """
    device = next(model.parameters()).device
    owners = torch.cat([torch.full((len(b["clips"]),), i, dtype=torch.long) for i, b in enumerate(batch)])
    clip_refs = [(i, j) for i, b in enumerate(batch) for j in range(len(b["clips"]))]
    sums: Tensor | None = None
    for start in range(0, len(clip_refs), max_clips_per_forward):
        refs = clip_refs[start : start + max_clips_per_forward]
        clips = torch.stack([batch[i]["frames"][batch[i]["clips"][j]] for i, j in refs]).to(device, non_blocking=True)
        emb = model(normalize_uint8(clips, mean, std)).float()
        if sums is None:
            sums = torch.zeros(len(batch), emb.shape[1], device=device)
        sums.index_add_(0, owners[start : start + len(refs)].to(device), emb)
    counts = torch.bincount(owners, minlength=len(batch)).to(device).clamp_min(1)
    return sums / counts[:, None]
