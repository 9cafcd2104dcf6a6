"""``ReIDNet = backbone → aggregator → BNNeck head(s)`` (docs/architecture.md §3.5)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vidreid.models.aggregators.base import HEADS, Aggregator, AggregatorOutput, to_clip_maps
from vidreid.models.backbones import Backbone
from vidreid.models.heads import BNNeck


@dataclass
class ReIDOutput:
    """Training-mode output of :class:`ReIDNet`.

    Attributes:
        features: pre-BN video features ``[(B, D_i)]``.
        bn_features: post-BNNeck features ``[(B, D_i)]``.
        logits: identity logits ``[(B, num_classes)]``.
        agg: the aggregator's raw output (its ``aux`` tensors feed the method's criterion terms).
    """

    features: list[Tensor]
    bn_features: list[Tensor]
    logits: list[Tensor]
    agg: AggregatorOutput


def _aggregator_class(aggregator: Callable[..., Aggregator]) -> type[Aggregator]:
    """The :class:`Aggregator` subclass a Hydra partial (or the class itself) builds."""
    target = aggregator.func if isinstance(aggregator, functools.partial) else aggregator
    if not (isinstance(target, type) and issubclass(target, Aggregator)):
        raise TypeError(
            f"model.aggregator must build an Aggregator subclass (a class or a functools.partial of one, as Hydra's "
            f"_partial_: true gives), got {aggregator!r}"
        )
    return target


class ReIDNet(nn.Module):
    """The whole network. Build with ``hydra.utils.instantiate(cfg.model, num_classes=N)``.

    The head choices default to what the aggregator class declares (:class:`Aggregator` attributes ``head``,
    ``classifier_bias``, ``classifier_std``, ``neck_bias_frozen``, ``share_neck_bn``, ``flip_test``: each method's
    reference head); a non-``None`` argument overrides the declaration.

    Args:
        backbone: a callable building the :class:`Backbone` given ``stages=`` (a Hydra partial).
        aggregator: a Hydra partial of an :class:`Aggregator` subclass; called with ``in_channels=``,
            ``num_classes=`` and ``map_sizes=``.
        num_classes: training identities.
        bias_frozen: BNNeck BN shift frozen (PSTA) or trained (STAFormer); ``None`` = ``neck_bias_frozen``.
        test_feature: ``post_bn`` (BNNeck output, the default of STAFormer/PSTA) or ``pre_bn``.
        flip_test: at eval, add the head features of the horizontally flipped clip before the aggregator
            combines them into the embedding (PCB, docs/methods.md §5.1); ``None`` = the aggregator's ``flip_test``.
        head: ``bnneck`` | ``linear`` (classifier on the feature, no BN) | ``none``; ``None`` = the aggregator's.
        classifier_bias: identity classifier with bias (STAFormer/PSTA/AGRL references) or without (BoT);
            ``None`` = the aggregator's.
        classifier_std: init std of the identity classifier's weights, N(0, std) (STAFormer/PSTA/BoT: 0.001;
            AGRL's STA: 0.01); ``None`` = the aggregator's.
        input_size: ``(H, W)`` of the network input; when given, the backbone map sizes are measured at build time
            (one no-grad forward of a zero image in eval mode) and passed to the aggregator as ``map_sizes``
            (PSTA derives its relation-layer size from them).
        pixel_mean, pixel_std: per-channel normalisation of uint8 input, in ``[0, 1]`` units
            (``data.transforms.mean/std``; ImageNet's by default).

    Raises:
        ValueError: unknown ``test_feature`` or ``head``; TypeError: ``aggregator`` does not build an Aggregator.

    Forward: clips ``(B, T, 3, H, W)`` uint8 pixels (normalised here) or already-normalised float → train mode: :class:`ReIDOutput`; eval mode: embedding ``(B, D)``.
    """

    def __init__(
        self,
        backbone: Callable[..., Backbone],
        aggregator: Callable[..., Aggregator],
        num_classes: int,
        bias_frozen: bool | None = None,
        test_feature: str = "post_bn",
        flip_test: bool | None = None,
        head: str | None = None,
        classifier_bias: bool | None = None,
        classifier_std: float | None = None,
        input_size: tuple[int, int] | None = None,
        pixel_mean: Sequence[float] = (0.485, 0.456, 0.406),
        pixel_std: Sequence[float] = (0.229, 0.224, 0.225),
    ):
        super().__init__()
        if len(pixel_mean) != 3 or len(pixel_std) != 3 or min(pixel_std) <= 0:
            raise ValueError(f"pixel_mean/pixel_std: expected 3 values each (std > 0), got {pixel_mean}, {pixel_std}")
        # uint8 input is normalised here (fast-reid ``pixel_mean``/``pixel_std``), so training, evaluate, embed and
        # ONNX share one preprocessing; from ``data.transforms.mean/std``; not in the state dict (the config has it)
        self.register_buffer("pixel_mean", 255.0 * torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("pixel_std", 255.0 * torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), False)
        self.test_feature, self.flip_test = "post_bn", False
        self.set_test_time(test_feature=test_feature)  # checked before the backbone is built
        cls = _aggregator_class(aggregator)
        self.backbone = backbone(stages=cls.stages)
        map_sizes = self._map_sizes(input_size) if input_size is not None else None
        self.aggregator = aggregator(in_channels=self.backbone.channels, num_classes=num_classes, map_sizes=map_sizes)
        agg = self.aggregator
        self.head = agg.head if head is None else head
        if self.head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {self.head!r}")
        self.use_neck = self.head != "none"
        dims = agg.feature_dims if self.use_neck else ()
        self.heads = nn.ModuleList(
            BNNeck(
                d,
                num_classes,
                bias_frozen=agg.neck_bias_frozen if bias_frozen is None else bias_frozen,
                classifier_std=agg.classifier_std if classifier_std is None else classifier_std,
                classifier_bias=agg.classifier_bias if classifier_bias is None else classifier_bias,
                use_bn=self.head == "bnneck",
            )
            for d in dims
        )
        if self.head == "bnneck" and agg.share_neck_bn:
            # STAFormer: one BN serves the BNNeck and the contrastive branch (docs/methods.md §1.1)
            agg.bind_neck_bn(self.heads[0].bn)
        self.num_classes = num_classes
        self.set_test_time(flip_test=agg.flip_test if flip_test is None else flip_test)

    def set_test_time(self, test_feature: str | None = None, flip_test: bool | None = None) -> None:
        """Change the test-time-only settings of a built (or loaded) network: they hold no parameters, so
        ``evaluate.py ckpt_path=... model.net.flip_test=true`` applies them to a trained checkpoint.

        Args:
            test_feature: ``post_bn`` | ``pre_bn`` (``None``: unchanged). flip_test: bool (``None``: unchanged).
        Raises:
            ValueError: an unknown ``test_feature``.
        """
        if test_feature is not None:
            if test_feature not in ("post_bn", "pre_bn"):
                raise ValueError(f"model.net.test_feature must be 'post_bn' or 'pre_bn', got {test_feature!r}")
            self.test_feature = test_feature
        if flip_test is not None:
            self.flip_test = bool(flip_test)

    @torch.no_grad()
    def _map_sizes(self, input_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
        """``(h, w)`` of each backbone map for an ``(H, W)`` input: one forward of a zero image in eval mode (no
        running-statistics update), exact for any stride / padding arithmetic."""
        h, w = (int(s) for s in input_size)
        if h < 1 or w < 1:
            raise ValueError(f"model.input_size must be two positive ints (H, W), got {input_size!r}")
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            maps = self.backbone(torch.zeros(1, 3, h, w))
        finally:
            self.backbone.train(was_training)
        return tuple((int(m.shape[-2]), int(m.shape[-1])) for m in maps)

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

    def preprocess(self, clips: Tensor) -> Tensor:
        """uint8 pixels ``(B, T, 3, H, W)`` → float ``(x − 255·mean) / (255·std)``; floating input is taken as
        already normalised and returned unchanged."""
        if clips.dtype != torch.uint8:
            return clips
        if clips.dim() != 5:
            raise ValueError(f"expected clips of shape (B, T, 3, H, W), got {tuple(clips.shape)}")
        # one pass to contiguous float (the loader's clips are channels-last uint8), then normalise in place
        x = clips.to(torch.float32, memory_format=torch.contiguous_format)
        return x.sub_(self.pixel_mean).div_(self.pixel_std)

    def forward(self, clips: Tensor) -> ReIDOutput | Tensor:
        clips = self.preprocess(clips)
        if not self.training:
            chosen, feats = self._head_features(clips)
            if self.flip_test:  # PCB: sum the features of the clip and its mirror, then combine (docs/methods.md §5.1)
                chosen_f, feats_f = self._head_features(clips.flip(-1))
                chosen = [a + b for a, b in zip(chosen, chosen_f)]
                feats = [a + b for a, b in zip(feats, feats_f)]
            return self.aggregator.test_embedding(chosen, feats)
        agg = self._aggregate(clips)
        if not self.use_neck:
            self.aggregator.after_neck(agg)
            return ReIDOutput(features=agg.features, bn_features=agg.features, logits=[], agg=agg)
        bn_features, logits = [], []
        for head, f in zip(self.heads, agg.features):
            bn, lg = head(f)
            bn_features.append(bn)
            logits.append(lg)
        self.aggregator.after_neck(agg)  # after the heads: STAFormer's shared BN sees v before the tokens
        return ReIDOutput(features=agg.features, bn_features=bn_features, logits=logits, agg=agg)
