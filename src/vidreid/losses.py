"""Identity and metric losses (docs/architecture.md §3.6; docs/methods.md §1.2, §2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.evaluation.ranking import pairwise_distance  # the project's one distance (1 − cos / Euclidean)


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy with label smoothing: targets ``(1 − ε)·onehot + ε/N`` (Szegedy et al. 2016; the
    STAFormer/PSTA ``CrossEntropyLabelSmooth``). Wraps ``F.cross_entropy(label_smoothing=ε)``, which uses
    exactly this target.

    Input: logits ``(N, C)``, labels ``(N,)`` int64 in ``[0, C)``. Output: scalar.
    """

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.epsilon)


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss", 2017).

    For each anchor: hardest positive = the largest distance to a same-pid sample (other than itself),
    hardest negative = the smallest distance to a different-pid sample; loss = mean of
    ``max(0, d_ap − d_an + margin)``, or ``softplus(d_ap − d_an)`` with ``soft_margin=True``.
    Anchors without a positive or a negative in the batch are ignored; a batch with none gives 0.

    Args:
        margin: in the distance's units (0.3 on the cosine scale for STAFormer/PSTA; their ``−cos`` and the
            project's ``1 − cos`` differ by a constant, so ``d_ap − d_an`` and the loss are the same).
        distance: ``euclidean`` or ``cosine`` (:func:`vidreid.evaluation.ranking.pairwise_distance`).
        soft_margin: use the soft-margin formulation.
    Input: features ``(N, D)``, labels ``(N,)``. Output: scalar.
    """

    def __init__(self, margin: float = 0.3, distance: str = "cosine", soft_margin: bool = False):
        super().__init__()
        pairwise_distance(torch.zeros(1, 1), metric=distance)  # validates the name early
        self.margin = margin
        self.distance = distance
        self.soft_margin = soft_margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        dist = pairwise_distance(features, metric=self.distance)
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos_mask = same & ~eye
        neg_mask = ~same
        valid = pos_mask.any(1) & neg_mask.any(1)
        if not valid.any():
            return features.sum() * 0.0
        d_ap = dist.masked_fill(~pos_mask, float("-inf")).amax(1)[valid]
        d_an = dist.masked_fill(~neg_mask, float("inf")).amin(1)[valid]
        if self.soft_margin:
            return F.softplus(d_ap - d_an).mean()
        return F.relu(d_ap - d_an + self.margin).mean()
