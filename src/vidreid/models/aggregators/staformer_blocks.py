"""Building blocks of STAFormer (HWZhou99/STAFormer): GeM pooling, the softplus spatial attention, the pre-LN
token transformer and the supervised temporal-position InfoNCE loss. See docs/methods.md §1.1-§1.2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class GeM(nn.Module):
    """Generalised-mean pooling with a learnable exponent (``models/key_model/gempool.py``, GeneralizedMeanPoolongP).

    ``GeM(x) = (mean_{h,w} clamp(x, eps)^p)^(1/p)``; ``p`` is a trainable scalar initialised to ``p`` (3).

    Input ``(N, C, h, w)``; output ``(N, C)``.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.full((1,), float(p)))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


class SpatialAttention2d(nn.Module):
    """``a = softplus(W2 ReLU(W1 x))`` with 1x1 convs ``C -> hidden -> 1`` (both with bias, PyTorch default init).

    Source: ``models/key_model/SpatialAttention2d.py``. Input ``(N, C, h, w)``; output ``(N, 1, h, w)``, ``a > 0``.
    """

    def __init__(self, in_channels: int, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(self.conv2(F.relu(self.conv1(x))), beta=1.0, threshold=20.0)


class TokenTransformer(nn.Module):
    """``depth`` pre-LN blocks ``x += MHSA(LN x); x += MLP(LN x)`` with no final LayerNorm (``models/key_model/vit.py``).

    MHSA: ``heads`` heads of ``dim / heads``, q/k/v without bias (``qkv_bias``), attention dropout and output-projection dropout
    ``dropout``; MLP ``dim -> mlp_dim -> dim`` with GELU and dropout after each linear. LayerNorm eps 1e-5
    (``nn.LayerNorm``, as in the reference). The blocks are timm's ``Block``, which has exactly this layout.

    Input and output ``(N, L, dim)``.
    """

    def __init__(
        self, dim: int = 768, depth: int = 3, heads: int = 12, mlp_dim: int = 3072, dropout: float = 0.1,
        qkv_bias: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        self.blocks = nn.Sequential(
            *[
                Block(
                    dim,
                    heads,
                    mlp_ratio=mlp_dim / dim,
                    qkv_bias=qkv_bias,
                    proj_drop=dropout,
                    attn_drop=dropout,
                    norm_layer=nn.LayerNorm,
                )
                for _ in range(depth)
            ]
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


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
