"""STICC aggregator: spatial-temporal information encoder + relevance- and memory-guided decoders.

Source: learnsharing/STICC README and ``figures/STICC.png`` only — **there is no public code** (docs/methods.md §4).
Everything below the figure's level of detail is a design choice of this project, stated with its reason.
Sizes are constructor arguments (Hydra config ``conf/aggregator/sticc.yaml``).

Notation: B clips, T frames, N = h·w tokens per frame, C backbone channels, d = ``d_model``, M = ``num_slots``.

1. Tokens. ``FM(t) (N, C)`` from the stage-4 map. Projected ``x = Linear_{C→d}(FM) + pos``; ``pos`` is a
   learnable (``pos_grid``) table, ~N(0, 0.02²), bilinearly resized when the map has another size (ViT practice).
   *Why*: self-attention is permutation-invariant and needs to know where a token sits on the body. There is
   **no temporal position**: the figure's memory reads all frames as a set, so that "different frames can fill in
   the same slot without alignment".
2. ST info encoder (a): ``enc_layers`` pre-LN transformer blocks applied to each frame's N tokens separately
   (queries Q_Sp(t), keys/values K_STI(t), V_STI(t) of the figure), final LayerNorm → ``e (B, T, N, d)``.
   The encoded tokens handed to the decoders are ``u = FM + Linear_{d→C}(e)`` (C-d, residual on the backbone
   token). *Why*: attention at width C = 2048 would cost 4·C² parameters per layer; a reduced width d with a
   residual projection back keeps the pretrained token intact and makes the figure's sizes ``RV_FG ∈ ℝ^C``,
   ``RV_SA ∈ ℝ^{2C}`` come out naturally.
3. ST info encoder (b): M learnable slots (the figure's memory Q_ST), ~N(0, 1), cross-attend to all T·N encoded
   tokens of the clip (``SlotCrossAttention``: pre-LN multi-head cross-attention + FFN) → slots ``s (B, M, d)`` and
   the slot attention map ``A (B, M, T·N)``. Default M = 6: one slot per coarse body region, the granularity of
   PCB's six stripes. *Why N(0, 1)*: slots must differ from the start so their attention maps differ.
4. Relevance-guided (RG) detail decoder: relevance of token j is its best match to any slot,
   ``ℓ_j = max_m (W_q e_j)·(W_k LN(s_m))/√d``; ``r = softmax`` over all T·N tokens jointly; ``RV_FG = Σ_j r_j u_j``
   ``(B, C)``. *Why max over slots*: a token is a relevant detail if it matches *some* identity slot (a part), not
   the average slot; the joint softmax over frames lets occluded frames' tokens get little weight.
5. Memory-guided (MG) abstraction decoder with two memory modules (after STMN's spatial and temporal memories):
   - spatial memory (``num_spatial_items`` items) addressed by each frame's mean encoded token ``ē_t`` gives a
     spatial attention ``a_t`` over that frame's tokens; ``v_S = mean_t Σ_p a_t(p) u_{t,p}``;
   - temporal memory (``num_temporal_items`` items) addressed by the clip's mean ``mean_t ē_t`` gives a temporal
     attention ``b`` over frames; ``v_T = Σ_t b_t mean_p u_{t,p}``;
   ``RV_SA = [v_S ; v_T] (B, 2C)``. *Why*: "two memory modules" and the size 2C suggest one C-d read-out per
   memory; as in STMN the memories store recurring spatial / temporal attention patterns learned over the
   training set, rather than per-clip content.
6. Output ``features=[RV_FG (B, C), RV_SA (B, 2C)]``: each gets its own BNNeck, ID loss and triplet loss (the
   generic head); the test embedding is the default concatenation of the post-BN features ``(B, 3C)``, the
   figure's ``[RV_FG ; RV_SA]``.
7. Slot-diversity loss (:class:`vidreid.losses.criterion.SlotDiversity`, weight 0.1 in ``conf/criterion/sticc.yaml``)
   ``mean_b mean_{m≠m'} cos²(A_m, A_m')`` on the slot
   attention maps. *Why*: learned-query cross-attention tends to collapse (all slots attending to the same salient
   tokens), which would make the slots — and the RG relevance — redundant; PAT (part-aware transformer, the
   README's other relative) uses a part-diversity term for the same reason. Maps are non-negative, so cos ∈ [0, 1];
   the loss is ≈ 1 for collapsed slots and 0 for disjoint ones. It acts on attention maps rather than slot vectors
   because two different slot vectors can still read the same tokens. Default weight 0.1: at most 0.1, a few
   per cent of the initial ID + triplet loss, so it shapes the slots without competing with identity learning.

Init: Linear layers PyTorch default; LayerNorm 1/0. The figure gives no losses, sizes, or schedule (METHODS §4.3).

Identity-preserving start (``identity_init=True``; off by default and in the ``occluded_duke_sticc`` / ``prai_sticc``
recipes; docs/methods.md §0.4): four layers are zero-initialised, with no new parameters: ``out_proj`` (weight and
bias; so ``u = FM``, the backbone tokens), ``rel_k`` (weight and bias; so every relevance logit is 0 and ``r`` is
uniform, 1/(T·N)), and the weight of both memories' ``query`` layer (so ``a_t`` is uniform over a frame's N tokens and
``b`` over the T frames; the query bias adds one value to every candidate's logit, which cancels in the softmax, so
it keeps its default init — and never gets a gradient, with the switch on or off). At step 0 **each output slot equals TAP of the stage-4 map**: ``RV_FG = TAP(F)`` and
``RV_SA = [TAP(F); TAP(F)]``, with ``TAP(F) = mean_t mean_{h,w} F (B, C)`` (a uniform weighted sum, equal to the
mean up to float rounding, ~1e-7 relative). The test embedding is then ``[BN_1(TAP); BN_2([TAP; TAP])]``.
Each zeroed layer is one factor of a product whose other factor is non-zero (``e``; ``rel_q(e)``·``LN(s)``; the
memory read-out), so all four get non-zero gradients on the first step; the encoder, slots and memories get theirs
from the second step on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput
from vidreid.models.aggregators.staformer_blocks import TokenTransformer
from vidreid.models.aggregators.sticc_blocks import MemoryGuidedAttention, SlotCrossAttention


class STICC(Aggregator):
    """See the module docstring for the design. Input ``[F (B, T, C, h, w)]`` (stage 4).

    Output ``features=[RV_FG (B, C), RV_SA (B, 2C)]``; ``aux``: ``slot_attention (B, M, T·N)``,
    ``relevance (B, T, N)``, ``spatial_attention (B, T, N)``, ``temporal_attention (B, T)``.

    Args:
        in_channels: ``(C,)``. d_model: 512. num_heads: 8. enc_layers: 2. ffn_dim: 2048. dropout: 0.1.
        num_slots: 6. pos_grid: (16, 8). num_spatial_items: 10. num_temporal_items: 5.
        identity_init: the identity-preserving start of the module docstring (``False``: the design as drawn).
    """

    stages = (4,)

    def __init__(
        self,
        in_channels: tuple[int, ...],
        d_model: int = 512,
        num_heads: int = 8,
        enc_layers: int = 2,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        num_slots: int = 6,
        pos_grid: tuple[int, int] = (16, 8),
        num_spatial_items: int = 10,
        num_temporal_items: int = 5,
        num_classes: int = 0,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
        identity_init: bool = False,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        c = self.in_channels[-1]
        self.feature_dims = (c, 2 * c)
        self.pos_grid = (int(pos_grid[0]), int(pos_grid[1]))
        self.in_proj = nn.Linear(c, d_model)
        self.pos = nn.Parameter(torch.randn(1, self.pos_grid[0] * self.pos_grid[1], d_model) * 0.02)
        self.encoder = TokenTransformer(d_model, enc_layers, num_heads, ffn_dim, dropout, qkv_bias=True)
        self.enc_norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, c)
        self.slots = nn.Parameter(torch.randn(1, num_slots, d_model))
        self.slot_attention = SlotCrossAttention(d_model, num_heads, ffn_dim, dropout)
        self.slot_norm = nn.LayerNorm(d_model)
        self.rel_q = nn.Linear(d_model, d_model)
        self.rel_k = nn.Linear(d_model, d_model)
        self.spatial_memory = MemoryGuidedAttention(d_model, num_spatial_items)
        self.temporal_memory = MemoryGuidedAttention(d_model, num_temporal_items)
        self.identity_init = bool(identity_init)
        if self.identity_init:  # u = FM, uniform relevance and memory attentions: every output slot = TAP at step 0
            for layer in (self.out_proj, self.rel_k):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
            # a memory query's bias adds the same value to every candidate's logit (it cancels in the softmax)
            nn.init.zeros_(self.spatial_memory.query.weight)
            nn.init.zeros_(self.temporal_memory.query.weight)

    def _pos(self, h: int, w: int) -> Tensor:
        if (h, w) == self.pos_grid:
            return self.pos
        gh, gw = self.pos_grid
        grid = self.pos.reshape(1, gh, gw, -1).permute(0, 3, 1, 2)
        return F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        fm = maps[-1]
        b, t, c, h, w = fm.shape
        n = h * w
        tokens = fm.flatten(3).transpose(2, 3).reshape(b * t, n, c)  # (BT, N, C)
        e = self.enc_norm(self.encoder(self.in_proj(tokens) + self._pos(h, w)))  # (BT, N, d)
        u = (tokens + self.out_proj(e)).view(b, t, n, c)
        e = e.view(b, t, n, -1)
        d = e.shape[-1]

        slots, attn = self.slot_attention(self.slots.expand(b, -1, -1), e.reshape(b, t * n, d))
        # relevance-guided detail decoder
        match = self.rel_q(e.reshape(b, t * n, d)) @ self.rel_k(self.slot_norm(slots)).transpose(1, 2) / math.sqrt(d)
        relevance = match.amax(dim=2).softmax(dim=1)  # (B, T·N)
        rv_fg = torch.einsum("bl,blc->bc", relevance, u.reshape(b, t * n, c))
        # memory-guided abstraction decoder
        frame_desc = e.mean(dim=2)  # (B, T, d)
        a = self.spatial_memory(frame_desc, e)  # (B, T, N)
        v_s = torch.einsum("btn,btnc->bc", a, u) / t
        bt = self.temporal_memory(frame_desc.mean(dim=1, keepdim=True), frame_desc.unsqueeze(1)).squeeze(1)  # (B, T)
        v_t = torch.einsum("bt,btc->bc", bt, u.mean(dim=2))
        aux = {
            "slot_attention": attn,
            "relevance": relevance.view(b, t, n),
            "spatial_attention": a,
            "temporal_attention": bt,
        }
        return AggregatorOutput(features=[rv_fg, torch.cat([v_s, v_t], dim=1)], aux=aux)
