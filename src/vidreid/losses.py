"""Identity and metric losses (DESIGN.md §3.6; METHODS.md §1.2, §2.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


def pairwise_distance(x: Tensor, metric: str = "euclidean") -> Tensor:
    """Pairwise distances ``(N, N)`` of features ``(N, D)``.

    ``euclidean``: ‖a − b‖₂ (clamped at 1e-12 before the square root so gradients stay finite);
    ``cosine``: −cos(a, b) as in STAFormer/PSTA (METHODS.md §1.2), in [−1, 1].
    """
    x = x.float()
    if metric == "euclidean":
        sq = x.pow(2).sum(1, keepdim=True)
        d2 = (sq + sq.t() - 2.0 * x @ x.t()).clamp_min(1e-12)
        return d2.sqrt()
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return -(xn @ xn.t())
    raise ValueError(f"triplet distance must be 'euclidean' or 'cosine', got {metric!r}")


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss", 2017).

    For each anchor: hardest positive = the largest distance to a same-pid sample (other than itself),
    hardest negative = the smallest distance to a different-pid sample; loss = mean of
    ``max(0, d_ap − d_an + margin)``, or ``softplus(d_ap − d_an)`` with ``soft_margin=True``.
    Anchors without a positive or a negative in the batch are ignored; a batch with none gives 0.

    Args:
        margin: in the distance's units (0.3 on the −cos scale for STAFormer/PSTA).
        distance: ``euclidean`` or ``cosine``.
        soft_margin: use the soft-margin formulation.
    Input: features ``(N, D)``, labels ``(N,)``. Output: scalar.
    """

    def __init__(self, margin: float = 0.3, distance: str = "cosine", soft_margin: bool = False):
        super().__init__()
        pairwise_distance(torch.zeros(1, 1), distance)  # validates the name early
        self.margin = margin
        self.distance = distance
        self.soft_margin = soft_margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        dist = pairwise_distance(features, self.distance)
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
