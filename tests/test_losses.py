"""Losses against hand-computed values."""

import math

import pytest
import torch

from vidreid.losses.criterion import LossTerm
from vidreid.losses.functional import BatchHardTripletLoss, CrossEntropyLabelSmooth, pairwise_distance


def test_label_smoothing_matches_formula():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    logp = torch.log_softmax(logits, 1)[0]
    eps = 0.1
    expect = -((1 - eps) * logp[0] + eps / 3 * logp.sum())
    assert torch.allclose(CrossEntropyLabelSmooth(eps)(logits, torch.tensor([0])), expect)


def test_batch_hard_triplet_euclidean_hand_case():
    # 1-D points: pid 0 at 0 and 1; pid 1 at 3 and 7
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0: ap=1, an=3 → max(0, 1-3+0.5)=0 ; anchor 1: ap=1, an=2 → 0 ; anchor 2: ap=4, an=2 → 2.5
    # anchor 3: ap=4, an=6 → 0
    loss = BatchHardTripletLoss(margin=0.5, distance="euclidean")(x, y)
    assert math.isclose(loss.item(), 2.5 / 4, rel_tol=1e-5)
    soft = BatchHardTripletLoss(distance="euclidean", soft_margin=True)(x, y)
    expect = sum(math.log1p(math.exp(v)) for v in (1 - 3, 1 - 2, 4 - 2, 4 - 6)) / 4
    assert math.isclose(soft.item(), expect, rel_tol=1e-5)


def test_cosine_distance_and_triplet():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = pairwise_distance(x, metric="cosine")  # the project's one convention: 1 - cos (the references' -cos + 1)
    assert torch.allclose(d, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 1: d_ap = -c, d_an = -c (to [0,1]) → relu(0 + 0.3) = 0.3
    loss = BatchHardTripletLoss(margin=0.3, distance="cosine")(x, y)
    # c = cos 45° = 0.7071. anchor 0: ap=-c, an=min(-cos(0,[0,1])=0, -cos([1,0],[-1,1])=+c)=0 → -c+0.3<0 → 0
    # anchor 2: ap=-cos([0,1],[-1,1])=-c, an=min(-c (to [1,1]), 0) = -c → 0.3
    # anchor 3: ap=-c, an=min(+c, 0)=0 → -c+0.3 → 0
    per = [0.0, 0.3, 0.3, 0.0]
    assert math.isclose(loss.item(), sum(per) / 4, rel_tol=1e-5)


def test_no_valid_anchor_gives_zero_with_grad():
    x = torch.randn(3, 4, requires_grad=True)
    loss = BatchHardTripletLoss()(x, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()


# ---------------------------------------------------------------- the criterion (named, weighted terms)


def _out(features, logits, aux=None):
    from vidreid.models.aggregators.base import AggregatorOutput
    from vidreid.models.reid_net import ReIDOutput

    bn = [f * 2.0 for f in features]  # a stand-in "post-BN" feature, distinct from the pre-BN one
    return ReIDOutput(features=features, bn_features=bn, logits=logits, agg=AggregatorOutput(features, aux or {}))


def test_criterion_terms_are_weighted_named_and_summed():
    from vidreid.losses.criterion import Criterion, IdentityCE, Triplet

    torch.manual_seed(0)
    pids = torch.tensor([0, 0, 1, 1])
    feats = [torch.randn(4, 3), torch.randn(4, 5)]
    logits = [torch.randn(4, 2), torch.randn(4, 2)]
    out = _out(feats, logits)
    crit = Criterion({"ce": IdentityCE(0.5, label_smoothing=0.1), "triplet": Triplet(2.0, margin=0.3, feature="pre_bn")})
    got = crit(out, pids)
    ce = CrossEntropyLabelSmooth(0.1)
    tri = BatchHardTripletLoss(0.3, "cosine")
    expect_ce = 0.5 * (ce(logits[0], pids) + ce(logits[1], pids)) / 2  # averaged over heads (PSTA's 1/3 Σ_ℓ)
    expect_tri = 2.0 * (tri(feats[0], pids) + tri(feats[1], pids)) / 2
    assert list(got) == ["ce", "triplet", "loss"]
    assert torch.allclose(got["ce"], expect_ce) and torch.allclose(got["triplet"], expect_tri)
    assert torch.allclose(got["loss"], expect_ce + expect_tri)
    post = Criterion({"triplet": Triplet(1.0, feature="post_bn")})(out, pids)["triplet"]
    assert torch.allclose(post, (tri(2 * feats[0], pids) + tri(2 * feats[1], pids)) / 2)
    # weight 0 / null drops a term; a term that does not apply (no classifier heads, PCB) is left out
    assert list(Criterion({"ce": IdentityCE(0.0), "triplet": Triplet(), "x": None})(out, pids)) == ["triplet", "loss"]
    headless = _out(feats, [])
    with pytest.raises(ValueError, match="no criterion term applies"):
        Criterion({"ce": IdentityCE()})(headless, pids)


def test_criterion_from_loss_config_and_errors():
    from vidreid.losses.criterion import Criterion, FrameCE, IdentityCE, TemporalInfoNCE, Triplet

    crit = Criterion.from_loss_config({"ce_weight": 1.0, "label_smoothing": 0.2, "triplet_margin": 0.5})
    assert list(crit.terms) == ["ce", "triplet"] and crit.terms["ce"].ce.epsilon == 0.2
    assert crit.terms["triplet"].triplet.margin == 0.5
    with pytest.raises(ValueError, match="reserved"):
        Criterion({"loss": IdentityCE()})
    with pytest.raises(ValueError, match="no term"):
        Criterion({"ce": IdentityCE(0.0)})
    with pytest.raises(ValueError, match="triplet feature"):
        Triplet(feature="mid")
    with pytest.raises(ValueError, match="nce reduction"):
        TemporalInfoNCE(reduction="sum")
    out = _out([torch.randn(2, 3)], [torch.randn(2, 4)])
    with pytest.raises(ValueError, match=r"FrameCE needs the aggregator's training output aux\['frame_logits_local'\]"):
        Criterion({"frame_ce": FrameCE()})(out, torch.tensor([0, 1]))


class FeatureL2(LossTerm):
    """A new loss = one class: the mean squared norm of the pre-BN features (used by the test below)."""

    def forward(self, out, pids):
        return sum(f.pow(2).sum(1).mean() for f in out.features) / len(out.features)


def test_adding_a_loss_is_one_class_plus_config():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import compose

    cfg = compose("train", ["+criterion.terms.feat_l2._target_=tests.test_losses.FeatureL2",
                            "+criterion.terms.feat_l2.weight=0.5"])  # fmt: skip
    crit = instantiate(OmegaConf.to_container(cfg.criterion, resolve=True))
    assert list(crit.terms) == ["ce", "triplet", "feat_l2"]
    feats = [torch.ones(2, 3)]
    got = crit(_out(feats, [torch.zeros(2, 2)]), torch.tensor([0, 1]))
    assert got["feat_l2"].item() == pytest.approx(0.5 * 3.0)
    assert got["loss"].item() == pytest.approx(sum(v.item() for k, v in got.items() if k != "loss"))


@pytest.mark.parametrize(
    "aggregator,terms",
    [
        ("temporal_avg_stripes2", ["ce", "triplet"]),
        ("psta", ["ce", "triplet"]),
        ("staformer", ["ce", "triplet", "frame_ce", "frame_triplet", "nce"]),
        ("sta", ["ce", "triplet", "sta_reg"]),
        ("sticc", ["ce", "triplet", "slot_diversity"]),
        ("pcb", ["pcb_ce"]),
    ],
)
def test_each_aggregator_config_selects_its_criterion(aggregator, terms):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from tests.conftest import compose

    cfg = compose("train", [f"aggregator={aggregator}"])
    crit = instantiate(OmegaConf.to_container(cfg.criterion, resolve=True))
    assert list(crit.terms) == terms
    # the generic terms read the shared `loss` settings (sweeps and experiments set loss.triplet_margin, ...)
    cfg = compose("train", [f"aggregator={aggregator}", "loss.triplet_margin=0.7", "loss.label_smoothing=0.0"])
    c = OmegaConf.to_container(cfg.criterion, resolve=True)["terms"]
    if "triplet" in c:
        assert c["triplet"]["margin"] == 0.7 and c["ce"]["label_smoothing"] == 0.0
    # a later criterion= override wins over the aggregator's choice
    assert list(compose("train", [f"aggregator={aggregator}", "criterion=default"]).criterion.terms) == ["ce", "triplet"]
