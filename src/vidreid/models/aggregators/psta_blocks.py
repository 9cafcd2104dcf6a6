"""PSTA's spatial-temporal aggregation module STAM and its two attentions TRA / SRA.

Source: WangYQ9/VideoReID_PSTA ``models/STAM.py``, ``models/TRA.py``, ``models/SRA.py`` (commit fd467fa;
docs/methods.md §2.1). Frames are processed in disjoint pairs ``(a, b) = (2k, 2k+1)``, so STAM halves T.

Relation features. For embeddings ``P, Q (c', HW)`` the relation ``R = Pᵀ Q (HW, HW)``; at spatial position ``p`` the
reference stacks ``row p`` of one relation and ``column p`` of another as ``2·HW`` channels, so the relation convs
take ``2·h·w`` input channels (256 at a 16×8 map) and tie the module to one map size.

BN statistics: the reference calls the pair-level layers once per pair and direction (batch ``B``), and the
frame-level layers once on all ``B·T`` frames; this module keeps the same calls so BN batches match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.models.aggregators.weight_init import kaiming_init_


def conv_bn_relu(cin: int, cout: int, kernel: int = 1) -> nn.Sequential:
    """``Conv2d(cin, cout, kernel, bias=False) → BN → ReLU`` (same padding)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def relation_rows(r: Tensor, h: int, w: int) -> Tensor:
    """``r (N, HW, HW)`` → ``(N, HW, h, w)`` whose channel vector at position p is row p of r."""
    return r.transpose(1, 2).reshape(r.shape[0], h * w, h, w)


def relation_cols(r: Tensor, h: int, w: int) -> Tensor:
    """``r (N, HW, HW)`` → ``(N, HW, h, w)`` whose channel vector at position p is column p of r."""
    return r.reshape(r.shape[0], h * w, h, w)


class TRA(nn.Module):
    """Temporal reference attention over frame pairs (``models/TRA.py``).

    ``R_ab = Γ(X_a)ᵀ Β(X_b)``; ``m_a = σ(BN(conv_{2e→1}([ψ([E_a; E_b]); φ_T([rows R_ab; cols R_ba])])))``;
    ``c_a = σ(MLP([θ(v_a); θ(v_b)]))``; output ``(ReLU(c_a⊙m_a⊙X_a + c_b⊙m_b⊙X_b))²`` (the square is in the code).
    ``b`` uses the same layers with the roles swapped.
    """

    def __init__(self, channels: int, map_size: tuple[int, int], embed_dim: int = 128):
        super().__init__()
        red = channels // 8
        h, w = map_size
        self.gamma = conv_bn_relu(channels, red)
        self.beta = conv_bn_relu(channels, red)
        self.relation = conv_bn_relu(2 * h * w, embed_dim)  # φ_T (gg_temporal)
        self.pair_embed = conv_bn_relu(2 * embed_dim, embed_dim)  # ψ (tte_para)
        self.spatial = nn.Sequential(nn.Conv2d(2 * embed_dim, 1, 1, bias=False), nn.BatchNorm2d(1))  # te_para
        self.theta = nn.Conv1d(channels, red, 1, bias=False)
        self.channel_mlp = nn.Sequential(nn.Linear(2 * red, red), nn.ReLU(inplace=True), nn.Linear(red, channels))
        kaiming_init_(self)

    def forward(self, x: Tensor, flat: Tensor, v: Tensor, e: Tensor) -> Tensor:
        """Args: x ``(B, T, C, h, w)``; flat ``(B·T, C, h, w)``; v ``(B, T, C)`` GAP; e ``(B, T, E, h, w)``.
        Returns ``(B, T/2, C, h, w)``."""
        b, t, c, h, w = x.shape
        gam = self.gamma(flat).view(b, t, -1, h * w)
        bet = self.beta(flat).view(b, t, -1, h * w)
        theta = F.relu(self.theta(v.transpose(1, 2)))  # (B, C/8, T)
        out = []
        for i in range(0, t, 2):
            j = i + 1
            c_a = torch.sigmoid(self.channel_mlp(torch.cat([theta[:, :, i], theta[:, :, j]], 1))).view(b, c, 1, 1)
            c_b = torch.sigmoid(self.channel_mlp(torch.cat([theta[:, :, j], theta[:, :, i]], 1))).view(b, c, 1, 1)
            r_ab = gam[:, i].transpose(1, 2) @ bet[:, j]
            r_ba = gam[:, j].transpose(1, 2) @ bet[:, i]
            rel_a = self.relation(torch.cat([relation_rows(r_ab, h, w), relation_cols(r_ba, h, w)], 1))
            m_a = torch.sigmoid(self.spatial(torch.cat([self.pair_embed(torch.cat([e[:, i], e[:, j]], 1)), rel_a], 1)))
            rel_b = self.relation(torch.cat([relation_rows(r_ba, h, w), relation_cols(r_ab, h, w)], 1))
            m_b = torch.sigmoid(self.spatial(torch.cat([self.pair_embed(torch.cat([e[:, j], e[:, i]], 1)), rel_b], 1)))
            out.append(F.relu(c_a * m_a * x[:, i] + c_b * m_b * x[:, j]) ** 2)
        return torch.stack(out, 1)


class SRA(nn.Module):
    """Spatial reference attention (``models/SRA.py``), added to TRA's output.

    ``G_t = A(X_t)ᵀ Δ(X_t)``; ``s_t = σ(BN(conv_{e→1}(ReLU(BN(conv_{2e→e}([E_t; φ_S([rows G_t; cols G_t])]))))))``;
    ``α_t = σ(Linear_{C/8→C}(ReLU(Linear_{C→C/8}(v_t))))``; output ``Y^T + ReLU(α_a⊙s_a⊙X_a + α_b⊙s_b⊙X_b)``.
    """

    def __init__(self, channels: int, map_size: tuple[int, int], embed_dim: int = 128):
        super().__init__()
        red = channels // 8
        h, w = map_size
        self.alpha = conv_bn_relu(channels, red)
        self.delta = conv_bn_relu(channels, red)
        self.relation = conv_bn_relu(2 * h * w, embed_dim)  # φ_S (gg_spatial)
        self.spatial = nn.Sequential(  # spa_para
            conv_bn_relu(2 * embed_dim, embed_dim), nn.Conv2d(embed_dim, 1, 1, bias=False), nn.BatchNorm2d(1)
        )
        self.channel_mlp = nn.Sequential(nn.Linear(channels, red), nn.ReLU(inplace=True), nn.Linear(red, channels))
        kaiming_init_(self)

    def forward(self, x: Tensor, flat: Tensor, e: Tensor, v: Tensor, y_t: Tensor) -> Tensor:
        """Args as :meth:`TRA.forward` plus ``y_t (B, T/2, C, h, w)``. Returns ``(B·T/2, C, h, w)``."""
        b, t, c, h, w = x.shape
        g = self.alpha(flat).view(b * t, -1, h * w).transpose(1, 2) @ self.delta(flat).view(b * t, -1, h * w)
        rel = self.relation(torch.cat([relation_rows(g, h, w), relation_cols(g, h, w)], 1))
        s = torch.sigmoid(self.spatial(torch.cat([e.flatten(0, 1), rel], 1))).view(b, t, 1, h, w)
        out = []
        for i in range(0, t, 2):
            j = i + 1
            a_a = torch.sigmoid(self.channel_mlp(v[:, i])).view(b, c, 1, 1)
            a_b = torch.sigmoid(self.channel_mlp(v[:, j])).view(b, c, 1, 1)
            out.append(y_t[:, i // 2] + F.relu(a_a * s[:, i] * x[:, i] + a_b * s[:, j] * x[:, j]))
        return torch.stack(out, 1).flatten(0, 1)


class STAM(nn.Module):
    """One pyramid level (``models/STAM.py``): ``(B, T, C, h, w) → (B, T/2, C, h, w)``.

    ``E = Emb(X)`` (1x1 C→mid, BN, ReLU, 1x1 mid→embed, BN, ReLU); ``Y = SRA(TRA(X))``; closing conv block
    (1x1 C→mid, 3x3 mid→mid, 1x1 mid→C, each + BN + ReLU, no residual). Init: Kaiming (conv fan-in, linear fan-out).
    """

    def __init__(self, channels: int, map_size: tuple[int, int], mid_dim: int = 256, embed_dim: int = 128):
        super().__init__()
        self.embed = nn.Sequential(conv_bn_relu(channels, mid_dim), conv_bn_relu(mid_dim, embed_dim))
        self.tra = TRA(channels, map_size, embed_dim)
        self.sra = SRA(channels, map_size, embed_dim)
        self.conv_block = nn.Sequential(
            conv_bn_relu(channels, mid_dim), conv_bn_relu(mid_dim, mid_dim, 3), conv_bn_relu(mid_dim, channels)
        )
        kaiming_init_(self.embed)
        kaiming_init_(self.conv_block)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c, h, w = x.shape
        flat = x.reshape(b * t, c, h, w)
        v = flat.mean(dim=(2, 3)).view(b, t, c)
        e = self.embed(flat).view(b, t, -1, h, w)
        y = self.sra(x, flat, e, v, self.tra(x, flat, v, e))
        return self.conv_block(y).view(b, t // 2, c, h, w)
