"""The published aggregators: STAFormer, PSTA, STA, STICC, PCB (docs/methods.md §1-§5.1).

Most tests feed random maps into small configurations; the full-size models are only built for parameter counts
(against counts derived by hand from the reference architectures) and one end-to-end forward each.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vidreid.losses.functional import slot_diversity_loss, temporal_infonce
from vidreid.models.aggregators.base import AggregatorOutput
from vidreid.models.aggregators.pcb import PCB
from vidreid.models.aggregators.psta import PSTA
from vidreid.models.aggregators.psta_blocks import SRA, TRA
from vidreid.models.aggregators.sta import STA
from vidreid.models.aggregators.staformer import STAFormer
from vidreid.models.aggregators.staformer_blocks import GeM
from vidreid.models.aggregators.sticc import STICC
from vidreid.models.reid_net import ReIDOutput

REPO = Path(__file__).resolve().parents[1]
N_ID = 7


def ce(logits, pids):
    return F.cross_entropy(logits, pids, label_smoothing=0.1)


def triplet(x, pids, margin=0.3):
    """Batch-hard triplet on d = -cos."""
    x = F.normalize(x, dim=1)
    d = -x @ x.t()
    same = pids[:, None] == pids[None, :]
    ap = d.masked_fill(~same, -2).amax(1)
    an = d.masked_fill(same, 2).amin(1)
    return F.relu(ap - an + margin).mean()


# small configurations fed with random maps: (factory, maps(B, T))
SMALL = {
    "staformer": (
        lambda: STAFormer((64, 128), num_classes=N_ID, dim=64, heads=4, mlp_dim=128, seq_len=8, attn_hidden=32),
        lambda b, t: [torch.rand(b, t, 64, 16, 8), torch.rand(b, t, 128, 8, 4)],
    ),
    "psta": (
        lambda t=8: PSTA(
            (128,), reduced_dim=64, mid_dim=32, embed_dim=16, num_levels=int(math.log2(t)) if t < 8 else 3,
            map_size=(16, 8),
        ),
        lambda b, t: [torch.rand(b, t, 128, 16, 8)],
    ),
    "sta": (lambda: STA((64,), embed_dim=32), lambda b, t: [torch.rand(b, t, 64, 16, 8)]),
    "sticc": (
        lambda: STICC(
            (64,), d_model=32, num_heads=4, ffn_dim=64, num_slots=4, num_spatial_items=3, num_temporal_items=2
        ),
        lambda b, t: [torch.rand(b, t, 64, 16, 8)],
    ),
    "pcb": (lambda: PCB((64,), num_classes=N_ID), lambda b, t: [torch.rand(b, t, 64, 24, 12)]),
}
TRAIN_ONLY_AUX = {
    "staformer": {"contrast", "frame_logits_local", "frame_logits_global", "frame_bn_local", "frame_bn_global"},
    "pcb": {"part_logits"},
}


def own_losses(name: str, out: AggregatorOutput, pids: torch.Tensor, **weights) -> dict[str, torch.Tensor]:
    """The method's own criterion terms (conf/criterion/<name>.yaml) on an aggregator output, weighted."""
    from vidreid.losses.criterion import FrameCE, FrameTriplet, PartCE, SlotDiversity, STARegulariser, TemporalInfoNCE

    terms = {
        "staformer": lambda: {"frame_ce": FrameCE(), "frame_triplet": FrameTriplet(), "nce": TemporalInfoNCE(0.01)},
        "sta": lambda: {"sta_reg": STARegulariser(weights.get("sta_reg", 1.0))},
        "sticc": lambda: {"slot_diversity": SlotDiversity(0.1)},
        "pcb": lambda: {"pcb_ce": PartCE()},
        "psta": dict,
    }[name]()
    wrapped = ReIDOutput(features=out.features, bn_features=out.features, logits=[], agg=out)
    values = {k: term(wrapped, pids) for k, term in terms.items()}
    return {k: terms[k].weight * v for k, v in values.items() if v is not None}


def build(name: str, t: int):
    make, maps = SMALL[name]
    agg = make(t) if name == "psta" else make()
    return agg, maps


@pytest.mark.parametrize("name", list(SMALL))
@pytest.mark.parametrize("b,t", [(2, 4), (4, 8)])
def test_output_shapes_train_and_eval(name, b, t):
    torch.manual_seed(0)
    agg, maps = build(name, t)
    t_in = 1 if name == "pcb" else t
    x = maps(b, t_in)
    out = agg(x)
    assert [tuple(f.shape) for f in out.features] == [(b, d) for d in agg.feature_dims]
    assert TRAIN_ONLY_AUX.get(name, set()) <= set(out.aux)
    pids = torch.arange(b) // 2
    losses = own_losses(name, out, pids)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    agg.eval()
    with torch.no_grad():
        e1, e2 = agg(x), agg(x)
    assert not TRAIN_ONLY_AUX.get(name, set()) & set(e1.aux)
    for f1, f2 in zip(e1.features, e2.features):
        assert torch.equal(f1, f2)  # no dropout / randomness at eval
    emb = agg.test_embedding(e1.features, e1.features)
    expect = {"psta": agg.feature_dims[-1]}.get(name, sum(agg.feature_dims))
    assert emb.shape == (b, expect)


@pytest.mark.parametrize("name", list(SMALL))
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(1)
    agg, maps = build(name, 4)
    x = maps(4, 1 if name == "pcb" else 4)
    pids = torch.tensor([0, 0, 1, 1])
    out = agg(x)
    loss = sum(triplet(f, pids) + f.pow(2).mean() for f in out.features)
    loss = loss + sum(own_losses(name, out, pids).values())
    loss.backward()
    dead = [n for n, p in agg.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not dead


# ---------------------------------------------------------------- STAFormer


def reference_infonce(tokens, k, tau, reduction="reference"):
    """Direct transcription of docs/methods.md §1.2 with explicit loops (halves of T/2, groups of k half-clips).

    ``reference``: as HWZhou99/STAFormer ``utils/losses.py`` ``InfoNce`` l.186–204 — the positive mask is built for
    one group and broadcast, so the sum of the log-probabilities over *all* groups is divided by *one* group's
    positive-pair count. ``mean``: divided by the number of all positive pairs.
    """
    b, d, t = tokens.shape
    half = t // 2
    samples = [tokens[c, :, h * half : (h + 1) * half] for c in range(b) for h in range(2)]  # (D, half) each
    terms, pairs_per_group = [], 0
    for g in range(len(samples) // k):
        toks = [(F.normalize(samples[g * k + s][:, p], dim=0), p) for s in range(k) for p in range(half)]
        pairs_per_group = 0
        for ia, (za, pa) in enumerate(toks):
            neg = sum(math.exp(float(za @ zn) / tau) for zn, pn in toks if pn != pa)
            for ip, (zp, pp) in enumerate(toks):
                if ip != ia and pp == pa:
                    s = math.exp(float(za @ zp) / tau)
                    terms.append(math.log(s / (s + neg)))
                    pairs_per_group += 1
    return -sum(terms) / (pairs_per_group if reduction == "reference" else len(terms))


@pytest.mark.parametrize("reduction", ["reference", "mean"])
@pytest.mark.parametrize("b,t,k", [(4, 8, 4), (2, 4, 4), (3, 6, 2)])
def test_temporal_infonce_matches_loop_reference(b, t, k, reduction):
    torch.manual_seed(2)
    tokens = torch.randn(b, 16, t, dtype=torch.float64)
    got = temporal_infonce(tokens, group_size=k, temperature=0.07, reduction=reduction)
    assert got.item() == pytest.approx(reference_infonce(tokens, k, 0.07, reduction), rel=1e-5)


def test_temporal_infonce_reference_is_groups_times_mean_at_the_reference_batch():
    """The reference's gathered batch (32 clips of T = 8, K = 4): 16 groups, so its value is 16x the per-pair mean;
    the old vidreid value (the plain mean) gave InfoNCE a 16x smaller weight."""
    torch.manual_seed(0)
    tokens = torch.randn(32, 16, 8)
    ref, mean = temporal_infonce(tokens, 4, 0.07, "reference"), temporal_infonce(tokens, 4, 0.07, "mean")
    assert ref.item() == pytest.approx(16 * mean.item(), rel=1e-5)
    small = torch.randn(2, 16, 8)  # one group: both reductions agree
    assert temporal_infonce(small, reduction="reference").item() == pytest.approx(temporal_infonce(small).item())
    with pytest.raises(ValueError, match="InfoNCE reduction"):
        temporal_infonce(small, reduction="sum")


def test_temporal_infonce_errors():
    with pytest.raises(ValueError, match="even number of frames"):
        temporal_infonce(torch.randn(4, 8, 5))
    with pytest.raises(ValueError, match="group_size=4"):
        temporal_infonce(torch.randn(3, 8, 8))


def test_gem_hand_values():
    gem = GeM(3.0)
    x = torch.tensor([1.0, 2.0, 0.0, -5.0]).view(1, 1, 2, 2)  # clamp: 0, -5 -> 1e-6
    assert gem(x).item() == pytest.approx(((1 + 8 + 2e-18) / 4) ** (1 / 3), rel=1e-6)
    assert gem(torch.full((1, 3, 4, 4), 2.5)).allclose(torch.full((1, 3), 2.5))


def test_staformer_local_tokens_equal_reference_maxpool_and_weighting():
    torch.manual_seed(3)
    agg, maps = build("staformer", 4)
    seen = {}
    agg.local_embed.register_forward_hook(lambda m, i, o: seen.setdefault("in", i[0]))
    x = maps(2, 4)
    agg(x)
    loc = x[0].flatten(0, 1)
    ref = F.max_pool2d(agg.spatial_attention(loc) * loc, 4).flatten(2).transpose(1, 2)  # reference: 4x4 on 16x8
    assert seen["in"].shape == (8, 8, 64) and torch.allclose(seen["in"], ref)
    # frame-level weighting on hand-set per-frame losses: local frame t costs t+1, global 10(t+1)
    t = 4
    frame = torch.arange(1.0, t + 1).view(1, t, 1).expand(2, t, 3)
    out = AggregatorOutput(
        features=[],
        aux={
            "frame_logits_local": frame,
            "frame_logits_global": 10 * frame,
            "frame_bn_local": frame,
            "frame_bn_global": 10 * frame,
            "contrast": torch.randn(2, 8, t),
        },
    )
    from vidreid.losses.criterion import _frame_weighted

    first = lambda x, y: x[0, 0]  # noqa: E731
    aux, pids = out.aux, torch.tensor([0, 1])
    got = _frame_weighted(first, aux["frame_logits_local"], aux["frame_logits_global"], pids, "reference")
    assert got.item() == pytest.approx(2.5 / (2 * t) + 25 / 2)  # reference bug: 1/(2T), 1/2
    got = _frame_weighted(first, aux["frame_bn_local"], aux["frame_bn_global"], pids, "intended")
    assert got.item() == pytest.approx((2.5 + 25) / 2)
    nce = own_losses("staformer", out, pids)["nce"]
    assert nce.item() == pytest.approx(0.01 * temporal_infonce(out.aux["contrast"]).item(), rel=1e-5)


def test_staformer_errors_and_bn_sharing():
    from vidreid.losses.criterion import FrameCE

    with pytest.raises(ValueError, match="frame loss weighting"):
        FrameCE(weighting="nope")
    agg, maps = build("staformer", 4)
    with pytest.raises(ValueError, match="T=10"):
        agg(maps(1, 10))  # table has seq_len + 1 = 9 rows
    agg(maps(1, 9))  # the reference's (T+1)-row table admits T = seq_len + 1
    neck = torch.nn.BatchNorm1d(64)
    n_before = sum(p.numel() for p in agg.parameters())
    agg.bind_neck_bn(neck)
    assert agg.contrast_bn is neck and sum(p.numel() for p in agg.parameters()) == n_before  # own BN replaced
    # test embedding = BN(mean_t X) = mean_t BN(X_t) at eval
    neck.running_mean.normal_()
    neck.running_var.uniform_(0.5, 2)
    neck.eval()
    x = torch.randn(3, 5, 64)
    assert torch.allclose(neck(x.mean(1)), neck(x.transpose(1, 2)).mean(-1), atol=1e-5)


# ---------------------------------------------------------------- PSTA


def loop_relation(r_first, r_second, h, w):
    """[row p of r_first ; column p of r_second] at each position p → (B, 2HW, h, w), by explicit loop."""
    cols = [torch.cat([r_first[:, p, :], r_second[:, :, p]], dim=1) for p in range(h * w)]
    return torch.stack(cols, dim=-1).view(r_first.shape[0], -1, h, w)


def test_tra_and_sra_match_per_position_loop():
    torch.manual_seed(4)
    c, h, w, e_dim = 32, 4, 2, 8
    tra, sra = TRA(c, (h, w), e_dim).eval(), SRA(c, (h, w), e_dim).eval()
    assert tra.relation[0].in_channels == 2 * h * w
    x = torch.rand(2, 4, c, h, w)
    e = torch.rand(2, 4, e_dim, h, w)
    flat, v = x.flatten(0, 1), x.mean(dim=(3, 4))
    with torch.no_grad():
        y_t = tra(x, flat, v, e)
        y = sra(x, flat, e, v, y_t).view(2, 2, c, h, w)
        theta = lambda z: F.relu(z @ tra.theta.weight[:, :, 0].t())  # noqa: E731
        for k, (i, j) in enumerate([(0, 1), (2, 3)]):
            g = lambda s, d: torch.einsum("bcp,bcq->bpq", tra.gamma(x[:, s]).flatten(2), tra.beta(x[:, d]).flatten(2))  # noqa
            r_ab, r_ba = g(i, j), g(j, i)
            m_a = torch.sigmoid(
                tra.spatial(
                    torch.cat(
                        [
                            tra.pair_embed(torch.cat([e[:, i], e[:, j]], 1)),
                            tra.relation(loop_relation(r_ab, r_ba, h, w)),
                        ],
                        1,
                    )
                )
            )
            m_b = torch.sigmoid(
                tra.spatial(
                    torch.cat(
                        [
                            tra.pair_embed(torch.cat([e[:, j], e[:, i]], 1)),
                            tra.relation(loop_relation(r_ba, r_ab, h, w)),
                        ],
                        1,
                    )
                )
            )
            c_a = torch.sigmoid(tra.channel_mlp(torch.cat([theta(v[:, i]), theta(v[:, j])], 1)))[..., None, None]
            c_b = torch.sigmoid(tra.channel_mlp(torch.cat([theta(v[:, j]), theta(v[:, i])], 1)))[..., None, None]
            expect_t = F.relu(c_a * m_a * x[:, i] + c_b * m_b * x[:, j]) ** 2  # the element-wise square
            assert torch.allclose(y_t[:, k], expect_t, atol=1e-5)
            s = []
            for f in (i, j):
                gs = torch.einsum("bcp,bcq->bpq", sra.alpha(x[:, f]).flatten(2), sra.delta(x[:, f]).flatten(2))
                s.append(torch.sigmoid(sra.spatial(torch.cat([e[:, f], sra.relation(loop_relation(gs, gs, h, w))], 1))))
            al = [torch.sigmoid(sra.channel_mlp(v[:, f]))[..., None, None] for f in (i, j)]
            expect = expect_t + F.relu(al[0] * s[0] * x[:, i] + al[1] * s[1] * x[:, j])
            assert torch.allclose(y[:, k], expect, atol=1e-5)


def test_psta_pyramid_fusion_and_test_embedding():
    torch.manual_seed(5)
    agg, maps = build("psta", 8)
    zs = []
    for level in agg.levels:
        level.register_forward_hook(lambda m, i, o: zs.append(o))
    out = agg(maps(2, 8))
    assert [z.shape[1] for z in zs] == [4, 2, 1]
    q = [z.mean(dim=1).mean(dim=(2, 3)) for z in zs]  # GAP of the time-mean
    for f, expect in zip(out.features, [q[0], (q[0] + q[1]) / 2, (q[0] + q[1] + q[2]) / 3]):
        assert torch.allclose(f, expect, atol=1e-6)
    bn = [torch.randn(2, 64) for _ in range(3)]
    assert agg.test_embedding(bn, out.features) is bn[2]


def test_psta_shape_errors():
    agg, maps = build("psta", 8)
    # derived from the backbone map size (the ReIDNet passes map_sizes): 2*16*8 at 16x8 maps
    assert PSTA((2048,), map_sizes=((16, 8),)).levels[0].tra.relation[0].in_channels == 256
    with pytest.raises(ValueError, match="map_size"):
        PSTA((2048,))  # neither given nor derivable
    with pytest.raises(ValueError, match="power of two"):
        agg(maps(1, 6))
    with pytest.raises(ValueError, match="num_levels=3 needs T >= 8"):
        agg(maps(1, 4))
    with pytest.raises(ValueError, match="16x8 maps .* got 8x4"):
        agg([torch.rand(1, 8, 128, 8, 4)])
    assert PSTA((128,), reduced_dim=64, map_size=(8, 4)).levels[0].sra.relation[0].in_channels == 64


# ---------------------------------------------------------------- STA


def sta_hand_case():
    """N=2 frames, C=2, 4 rows x 1 column, K=2 stripes. Rows (channel vectors) per frame."""
    f0 = [(2, 0), (0, 0), (1, 0), (0, 1)]
    f1 = [(1, 0), (1, 0), (0, 3), (0, 0)]
    f = torch.tensor([f0, f1], dtype=torch.float32).permute(0, 2, 1).reshape(1, 2, 2, 4, 1)
    return f, f0, f1


@pytest.mark.parametrize("mode", ["paper", "agrl"])
def test_sta_hand_computed_fusion(mode):
    f, f0, f1 = sta_hand_case()
    if mode == "paper":  # squared norms, L1 over space, stripe sums
        n0, n1 = [4, 0, 1, 1], [1, 1, 9, 0]
        g0, g1 = [v / 6 for v in n0], [v / 11 for v in n1]
        s0, s1 = [g0[0] + g0[1], g0[2] + g0[3]], [g1[0] + g1[1], g1[2] + g1[3]]
    else:  # norms, L2 over space, stripe means
        n0, n1 = [2, 0, 1, 1], [1, 1, 3, 0]
        g0, g1 = [v / math.sqrt(6) for v in n0], [v / math.sqrt(11) for v in n1]
        s0, s1 = [(g0[0] + g0[1]) / 2, (g0[2] + g0[3]) / 2], [(g1[0] + g1[1]) / 2, (g1[2] + g1[3]) / 2]
    S = [[s0[k] / (s0[k] + s1[k]), s1[k] / (s0[k] + s1[k])] for k in range(2)]  # S[k][n]
    # stripe 0 is best in frame 0, stripe 1 in frame 1 (both modes)
    x1 = [(f0[0][c] + f0[1][c] + f1[2][c] + f1[3][c]) / 4 for c in range(2)]
    x2 = [sum(S[r // 2][0] * f0[r][c] + S[r // 2][1] * f1[r][c] for r in range(4)) / 4 for c in range(2)]
    agg = STA((2,), num_stripes=2, embed_dim=4, attention=mode).eval()
    with torch.no_grad():
        agg.fc.weight.copy_(torch.eye(4))
        out = agg([f])
    scale = 1 / math.sqrt(1 + agg.bn.eps)
    assert out.features[0][0].tolist() == pytest.approx([v * scale for v in x1 + x2], rel=1e-5)
    assert out.aux["temporal_attention"][0].flatten().tolist() == pytest.approx([S[0][0], S[1][0], S[0][1], S[1][1]])
    assert out.aux["spatial_attention"][0, :, :, 0].flatten().tolist() == pytest.approx(g0 + g1)
    reg = math.sqrt(sum((a - b) ** 2 for a, b in zip(g0, g1)))  # only pair of a 2-frame clip
    got = own_losses("sta", out, torch.tensor([0]), sta_reg=2.0)["sta_reg"]
    assert got.item() == pytest.approx(2.0 * reg, rel=1e-5)


def test_sta_errors_and_uneven_stripes():
    with pytest.raises(ValueError, match="attention"):
        STA((8,), attention="nope")
    with pytest.raises(ValueError, match="num_stripes=20"):
        STA((8,), num_stripes=20, embed_dim=4)([torch.rand(1, 2, 8, 16, 8)])
    out = STA((8,), num_stripes=3, embed_dim=4)([torch.rand(2, 3, 8, 16, 8)])  # 16 rows -> stripes 6/5/5
    assert out.aux["temporal_attention"].sum(1).allclose(torch.ones(2, 3))
    one_frame = STA((8,), num_stripes=3, embed_dim=4)([torch.rand(2, 1, 8, 16, 8)])
    assert own_losses("sta", one_frame, torch.tensor([0, 1])) == {}  # no frame pair: the regulariser does not apply


# ---------------------------------------------------------------- STICC


def test_slot_diversity_hand_values():
    disjoint = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    same = torch.tensor([[[0.5, 0.5, 0], [0.5, 0.5, 0]]])
    half = torch.tensor([[[0.5, 0.5, 0], [1.0, 0, 0]]])  # cos = 0.5 / (sqrt(0.5) * 1) -> cos^2 = 0.5
    assert slot_diversity_loss(disjoint).item() == pytest.approx(0.0)
    assert slot_diversity_loss(same).item() == pytest.approx(1.0)
    assert slot_diversity_loss(half).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 slots"):
        slot_diversity_loss(torch.rand(1, 1, 5))


def test_sticc_attentions_are_distributions_and_other_map_sizes():
    torch.manual_seed(6)
    agg, maps = build("sticc", 4)
    out = agg(maps(2, 3))
    assert out.aux["slot_attention"].shape == (2, 4, 3 * 128)
    for key, dims in [("slot_attention", (2,)), ("relevance", (1, 2)), ("spatial_attention", (2,))]:
        total = out.aux[key].sum(dim=dims)
        assert torch.allclose(total, torch.ones_like(total), atol=1e-5), key
    assert torch.allclose(out.aux["temporal_attention"].sum(1), torch.ones(2), atol=1e-5)
    out = agg([torch.rand(2, 3, 64, 8, 4)])  # positional table resized
    assert [f.shape for f in out.features] == [(2, 64), (2, 128)]
    loss = own_losses("sticc", out, torch.tensor([0, 1]))["slot_diversity"]
    assert loss.item() == pytest.approx(0.1 * slot_diversity_loss(out.aux["slot_attention"]).item())


# ---------------------------------------------------------------- PCB


def test_pcb_parts_loss_and_test_embedding():
    torch.manual_seed(7)
    agg, maps = build("pcb", 1)
    x = maps(3, 1)
    out = agg(x)
    parts = out.features[0].view(3, 6, 64)
    for k in range(6):  # 24 rows -> 6 parts of 4 rows
        assert torch.allclose(parts[:, k], x[0][:, 0, :, 4 * k : 4 * k + 4].mean(dim=(2, 3)), atol=1e-6)
    pids = torch.tensor([0, 1, 6])
    logits = out.aux["part_logits"]
    expect = sum(F.cross_entropy(logits[:, k], pids) for k in range(6))  # plain CE, no smoothing
    assert own_losses("pcb", out, pids)["pcb_ce"].item() == pytest.approx(expect.item())
    emb = agg.test_embedding([], out.features).view(3, 6, 64)
    assert torch.allclose(emb.norm(dim=2), torch.ones(3, 6), atol=1e-5)
    assert torch.allclose(emb, F.normalize(parts, dim=2))
    assert agg.flip_test and agg.head == "none"


# ---------------------------------------------------------------- configs and full models


@pytest.mark.parametrize("name", ["staformer", "psta", "sta", "sticc", "pcb"])
def test_config_instantiates(name):
    # the aggregator node inside a run config (it may interpolate run values such as ${clip.seq_len})
    # the aggregator config is a global-package file: {defaults: [override /criterion: ...], aggregator: {...}}
    node = OmegaConf.load(REPO / "conf" / "aggregator" / f"{name}.yaml")
    assert node.defaults == [{"override /criterion": name if name != "psta" else "default"}]
    run = OmegaConf.create({"clip": {"seq_len": 8}, "aggregator": node.aggregator})
    build_fn = instantiate(run.aggregator)
    cls = build_fn.func
    channels = {(3, 4): (1024, 2048), (4,): (2048,)}[cls.stages]
    maps = {(3, 4): ((16, 8), (8, 4)), (4,): ((24, 12) if name == "pcb" else (16, 8),)}[cls.stages]
    # the ReIDNet's call: every aggregator takes in_channels, num_classes and map_sizes
    agg = build_fn(in_channels=channels, num_classes=625, map_sizes=maps)
    assert len(agg.feature_dims) >= 1


def block_params(dim=768, mlp=3072):
    """Pre-LN block: 2 LN, qkv (no bias), out proj, MLP."""
    return 2 * 2 * dim + dim * 3 * dim + dim * dim + dim + dim * mlp + mlp + mlp * dim + dim


def resnest50_params():
    """ResNeSt-50 (radix 2, deep stem 32, avg down, avd) without fc, layer by layer."""
    total = 3 * 32 * 9 + 2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64
    inp = 64
    for planes, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for i in range(blocks):
            inter = max(planes * 2 // 4, 32)
            p = inp * planes + 2 * planes  # conv1 + bn1
            p += 2 * planes * (planes // 2) * 9 + 2 * 2 * planes  # split conv (groups = radix) + bn0
            p += planes * inter + inter + 2 * inter + inter * 2 * planes + 2 * planes  # fc1, bn1, fc2
            p += planes * 4 * planes + 2 * 4 * planes  # conv3 + bn3
            p += (inp * 4 * planes + 2 * 4 * planes) if i == 0 else 0  # avg-down conv + bn
            total, inp = total + p, 4 * planes
    return total


def resnet50_params():
    """ResNet-50 without fc."""
    total, inp = 3 * 64 * 49 + 2 * 64, 64
    for planes, blocks in [(64, 3), (128, 4), (256, 6), (512, 3)]:
        for i in range(blocks):
            p = inp * planes + planes * planes * 9 + planes * 4 * planes + 2 * (planes + planes + 4 * planes)
            p += (inp * 4 * planes + 2 * 4 * planes) if i == 0 else 0
            total, inp = total + p, 4 * planes
    return total


def staformer_reference_params(n_id=625, t=8):
    """HWZhou99/STAFormer make_model(num_classes=n_id, seq_len=t): all nn.Parameters."""
    p = resnest50_params()  # resnest50 children[:-2]
    p += 1024 * 512 + 512 + 512 + 1  # SpatialAttention2d
    p += 1  # GeM p
    p += 2 * 1024 + 1024 * n_id + n_id + 2 * 2048 + 2048 * n_id + n_id  # frame BN + classifiers (with bias)
    p += 1024 * 768 + 768 + 2048 * 768 + 768  # PatchEmbed loc / glo (1x1 convs with bias)
    p += 10 * 768 + 768 + 3 * block_params()  # mix_vit: pos (9+1) x 768, cls, 3 blocks
    p += (t + 1) * 768 + 768 + 3 * block_params()  # vit: pos (T+1) x 768, (unused) cls, 3 blocks
    p += 2 * 768 + 768 * n_id + n_id  # bn + classifier
    p += 768 * 768 + 768  # projection Conv1d
    return p


def psta_reference_params(n_id=625, c=1024):
    """WangYQ9/VideoReID_PSTA PSTA(num_classes=n_id): all nn.Parameters (incl. the frozen BN biases)."""
    r = c // 8
    stam = c * 256 + 2 * 256 + 256 * 128 + 2 * 128  # Embeding
    stam += 2 * (c * r + 2 * r) + 256 * 128 + 256 + 256 * 128 + 256 + 256 + 2 + c * r  # TRA convs, theta
    stam += 2 * r * r + r + r * c + c  # TRA channel MLP
    stam += 2 * (c * r + 2 * r) + 256 * 128 + 256 + 256 * 128 + 256 + 128 + 2  # SRA convs
    stam += c * r + r + r * c + c  # SRA channel MLP
    stam += c * 256 + 512 + 256 * 256 * 9 + 512 + 256 * c + 2 * c  # conv block
    return resnet50_params() + 2048 * c + 2 * c + 3 * stam + 3 * (2 * c + c * n_id + n_id)


# the numbers, for the record (MARS: N_id = 625, T = 8)
assert resnest50_params() == 25_434_240 and resnet50_params() == 23_508_032
assert staformer_reference_params() == 73_850_069
assert psta_reference_params() == 35_425_311


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_full_model_parameter_counts_match_reference():
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    net = ReIDNet(partial(Backbone, "resnest50d"), partial(STAFormer), num_classes=625)
    assert net.backbone.channels == (1024, 2048)
    ours, ref = _count(net), staformer_reference_params()
    # exact since the video classifier has the reference's bias; only the temporal ViT's unused CLS token (768) is
    # not built here
    assert ours == ref - 768, (ours, ref)
    assert _count(net.backbone) == resnest50_params()  # timm resnest50d == the reference's ResNeSt-50
    net = ReIDNet(partial(Backbone, "resnet50", last_stride=1), partial(PSTA), num_classes=625, input_size=(256, 128))
    assert net.aggregator.map_size == (16, 8) and net.aggregator.num_levels == 3
    assert not net.heads[0].bn.bias.requires_grad and net.heads[0].classifier.bias is not None  # PSTA's head
    ours, ref = _count(net), psta_reference_params()
    assert ours == ref, (ours, ref)  # exact: relation convs sized from 256x128 / last stride 1, biased classifiers


def test_full_models_end_to_end_at_256x128():
    """Real backbones: STAFormer's stage-3 16x8 / stage-4 8x4 maps, PSTA's 16x8 last-stride-1 map."""
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    torch.manual_seed(8)
    clips = torch.randn(1, 2, 3, 256, 128)
    net = ReIDNet(partial(Backbone, "resnest50d"), partial(STAFormer), num_classes=625).eval()
    with torch.no_grad():
        assert net(clips).shape == (1, 768)
    net = ReIDNet(
        partial(Backbone, "resnet50", last_stride=1), partial(PSTA, num_levels=1), num_classes=625,
        input_size=(256, 128),
    ).eval()
    with torch.no_grad():
        assert net(clips).shape == (1, 1024)
