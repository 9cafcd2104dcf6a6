"""Reference parity: the places where vidreid's objective / head / evaluation used to differ from the
reference code, each checked against an independent transcription of the reference (loop form) or a hand case.

References (commits in docs/methods.md): HWZhou99/STAFormer ``models/make_model.py`` l.130, l.192-195;
WangYQ9/VideoReID_PSTA ``models/PSTA.py`` ~l.90; weleen/AGRL.pytorch ``torchreid/models/sta.py`` ~l.245;
Wanggcong/Spatial-Temporal-Re-identification ``evaluate_st.py`` l.201-202.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from vidreid.evaluation.metric import ReIDMetric
from vidreid.models.aggregators.psta import PSTA
from vidreid.models.aggregators.sta import STA
from vidreid.models.aggregators.staformer import STAFormer
from vidreid.models.aggregators.temporal_avg import TemporalAvg
from vidreid.models.backbones import Backbone
from vidreid.models.reid_net import ReIDNet

REPO = Path(__file__).resolve().parents[1]


def small_staformer_net(**kw) -> ReIDNet:
    return ReIDNet(
        partial(Backbone, "resnet18"),
        partial(STAFormer, dim=32, heads=4, mlp_dim=64, attn_hidden=16, seq_len=8),
        num_classes=5,
        **kw,
    )


# ------------------------------------------------------------------ point 2: shared-BN update order


def bn_update_loop(running_mean, running_var, batches, momentum=0.1):
    """BatchNorm1d's running-statistics update, one batch after the other, written out feature by feature:
    ``r ← (1 − m)·r + m·stat`` with the batch mean and the *unbiased* batch variance."""
    mean, var = running_mean.double().clone(), running_var.double().clone()
    for x in batches:  # x: (N, D) samples x features
        x = x.double()
        n = x.shape[0]
        for d in range(x.shape[1]):
            mu = sum(float(v) for v in x[:, d]) / n
            s2 = sum((float(v) - mu) ** 2 for v in x[:, d]) / (n - 1)
            mean[d] = (1 - momentum) * mean[d] + momentum * mu
            var[d] = (1 - momentum) * var[d] + momentum * s2
    return mean, var


def test_staformer_shared_bn_sees_clip_feature_first_then_tokens():
    """Reference (``make_model.py`` l.192-195): ``f = self.bn(v)`` then ``i = self.bn(x)`` — the one shared BN is
    updated with the clip features first and the per-frame tokens second. The old vidreid order (tokens in the
    aggregator, then the BNNeck) leaves other running statistics."""
    torch.manual_seed(0)
    net = small_staformer_net().train()
    bn = net.heads[0].bn
    assert net.aggregator.contrast_bn is bn  # one shared BN
    bn.running_mean.normal_()  # a non-trivial starting state makes the order visible in both statistics
    bn.running_var.uniform_(0.5, 2.0)
    start_mean, start_var = bn.running_mean.clone(), bn.running_var.clone()
    seen = {}
    net.aggregator.temporal_transformer.register_forward_hook(lambda m, i, o: seen.setdefault("x", o.detach()))
    out = net(torch.randn(4, 8, 3, 64, 32))
    x = seen["x"]  # (B, T, D) tokens
    v = x.mean(dim=1)  # (B, D) clip feature
    tokens = x.reshape(-1, x.shape[-1])  # BN1d over (B, D, T) pools batch and time
    ref_mean, ref_var = bn_update_loop(start_mean, start_var, [v, tokens])
    assert torch.allclose(bn.running_mean.double(), ref_mean, atol=1e-5)
    assert torch.allclose(bn.running_var.double(), ref_var, atol=1e-5)
    wrong_mean, wrong_var = bn_update_loop(start_mean, start_var, [tokens, v])  # the old order
    assert (wrong_var - ref_var).abs().max() > 1e-3
    # the contrastive branch is computed (after the neck) from the same tokens
    assert out.agg.aux["contrast"].shape == (4, 32, 8)


def test_staformer_with_own_bn_still_computes_contrast_in_forward():
    net = small_staformer_net()
    agg = net.aggregator
    agg2 = STAFormer(agg.in_channels, num_classes=5, dim=32, heads=4, mlp_dim=64, attn_hidden=16, share_neck_bn=False)
    maps = [torch.rand(2, 8, 256, 4, 2), torch.rand(2, 8, 512, 2, 1)]
    assert agg2(maps).aux["contrast"].shape == (2, 32, 8)


# ------------------------------------------------------------------ point 3: classifier bias


def test_reference_video_classifiers_have_a_bias():
    """STAFormer ``nn.Linear(768, num_classes)`` and PSTA ``nn.Linear(1024, num_classes)`` have a bias (init 0); the
    BoT-style default (temporal average) has none; ``classifier_bias`` overrides the aggregator's declaration."""
    sf = small_staformer_net()
    assert sf.heads[0].classifier.bias is not None and torch.all(sf.heads[0].classifier.bias == 0)
    psta = ReIDNet(
        partial(Backbone, "resnet18", last_stride=1),
        partial(PSTA, reduced_dim=32, mid_dim=16, embed_dim=8, seq_len=4),
        num_classes=5,
        input_size=(64, 32),
    )
    assert all(h.classifier.bias is not None for h in psta.heads) and len(psta.heads) == 2
    assert all(not h.bn.bias.requires_grad for h in psta.heads)  # PSTA's frozen BNNeck shift
    ta = ReIDNet(partial(Backbone, "resnet18"), partial(TemporalAvg), num_classes=5)
    assert ta.heads[0].classifier.bias is None and ta.heads[0].bn.bias.requires_grad
    assert small_staformer_net(classifier_bias=False).heads[0].classifier.bias is None
    # hand case: logits = W·BN(f) + b
    head = sf.heads[0].train()
    with torch.no_grad():
        head.classifier.bias.copy_(torch.arange(5.0))
    f = torch.randn(6, 32)
    bn, logits = head(f)
    assert torch.allclose(logits, bn @ head.classifier.weight.T + torch.arange(5.0), atol=1e-6)


# ------------------------------------------------------------------ point 4: STA head


def test_sta_head_is_a_biased_classifier_on_the_feature_without_bn():
    """AGRL ``sta.py``: ``f = ReLU(BN(FC(·)))`` (inside the aggregator), ``y = classifier(f)`` with bias, triplet on
    ``f``, ``f`` is the test embedding. No BNNeck BatchNorm in between."""
    torch.manual_seed(1)
    net = ReIDNet(partial(Backbone, "resnet18", last_stride=1), partial(STA, embed_dim=16), num_classes=5).train()
    head = net.heads[0]
    assert isinstance(head.bn, torch.nn.Identity) and head.classifier.bias is not None
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.heads.modules())
    # AGRL's _init_params: every Linear N(0, 0.01) (the FC 1024 -> 16 here: 16,384 draws; Kaiming would give 0.35)
    assert net.aggregator.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    clips = torch.randn(4, 4, 3, 64, 32)
    out = net(clips)
    assert torch.equal(out.bn_features[0], out.features[0])  # the triplet sees f itself
    assert torch.allclose(out.logits[0], out.features[0] @ head.classifier.weight.T + head.classifier.bias)
    net.eval()
    with torch.no_grad():
        emb = net(clips)
        assert torch.allclose(emb, net.aggregator(  # test embedding = f
            [m.view(4, 4, *m.shape[1:]) for m in net.backbone(clips.flatten(0, 1))]).features[0], atol=1e-6)
    # the BNNeck stays available as an option
    bnneck = ReIDNet(
        partial(Backbone, "resnet18", last_stride=1), partial(STA, embed_dim=16), num_classes=5,
        head="bnneck", classifier_bias=False,
    )
    assert isinstance(bnneck.heads[0].bn, torch.nn.BatchNorm1d) and bnneck.heads[0].classifier.bias is None


# ------------------------------------------------------------------ point 5: st-ReID averaging


def test_average_all_counts_queries_without_a_true_match_as_misses():
    """evaluate_st.py l.201-202: CMC and the AP sum are divided by all queries. Hand case: 3 queries; q0 hits at rank
    1 (AP 1), q1 at rank 3 (AP 1/3), q2 has no true match in the gallery (skipped by 'valid')."""
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.1], [0.1, 1.0], [-1.0, 0.0]])
    pids = torch.tensor([1, 2, 3, 1, 9, 2])
    camids = torch.tensor([0, 0, 0, 1, 1, 1])
    is_query = torch.tensor([True, True, True, False, False, False])
    res = {}
    for avg in ("valid", "all"):
        m = ReIDMetric(average=avg, rerank=True, rerank_kwargs={"k1": 2, "k2": 1, "lambda_value": 0.3})
        m.update(emb, pids, camids, is_query)
        res[avg] = m.compute()
    assert res["valid"]["rank1"] == pytest.approx(1 / 2) and res["valid"]["mAP"] == pytest.approx((1 + 1 / 3) / 2)
    assert res["all"]["rank1"] == pytest.approx(1 / 3) and res["all"]["mAP"] == pytest.approx((1 + 1 / 3) / 3)
    assert res["all"]["rank5"] == pytest.approx(2 / 3) and res["valid"]["rank5"] == pytest.approx(1.0)
    assert res["all"]["rerank/mAP"] == pytest.approx(res["valid"]["rerank/mAP"] * 2 / 3)  # every report
    with pytest.raises(ValueError, match="average"):
        ReIDMetric(average="some")


# ------------------------------------------------------------------ the experiment files use the reference


def _compose(experiment: str, *extra: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"experiment={experiment}", *extra])


@pytest.mark.parametrize("experiment", ["mars_staformer", "lsvid_staformer"])
def test_staformer_experiments_use_the_reference_objective(experiment):
    cfg = _compose(experiment)
    terms = cfg.criterion.terms
    assert terms.nce.reduction == "reference" and terms.nce.weight == 0.01
    assert terms.frame_ce.weighting == "reference" and terms.frame_triplet.weighting == "reference"
    assert cfg.aggregator.share_neck_bn is True
    assert cfg.model.net.classifier_bias in (None, True)


def test_method_experiments_build_the_reference_heads():
    from hydra.utils import instantiate

    cases = {  # experiment -> (head, classifier bias, frozen BN shift), checked on small overrides of the recipe
        "mars_sta": ("linear", True, None),
        "mars_psta": ("bnneck", True, True),
    }
    for exp, (head, bias, frozen) in cases.items():
        cfg = _compose(exp, "backbone=resnet18", "backbone.pretrained=false", "data.transforms.size=[64,32]",
                       "clip.seq_len=4")
        net = instantiate(cfg.model.net, num_classes=3)
        assert net.head == head and (net.heads[0].classifier.bias is not None) == bias, exp
        if frozen is not None:
            assert net.heads[0].bn.bias.requires_grad is not frozen
    st = _compose("market_st")
    assert st.evaluation.average == "all" and _compose("duke_st").evaluation.average == "all"
    assert _compose("mars_psta").evaluation.get("average", "valid") == "valid"
