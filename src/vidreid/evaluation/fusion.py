"""Appearance fusion: the network's and the colour histogram's embeddings as one weighted cosine distance
(``evaluate.py fusion.color_weight=w`` through :func:`vidreid.deploy.score_npz.fused_npz_metrics`; the association stage: :func:`vidreid.video.reassociate.fused_distances`).

With L2-normalised embeddings ``n`` (network) and ``c`` (colour histogram, :mod:`vidreid.evaluation.baselines`),
the fused embedding ``[sqrt(1 - w) n, sqrt(w) c]`` has unit norm and its cosine distance is exactly
``(1 - w) d_net + w d_colour``, so the evaluation's own ranking and metrics score the fusion unchanged. Measured on
``dataset=mot_tracklets`` in docs/results.md ("Learning from unlabelled video").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["fuse_embeddings"]


def fuse_embeddings(net: torch.Tensor, color: torch.Tensor, color_weight: float) -> torch.Tensor:
    """``(N, D + C)`` embeddings whose cosine distance is ``(1 - w) d_net + w d_colour`` (module docstring).

    Args:
        net: ``(N, D)``. color: ``(N, C)``. color_weight: ``w`` in ``[0, 1]``.
    Raises:
        ValueError: ``w`` out of range or row counts that differ.
    """
    if not 0.0 <= color_weight <= 1.0:
        raise ValueError(f"fusion.color_weight={color_weight}: expected a weight in [0, 1]")
    if len(net) != len(color):
        raise ValueError(f"fusion: {len(net)} network embeddings for {len(color)} colour embeddings")
    return torch.cat([math.sqrt(1 - color_weight) * F.normalize(net.float(), dim=1),
                      math.sqrt(color_weight) * F.normalize(color.float(), dim=1)], dim=1)  # fmt: skip
