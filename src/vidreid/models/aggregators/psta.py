"""PSTA aggregator: pyramid of spatial-temporal aggregation modules (Wang et al., ICCV 2021).

Source: WangYQ9/VideoReID_PSTA ``models/PSTA.py`` (commit fd467fa; docs/methods.md §2.1). Backbone: ResNet-50 with
last stride 1 (2048×16×8 maps at 256×128).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput, temporal_average_pool, zero_linear
from vidreid.models.aggregators.psta_blocks import STAM


class PSTA(Aggregator):
    """Channel reduction, then ``num_levels`` STAMs halving T each: ``X → STAM₁ (T→T/2) → STAM₂ → STAM₃``.

    1. ``X = ReLU(BN(conv1x1_{C→reduced_dim}(F)))`` (no bias; PyTorch default init, as the reference does not
       re-initialise ``down_channel``).
    2. ``q_ℓ = GAP_{h,w}(mean_t Z^ℓ)``; ``f_ℓ = mean(q_1..q_ℓ)`` (so f₁ = q₁, f₂ = (q₁+q₂)/2, f₃ = (q₁+q₂+q₃)/3).

    Output ``features=[f_1, ..., f_L]``, ``aux={"pyramid": q (B, L, reduced_dim)}``, each ``(B, reduced_dim)``.
    Declared head (read by the ReIDNet): a BNNeck with **frozen BN bias** (``neck_bias_frozen``) and a classifier
    ``Linear(reduced_dim, num_classes)`` **with bias** (``models/PSTA.py`` ~l.90, ``classifier_bias``) on each level;
    losses average CE / triplet over the L levels. Test embedding: ``BN(f_L)`` only.

    Identity-preserving start (``identity_init=True``; off by default and in the paper recipes; docs/methods.md
    §0.4): every pyramid level lives in the backbone's channel space, ``q_ℓ = TAP(F) + W_ℓ GAP_{h,w}(mean_t Z^ℓ)``
    with ``W_ℓ = Linear(reduced_dim → C, no bias)`` zero-initialised, and ``f_ℓ = TAP(F) + (1/ℓ) Σ_{k≤ℓ} W_k ·``
    (= ``mean(q_1..q_ℓ)``). At step 0 **each level's feature equals TAP of the stage-4 map**, ``f_ℓ = q_ℓ =
    mean_t mean_{h,w} F (B, C)`` exactly, for every ℓ; so does the test embedding's input ``f_L``.
    ``feature_dims = (C,) * L``. The ``W_ℓ`` get non-zero gradients on the first step (their inputs are ReLU
    outputs); the reduction and the STAMs from the second step on.

    Args:
        in_channels: ``(C,)`` of backbone stage 4 (2048).
        reduced_dim: channels after reduction (1024).
        mid_dim, embed_dim: STAM widths (256, 128).
        num_levels: pyramid depth L; ``None`` = ``min(3, log2 seq_len)`` (3 for T = 8, the reference).
        map_size: ``(h, w)`` of the stage-4 map; the relation convs take ``2·h·w`` channels (256 at 16×8, the
            reference's hard-coded value). ``None`` (default) = derived at build time from ``map_sizes``, i.e. from
            the input size and the backbone's stride (the ReIDNet passes it), so 256×128 with last stride 1 builds
            exactly the reference's layers.
        seq_len: training T (for ``num_levels=None``).
        num_classes: unused (PSTA's classifiers are the ReIDNet heads).
        map_sizes: backbone map sizes at the configured input size (from the ReIDNet).
        identity_init: the identity-preserving start above (``False``: the reference model).

    Raises:
        ValueError: ``map_size`` neither given nor derivable; at forward: a map of another size than ``map_size``;
            T not a power of two; T < 2**num_levels.
    """

    stages = (4,)
    classifier_bias = True
    neck_bias_frozen = True

    def __init__(
        self,
        in_channels: tuple[int, ...],
        reduced_dim: int = 1024,
        mid_dim: int = 256,
        embed_dim: int = 128,
        num_levels: int | None = None,
        map_size: tuple[int, int] | None = None,
        seq_len: int = 8,
        num_classes: int = 0,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
        identity_init: bool = False,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        if num_levels is None:
            if seq_len < 2 or seq_len & (seq_len - 1):
                raise ValueError(f"PSTA pairs frames level by level: seq_len must be a power of two >= 2, got {seq_len}")
            num_levels = min(3, seq_len.bit_length() - 1)
        if num_levels < 1:
            raise ValueError(f"num_levels must be >= 1, got {num_levels}")
        if reduced_dim % 8:
            raise ValueError(f"reduced_dim must be divisible by 8 (C/8 embeddings), got {reduced_dim}")
        if map_size is None:
            if self.map_sizes is None:
                raise ValueError(
                    "PSTA needs the stage-4 map size for its relation convs: set aggregator.map_size=[h,w] or give "
                    "the ReIDNet its input_size (model.input_size) so it derives it"
                )
            map_size = self.map_sizes[-1]
        self.map_size = (int(map_size[0]), int(map_size[1]))
        self.num_levels = num_levels
        self.identity_init = bool(identity_init)
        self.feature_dims = ((self.in_channels[-1] if self.identity_init else reduced_dim),) * num_levels
        self.reduce = nn.Sequential(
            nn.Conv2d(self.in_channels[-1], reduced_dim, 1, bias=False), nn.BatchNorm2d(reduced_dim), nn.ReLU(True)
        )
        self.levels = nn.ModuleList(STAM(reduced_dim, self.map_size, mid_dim, embed_dim) for _ in range(num_levels))
        # identity-preserving start: q_l = TAP(F) + W_l q~_l with W_l = 0 (built last: the reference's layers draw the
        # same random numbers with the switch on or off)
        self.identity_proj = (
            nn.ModuleList(zero_linear(reduced_dim, self.in_channels[-1]) for _ in range(num_levels))
            if self.identity_init
            else None
        )

    def _check(self, x: Tensor) -> None:
        b, t, c, h, w = x.shape
        if (h, w) != self.map_size:
            raise ValueError(
                f"PSTA relation convs were built for {self.map_size[0]}x{self.map_size[1]} maps "
                f"(2*h*w = {2 * self.map_size[0] * self.map_size[1]} channels) but got {h}x{w}; "
                f"set aggregator.map_size=[{h},{w}]"
            )
        if t < 1 or t & (t - 1):
            raise ValueError(f"PSTA pairs frames level by level: T must be a power of two, got T={t}")
        if t < 2**self.num_levels:
            raise ValueError(
                f"PSTA with num_levels={self.num_levels} needs T >= {2**self.num_levels}, got T={t}; "
                f"lower aggregator.num_levels or sample more frames"
            )

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        """Args: maps: ``[F (B, T, C, h, w)]``. Returns ``features=[f_1 .. f_L]`` (B, reduced_dim) each."""
        x = maps[-1]
        self._check(x)
        b, t, c, h, w = x.shape
        tap = temporal_average_pool(x) if self.identity_proj is not None else None
        x = self.reduce(x.reshape(b * t, c, h, w)).view(b, t, -1, h, w)
        qs: list[Tensor] = []
        features: list[Tensor] = []
        residuals: list[Tensor] = []
        for i, level in enumerate(self.levels):
            x = level(x)
            q = x.mean(dim=(1, 3, 4))
            if self.identity_proj is None:
                qs.append(q)
                features.append(sum(qs) / len(qs))
            else:  # f_l = TAP + mean of the residuals: exactly TAP at step 0 (a mean of TAP copies would round)
                residuals.append(self.identity_proj[i](q))
                qs.append(tap + residuals[-1])
                features.append(tap + sum(residuals) / len(residuals))
        return AggregatorOutput(features=features, aux={"pyramid": torch.stack(qs, dim=1)})

    def test_embedding(self, bn_features: list[Tensor], features: list[Tensor]) -> Tensor:
        """``BN(f_L)`` — the last pyramid level's post-BN feature (``models/PSTA.py`` eval branch)."""
        return bn_features[-1]
