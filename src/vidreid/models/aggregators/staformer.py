"""STAFormer aggregator (HWZhou99/STAFormer ``models/make_model.py``, commit 593b414; docs/methods.md §1.1-§1.2).

Backbone: ResNeSt-50 (timm ``resnest50d``: radix 2, deep stem of width 32, average-pool downsampling, avd — the
same design as the reference's ``resnest50``), last stride 2, consuming stage 3 ``L`` and stage 4 ``G``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput, zero_linear
from vidreid.models.aggregators.staformer_blocks import GeM, SpatialAttention2d, TokenTransformer
from vidreid.models.aggregators.weight_init import classifier_init_, kaiming_init_


class STAFormer(Aggregator):
    """Key-point tokens + spatial transformer per frame + temporal transformer per clip.

    Per frame (``L (C3, h3, w3)``, ``G (C4, h4, w4)``; 1024×16×8 and 2048×8×4 at 256×128):
      1. ``g = GeM(G)`` (learnable p = 3, clamp 1e-6).
      2. ``L~ = softplus(W2 ReLU(W1 L)) ⊙ L``; adaptive max pool to ``local_grid`` (4×2, equal to the reference's
         4×4/stride-4 max pool on a 16×8 map, and following other map sizes); each cell → Linear(C3, dim) = 8
         local tokens; Linear(C4, dim)(g) = 1 global token.
      3. ``[CLS; 8 local; 1 global] + pos`` (CLS and pos ~ N(0, 1)) → 3 pre-LN blocks (12 heads, no qkv bias,
         dropout 0.1, MLP 3072, no final LN) → CLS output ``z_t (dim)``.
    Per clip: ``z (B, T, dim) + pos[:T]`` (table of ``seq_len + 1`` rows, only the first T used, as in the
    reference) → temporal transformer (same configuration) → ``X (B, T, dim)``; ``v = mean_t X``.

    Output: ``features=[v (B, dim)]``. The ReIDNet's BNNeck gives ``f = BN(v)``; the test embedding is the default
    post-BN feature ``BN(mean_t X)``, equal to the reference's ``mean_t BN(X_t)`` because BN is affine at test time.
    Training ``aux``: ``tokens X (B, T, dim)``, ``contrast i = Conv1d_1x1(BN(X)) (B, dim, T)``,
    ``frame_logits_local / frame_logits_global (B, T, num_classes)``, ``frame_bn_local (B, T, C3)``,
    ``frame_bn_global (B, T, C4)`` (frame-level deep-supervision heads: GAP(L) / GeM(G) → BN1d → Linear(num_classes)).

    The contrastive branch's BN is shared with the video-level BNNeck in the reference (one ``self.bn`` used on ``v``
    and on the tokens, so its affine parameters get both gradients and its running statistics both updates). Here it
    is a separate BN1d unless the ReIDNet calls :meth:`bind_neck_bn` with the BNNeck's BN (``share_neck_bn``). The
    reference applies that BN to ``v`` first and to the tokens second (``make_model.py`` l.192–195: ``f = self.bn(v)``
    then ``i = self.bn(x)``), and the order changes the running statistics (momentum 0.1 each update). When bound,
    ``aux["contrast"]`` is therefore computed in :meth:`after_neck`, which the ReIDNet calls after its BNNeck ran on
    ``v``; with its own BN it is computed in ``forward``.

    Head (declared for the ReIDNet): BNNeck whose video classifier ``Linear(dim, num_classes)`` has a bias
    (``make_model.py`` ~l.130; ``classifier_bias = True``), N(0, 0.001) init, bias 0.

    Init (reference): BN γ = 1, β = 0; frame classifiers N(0, 0.001), bias 0; projection conv Kaiming fan-in, bias 0;
    CLS / positional tables N(0, 1); all other layers PyTorch defaults.

    Args:
        in_channels: ``(C3, C4)`` of backbone stages 3 and 4.
        num_classes: training identities (for the frame-level classifiers).
        dim, depth, heads, mlp_dim, dropout: transformer sizes (768, 3, 12, 3072, 0.1).
        seq_len: training T; the temporal positional table has ``seq_len + 1`` rows.
        local_grid: grid of local tokens (4, 2).
        attn_hidden: hidden width of the spatial attention (512).
        gem_p, gem_eps: GeM initial exponent and clamp.
        share_neck_bn: read by the ReIDNet: whether to call :meth:`bind_neck_bn` (reference behaviour).
        identity_init: the identity-preserving start above (``False``: the reference model).
        map_sizes: unused (the local grid is adaptive).

    Identity-preserving start (``identity_init=True``; off by default and in the paper recipes, which keep the
    reference's layout above; docs/methods.md §0.4): the clip feature lives in the stage-4 channel space,
    ``X'_t = GAP(G_t) + W₀ X_t (C4)`` with ``W₀ = Linear(dim → C4, no bias)`` zero-initialised, and
    ``v = mean_t X'_t``, so at step 0 ``v = TAP(G) = mean_t mean_{h,w} G`` exactly (plain mean pooling, not the GeM of
    the global token). ``feature_dims = (C4,)``; ``aux["tokens"]`` is ``X' (B, T, C4)`` and the contrastive branch
    ``Conv1d_1x1(BN(X'))`` works on it (BN and projection of width C4; the BN is still the BNNeck's when bound).
    ``W₀`` gets the gradient ``Σ (dL/dX'_t) X_tᵀ ≠ 0`` on the first step; the transformers, tokens and attention get
    theirs from the second step on (through ``W₀``). The frame-level heads are unchanged.

    Losses (``conf/criterion/staformer.yaml``): :class:`~vidreid.losses.criterion.FrameCE`,
    :class:`~vidreid.losses.criterion.FrameTriplet` (deep supervision on the frame heads, reference weighting) and
    :class:`~vidreid.losses.criterion.TemporalInfoNCE` on ``aux["contrast"]`` (weight 0.01, τ 0.07, groups of 4 half-clips,
    the reference's normalisation).

    Raises:
        ValueError: wrong number of input channels, or T > seq_len + 1 at forward.
    """

    stages = (3, 4)
    classifier_bias = True

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_classes: int,
        dim: int = 768,
        depth: int = 3,
        heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        seq_len: int = 8,
        local_grid: tuple[int, int] = (4, 2),
        attn_hidden: int = 512,
        gem_p: float = 3.0,
        gem_eps: float = 1e-6,
        share_neck_bn: bool = True,
        identity_init: bool = False,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        if len(self.in_channels) != 2:
            raise ValueError(f"STAFormer consumes stages (3, 4): expected 2 in_channels, got {self.in_channels}")
        loc_dim, glo_dim = self.in_channels
        self.identity_init = bool(identity_init)
        self.feature_dims = (glo_dim if self.identity_init else dim,)
        self.local_grid = tuple(int(s) for s in local_grid)
        self.share_neck_bn = share_neck_bn
        self._neck_bound = False

        self.gem = GeM(gem_p, gem_eps)
        self.spatial_attention = SpatialAttention2d(loc_dim, attn_hidden)
        # frame-level deep supervision heads
        self.frame_bn_local = nn.BatchNorm1d(loc_dim)
        self.frame_classifier_local = nn.Linear(loc_dim, num_classes)
        self.frame_bn_global = nn.BatchNorm1d(glo_dim)
        self.frame_classifier_global = nn.Linear(glo_dim, num_classes)
        # tokens (the reference's 1x1-conv PatchEmbed == a Linear over channels)
        self.local_embed = nn.Linear(loc_dim, dim)
        self.global_embed = nn.Linear(glo_dim, dim)
        n_tokens = self.local_grid[0] * self.local_grid[1] + 2  # CLS + locals + global
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.spatial_pos = nn.Parameter(torch.randn(1, n_tokens, dim))
        self.spatial_transformer = TokenTransformer(dim, depth, heads, mlp_dim, dropout)
        self.temporal_pos = nn.Parameter(torch.randn(1, seq_len + 1, dim))
        self.temporal_transformer = TokenTransformer(dim, depth, heads, mlp_dim, dropout)
        # contrastive branch
        self.contrast_bn = nn.BatchNorm1d(dim)
        self.projection = nn.Conv1d(dim, dim, kernel_size=1)

        for bn in (self.frame_bn_local, self.frame_bn_global, self.contrast_bn):
            kaiming_init_(bn)
        classifier_init_(self.frame_classifier_local)
        classifier_init_(self.frame_classifier_global)
        kaiming_init_(self.projection)
        # identity-preserving start: X'_t = GAP(G_t) + W0 X_t with W0 = 0, and a contrastive branch of width C4 (built
        # last, replacing the dim-wide one: the reference's layers draw the same random numbers with the switch on or off)
        self.identity_proj = None
        if self.identity_init:
            self.contrast_bn = nn.BatchNorm1d(glo_dim)
            self.projection = nn.Conv1d(glo_dim, glo_dim, kernel_size=1)
            kaiming_init_(self.contrast_bn)
            kaiming_init_(self.projection)
            self.identity_proj = zero_linear(dim, glo_dim)

    def bind_neck_bn(self, bn: nn.BatchNorm1d) -> None:
        """Use the video-level BNNeck's BN for the contrastive branch too (reference behaviour; drops the own BN)."""
        if bn.num_features != self.feature_dims[0]:
            raise ValueError(f"neck BN has {bn.num_features} features, expected {self.feature_dims[0]}")
        self.contrast_bn = bn
        self._neck_bound = True

    def after_neck(self, out: AggregatorOutput) -> None:
        """With a bound neck BN: ``aux["contrast"] = Conv1d_1x1(BN(X))``, after the ReIDNet's ``BN(v)`` (the
        reference's order). Nothing to do otherwise (``forward`` computed it)."""
        if self._neck_bound and self.training:
            out.aux["contrast"] = self.projection(self.contrast_bn(out.aux["tokens"].transpose(1, 2)))

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        """Args: maps: ``[L (B, T, C3, h3, w3), G (B, T, C4, h4, w4)]``. Returns ``features=[v (B, dim)]``."""
        loc, glo = maps
        b, t = loc.shape[:2]
        if t > self.temporal_pos.shape[1]:
            raise ValueError(
                f"STAFormer got T={t} frames but its temporal positional table has {self.temporal_pos.shape[1]} rows "
                f"(seq_len + 1); raise aggregator.seq_len"
            )
        loc = loc.flatten(0, 1)  # (BT, C3, h3, w3)
        glo = glo.flatten(0, 1)
        g = self.gem(glo)  # (BT, C4)
        aux: dict[str, Tensor] = {}
        if self.training:
            bn_loc = self.frame_bn_local(loc.mean(dim=(2, 3)))
            bn_glo = self.frame_bn_global(g)
            aux["frame_bn_local"] = bn_loc.view(b, t, -1)
            aux["frame_bn_global"] = bn_glo.view(b, t, -1)
            aux["frame_logits_local"] = self.frame_classifier_local(bn_loc).view(b, t, -1)
            aux["frame_logits_global"] = self.frame_classifier_global(bn_glo).view(b, t, -1)

        attended = self.spatial_attention(loc) * loc
        key_points = F.adaptive_max_pool2d(attended, self.local_grid).flatten(2).transpose(1, 2)  # (BT, 8, C3)
        tokens = torch.cat(
            [
                self.cls_token.expand(b * t, -1, -1),
                self.local_embed(key_points),
                self.global_embed(g).unsqueeze(1),
            ],
            dim=1,
        )
        z = self.spatial_transformer(tokens + self.spatial_pos)[:, 0].reshape(b, t, -1)  # (B, T, dim)
        x = self.temporal_transformer(z + self.temporal_pos[:, :t])  # (B, T, dim)
        if self.identity_proj is not None:  # X'_t = GAP(G_t) + W0 X_t (B, T, C4): at step 0 mean_t X'_t = TAP(G)
            x = glo.mean(dim=(2, 3)).view(b, t, -1) + self.identity_proj(x)
        aux["tokens"] = x
        if self.training and not self._neck_bound:  # bound: after the neck's BN(v), in after_neck
            aux["contrast"] = self.projection(self.contrast_bn(x.transpose(1, 2)))  # (B, dim, T)
        return AggregatorOutput(features=[x.mean(dim=1)], aux=aux)
