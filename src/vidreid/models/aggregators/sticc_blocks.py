"""Attention blocks of the STICC aggregator (design in ``sticc.py``): slot cross-attention that also returns its
attention map, and the memory-guided attention used by the abstraction decoder (after STMN, Eom et al. ICCV 2021)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SlotCrossAttention(nn.Module):
    """Pre-LN multi-head cross-attention from ``M`` slots to ``L`` tokens, returning the pre-dropout map.

    ``s' = s + W_o · dropout(softmax(Q Kᵀ/√d_h)) V`` with ``Q = W_q LN(s)``, ``K = W_k x``, ``V = W_v x``; then
    ``s'' = s' + FFN(LN(s'))``.

    Input ``slots (B, M, d)``, ``tokens (B, L, d)``; output ``(slots (B, M, d), attention (B, M, L))`` where the
    attention is averaged over heads and sums to 1 over the L tokens.
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"d_model={dim} must be divisible by num_heads={heads}")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.ffn = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, ffn_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, slots: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        b, m, d = slots.shape
        dh = d // self.heads
        q = self.q(self.norm_q(slots)).view(b, m, self.heads, dh).transpose(1, 2)  # (B, H, M, dh)
        k, v = self.kv(tokens).view(b, -1, 2, self.heads, dh).permute(2, 0, 3, 1, 4)  # (B, H, L, dh) each
        attn = (q @ k.transpose(-1, -2) / math.sqrt(dh)).softmax(dim=-1)  # (B, H, M, L)
        read = (self.drop(attn) @ v).transpose(1, 2).reshape(b, m, d)
        slots = slots + self.drop(self.out(read))
        slots = slots + self.ffn(slots)
        return slots, attn.mean(dim=1)


class MemoryGuidedAttention(nn.Module):
    """Attention over candidates guided by a key-value memory of ``num_items`` learned items.

    ``w = softmax(a Kᵀ/√d)`` addresses the memory with ``a``; ``r = w V`` is the read-out; the attention over the
    L candidates ``c_l`` is ``softmax_l((W c_l)·r/√d)``. Keys and values ~ N(0, 1).

    Input ``address (B, Q, d)``, ``candidates (B, Q, L, d)``; output ``(B, Q, L)`` summing to 1 over L.
    """

    def __init__(self, dim: int, num_items: int):
        super().__init__()
        self.keys = nn.Parameter(torch.randn(num_items, dim))
        self.values = nn.Parameter(torch.randn(num_items, dim))
        self.query = nn.Linear(dim, dim)
        self.scale = dim**-0.5

    def forward(self, address: Tensor, candidates: Tensor) -> Tensor:
        read = F.softmax(address @ self.keys.t() * self.scale, dim=-1) @ self.values  # (B, Q, d)
        logits = torch.einsum("bqld,bqd->bql", self.query(candidates), read) * self.scale
        return logits.softmax(dim=-1)
