"""Backbone wrapper, BNNeck, ReIDNet forward/backward."""

import pytest
import torch
from hydra.utils import instantiate

from vidreid.models.aggregators.temporal_avg import TemporalAvg
from vidreid.models.backbones import Backbone
from vidreid.models.reid_net import ReIDNet


def make_net(num_classes=5, **kw):
    from functools import partial

    return ReIDNet(partial(Backbone, "resnet18"), partial(TemporalAvg), num_classes=num_classes, **kw)


@pytest.mark.parametrize("last_stride,expect", [(2, (4, 2)), (1, (8, 4))])
def test_backbone_last_stride(last_stride, expect):
    b = Backbone("resnet18", last_stride=last_stride, stages=(3, 4))
    maps = b(torch.randn(2, 3, 128, 64))
    assert b.channels == (256, 512)
    assert tuple(maps[0].shape) == (2, 256, 8, 4) and tuple(maps[1].shape[2:]) == expect


def test_backbone_errors(tmp_path):
    with pytest.raises(ValueError, match="last_stride"):
        Backbone("resnet18", last_stride=3)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Backbone("resnet18", weights_path=str(tmp_path / "nope.pth"))


def test_backbone_loads_local_weights(tmp_path):
    src = Backbone("resnet18")
    torch.save(src.body.state_dict(), tmp_path / "w.pth")
    dst = Backbone("resnet18", weights_path=str(tmp_path / "w.pth"))
    assert torch.equal(src.body.conv1.weight, dst.body.conv1.weight)


def test_reidnet_train_and_eval_outputs_and_gradients():
    net = make_net(num_classes=5)
    clips = torch.randn(4, 3, 3, 64, 32)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    # timm zero-initialises each residual block's last BN, so the branch weights get gradient from step 2 on
    for _ in range(2):
        opt.zero_grad()
        out = net(clips)
        loss = torch.nn.functional.cross_entropy(out.logits[0], torch.tensor([0, 1, 2, 3])) + out.bn_features[0].pow(2).mean()
        loss.backward()
        opt.step()
    assert out.features[0].shape == (4, 512) and out.logits[0].shape == (4, 5)
    missing = [n for n, p in net.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing
    net.eval()
    with torch.no_grad():
        emb = net(clips)
        # eval embedding = BN(mean over frames of GAP maps) with running stats
        feats = net.backbone(clips.flatten(0, 1))[-1].mean((2, 3)).view(4, 3, -1).mean(1)
        assert torch.allclose(emb, net.heads[0].bn(feats), atol=1e-5)
    assert emb.shape == (4, 512)


def test_bias_frozen_and_flip_test():
    net = make_net(bias_frozen=True, flip_test=True)
    assert not net.heads[0].bn.bias.requires_grad
    net.eval()
    clips = torch.randn(2, 2, 3, 64, 32)
    with torch.no_grad():
        net.flip_test = False
        a, b = net(clips), net(clips.flip(-1))
        net.flip_test = True
        # temporal_avg's embedding is linear in the BN outputs, so the sum of features = the sum of embeddings
        assert torch.allclose(net(clips), a + b, atol=1e-5)


def test_map_sizes_are_measured_at_build_time_without_touching_bn_statistics():
    from functools import partial

    from vidreid.models.aggregators.base import Aggregator, AggregatorOutput

    seen = {}

    class Probe(Aggregator):  # a minimal aggregator: only what differs from the declared defaults
        stages = (3, 4)

        def __init__(self, in_channels, num_classes=0, map_sizes=None):
            super().__init__(in_channels, num_classes, map_sizes)
            seen.update(channels=self.in_channels, sizes=self.map_sizes, classes=self.num_classes)
            self.feature_dims = (self.in_channels[-1],)

        def forward(self, maps):
            return AggregatorOutput(features=[maps[-1].mean(dim=(1, 3, 4))])

    net = ReIDNet(partial(Backbone, "resnet18", last_stride=1), partial(Probe), num_classes=3, input_size=(96, 40))
    assert seen == {"channels": (256, 512), "sizes": ((6, 3), (6, 3)), "classes": 3}
    assert net.backbone.training and net.backbone.body.bn1.num_batches_tracked.item() == 0
    assert net.head == "bnneck" and net.heads[0].classifier.bias is None and not net.flip_test  # declared defaults
    ReIDNet(partial(Backbone, "resnet18"), partial(Probe), num_classes=3)
    assert seen["sizes"] is None  # no input_size: unknown
    with pytest.raises(TypeError, match="Aggregator subclass"):
        ReIDNet(partial(Backbone, "resnet18"), lambda **kw: None, num_classes=3)
    with pytest.raises(ValueError, match="model.head"):
        make_net(head="mlp")


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        make_net().eval()(torch.randn(2, 3, 64, 32))


def test_model_config_instantiates():
    from tests.conftest import compose

    cfg = compose("train", ["backbone=resnet18", "backbone.last_stride=2", "aggregator.stripes=1"])
    net = instantiate(cfg.model.net, num_classes=7)
    net.eval()
    assert net(torch.randn(2, 4, 3, 128, 64)).shape == (2, 512)


def test_temporal_avg_stripes_hand_case():
    # one clip, 2 frames, 1 channel, a 4x2 map whose rows hold 0, 1, 2, 3 (frame 0) and 4, 5, 6, 7 (frame 1)
    rows = torch.arange(4.0).view(1, 1, 1, 4, 1).expand(1, 1, 1, 4, 2)
    x = torch.cat([rows, rows + 4], dim=1)
    agg = TemporalAvg((1,), stripes=2)
    out = agg([x])
    # stripe 0 = rows 0-1: frame means 0.5 and 4.5 → 2.5; stripe 1 = rows 2-3: 2.5 and 6.5 → 4.5
    assert out.features[0].tolist() == [[2.5, 4.5]]
    assert TemporalAvg((1,))([x]).features[0].tolist() == [[3.5]]
    with pytest.raises(ValueError, match="stripes"):
        TemporalAvg((1,), stripes=8)([x])


def test_freeze_backbone_epochs_keeps_the_backbone_for_the_first_epochs(tmp_path):
    """`freeze_backbone_epochs=1`: after epoch 1 the backbone's weights and BN running statistics are exactly the
    initial ones while the head has trained; after epoch 2 the backbone has trained too (fast-reid FREEZE_ITERS)."""
    import copy

    import lightning.pytorch as pl

    from tests.conftest import compose
    from tests.tiny import tiny_overrides

    class Snap(pl.Callback):
        states: list = []

        def on_train_epoch_end(self, trainer, module):
            Snap.states.append(copy.deepcopy(module.net.state_dict()))

    cache = tmp_path / "cache"
    cfg = compose("train", tiny_overrides(cache, "freeze_backbone_epochs=1", "callbacks=none", "logger=none",
                                          "optimizer.weight_decay=0.01"), output_dir=tmp_path)  # fmt: skip
    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.model, num_classes=dm.num_classes)
    init = copy.deepcopy(module.net.state_dict())
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, callbacks=[Snap()])  # fmt: skip
    trainer.fit(module, datamodule=dm)
    after1, after2 = Snap.states[-2:]
    bb = [k for k in init if k.startswith("backbone.") and init[k].is_floating_point()]
    head = [k for k in init if not k.startswith("backbone.") and init[k].is_floating_point()]
    assert bb and head
    assert all(torch.equal(after1[k], init[k]) for k in bb)  # weights and running_mean/var untouched
    assert any(not torch.equal(after1[k], init[k]) for k in head)
    assert any(not torch.equal(after2[k], init[k]) for k in bb if "running" not in k)
    assert any(not torch.equal(after2[k], init[k]) for k in bb if "running_mean" in k)
