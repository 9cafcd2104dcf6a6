"""The training objective as a set of named, weighted loss terms built from config (``conf/criterion/``).

A :class:`Criterion` holds :class:`LossTerm` modules by name. Each term reads what it needs from the network's
training output (:class:`~vidreid.models.reid_net.ReIDOutput`: head logits, pre/post-BN features, and the
aggregator's ``agg.aux`` tensors) and the batch's pids, and returns an unweighted scalar; the criterion multiplies it
by the term's ``weight``, returns every weighted term under its name (logged as ``train/<name>``) and their sum as
``loss``. Terms with ``weight: 0`` (or ``null`` in the config) are not built.

Adding a loss: subclass :class:`LossTerm` (``forward(out, pids) -> Tensor | None``) and add it under
``criterion.terms.<name>`` in a config — nothing else changes. Each aggregator config selects the criterion of its
method (``conf/aggregator/<name>.yaml``: ``override /criterion: <name>``), so ``aggregator=X`` brings its losses.

Terms (docs/methods.md §1.2 STAFormer, §2.2 PSTA, §3.1 STA, §5.1 PCB):
    :class:`IdentityCE`, :class:`Triplet` (every head, averaged: PSTA's ``1/3 Σ_ℓ``),
    :class:`FrameCE`, :class:`FrameTriplet`, :class:`TemporalInfoNCE` (STAFormer),
    :class:`STARegulariser` (STA), :class:`SlotDiversity` (STICC), :class:`PartCE` (PCB).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.losses.functional import (
    NCE_REDUCTIONS,
    BatchHardTripletLoss,
    CrossEntropyLabelSmooth,
    slot_diversity_loss,
    temporal_infonce,
)
from vidreid.models.reid_net import ReIDOutput

__all__ = [
    "Criterion",
    "FrameCE",
    "FrameTriplet",
    "IdentityCE",
    "LossTerm",
    "PartCE",
    "STARegulariser",
    "SlotDiversity",
    "TemporalInfoNCE",
    "Triplet",
]

TRIPLET_FEATURES = ("post_bn", "pre_bn")
FRAME_WEIGHTINGS = ("reference", "intended")


class LossTerm(nn.Module):
    """One term of the objective.

    Args:
        weight: multiplies the term's value in the total (the logged ``train/<name>`` is the weighted value).

    Subclasses implement ``forward(out: ReIDOutput, pids: Tensor (B,)) -> Tensor`` (a scalar, unweighted), or
    ``None`` when the term does not apply to this network (e.g. identity CE when the heads have no classifier).
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = float(weight)

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor | None:  # pragma: no cover - interface
        raise NotImplementedError

    def _aux(self, out: ReIDOutput, key: str) -> Tensor:
        """``out.agg.aux[key]``, or a ValueError naming the term, the key and the likely cause."""
        if key not in out.agg.aux:
            raise ValueError(
                f"loss term {type(self).__name__} needs the aggregator's training output aux[{key!r}], which this "
                f"network does not produce (has {sorted(out.agg.aux)}): the criterion does not match the aggregator "
                "(each conf/aggregator/<name>.yaml selects its criterion; check a criterion= override)"
            )
        return out.agg.aux[key]


class IdentityCE(LossTerm):
    """Cross-entropy with label smoothing ε on each head's logits, averaged over the heads (PSTA: the 3 pyramid
    levels, ``1/3 Σ_ℓ CE(y_ℓ)``). ``None`` for heads without classifiers (PCB).

    Args: weight; label_smoothing: ε (0.1 in STAFormer/PSTA; targets ``(1 − ε)·onehot + ε/N``).
    """

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.1):
        super().__init__(weight)
        self.ce = CrossEntropyLabelSmooth(label_smoothing)

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor | None:
        if not out.logits:
            return None
        return sum(self.ce(lg, pids) for lg in out.logits) / len(out.logits)


class Triplet(LossTerm):
    """Batch-hard triplet on each head's feature, averaged over the heads.

    Args:
        weight; margin, distance (``cosine``: d = −cos, STAFormer/PSTA; ``euclidean``), soft_margin: see
            :class:`~vidreid.losses.BatchHardTripletLoss`.
        feature: ``post_bn`` (the BNNeck output, STAFormer/PSTA) or ``pre_bn`` (BoT). With a ``linear``/``none``
            head both are the feature itself.

    ``None`` when the network has no head (PCB: ``logits`` empty and no BNNeck).

    Raises: ValueError: unknown ``feature`` or ``distance``.
    """

    def __init__(
        self,
        weight: float = 1.0,
        margin: float = 0.3,
        distance: str = "cosine",
        soft_margin: bool = False,
        feature: str = "post_bn",
    ):
        super().__init__(weight)
        if feature not in TRIPLET_FEATURES:
            raise ValueError(f"triplet feature must be one of {TRIPLET_FEATURES}, got {feature!r}")
        self.triplet = BatchHardTripletLoss(margin=margin, distance=distance, soft_margin=soft_margin)
        self.feature = feature

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor | None:
        if not out.logits:
            return None
        feats = out.bn_features if self.feature == "post_bn" else out.features
        return sum(self.triplet(f, pids) for f in feats) / len(feats)


def _frame_weighted(
    loss_fn: Callable[[Tensor, Tensor], Tensor], local: Tensor, glob: Tensor, pids: Tensor, weighting: str
) -> Tensor:
    """STAFormer deep supervision over frames: ``m_h = mean_t loss_fn(x_h[:, t], pids)`` for the local and global
    heads; ``reference``: ``m_local / (2T) + m_global / 2`` (the reference's DeepSupervision divides its running
    total by T after each head); ``intended``: ``(m_local + m_global) / 2``."""
    t = local.shape[1]

    def per_frame_mean(x: Tensor) -> Tensor:
        return torch.stack([loss_fn(x[:, i], pids) for i in range(t)]).mean()

    w_local = 1.0 / (2 * t) if weighting == "reference" else 0.5
    return w_local * per_frame_mean(local) + 0.5 * per_frame_mean(glob)


class FrameCE(LossTerm):
    """STAFormer frame-level identity loss (docs/methods.md §1.2, deep supervision): CE with smoothing ε on each frame's
    logits of the local (GAP of stage 3) and global (GeM of stage 4) heads, ``aux["frame_logits_local"]`` /
    ``aux["frame_logits_global"]`` ``(B, T, num_classes)``, combined by :func:`_frame_weighted`.

    Args: weight (1); label_smoothing ε; weighting: ``reference`` (local 1/(2T), global 1/2 — the reference's bug,
        ``utils/utils.py`` DeepSupervision) | ``intended`` (1/2, 1/2).
    """

    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.1, weighting: str = "reference"):
        super().__init__(weight)
        if weighting not in FRAME_WEIGHTINGS:
            raise ValueError(f"frame loss weighting must be one of {FRAME_WEIGHTINGS}, got {weighting!r}")
        self.ce = CrossEntropyLabelSmooth(label_smoothing)
        self.weighting = weighting

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor:
        return _frame_weighted(
            self.ce, self._aux(out, "frame_logits_local"), self._aux(out, "frame_logits_global"), pids, self.weighting
        )


class FrameTriplet(LossTerm):
    """STAFormer frame-level triplet: batch-hard triplet on each frame's BN'd local / global head features
    (``aux["frame_bn_local"] (B, T, C3)``, ``aux["frame_bn_global"] (B, T, C4)``) across the batch, combined by
    :func:`_frame_weighted`.

    Args: weight (1); margin, distance, soft_margin (the video triplet's); weighting as :class:`FrameCE`.
    """

    def __init__(
        self,
        weight: float = 1.0,
        margin: float = 0.3,
        distance: str = "cosine",
        soft_margin: bool = False,
        weighting: str = "reference",
    ):
        super().__init__(weight)
        if weighting not in FRAME_WEIGHTINGS:
            raise ValueError(f"frame loss weighting must be one of {FRAME_WEIGHTINGS}, got {weighting!r}")
        self.triplet = BatchHardTripletLoss(margin=margin, distance=distance, soft_margin=soft_margin)
        self.weighting = weighting

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor:
        return _frame_weighted(
            self.triplet, self._aux(out, "frame_bn_local"), self._aux(out, "frame_bn_global"), pids, self.weighting
        )


class TemporalInfoNCE(LossTerm):
    """STAFormer's supervised temporal-position InfoNCE on ``aux["contrast"] (B, D, T)``
    (:func:`~vidreid.losses.functional.temporal_infonce`).

    Args: weight (0.01); temperature τ (0.07); group_size K (4 half-clips); reduction: ``reference`` (groups ×
        per-pair mean, the reference's normalisation; under DDP the group count is per rank — with N ranks of
        32/N clips multiply ``weight`` by N to match the reference's gathered batch of 32) | ``mean``.
    """

    def __init__(self, weight: float = 0.01, temperature: float = 0.07, group_size: int = 4, reduction: str = "reference"):
        super().__init__(weight)
        if reduction not in NCE_REDUCTIONS:
            raise ValueError(f"nce reduction must be one of {NCE_REDUCTIONS}, got {reduction!r}")
        self.temperature = temperature
        self.group_size = group_size
        self.reduction = reduction

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor:
        return temporal_infonce(self._aux(out, "contrast"), self.group_size, self.temperature, self.reduction)


class STARegulariser(LossTerm):
    """STA's inter-frame regulariser (docs/methods.md §3.1; paper only, AGRL has none): per clip a random frame pair
    i ≠ j of the spatial attention ``g = aux["spatial_attention"] (B, N, h, w)``, ``‖g_i − g_j‖_F``, averaged over
    clips. ``None`` for one-frame clips. Args: weight λ (unpublished; 1.0 by default, a tuning parameter)."""

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor | None:
        g = self._aux(out, "spatial_attention")
        b, n = g.shape[:2]
        if n < 2:
            return None
        i = torch.randint(0, n, (b,), device=g.device)
        j = (i + torch.randint(1, n, (b,), device=g.device)) % n
        ar = torch.arange(b, device=g.device)
        return (g[ar, i] - g[ar, j]).flatten(1).norm(dim=1).mean()


class SlotDiversity(LossTerm):
    """STICC slot diversity (our design, docs/methods.md §4): mean squared cosine between the memory slots' attention
    maps ``aux["slot_attention"] (B, M, L)`` (:func:`~vidreid.losses.functional.slot_diversity_loss`)."""

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor:
        return slot_diversity_loss(self._aux(out, "slot_attention"))


class PartCE(LossTerm):
    """PCB's loss (st-ReID, docs/methods.md §5.1): the *sum* over parts of plain cross-entropy (no smoothing) on
    ``aux["part_logits"] (B, P, num_classes)``."""

    def forward(self, out: ReIDOutput, pids: Tensor) -> Tensor:
        logits = self._aux(out, "part_logits")
        return sum(F.cross_entropy(logits[:, k].float(), pids) for k in range(logits.shape[1]))


class Criterion(nn.Module):
    """Named, weighted loss terms.

    Args:
        terms: name → :class:`LossTerm` (Hydra builds them from ``criterion.terms``); ``None`` entries and terms
            with weight 0 are dropped. Order = the order of the logged terms and of the summation.

    Forward: ``(out: ReIDOutput, pids (B,))`` → ``{name: weight·value, ..., "loss": Σ}`` (terms that return
    ``None`` are left out).

    Raises:
        ValueError: a term named ``loss``, a term that is not a LossTerm, or no terms at all.
    """

    def __init__(self, terms: Mapping[str, LossTerm | None]):
        super().__init__()
        kept = {}
        for name, term in terms.items():
            if term is None:
                continue
            if not isinstance(term, LossTerm):
                raise ValueError(f"criterion.terms.{name} must build a vidreid.losses.criterion.LossTerm, got {type(term)}")
            if name == "loss":
                raise ValueError("criterion.terms: 'loss' is reserved for the total")
            if term.weight != 0:
                kept[name] = term
        if not kept:
            raise ValueError("criterion has no term with a non-zero weight")
        self.terms = nn.ModuleDict(kept)

    def forward(self, out: ReIDOutput, pids: Tensor) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            v = term(out, pids)
            if v is not None:
                values[name] = term.weight * v
        if not values:
            raise ValueError(f"no criterion term applies to this network (terms: {list(self.terms)})")
        values["loss"] = sum(values.values())
        return values

    @classmethod
    def from_loss_config(cls, loss: Mapping) -> Criterion:
        """Identity CE + triplet from the flat ``loss`` node (``ce_weight, label_smoothing, triplet_weight,
        triplet_margin, triplet_distance, triplet_soft_margin, triplet_feature``) — the objective of an aggregator
        without terms of its own."""
        return cls(
            {
                "ce": IdentityCE(loss.get("ce_weight", 1.0), loss.get("label_smoothing", 0.1)),
                "triplet": Triplet(
                    loss.get("triplet_weight", 1.0),
                    margin=loss.get("triplet_margin", 0.3),
                    distance=loss.get("triplet_distance", "cosine"),
                    soft_margin=loss.get("triplet_soft_margin", False),
                    feature=loss.get("triplet_feature", "post_bn"),
                ),
            }
        )
