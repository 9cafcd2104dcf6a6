"""Clip transforms: uint8 in, uint8 out, clip-consistent, every draw from the item's numpy generator."""

import numpy as np
import pytest
import torch

from vidreid.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transforms,
    erasing_fill_uint8,
    normalize_uint8,
)


def _clip(t=4, h=32, w=16):
    base = torch.randint(0, 256, (1, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return base.repeat(t, 1, 1, 1)  # identical frames → any per-frame difference comes from the transform


def _rng(seed):
    return np.random.default_rng([0, 0, seed])


def test_flip_and_erasing_same_for_every_frame_uint8():
    t = build_transforms(
        (32, 16), train=True, flip_p=0.5, erasing_p=1.0, erasing_value=[9.0, 9.0, 9.0], color_jitter=[0.4, 0.4, 0.4, 0.1]
    )
    fill = erasing_fill_uint8([9.0, 9.0, 9.0], IMAGENET_MEAN, IMAGENET_STD)
    assert fill == (255, 255, 255)  # 9 standard deviations above the mean: clipped to white
    for seed in range(10):
        out = t(_clip(), _rng(seed))
        assert out.shape == (4, 3, 32, 16) and out.dtype == torch.uint8 and out.is_contiguous()
        assert all(torch.equal(out[0], out[i]) for i in range(1, 4))
        assert (out == 255).all(1).any()  # an erased (white) rectangle


def test_flip_happens_with_p_half_and_test_transform_only_resizes():
    t = build_transforms((32, 16), train=True, flip_p=0.5, erasing_p=0.0)
    ref = build_transforms((32, 16), train=False)(_clip())
    assert torch.equal(ref, _clip())  # already at size: the test transform leaves it as is
    flips = sum(torch.equal(t(_clip(), _rng(s)), ref.flip(-1)) for s in range(40))
    assert all(torch.equal(t(_clip(), _rng(s)), ref) or torch.equal(t(_clip(), _rng(s)), ref.flip(-1)) for s in range(40))
    assert 10 <= flips <= 30
    small = build_transforms((16, 8), train=False)(_clip())
    assert small.shape == (4, 3, 16, 8) and small.dtype == torch.uint8


def test_draws_are_a_function_of_the_generator_only():
    """Same (seed, epoch, index) → same clip; no torch RNG is read or reseeded (no manual_seed/fork_rng)."""
    t = build_transforms((32, 16), train=True, flip_p=0.5, erasing_p=0.5, pad=2, color_jitter=[0.2, 0.2, 0.2, 0.05])
    state = torch.random.get_rng_state()
    a = [t(_clip(), _rng(s)) for s in range(8)]
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)  # the global torch seed plays no part
    b = [t(_clip(), _rng(s)) for s in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert len({x.sum().item() for x in a}) > 4  # and the seeds do differ


def test_per_frame_erasing_shares_anchor_resamples_size():
    t = build_transforms((64, 32), train=True, flip_p=0.0, erasing_p=1.0, erasing_value=[9.0, 9.0, 9.0],
                         erasing_per_frame=True)  # fmt: skip
    out = t(torch.zeros(6, 3, 64, 32, dtype=torch.uint8), _rng(1))
    areas = [(out[i, 0] == 255).sum().item() for i in range(6)]
    assert all(a > 0 for a in areas) and len(set(areas)) > 1


def test_erasing_fill_normalises_to_the_configured_value():
    fill = erasing_fill_uint8("imagenet_mean", IMAGENET_MEAN, IMAGENET_STD)
    assert fill == (152, 142, 127)
    back = normalize_uint8(torch.tensor(fill, dtype=torch.uint8).view(3, 1, 1)).flatten()
    # within half a grey level of the reference's fill on the normalised tensor
    assert torch.allclose(back, torch.tensor(IMAGENET_MEAN), atol=0.5 / 255 / min(IMAGENET_STD))
    assert erasing_fill_uint8("zero", IMAGENET_MEAN, IMAGENET_STD) == (124, 116, 104)  # the mean pixel
    with pytest.raises(ValueError, match="erasing_value"):
        erasing_fill_uint8("grey", IMAGENET_MEAN, IMAGENET_STD)


def test_pad_crop_is_a_shift_with_zero_border():
    t = build_transforms((32, 16), train=True, flip_p=0.0, erasing_p=0.0, pad=3)
    clip = torch.randint(1, 256, (2, 3, 32, 16), dtype=torch.uint8)
    shifts = set()
    for s in range(20):
        out = t(clip, _rng(s))
        nz = (out[0, 0] > 0).nonzero()
        y0, x0 = int(nz[:, 0].min()), int(nz[:, 1].min())
        y1, x1 = int(nz[:, 0].max()), int(nz[:, 1].max())
        # the non-zero block is the input shifted by (dy, dx) in [-3, 3]
        dy = y0 if y0 > 0 else -(31 - y1)
        dx = x0 if x0 > 0 else -(15 - x1)
        shifted = torch.roll(clip, (dy, dx), dims=(-2, -1))
        assert torch.equal(out[..., y0 : y1 + 1, x0 : x1 + 1], shifted[..., y0 : y1 + 1, x0 : x1 + 1])
        shifts.add((dy, dx))
    assert len(shifts) > 5


def test_reidnet_normalises_uint8_with_its_buffers():
    from functools import partial

    from vidreid.models.aggregators.temporal_avg import TemporalAvg
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    net = ReIDNet(partial(Backbone, "resnet18", pretrained=False), partial(TemporalAvg), num_classes=3,
                  pixel_mean=(0.5, 0.5, 0.5), pixel_std=(0.5, 0.25, 0.5)).eval()  # fmt: skip
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(1, 2, 3, 4, 2)
    y = net.preprocess(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y[0, 0, :, 0, 0], torch.tensor([-1.0, 2.0, 0.5 / 127.5]))
    assert "pixel_mean" not in net.state_dict()  # from the config, not the checkpoint
    f = torch.randn(1, 2, 3, 4, 2)
    assert net.preprocess(f) is f  # float input is taken as normalised
    clip = torch.randint(0, 256, (2, 4, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net(clip), net(net.preprocess(clip)))
    net.to(memory_format=torch.channels_last)  # the buffers are 3-D: channels_last conversion leaves them alone


@pytest.mark.parametrize("per_frame", [False, True])
def test_erasing_on_a_channels_last_clip_equals_the_plain_assignment(per_frame):
    """The row-copy fill used on the loader's channels-last decode buffer erases exactly the pixels the
    broadcast assignment erases on a contiguous clip, for one rectangle per clip and STAFormer's per-frame ones."""
    t = build_transforms((64, 32), train=True, flip_p=0.5, erasing_p=1.0, erasing_value=[0.3, -1.0, 2.0],
                         erasing_per_frame=per_frame)  # fmt: skip
    gen = torch.Generator().manual_seed(3)
    for seed in range(12):
        clip = torch.randint(0, 256, (5, 3, 64, 32), dtype=torch.uint8, generator=gen)
        cl = clip.contiguous(memory_format=torch.channels_last)
        assert cl.stride(1) == 1
        a, b = t(clip, _rng(seed)), t(cl.clone(memory_format=torch.channels_last), _rng(seed))
        assert torch.equal(a, b)
        assert (a != clip).any()  # something was erased


def test_low_res_resamples_down_then_up_and_off_changes_no_draw():
    """Down-then-up resampling: a sharp edge blurs exactly as resizing to the drawn size and back does, the same
    for every frame; with ``low_res_p=0`` no random number is drawn, so the other augmentations are unchanged."""
    from vidreid.data.transforms import resize_uint8

    clip = torch.zeros(3, 3, 64, 32, dtype=torch.uint8)
    clip[..., :, 16:] = 255  # a vertical edge
    t = build_transforms((64, 32), train=True, flip_p=0.0, erasing_p=0.0, low_res_p=1.0, low_res_scale=[0.25, 0.25])
    out = t(clip, _rng(0))
    expected = resize_uint8(resize_uint8(clip, (16, 8), "bicubic"), (64, 32), "bicubic")
    assert torch.equal(out, expected)
    assert all(torch.equal(out[0], out[i]) for i in (1, 2))
    assert ((out > 0) & (out < 255)).sum() > 3 * 3 * 64 * 2  # the edge is smeared over several columns
    # the scale is drawn per clip within [0.25, 0.5]: different seeds give different blur
    t2 = build_transforms((64, 32), train=True, flip_p=0.0, erasing_p=0.0, low_res_p=1.0, low_res_scale=[0.25, 0.5])
    assert len({t2(clip, _rng(s)).float().sum().item() for s in range(8)}) > 2
    # off: the same clip, draw for draw, as a transform without the option
    kw = dict(flip_p=0.5, erasing_p=0.5, pad=2, color_jitter=[0.2, 0.2, 0.2, 0.05])
    a = build_transforms((32, 16), train=True, **kw)
    b = build_transforms((32, 16), train=True, low_res_p=0.0, low_res_scale=[0.3, 0.9], **kw)
    assert all(torch.equal(a(_clip(), _rng(s)), b(_clip(), _rng(s))) for s in range(8))
    with pytest.raises(ValueError, match="low_res_scale"):
        build_transforms((32, 16), train=True, low_res_p=0.5, low_res_scale=[0.5, 0.2])
    with pytest.raises(ValueError, match="low_res_p"):
        build_transforms((32, 16), train=True, low_res_p=1.5)
