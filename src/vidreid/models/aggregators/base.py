"""The aggregator contract (DESIGN.md §3.5).

An aggregator turns per-frame backbone maps into one or more video-level features. The ReIDNet puts a
BNNeck head (BatchNorm1d + bias-free classifier) on each feature in ``AggregatorOutput.features``; the
LightningModule applies cross-entropy and triplet to every feature and averages them (PSTA's
1/3 Σ_ℓ rule), then adds the aggregator's own loss terms from :meth:`Aggregator.aux_losses`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class AggregatorOutput:
    """What an aggregator returns.

    Attributes:
        features: video-level features ``[(B, D_0), (B, D_1), ...]``; each gets its own BNNeck + classifier.
        aux: method-specific tensors (frame-level features, attention maps, ...) read by ``aux_losses``.
    """

    features: list[Tensor]
    aux: dict[str, Tensor] = field(default_factory=dict)


class Aggregator(nn.Module):
    """Base class. Subclasses set ``stages`` and ``feature_dims`` and implement ``forward``.

    Attributes:
        stages: backbone stages consumed (1..4 = ResNet layer1..layer4); ``forward`` gets one map per stage.
        feature_dims: ``D_i`` of each entry of ``AggregatorOutput.features``.
    """

    stages: tuple[int, ...] = (4,)
    feature_dims: tuple[int, ...] = ()

    def __init__(self, in_channels: tuple[int, ...]):
        """Args: in_channels: channels of each consumed backbone map, in ``stages`` order."""
        super().__init__()
        self.in_channels = tuple(in_channels)

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:  # pragma: no cover - interface
        """Args: maps: one ``(B, T, C_s, h_s, w_s)`` tensor per stage in ``stages``."""
        raise NotImplementedError

    def aux_losses(
        self,
        out: AggregatorOutput,
        pids: Tensor,
        ce: Callable[[Tensor, Tensor], Tensor],
        triplet: Callable[[Tensor, Tensor], Tensor],
    ) -> dict[str, Tensor]:
        """The method's own loss terms, already weighted by its config (names become ``train/<name>``).

        Args:
            out: this aggregator's output for the batch (training mode).
            pids: ``(B,)`` training labels.
            ce: the configured identity loss ``ce(logits (N, C), labels (N,))``.
            triplet: the configured batch-hard triplet ``triplet(features (N, D), labels (N,))``.
        """
        return {}

    def test_embedding(self, bn_features: list[Tensor], features: list[Tensor]) -> Tensor:
        """Combine head outputs into the test embedding ``(B, D)``.

        Args:
            bn_features: post-BNNeck features, one per entry of ``features``.
            features: pre-BN features.
        Default: concatenation of the post-BN features.
        """
        return torch.cat(bn_features, dim=1)


def to_clip_maps(x: Tensor, batch: int) -> Tensor:
    """Reshape ``(B·T, C, h, w)`` to ``(B, T, C, h, w)``."""
    bt, c, h, w = x.shape
    return x.view(batch, bt // batch, c, h, w)
