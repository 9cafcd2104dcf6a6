"""Temporal average pooling baseline (Gao & Nevatia, "Revisiting Temporal Modeling for Video-based
Person ReID", 2018): GAP over space, then mean over the T frames."""

from __future__ import annotations

from torch import Tensor

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput


class TemporalAvg(Aggregator):
    """GAP each frame map, average over time.

    Input: one map ``(B, T, C, h, w)`` (last backbone stage). Output: ``features=[(B, C)]``,
    ``aux={"frame_features": (B, T, C)}``.
    """

    stages = (4,)

    def __init__(self, in_channels: tuple[int, ...]):
        super().__init__(in_channels)
        self.feature_dims = (self.in_channels[-1],)

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        frame = maps[-1].mean(dim=(3, 4))  # (B, T, C)
        return AggregatorOutput(features=[frame.mean(dim=1)], aux={"frame_features": frame})
