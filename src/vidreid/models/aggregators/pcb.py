"""PCB visual stream of st-ReID (Wanggcong/Spatial-Temporal-Re-identification ``model.py`` PCB / ClassBlock,
Person_reID_baseline_pytorch lineage; docs/methods.md §5.1). Backbone: ResNet-50 with last stride 1 (24×12 at 384×192).
Image-based: T = 1 (a clip of T > 1 frames is treated as a set and its part vectors are averaged)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput
from vidreid.models.aggregators.weight_init import classifier_init_


class PCB(Aggregator):
    """Part-based convolutional baseline: 6 horizontal parts, each with its own bottleneck and classifier.

    Train: ``P = AdaptiveAvgPool(num_parts, 1)(F)`` → ``(B, C, 6)``; Dropout(0.5); per part k:
    ``Linear(C, 256) → BN1d(256) → Dropout(0.5)`` (no ReLU) ``→ Linear(256, num_classes)``. Loss
    (:class:`vidreid.losses.criterion.PartCE`, ``conf/criterion/pcb.yaml``): ``pcb_ce = Σ_k CE(logits_k, pid)`` with plain
    cross-entropy (no smoothing, no triplet).

    Output: ``features=[parts (B, num_parts·C)]`` — the pooled, pre-dropout part vectors, part-major — and in
    training ``aux={"part_logits": (B, num_parts, num_classes)}``.

    The generic BNNeck / loss must not act on this feature: ``head = "none"`` tells the ReIDNet to put no head on
    it (no BN, no classifier, ``bn_features = features``, ``logits = []``), so the generic CE / triplet terms have
    nothing to act on.

    Test embedding: each part's pooled 2048-d vector L2-normalised separately, flattened to ``num_parts·C``
    (12288-d); evaluation L2-normalises the whole vector again. ``flip_test`` tells the feature extractor to fuse the
    horizontally flipped image: the reference sums the *raw* pooled features of the image and its flip before the
    per-part normalisation, i.e. ``test_embedding([], [feat(x) + feat(flip x)])`` (``test_embedding`` depends only
    on ``features``).

    Init (ClassBlock): bottleneck Linear Kaiming-normal fan-out, bias 0; BN γ ~ N(1, 0.02), β = 0;
    classifiers N(0, 0.001), bias 0.

    Args:
        in_channels: ``(C,)`` of stage 4. num_classes: training identities. num_parts: 6. bottleneck_dim: 256.
        dropout: 0.5 (after pooling and inside each part block). flip_test: True.
    """

    stages = (4,)
    head = "none"

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_classes: int,
        num_parts: int = 6,
        bottleneck_dim: int = 256,
        dropout: float = 0.5,
        flip_test: bool = True,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        c = self.in_channels[-1]
        self.num_parts = num_parts
        self.flip_test = flip_test
        self.feature_dims = (num_parts * c,)
        self.dropout = nn.Dropout(dropout)
        self.part_blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(c, bottleneck_dim), nn.BatchNorm1d(bottleneck_dim), nn.Dropout(dropout))
            for _ in range(num_parts)
        )
        self.part_classifiers = nn.ModuleList(nn.Linear(bottleneck_dim, num_classes) for _ in range(num_parts))
        for block in self.part_blocks:
            nn.init.kaiming_normal_(block[0].weight, a=0, mode="fan_out")
            nn.init.zeros_(block[0].bias)
            nn.init.normal_(block[1].weight, 1.0, 0.02)
            nn.init.zeros_(block[1].bias)
        classifier_init_(self.part_classifiers)
        if self.map_sizes is not None and self.map_sizes[-1][0] < num_parts:
            warnings.warn(
                f"PCB: the stage-4 map has {self.map_sizes[-1][0]} rows for num_parts={num_parts}: the parts overlap "
                f"(adaptive pooling); the reference uses 24 rows (384x192 input, last stride 1)",
                stacklevel=2,
            )

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        """Args: maps: ``[F (B, T, C, h, w)]``. Returns ``features=[(B, num_parts·C)]``.

        Parts are ``adaptive_avg_pool2d`` row bins; with ``h < num_parts`` rows they overlap (warned at build time).
        """
        x = maps[-1]
        b, t, c, h, w = x.shape
        parts = F.adaptive_avg_pool2d(x.reshape(b * t, c, h, w), (self.num_parts, 1)).view(b, t, c, self.num_parts)
        parts = parts.mean(dim=1)  # (B, C, P)
        aux: dict[str, Tensor] = {}
        if self.training:
            d = self.dropout(parts)
            aux["part_logits"] = torch.stack(
                [cls(block(d[:, :, k])) for k, (block, cls) in enumerate(zip(self.part_blocks, self.part_classifiers))],
                dim=1,
            )
        return AggregatorOutput(features=[parts.transpose(1, 2).reshape(b, -1)], aux=aux)

    def test_embedding(self, bn_features: list[Tensor], features: list[Tensor]) -> Tensor:
        """Per-part L2-normalised pooled features ``(B, num_parts·C)``; uses ``features[0]`` only."""
        x = features[0]
        return F.normalize(x.view(x.shape[0], self.num_parts, -1), dim=2).flatten(1)
