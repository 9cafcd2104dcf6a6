"""STA: spatial-temporal attention with parameter-free attention maps (Fu et al., AAAI 2019; docs/methods.md §3).

No official code. ``attention="paper"`` follows the paper's formulas (§3.1); ``attention="agrl"`` the third-party
reimplementation weleen/AGRL.pytorch ``torchreid/models/sta.py`` (§3.2). Backbone: ResNet-50, last stride 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vidreid.models.aggregators.base import Aggregator, AggregatorOutput, temporal_average_pool, zero_linear
from vidreid.models.aggregators.weight_init import classifier_init_, kaiming_init_

ATTENTIONS = ("paper", "agrl")


def frame_attention(f: Tensor, mode: str = "paper") -> Tensor:
    """Per-frame spatial attention ``g (B, N, h, w)`` from maps ``f (B, N, C, h, w)``.

    ``paper``: ``g(h,w) = ‖f(h,w,:)‖₂² / Σ_{h',w'} ‖f(h',w',:)‖₂²`` (squared channel norm, L1 over space).
    ``agrl``: ``g(h,w) = ‖f(h,w,:)‖₂ / ‖(‖f(h',w',:)‖₂)_{h',w'}‖₂`` (channel norm, L2 over space).
    """
    if mode == "paper":
        s = f.pow(2).sum(dim=2)
        return s / s.sum(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    if mode == "agrl":
        s = f.norm(dim=2)
        return s / s.flatten(2).norm(dim=2)[..., None, None].clamp_min(1e-12)
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {mode!r}")


def stripe_of_rows(h: int, k: int, device: torch.device | None = None) -> Tensor:
    """Stripe index ``(h,)`` of each row for K contiguous horizontal stripes (``torch.tensor_split`` sizes).

    Raises: ValueError if ``k > h``.
    """
    if not 1 <= k <= h:
        raise ValueError(f"cannot split a map of {h} rows into num_stripes={k} horizontal stripes")
    return torch.cat(
        [torch.full((len(c),), i, dtype=torch.long) for i, c in enumerate(torch.arange(h).tensor_split(k))]
    ).to(device)


class STA(Aggregator):
    """Parameter-free spatial-temporal attention + two-way stripe fusion + FC head.

    1. ``g = frame_attention(f)``; stripe scores ``s_{n,k}`` = sum (paper) / mean (agrl) of g over stripe k.
    2. ``S(n,k) = s_{n,k} / Σ_{n'} s_{n',k}`` — the (B, N, K) attention matrix.
    3. Stripe k of X₁ = ``f_{argmax_n S(n,k), k}``; stripe k of X₂ = ``Σ_n S(n,k) f_{n,k}``; ``[X₁; X₂]`` → GAP
       (computed on row means, identical to GAP of the fused map) → ``(B, 2C)``.
    4. ``f = ReLU(BN1d(Linear_{2C→embed_dim, no bias}(·)))`` (AGRL head; its ``_init_params`` draws every Linear
       from N(0, 0.01): ``torchreid/models/sta.py`` ~l.180; BN 1/0).

    Output: ``features=[f (B, embed_dim)]``; ``aux={"spatial_attention": g (B, N, h, w),
    "temporal_attention": S (B, N, K)}``.

    Declared head (read by the ReIDNet): ``linear`` — AGRL (and the paper) apply a classifier ``Linear(embed_dim,
    num_classes)`` **with bias** directly to ``f`` (``torchreid/models/sta.py`` ~l.245), no BNNeck; the triplet loss
    sees ``f`` itself and ``f`` is the test embedding. AGRL's init: N(0, 0.01), bias 0 (``classifier_std``).
    ``model.head=bnneck model.classifier_bias=false`` restores a BoT BNNeck (BN + bias-free classifier).

    Inter-frame regulariser (paper; training only): :class:`~vidreid.losses.criterion.STARegulariser` on
    ``aux["spatial_attention"]`` (``conf/criterion/sta.yaml``, weight λ unpublished, 1.0 by default).

    Identity-preserving start (``identity_init=True``; off by default and in the paper recipe; docs/methods.md §0.4):
    the feature is ``TAP(f) + W₀ ReLU(BN1d(Linear(·)))`` with ``W₀ = Linear(embed_dim → C, no bias)``
    zero-initialised, so at step 0 it equals ``TAP(f) = mean_n mean_{h,w} f (B, C)`` exactly; ``feature_dims = (C,)``.
    With the declared ``linear`` head that feature is also the test embedding. ``W₀``'s gradient is non-zero on the
    first step (its input is a ReLU output); the FC and BN get theirs from the second step on. The attention maps
    (and so the regulariser's input) are unchanged.

    Args:
        in_channels: ``(C,)`` of stage 4 (2048). num_stripes: K (4). embed_dim: 1024.
        attention: ``paper`` | ``agrl``.
        identity_init: the identity-preserving start above (``False``: the paper / AGRL model).

    Raises:
        ValueError: unknown ``attention``; ``num_stripes`` larger than the map height (at forward).
    """

    stages = (4,)
    head = "linear"
    classifier_bias = True
    classifier_std = 0.01

    def __init__(
        self,
        in_channels: tuple[int, ...],
        num_stripes: int = 4,
        embed_dim: int = 1024,
        attention: str = "paper",
        num_classes: int = 0,
        map_sizes: tuple[tuple[int, int], ...] | None = None,
        identity_init: bool = False,
    ):
        super().__init__(in_channels, num_classes, map_sizes)
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.num_stripes = num_stripes
        self.attention = attention
        self.identity_init = bool(identity_init)
        self.feature_dims = (self.in_channels[-1] if self.identity_init else embed_dim,)
        self.fc = nn.Linear(2 * self.in_channels[-1], embed_dim, bias=False)
        self.bn = nn.BatchNorm1d(embed_dim)
        kaiming_init_(self)
        classifier_init_(self.fc, std=0.01)  # AGRL's N(0, 0.01) for its Linear layers
        # identity-preserving start: TAP(f) + W0 feat with W0 = 0 (built after the AGRL init: it draws the same numbers)
        self.identity_proj = zero_linear(embed_dim, self.in_channels[-1]) if self.identity_init else None

    def forward(self, maps: list[Tensor]) -> AggregatorOutput:
        """Args: maps: ``[f (B, N, C, h, w)]``. Returns ``features=[f (B, embed_dim)]``."""
        f = maps[-1]
        b, n, c, h, w = f.shape
        g = frame_attention(f, self.attention)
        stripe = stripe_of_rows(h, self.num_stripes, f.device)  # (h,)
        rows_g = g.sum(dim=3)  # (B, N, h)
        scores = torch.zeros(b, n, self.num_stripes, dtype=g.dtype, device=g.device).index_add_(2, stripe, rows_g)
        if self.attention == "agrl":  # stripe means
            scores = scores / (torch.bincount(stripe, minlength=self.num_stripes).to(g.dtype) * w)
        s = scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)  # (B, N, K)

        rows = f.mean(dim=4)  # (B, N, C, h): row means
        s_rows = s[:, :, stripe]  # (B, N, h)
        best = s.argmax(dim=1)[:, stripe]  # (B, h)
        x1 = rows.gather(1, best[:, None, None, :].expand(b, 1, c, h)).squeeze(1).mean(dim=2)  # (B, C)
        x2 = torch.einsum("bnh,bnch->bc", s_rows, rows) / h
        feat = torch.relu(self.bn(self.fc(torch.cat([x1, x2], dim=1))))
        if self.identity_proj is not None:  # exactly TAP(f) at step 0
            feat = temporal_average_pool(f) + self.identity_proj(feat)
        return AggregatorOutput(features=[feat], aux={"spatial_attention": g, "temporal_attention": s})
