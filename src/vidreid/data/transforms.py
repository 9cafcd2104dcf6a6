"""Clip-consistent transforms on uint8 video tensors ``(T, C, H, W)`` (DESIGN.md §3.4).

Built on ``torchvision.transforms.v2``: wrapping the clip as a ``tv_tensors.Video`` makes every random
transform draw its parameters once per clip, so all frames get the same flip and erasing rectangle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)

_INTERP = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


def _interp(name: str) -> v2.InterpolationMode:
    if name not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


class PerFrameRandomErasing(v2.Transform):
    """STAFormer's erasing quirk (METHODS.md §1.3): with probability ``p`` per clip, one relative anchor is
    drawn for the clip, but each frame re-samples the rectangle's area in ``scale`` × frame area and aspect
    ratio in ``ratio`` (log-uniform), filled with ``value`` (per channel, on the normalised tensor).

    Input/output: float video ``(T, C, H, W)``.
    """

    def __init__(self, p: float, scale: Sequence[float], ratio: Sequence[float], value: Sequence[float]):
        super().__init__()
        self.p, self.scale, self.ratio = p, tuple(scale), tuple(ratio)
        self.value = torch.tensor(value, dtype=torch.float32).view(-1, 1, 1)

    def forward(self, clip: Tensor) -> Tensor:  # type: ignore[override]
        if torch.rand(()) >= self.p:
            return clip
        t, c, h, w = clip.shape
        ax, ay = torch.rand(2).tolist()
        out = clip.clone()
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for i in range(t):
            for _ in range(10):
                area = h * w * float(torch.empty(()).uniform_(*self.scale))
                ar = math.exp(float(torch.empty(()).uniform_(*log_r)))
                eh, ew = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
                if 0 < eh < h and 0 < ew < w:
                    y, x = int(ay * (h - eh)), int(ax * (w - ew))
                    out[i, :, y : y + eh, x : x + ew] = self.value.to(out.dtype)
                    break
        return tv_tensors.wrap(out, like=clip) if isinstance(clip, tv_tensors.Video) else out


def build_transforms(
    size: Sequence[int] = (256, 128),
    train: bool = True,
    flip_p: float = 0.5,
    erasing_p: float = 0.5,
    erasing_scale: Sequence[float] = (0.02, 0.4),
    erasing_ratio: Sequence[float] = (0.3, 3.33),
    erasing_value: Sequence[float] | str = "imagenet_mean",
    erasing_per_frame: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    train_interpolation: str = "bicubic",
    test_interpolation: str = "bilinear",
    pad: int = 0,
    color_jitter: Sequence[float] | None = None,
) -> v2.Compose:
    """The clip transform: resize to ``size`` (H, W), [train: flip, optional pad + random crop], float in
    [0, 1], normalise, [train: random erasing].

    Args:
        erasing_value: per-channel fill on the normalised tensor, or ``imagenet_mean`` (PSTA),
            ``cifar_mean`` (STAFormer), ``zero`` (st-ReID/PCB).
        erasing_per_frame: STAFormer's per-frame rectangle size (shared anchor); otherwise one rectangle for
            the whole clip (PSTA).
        train_interpolation / test_interpolation: PSTA trains bicubic and tests bilinear (METHODS.md §2.3).
        pad: train-time zero padding (pixels) followed by a random crop back to ``size`` (BoT).
        color_jitter: ``(brightness, contrast, saturation, hue)`` jitter, the same for all frames of a clip
            (models illumination changes between cameras); ``None`` = off, as in the seed methods.

    Returns a callable mapping uint8 ``(T, 3, H0, W0)`` to float ``(T, 3, H, W)``.
    """
    if isinstance(erasing_value, str):
        fills = {"imagenet_mean": IMAGENET_MEAN, "cifar_mean": CIFAR_MEAN, "zero": (0.0, 0.0, 0.0)}
        if erasing_value not in fills:
            raise ValueError(f"erasing_value must be a list of 3 floats or one of {sorted(fills)}, got {erasing_value!r}")
        erasing_value = fills[erasing_value]
    size = tuple(int(s) for s in size)
    ops: list = [_AsVideo(), v2.Resize(size, interpolation=_interp(train_interpolation if train else test_interpolation), antialias=True)]
    if train:
        if flip_p > 0:
            ops.append(v2.RandomHorizontalFlip(flip_p))
        if pad > 0:
            ops += [v2.Pad(pad), v2.RandomCrop(size)]
        if color_jitter:
            ops.append(v2.ColorJitter(*color_jitter))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and erasing_p > 0:
        if erasing_per_frame:
            ops.append(PerFrameRandomErasing(erasing_p, erasing_scale, erasing_ratio, erasing_value))
        else:
            ops.append(v2.RandomErasing(erasing_p, scale=tuple(erasing_scale), ratio=tuple(erasing_ratio), value=list(erasing_value)))
    ops.append(_AsTensor())
    return v2.Compose(ops)


class _AsVideo(v2.Transform):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return tv_tensors.Video(x)


class _AsTensor(v2.Transform):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.as_subclass(Tensor)


def normalize_uint8(frames: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 ``(..., 3, H, W)`` → normalised float32, for test-time extraction on already-resized frames."""
    m = torch.tensor(mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255.0 - m) / s


def resize_uint8(frames: Tensor, size: Sequence[int], interpolation: str = "bilinear") -> Tensor:
    """Resize uint8 frames ``(N, 3, H, W)`` to ``size`` with antialiasing (no-op if already that size)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return TF.resize(frames, list(size), interpolation=_interp(interpolation), antialias=True)
