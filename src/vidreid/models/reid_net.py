"""``ReIDNet = backbone → aggregator → BNNeck head(s)`` (DESIGN.md §3.5)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput, to_clip_maps
from vidreid.models.backbones import Backbone
from vidreid.models.heads import BNNeck


@dataclass
class ReIDOutput:
    """Training-mode output of :class:`ReIDNet`.

    Attributes:
        features: pre-BN video features ``[(B, D_i)]``.
        bn_features: post-BNNeck features ``[(B, D_i)]``.
        logits: identity logits ``[(B, num_classes)]``.
        agg: the aggregator's raw output (for its aux losses).
    """

    features: list[Tensor]
    bn_features: list[Tensor]
    logits: list[Tensor]
    agg: AggregatorOutput


class ReIDNet(nn.Module):
    """The whole network. Build with ``hydra.utils.instantiate(cfg.model, num_classes=N)``.

    Args:
        backbone: a callable building the :class:`Backbone` given ``stages=`` (a Hydra partial).
        aggregator: a callable building the aggregator given ``in_channels=`` (and ``num_classes=`` if its
            constructor takes it) — a Hydra partial of an :class:`Aggregator` subclass.
        num_classes: training identities.
        bias_frozen: BNNeck BN shift frozen (PSTA) or trained (STAFormer).
        test_feature: ``post_bn`` (BNNeck output, the default of STAFormer/PSTA) or ``pre_bn``.
        flip_test: at eval, add the head features of the horizontally flipped clip before the aggregator
            combines them into the embedding (PCB, METHODS.md §5.1); ``None`` = the aggregator's own
            ``flip_test`` attribute (False when it has none).

    Forward: clips ``(B, T, 3, H, W)`` float → train mode: :class:`ReIDOutput`; eval mode: embedding ``(B, D)``.
    """

    def __init__(
        self,
        backbone: Callable[..., Backbone],
        aggregator: Callable[..., Aggregator],
        num_classes: int,
        bias_frozen: bool = False,
        test_feature: str = "post_bn",
        flip_test: bool | None = None,
    ):
        super().__init__()
        if test_feature not in ("post_bn", "pre_bn"):
            raise ValueError(f"model.test_feature must be 'post_bn' or 'pre_bn', got {test_feature!r}")
        target = getattr(aggregator, "func", aggregator)
        stages = getattr(target, "stages", (4,))
        self.backbone = backbone(stages=stages)
        kwargs = {"in_channels": self.backbone.channels}
        if "num_classes" in inspect.signature(target).parameters:
            kwargs["num_classes"] = num_classes
        self.aggregator = aggregator(**kwargs)
        # aggregators with their own classifiers and no BNNeck (PCB) set ``use_neck = False``
        self.use_neck = getattr(self.aggregator, "use_neck", True)
        dims = self.aggregator.feature_dims if self.use_neck else ()
        self.heads = nn.ModuleList(BNNeck(d, num_classes, bias_frozen=bias_frozen) for d in dims)
        if self.use_neck and getattr(self.aggregator, "share_neck_bn", False):
            # STAFormer: one BN serves the BNNeck and the contrastive branch (METHODS.md §1.1)
            self.aggregator.bind_neck_bn(self.heads[0].bn)
        self.num_classes = num_classes
        self.test_feature = test_feature
        self.flip_test = bool(getattr(self.aggregator, "flip_test", False) if flip_test is None else flip_test)

    def _aggregate(self, clips: Tensor) -> AggregatorOutput:
        if clips.dim() != 5:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W), got {tuple(clips.shape)}")
        b = clips.shape[0]
        maps = self.backbone(clips.flatten(0, 1))
        return self.aggregator([to_clip_maps(m, b) for m in maps])

    def _head_features(self, clips: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        agg = self._aggregate(clips)
        if not self.use_neck:
            return agg.features, agg.features
        bn = [head(f)[0] for head, f in zip(self.heads, agg.features)]
        return (bn if self.test_feature == "post_bn" else agg.features), agg.features

    def forward(self, clips: Tensor) -> ReIDOutput | Tensor:
        if not self.training:
            chosen, feats = self._head_features(clips)
            if self.flip_test:  # PCB: sum the features of the clip and its mirror, then combine (METHODS.md §5.1)
                chosen_f, feats_f = self._head_features(clips.flip(-1))
                chosen = [a + b for a, b in zip(chosen, chosen_f)]
                feats = [a + b for a, b in zip(feats, feats_f)]
            return self.aggregator.test_embedding(chosen, feats)
        agg = self._aggregate(clips)
        if not self.use_neck:
            return ReIDOutput(features=agg.features, bn_features=agg.features, logits=[], agg=agg)
        bn_features, logits = [], []
        for head, f in zip(self.heads, agg.features):
            bn, lg = head(f)
            bn_features.append(bn)
            logits.append(lg)
        return ReIDOutput(features=agg.features, bn_features=bn_features, logits=logits, agg=agg)
