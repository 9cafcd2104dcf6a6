"""Temporal average pooling baseline (Gao & Nevatia, "Revisiting Temporal Modeling for Video-based
Person ReID", 2018): GAP over space, then mean over the T frames; optionally per horizontal stripe."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput


class TemporalAvg(Aggregator):
    """Average-pool each frame map, average over time.

    Args:
        in_channels: channels of the last backbone map (C).
        stripes: 1 = global average pooling (the baseline); K > 1 average-pools K horizontal stripes and
            concatenates them (a part-based variant in the spirit of PCB, keeping the vertical layout of
            clothing colours), giving a ``K·C`` feature. The map height must be at least K.

    Input: one map ``(B, T, C, h, w)``. Output: ``features=[(B, K·C)]``, ``aux={"frame_features": (B, T, K·C)}``.

    Raises:
        ValueError: ``stripes < 1`` or a map with fewer rows than stripes.
    """

    stages = (4,)

    def __init__(
        self,
        in_channels: tuple[int, ...],
        stripes: int = 1,
        num_classes: int = 0,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        if stripes < 1:
            raise ValueError(f"aggregator.stripes must be >= 1, got {stripes}")
        self.stripes = stripes
        self.feature_dims = (self.in_channels[-1] * stripes,)

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        x = maps[-1]
        b, t, c, h, w = x.shape
        if h < self.stripes:
            raise ValueError(f"temporal_avg: a {h}x{w} map cannot be cut into {self.stripes} stripes")
        if self.stripes == 1:
            frame = x.mean(dim=(3, 4))  # (B, T, C)
        else:
            frame = F.adaptive_avg_pool2d(x.flatten(0, 1), (self.stripes, 1)).view(b, t, c * self.stripes)
        return AggregatorOutput(features=[frame.mean(dim=1)], aux={"frame_features": frame})
