"""The aggregator contract (docs/architecture.md §3.5).

An aggregator turns per-frame backbone maps into one or more video-level features. The ReIDNet puts the head the
aggregator declares (``head``: a BNNeck by default) on each feature in ``AggregatorOutput.features``; the
criterion's identity-CE and triplet terms act on every head and average over them (PSTA's 1/3 Σ_ℓ rule). The
aggregator's own loss terms are :mod:`vidreid.losses.criterion` terms configured in ``conf/criterion/<name>.yaml``
(selected by ``conf/aggregator/<name>.yaml``); they read ``AggregatorOutput.aux``.

Adding an aggregator: a subclass in ``models/aggregators/<name>.py`` (``stages``, ``feature_dims``, ``forward``;
override a declared attribute only where it differs) and ``conf/aggregator/<name>.yaml`` (its arguments, and the
criterion it selects).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class AggregatorOutput:
    """What an aggregator returns.

    Attributes:
        features: video-level features ``[(B, D_0), (B, D_1), ...]``; each gets its own BNNeck + classifier.
        aux: method-specific tensors (frame-level features, attention maps, ...) read by the method's
            :mod:`vidreid.losses.criterion` terms.
    """

    features: list[Tensor]
    aux: dict[str, Tensor] = field(default_factory=dict)


HEADS = ("bnneck", "linear", "none")


class Aggregator(nn.Module):
    """Base class. Subclasses set ``stages`` and ``feature_dims`` and implement ``forward``.

    Every attribute the :class:`~vidreid.models.reid_net.ReIDNet` reads is declared here with its default, so a
    new aggregator only overrides what differs:

    Attributes:
        stages: backbone stages consumed (1..4 = ResNet layer1..layer4); ``forward`` gets one map per stage.
            A class attribute: the ReIDNet reads it before building the backbone.
        feature_dims: ``D_i`` of each entry of ``AggregatorOutput.features`` (set in ``__init__``).
        head: the head the ReIDNet puts on each feature, unless ``model.head`` overrides it:
            ``bnneck`` (BatchNorm1d + classifier on the BN output, BoT/STAFormer/PSTA), ``linear`` (classifier on
            the feature itself, no BN: AGRL's STA) or ``none`` (no head: the aggregator has its own classifiers and
            losses, PCB). With ``linear``/``none`` the "post-BN" feature is the feature itself.
        classifier_bias: whether the head's identity classifier has a bias (``model.classifier_bias`` overrides).
        classifier_std: init std of the head classifier's weights (N(0, std), bias 0).
        neck_bias_frozen: the BNNeck's BN shift is frozen at 0 (BoT / PSTA; ``model.bias_frozen`` overrides).
        share_neck_bn: the aggregator uses the first BNNeck's BN itself; the ReIDNet then calls
            :meth:`bind_neck_bn` (STAFormer's contrastive branch).
        flip_test: at evaluation, add the features of the horizontally flipped clip (PCB; ``model.flip_test``
            overrides).
    """

    stages: tuple[int, ...] = (4,)
    feature_dims: tuple[int, ...] = ()
    head: str = "bnneck"
    classifier_bias: bool = False
    classifier_std: float = 0.001
    neck_bias_frozen: bool = False
    share_neck_bn: bool = False
    flip_test: bool = False

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_classes: int = 0,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
    ):
        """Args:
        in_channels: channels of each consumed backbone map, in ``stages`` order.
        num_classes: training identities (for aggregators with their own classifiers; the ReIDNet always passes it).
        map_sizes: ``(h, w)`` of each consumed backbone map at the configured input size, in ``stages`` order
            (the ReIDNet passes it when it knows ``input_size``); ``None`` = unknown.
        """
        super().__init__()
        self.in_channels = tuple(in_channels)
        self.num_classes = int(num_classes)
        self.map_sizes = None if map_sizes is None else tuple((int(h), int(w)) for h, w in map_sizes)

    def bind_neck_bn(self, bn: nn.BatchNorm1d) -> None:
        """Receive the first BNNeck's BN (called by the ReIDNet when ``share_neck_bn``). Default: not supported."""
        raise NotImplementedError(f"{type(self).__name__} sets share_neck_bn but does not implement bind_neck_bn")

    def after_neck(self, out: AggregatorOutput) -> None:
        """Training-mode hook the ReIDNet calls after its heads ran on ``out.features``; may add entries to
        ``out.aux`` that must be computed after the neck (STAFormer: its shared BN sees the clip feature first,
        then the tokens, as in the reference). Default: nothing."""

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:  # pragma: no cover - interface
        """Args: maps: one ``(B, T, C_s, h_s, w_s)`` tensor per stage in ``stages``."""
        raise NotImplementedError

    def test_embedding(self, bn_features: list[Tensor], features: list[Tensor]) -> Tensor:
        """Combine head outputs into the test embedding ``(B, D)``.

        Args:
            bn_features: post-BNNeck features, one per entry of ``features``.
            features: pre-BN features.
        Default: concatenation of the post-BN features.
        """
        return torch.cat(bn_features, dim=1)


def temporal_average_pool(x: Tensor) -> Tensor:
    """Temporal average pooling (TAP; Gao & Nevatia 2018): ``(B, T, C, h, w)`` → ``(B, C)``, the mean over space of each
    frame map, then the mean over the T frames — the same operations, in the same order, as
    :class:`~vidreid.models.aggregators.temporal_avg.TemporalAvg` with one stripe, so the two agree bit for bit.

    The identity-preserving start of the seed aggregators (``identity_init``, docs/methods.md §0.4) makes their
    output equal this at step 0.
    """
    if x.dim() != 5:
        raise ValueError(f"temporal_average_pool expects (B, T, C, h, w) maps, got shape {tuple(x.shape)}")
    return x.mean(dim=(3, 4)).mean(dim=1)


def zero_linear(in_features: int, out_features: int) -> nn.Linear:
    """A bias-free ``Linear(in_features → out_features)`` whose weight is all zeros: the residual branch of the
    identity-preserving start (ReZero / zero-initialised residual practice: Bachlechner et al. 2020; Goyal et al. 2017
    zero-γ). Its output is exactly 0 at step 0, and its weight's gradient ``(dL/dy)ᵀ x`` is non-zero as soon as its
    input ``x`` and the upstream gradient are, so training moves it away from zero on the first step (only one factor
    of the product ``W x`` is zero)."""
    layer = nn.Linear(in_features, out_features, bias=False)
    nn.init.zeros_(layer.weight)
    return layer


def to_clip_maps(x: Tensor, batch: int) -> Tensor:
    """Reshape ``(B·T, C, h, w)`` to ``(B, T, C, h, w)``."""
    bt, c, h, w = x.shape
    return x.view(batch, bt // batch, c, h, w)
