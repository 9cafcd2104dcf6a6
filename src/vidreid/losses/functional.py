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


NCE_REDUCTIONS = ("reference", "mean")


def temporal_infonce(
    tokens: Tensor, group_size: int = 4, temperature: float = 0.07, reduction: str = "reference"
) -> Tensor:
    """Supervised temporal-position InfoNCE of STAFormer (``utils/losses.py`` ``InfoNce``; docs/methods.md §1.2).

    1. ``tokens (B, D, T)`` is split along time into two halves of ``T/2`` tokens, giving ``2B`` samples ordered
       (clip 0 half 0, clip 0 half 1, clip 1 half 0, ...). The reference hard-codes ``T = 8`` (halves of 4);
       here any even ``T`` works and the half length is ``T/2``.
    2. Consecutive runs of ``group_size`` samples form a group (with P x K = 4 sampling: 2 clips x 2 halves of one
       identity). Within a group the ``group_size * T/2`` tokens are L2-normalised; a token's label is its
       position ``0 .. T/2-1`` inside its half.
    3. For each ordered positive pair (a, p) (same position, a != p), with negatives n = tokens of other positions:
       ``ℓ_ap = log e^{s_ap/τ} / (e^{s_ap/τ} + Σ_n e^{s_an/τ})``.
    4. Reduction, with ``G = 2B / group_size`` groups and ``P = group_size·(group_size−1)·T/2`` positive pairs per
       group:

       * ``reference`` (HWZhou99/STAFormer ``utils/losses.py`` ``InfoNce``, l.186–204): the positive mask is built
         for one group (``unsqueeze(0)``) and broadcast, so the sum over *all* groups is divided by *one* group's
         pair count: ``L = −(1/P) Σ_g Σ_(a,p) ℓ_ap`` = ``G ×`` the per-pair mean. The reference computes the loss
         after ``DataParallel`` gathers both GPUs' outputs, i.e. on its global batch of 32 clips (G = 16).
       * ``mean``: ``L = −(1/(G·P)) Σ_g Σ_(a,p) ℓ_ap``, the per-pair mean (independent of the batch size).

       Under DDP each rank computes the loss on its own B clips, so ``G`` is per rank: to match the reference's
       objective with N ranks of B = 32/N clips, multiply the InfoNCE term's weight
       (``criterion.terms.nce.weight``) by N (or use one process with B = 32).

    Computed in float32 with log-sum-exp.

    Raises:
        ValueError: ``T`` odd, ``2B`` not divisible by ``group_size``, or an unknown ``reduction``.
    """
    if reduction not in NCE_REDUCTIONS:
        raise ValueError(f"InfoNCE reduction must be one of {NCE_REDUCTIONS}, got {reduction!r}")
    b, d, t = tokens.shape
    if t % 2:
        raise ValueError(f"temporal InfoNCE needs an even number of frames T, got T={t}")
    half = t // 2
    if (2 * b) % group_size:
        raise ValueError(
            f"temporal InfoNCE groups 2*B={2 * b} half-clips into groups of group_size={group_size}; "
            f"B={b} does not divide evenly (use P x K sampling with K a multiple of group_size/2)"
        )
    x = tokens.float().reshape(b, d, 2, half).transpose(1, 2).reshape(2 * b, d, half)
    groups = (2 * b) // group_size
    # (G, half * K, D), token index = position * K + sample
    x = x.reshape(groups, group_size, d, half).permute(0, 3, 1, 2).reshape(groups, half * group_size, d)
    x = F.normalize(x, dim=-1)
    labels = torch.arange(half, device=x.device).repeat_interleave(group_size)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=x.device)
    logits = x @ x.transpose(1, 2) / temperature  # (G, n, n)
    neg_lse = logits.masked_fill(same, float("-inf")).logsumexp(dim=-1, keepdim=True)  # (G, n, 1)
    log_prob = logits - torch.logaddexp(logits, neg_lse)
    per_pair = -log_prob[:, positive]  # (G, P)
    return per_pair.sum() / positive.sum() if reduction == "reference" else per_pair.mean()


def slot_diversity_loss(attn: Tensor) -> Tensor:
    """Mean over clips and ordered slot pairs m ≠ m' of ``cos²(A_m, A_m')``; ``attn (B, M, L)`` → scalar.

    Raises: ValueError if M < 2 (no pair).
    """
    m = attn.shape[1]
    if m < 2:
        raise ValueError(f"slot diversity needs at least 2 slots, got {m}")
    a = F.normalize(attn, dim=2)
    cos2 = (a @ a.transpose(1, 2)).pow(2)
    off = ~torch.eye(m, dtype=torch.bool, device=attn.device)
    return cos2[:, off].mean()
