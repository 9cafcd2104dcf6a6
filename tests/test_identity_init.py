"""The identity-preserving start of the seed aggregators (``identity_init``, docs/methods.md §0.4): at step 0 each
aggregator's output equals temporal average pooling (TAP) of the same backbone map, training moves it away, and
with the switch off the aggregators are built exactly as before (the parity tests cover that model)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import REPO, compose
from vidreid.models.aggregators.base import temporal_average_pool
from vidreid.models.aggregators.psta import PSTA
from vidreid.models.aggregators.sta import STA
from vidreid.models.aggregators.staformer import STAFormer
from vidreid.models.aggregators.sticc import STICC
from vidreid.models.aggregators.temporal_avg import TemporalAvg
from vidreid.models.backbones import Backbone
from vidreid.models.reid_net import ReIDNet

C3, C4 = 24, 48  # stage-3 / stage-4 channels of the random maps
B, T = 3, 4

MAKERS = {
    "staformer": partial(STAFormer, (C3, C4), num_classes=5, dim=32, heads=4, mlp_dim=64, attn_hidden=16, seq_len=T),
    "psta": partial(PSTA, (C4,), reduced_dim=32, mid_dim=16, embed_dim=8, num_levels=2, map_size=(8, 4)),
    "sta": partial(STA, (C4,), embed_dim=32),
    "sticc": partial(STICC, (C4,), d_model=32, num_heads=4, enc_layers=1, ffn_dim=64, num_slots=4, pos_grid=(8, 4)),
}
# the parameters the switch zeroes (a new zero Linear, or an existing layer set to zero)
ZEROED = {
    "staformer": ["identity_proj.weight"],
    "psta": ["identity_proj.0.weight", "identity_proj.1.weight"],
    "sta": ["identity_proj.weight"],
    "sticc": ["out_proj.weight", "out_proj.bias", "rel_k.weight", "rel_k.bias", "spatial_memory.query.weight",
              "temporal_memory.query.weight"],
}
# STICC's uniform read-outs are weighted sums with weights 1/L: equal to the mean up to float rounding
TOL = {"sticc": dict(rtol=1e-6, atol=1e-6)}
EXACT = dict(rtol=0.0, atol=0.0)


def random_maps(name: str, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Random non-negative (post-ReLU-like) backbone maps in the layout the aggregator takes, and its stage-4 map."""
    g = torch.Generator().manual_seed(seed)
    stage4 = torch.rand(B, T, C4, 8, 4, generator=g) * 3
    if name == "staformer":
        return [torch.rand(B, T, C3, 16, 8, generator=g) * 3, stage4], stage4
    return [stage4], stage4


def expected_slots(name: str, tap: torch.Tensor, n_features: int) -> list[torch.Tensor]:
    """What "equals TAP" means per aggregator: every feature is TAP (PSTA: each pyramid level), except STICC's
    second slot ``RV_SA = [TAP; TAP]``."""
    if name == "sticc":
        return [tap, torch.cat([tap, tap], dim=1)]
    return [tap] * n_features


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_step0_output_equals_temporal_average_pooling(name: str, mode: str):
    torch.manual_seed(0)
    agg = MAKERS[name](identity_init=True).train(mode == "train")
    maps, stage4 = random_maps(name)
    with torch.no_grad():
        out = agg(maps)
    tap = TemporalAvg((C4,))([stage4]).features[0]  # the temporal_avg aggregator itself
    # an independent formula: the mean over frames and positions at once, in float64
    torch.testing.assert_close(tap.double(), stage4.double().mean(dim=(1, 3, 4)), rtol=1e-6, atol=1e-7)
    assert len(out.features) == len(agg.feature_dims)
    for got, want in zip(out.features, expected_slots(name, tap, len(out.features))):
        torch.testing.assert_close(got, want, **TOL.get(name, EXACT))
    # and the maps are not trivially TAP-like: the same aggregator with the switch off gives something else
    torch.manual_seed(0)
    off = MAKERS[name]().train(mode == "train")
    with torch.no_grad():
        off_out = off(maps)
    assert all(f.shape != tap.shape or (f - tap).abs().max() > 1e-2 for f in off_out.features)


@pytest.mark.parametrize("name", list(MAKERS))
def test_training_moves_away_from_tap(name: str):
    """The zeroed parameters get non-zero gradients on the first step (a zero on both factors of a product would
    never move); after one SGD step the output differs from TAP and every parameter the aggregator trains with the
    switch off gets a gradient again."""
    torch.manual_seed(0)
    agg = MAKERS[name](identity_init=True).train()
    maps, stage4 = random_maps(name, seed=1)
    tap = temporal_average_pool(stage4)
    weights = [torch.randn(B, d, generator=torch.Generator().manual_seed(7 + i)) for i, d in enumerate(agg.feature_dims)]

    def random_loss() -> torch.Tensor:
        return sum((f * w).sum() for f, w in zip(agg(maps).features, weights))

    params = dict(agg.named_parameters())
    random_loss().backward()
    for key in ZEROED[name]:
        assert params[key].abs().max() == 0, key  # the start
        assert params[key].grad is not None and params[key].grad.abs().max() > 1e-6, f"{key} gets no gradient"
    torch.optim.SGD(agg.parameters(), lr=0.1).step()
    agg.zero_grad()
    agg.eval()
    with torch.no_grad():
        moved = agg(maps).features
    for got, want in zip(moved, expected_slots(name, tap, len(moved))):
        assert (got - want).abs().max() > 1e-3  # the step moved the output away from TAP
    agg.train()
    random_loss().backward()
    torch.manual_seed(0)
    off = MAKERS[name]().train()
    sum(f.sum() for f in off(maps).features).backward()
    trained_off = {n for n, p in off.named_parameters() if p.grad is not None and p.grad.abs().max() > 0}
    stuck = [n for n in trained_off if params[n].grad is None or params[n].grad.abs().max() == 0]
    assert not stuck, f"{name}: no gradient after the first step for {stuck}"


@pytest.mark.parametrize("name", list(MAKERS))
def test_switch_off_is_the_current_model(name: str):
    """Off (the default) builds no extra layer and draws the same random numbers as before; on, every layer the
    model shares with the off model has the same initial values except the ones the switch zeroes."""
    torch.manual_seed(3)
    default = MAKERS[name]().state_dict()
    torch.manual_seed(3)
    off = MAKERS[name](identity_init=False).state_dict()
    assert default.keys() == off.keys() and all(torch.equal(default[k], off[k]) for k in default)
    assert not any("identity_proj" in k for k in default)
    torch.manual_seed(3)
    on = MAKERS[name](identity_init=True).state_dict()
    same_shape = [k for k in default if k in on and on[k].shape == default[k].shape and k not in ZEROED[name]]
    assert same_shape and all(torch.equal(default[k], on[k]) for k in same_shape)
    # with the switch on, what the shapes change is only the width of the output space (C4 instead of the method's)
    changed = [k for k in default if k in on and on[k].shape != default[k].shape]
    assert all(k.startswith(("contrast_bn", "projection")) for k in changed), changed


def test_reid_net_embedding_at_step0():
    """Through the whole network: the aggregator output that feeds the head is TAP of the backbone's stage-4 map;
    the test embedding is the head applied to it (STA's declared ``linear`` head: TAP itself; a BNNeck in eval mode
    with fresh statistics: TAP / sqrt(1 + eps))."""
    torch.manual_seed(0)
    clips = torch.rand(2, T, 3, 64, 32)
    for agg, scale in ((partial(STA, embed_dim=16, identity_init=True), 1.0),
                       (partial(PSTA, reduced_dim=16, mid_dim=8, embed_dim=8, num_levels=2, identity_init=True),
                        (1 + 1e-5) ** -0.5)):
        net = ReIDNet(partial(Backbone, "resnet18", last_stride=1), agg, num_classes=4, input_size=(64, 32)).eval()
        with torch.no_grad():
            last = net.backbone(clips.flatten(0, 1))[-1]
            stage4 = last.view(2, T, *last.shape[1:])
            emb = net(clips)
        torch.testing.assert_close(emb, temporal_average_pool(stage4) * scale, rtol=1e-5, atol=1e-6)


EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
SEEDS = ("staformer", "psta", "sta", "sticc")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_switch_is_on_only_in_the_small_data_pretrained_recipes(experiment: str, tmp_path: Path):
    cfg = OmegaConf.to_container(compose("train", [f"experiment={experiment}"], output_dir=tmp_path), resolve=True)
    flag = cfg["aggregator"].get("identity_init")
    if experiment in {f"pku_reid_pretrained_{m}" for m in SEEDS}:
        assert flag is True
    elif cfg["aggregator"]["_target_"].rsplit(".", 1)[-1].lower() in SEEDS:
        assert flag is False  # the paper recipes (mars_*, lsvid_*, duke_*, occluded_*, prai_*) and pku_reid_<method>


def test_classifier_std_overrides_the_declared_init_and_the_small_data_sta_recipe_uses_it(tmp_path: Path):
    """``model.net.classifier_std`` (``None`` = the aggregator's declaration: AGRL's N(0, 0.01) for STA, parity) sets
    the identity classifier's init; ``pku_reid_pretrained_sta`` puts a BNNeck with a bias-free N(0, 0.001)
    classifier on STA's identity-preserving start, the paper and from-scratch STA recipes keep AGRL's head."""
    from hydra.utils import instantiate

    torch.manual_seed(0)
    make = partial(ReIDNet, partial(Backbone, "resnet18", last_stride=1), partial(STA, embed_dim=16), num_classes=300)
    assert make().heads[0].classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert make(classifier_std=0.001).heads[0].classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    small = ["backbone=resnet18", "backbone.pretrained=false", "backbone.weights=null", "backbone.head_conv=false",
             "data.transforms.size=[64,32]"]
    cfg = compose("train", ["experiment=pku_reid_pretrained_sta", *small], output_dir=tmp_path)
    net = instantiate(cfg.model.net, num_classes=300)
    head = net.heads[0]
    assert net.head == "bnneck" and isinstance(head.bn, torch.nn.BatchNorm1d) and head.classifier.bias is None
    assert head.classifier.weight.std().item() == pytest.approx(0.001, rel=0.05)
    for exp in ("mars_sta", "pku_reid_sta"):
        net_cfg = compose("train", [f"experiment={exp}"], output_dir=tmp_path).model.net
        assert net_cfg.classifier_std is None and net_cfg.head in (None, "linear"), exp
