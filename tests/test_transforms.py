"""Clip-consistent transforms."""

import torch

from vidreid.data.transforms import PerFrameRandomErasing, build_transforms


def _clip(t=4):
    base = torch.randint(0, 256, (1, 3, 32, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return base.repeat(t, 1, 1, 1)  # identical frames → any per-frame difference comes from the transform


def test_flip_and_erasing_same_for_every_frame():
    t = build_transforms(
        (32, 16), train=True, flip_p=0.5, erasing_p=1.0, erasing_value=[9.0, 9.0, 9.0], color_jitter=[0.4, 0.4, 0.4, 0.1]
    )
    for seed in range(10):
        torch.manual_seed(seed)
        out = t(_clip())
        assert out.shape == (4, 3, 32, 16) and out.dtype == torch.float32
        assert all(torch.equal(out[0], out[i]) for i in range(1, 4))
        assert (out == 9.0).any()


def test_flip_happens_with_p_half():
    t = build_transforms((32, 16), train=True, flip_p=0.5, erasing_p=0.0)
    ref = build_transforms((32, 16), train=False)(_clip())
    flips = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out = t(_clip())
        if torch.allclose(out, ref.flip(-1)):
            flips += 1
        else:
            assert torch.allclose(out, ref, atol=0.1)  # bicubic vs bilinear differ slightly; no flip
    assert 8 <= flips <= 32


def test_per_frame_erasing_shares_anchor_resamples_size():
    torch.manual_seed(1)
    clip = torch.zeros(6, 3, 64, 32)
    out = PerFrameRandomErasing(1.0, (0.02, 0.4), (0.3, 3.33), (1.0, 1.0, 1.0))(clip)
    areas = [(out[i, 0] == 1.0).sum().item() for i in range(6)]
    assert all(a > 0 for a in areas) and len(set(areas)) > 1


def test_normalisation_values():
    t = build_transforms((2, 2), train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = t(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(out, torch.ones_like(out))
