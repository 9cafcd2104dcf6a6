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


