"""Clip transforms on uint8 video tensors ``(T, 3, H, W)`` (docs/architecture.md §3.4), one builder for train and test.

Clips stay uint8 from decode to the device: the network normalises (``ReIDNet.pixel_mean/pixel_std`` buffers,
as fast-reid's ``preprocess_image``), so DataLoader workers do no float work and ship a quarter of the bytes.
Every random draw comes from the numpy generator the dataset item already owns (seeded by ``(seed, epoch,
index)``), so an item is a pure function of those three numbers: a resumed run sees the same clips, and there is
no per-item ``torch.manual_seed``/``fork_rng`` (with the CUDA build of torch, each of those queued a lazy CUDA
seed and took a third of a worker's time).

Train: resize to ``size`` (only frames of another size; bicubic, antialiased), horizontal flip, optional pad +
random crop (BoT), optional colour jitter, random erasing — all drawn once per clip, so every frame gets the same
flip, crop, jitter and rectangle; STAFormer's per-frame erasing variant re-draws the rectangle size per frame.
Test: resize only (bilinear).

Erasing fills uint8 pixels: a fill given in normalised units ``v`` (the references erase after normalising)
becomes the pixel ``round(255 · (v · std + mean))``, within half a grey level of the reference's value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "CIFAR_MEAN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipTransform",
    "build_transforms",
    "erasing_fill_uint8",
    "resize_uint8",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
FILLS = {"imagenet_mean": IMAGENET_MEAN, "cifar_mean": CIFAR_MEAN, "zero": (0.0, 0.0, 0.0)}

_INTERP = {
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
    "nearest": v2.InterpolationMode.NEAREST,
}


def _interp(name: str) -> v2.InterpolationMode:
    if name not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {name!r}")
    return _INTERP[name]


def resize_uint8(frames: Tensor, size: Sequence[int], interpolation: str = "bilinear") -> Tensor:
    """Resize uint8 frames ``(N, 3, H, W)`` to ``size`` (H, W) with antialiasing (returned as is when already that
    size). Runs on the frames' device."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return TF.resize(frames, list(size), interpolation=_interp(interpolation), antialias=True)


def erasing_fill_uint8(value: Sequence[float] | str, mean: Sequence[float], std: Sequence[float]) -> tuple[int, ...]:
    """The uint8 pixel that normalises to ``value`` (per channel): ``round(255 · (value · std + mean))`` clipped to
    ``[0, 255]``. ``value`` may name a fill: ``imagenet_mean`` (PSTA), ``cifar_mean`` (STAFormer), ``zero``
    (st-ReID/PCB: the mean pixel).

    Raises:
        ValueError: an unknown fill name, or not 3 values.
    """
    if isinstance(value, str):
        if value not in FILLS:
            raise ValueError(f"erasing_value must be a list of 3 floats or one of {sorted(FILLS)}, got {value!r}")
        value = FILLS[value]
    if len(value) != 3 or len(mean) != 3 or len(std) != 3:
        raise ValueError(f"erasing_value/mean/std: expected 3 values each, got {value}, {mean}, {std}")
    return tuple(int(np.clip(round(255.0 * (float(v) * s + m)), 0, 255)) for v, m, s in zip(value, mean, std))


class ClipTransform:
    """A uint8 clip transform: ``transform(frames, rng) -> clip``.

    Args: see :func:`build_transforms`.

    Call:
        frames: uint8 ``(T, 3, H0, W0)`` (frames of one clip, any size).
        rng: the item's ``numpy.random.Generator`` (only used when ``train``; draws happen in a fixed order).
        inplace: ``frames`` may be overwritten (the dataset's freshly decoded clip: saves a copy).
        flipped: ``None`` = draw the flip here; ``True``/``False`` = the caller already drew it with
            :meth:`draw_flip` from this ``rng`` and mirrored ``frames`` accordingly (the dataset mirrors while
            copying decoded frames into the batch), so the same draws give the same clip either way.
    Returns:
        uint8 ``(T, 3, H, W)`` in the memory layout of ``frames`` (channels-last clips stay channels-last), a new
        tensor or ``frames`` itself when nothing applies.
    """

    def __init__(
        self,
        size: Sequence[int],
        train: bool,
        flip_p: float,
        erasing_p: float,
        erasing_scale: Sequence[float],
        erasing_ratio: Sequence[float],
        erasing_fill: Sequence[int],
        erasing_per_frame: bool,
        interpolation: str,
        pad: int,
        color_jitter: Sequence[float] | None,
        low_res_p: float = 0.0,
        low_res_scale: Sequence[float] = (0.25, 0.5),
    ):
        self.size = tuple(int(s) for s in size)
        if len(self.size) != 2 or min(self.size) < 1:
            raise ValueError(f"data.transforms.size: expected [H, W] > 0, got {list(size)}")
        for name, p in (("flip_p", flip_p), ("erasing_p", erasing_p), ("low_res_p", low_res_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"data.transforms.{name}={p}: expected a probability in [0, 1]")
        _interp(interpolation)
        self.train, self.flip_p, self.erasing_p = train, float(flip_p), float(erasing_p)
        self.scale, self.ratio = tuple(erasing_scale), tuple(erasing_ratio)
        self.fill = torch.tensor(erasing_fill, dtype=torch.uint8).view(3, 1, 1)
        self.per_frame, self.interpolation, self.pad = erasing_per_frame, interpolation, int(pad)
        self.jitter = tuple(color_jitter) if color_jitter else None
        if self.jitter is not None and len(self.jitter) != 4:
            raise ValueError(f"data.transforms.color_jitter: expected [brightness, contrast, saturation, hue], got {color_jitter}")
        self.low_res_p, self.low_res_scale = float(low_res_p), tuple(float(x) for x in low_res_scale)
        lo_hi = self.low_res_scale
        if len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ValueError(f"data.transforms.low_res_scale: expected [min, max] with 0 < min <= max <= 1, got "
                             f"{list(low_res_scale)}")  # fmt: skip

    def __repr__(self) -> str:
        kind = "train" if self.train else "test"
        return f"ClipTransform({kind}, size={self.size}, flip_p={self.flip_p}, erasing_p={self.erasing_p}, pad={self.pad})"

    def draw_flip(self, rng: np.random.Generator) -> bool:
        """The clip's horizontal-flip draw: the first draw of a training transform (none when ``flip_p`` is 0)."""
        return bool(self.train and self.flip_p > 0 and rng.random() < self.flip_p)

    def __call__(self, frames: Tensor, rng: np.random.Generator | None = None, inplace: bool = False,
                 flipped: bool | None = None) -> Tensor:  # fmt: skip
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"clip: expected uint8 (T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        clip = resize_uint8(frames, self.size, self.interpolation)
        if not self.train:
            return clip
        if rng is None:
            raise ValueError("a training transform needs the item's numpy Generator (rng=)")
        if flipped is None and self.draw_flip(rng):
            clip = clip.flip(-1)  # keeps the memory layout (channels-last clips stay channels-last)
        if self.low_res_p > 0 and rng.random() < self.low_res_p:
            clip = self._low_res(clip, rng)
        if self.pad > 0:
            clip = self._pad_crop(clip, rng)
        if self.jitter is not None:
            clip = self._color_jitter(clip, rng)
        if self.erasing_p > 0 and rng.random() < self.erasing_p:
            if clip is frames and not inplace:
                clip = clip.clone()
            self._erase(clip, rng)
        return clip

    def _low_res(self, clip: Tensor, rng: np.random.Generator) -> Tensor:
        """Down-then-up resampling (the low-resolution re-ID practice, e.g. Jiao et al., AAAI 2018; Li et al.,
        ICCV 2019): the clip is resized to ``s`` × ``size`` (``s`` uniform in ``low_res_scale``, one draw per
        clip, antialiased) and back to ``size`` with the training interpolation, so a network trained on sharp
        crops also sees the blur of small people upscaled to its input (PETS09-S2L1's median 82 px tall person is
        ~0.32 of a 256-px input)."""
        s = rng.uniform(*self.low_res_scale)
        small = (max(1, int(round(self.size[0] * s))), max(1, int(round(self.size[1] * s))))
        return resize_uint8(resize_uint8(clip, small, self.interpolation), self.size, self.interpolation)

    def _pad_crop(self, clip: Tensor, rng: np.random.Generator) -> Tensor:
        """Zero-pad by ``pad`` and crop ``size`` at a random offset (torchvision ``Pad`` + ``RandomCrop``), without
        building the padded clip."""
        h, w = self.size
        p = self.pad
        y0, x0 = int(rng.integers(0, 2 * p + 1)), int(rng.integers(0, 2 * p + 1))  # crop corner in padded coords
        out = torch.zeros_like(clip)
        sy, sx = max(0, y0 - p), max(0, x0 - p)  # source start
        dy, dx = max(0, p - y0), max(0, p - x0)  # destination start
        hh, ww = min(h - sy, h - dy), min(w - sx, w - dx)
        out[..., dy : dy + hh, dx : dx + ww] = clip[..., sy : sy + hh, sx : sx + ww]
        return out

    def _color_jitter(self, clip: Tensor, rng: np.random.Generator) -> Tensor:
        """torchvision ``ColorJitter`` semantics (random order of the four adjustments, factors uniform in
        ``[max(0, 1 − x), 1 + x]``, hue in ``[−h, h]``), one draw per clip, applied to uint8."""
        b, c, s, hue = self.jitter
        order = rng.permutation(4)
        factors = [rng.uniform(max(0.0, 1 - x), 1 + x) if x > 0 else None for x in (b, c, s)]
        hue_f = rng.uniform(-hue, hue) if hue > 0 else None
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
        for i in order:
            if i < 3 and factors[i] is not None:
                clip = ops[i](clip, float(factors[i]))
            elif i == 3 and hue_f is not None:
                clip = TF.adjust_hue(clip, float(hue_f))
        return clip

    def _erase(self, clip: Tensor, rng: np.random.Generator) -> None:
        """Random erasing in place. One rectangle for the whole clip (torchvision ``RandomErasing``: area in
        ``scale`` × frame area, log-uniform aspect ratio, 10 attempts), or STAFormer's per-frame variant
        (docs/methods.md §1.3: one relative anchor per clip, each frame re-draws area and ratio)."""
        t, _, h, w = clip.shape
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        fill = self.fill
        if not self.per_frame:
            for _ in range(10):
                area = h * w * rng.uniform(*self.scale)
                ar = math.exp(rng.uniform(*log_r))
                eh, ew = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
                if eh < h and ew < w:
                    y, x = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
                    _fill_rect(clip, slice(None), y, x, eh, ew, fill)
                    return
            return
        ax, ay = rng.random(), rng.random()
        for i in range(t):
            for _ in range(10):
                area = h * w * rng.uniform(*self.scale)
                ar = math.exp(rng.uniform(*log_r))
                eh, ew = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
                if 0 < eh < h and 0 < ew < w:
                    y, x = int(ay * (h - eh)), int(ax * (w - ew))
                    _fill_rect(clip, slice(i, i + 1), y, x, eh, ew, fill)
                    break


def _fill_rect(clip: Tensor, frames: slice, y: int, x: int, eh: int, ew: int, fill: Tensor) -> None:
    """``clip[frames, :, y:y+eh, x:x+ew] = fill`` (``fill`` uint8 ``(3, 1, 1)``), in place.

    A channels-last clip (the dataset's decode buffer) is filled row by row from one ``ew``-pixel pattern: each
    row of the rectangle is ``3·ew`` contiguous bytes, a memcpy, where the broadcast assignment walks single
    bytes (≈30× slower on a 256×128 clip)."""
    t, c, h, w = clip.shape
    if c == 3 and clip.stride(1) == 1 and clip.stride(3) == 3 and clip.stride(2) == 3 * w:
        rows = clip.permute(0, 2, 3, 1)[frames, y : y + eh, x : x + ew]  # (t', eh, ew, 3) view, rows contiguous
        rows.copy_(fill.view(1, 1, 3).expand(1, ew, 3).contiguous().expand_as(rows))
    else:
        clip[frames, :, y : y + eh, x : x + ew] = fill


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
    low_res_p: float = 0.0,
    low_res_scale: Sequence[float] = (0.25, 0.5),
) -> ClipTransform:
    """The one clip-transform builder (the ``data.transforms`` config node), for training and test clips.

    Args:
        size: input size ``(H, W)``.
        train: training clip (augmented, bicubic) or test clip (resize only, bilinear).
        flip_p: horizontal flip probability (per clip).
        erasing_p, erasing_scale, erasing_ratio: random erasing (Zhong et al. 2020; per clip).
        erasing_value: fill in normalised units per channel, or ``imagenet_mean`` (PSTA), ``cifar_mean``
            (STAFormer), ``zero`` (st-ReID/PCB); written as the uint8 pixel that normalises to it
            (:func:`erasing_fill_uint8`).
        erasing_per_frame: STAFormer's per-frame rectangle size (shared anchor); otherwise one rectangle for
            the whole clip (PSTA).
        mean, std: the normalisation the network applies (``ReIDNet.pixel_mean/pixel_std`` come from the same
            config values); used here only to turn the erasing fill into pixels.
        train_interpolation / test_interpolation: PSTA trains bicubic and tests bilinear (docs/methods.md §2.3).
        pad: train-time zero padding (pixels) followed by a random crop back to ``size`` (BoT).
        color_jitter: ``(brightness, contrast, saturation, hue)`` jitter, the same for all frames of a clip
            (models illumination changes between cameras); ``None`` = off, as in the seed methods.
        low_res_p, low_res_scale: down-then-up resampling (:meth:`ClipTransform._low_res`): probability per clip
            (0 = off, as in the seed methods; no random draw is made then, so the other augmentations draw the
            same numbers) and the range of the intermediate size as a fraction of ``size``.

    Returns:
        A :class:`ClipTransform` mapping uint8 ``(T, 3, H0, W0)`` (and the item's numpy generator) to uint8
        ``(T, 3, H, W)``.

    Raises:
        ValueError: on a bad size, probability, interpolation name, fill or jitter list.
    """
    return ClipTransform(
        size=size,
        train=train,
        flip_p=flip_p,
        erasing_p=erasing_p,
        erasing_scale=erasing_scale,
        erasing_ratio=erasing_ratio,
        erasing_fill=erasing_fill_uint8(erasing_value, mean, std),
        erasing_per_frame=erasing_per_frame,
        interpolation=train_interpolation if train else test_interpolation,
        pad=pad,
        color_jitter=color_jitter,
        low_res_p=low_res_p,
        low_res_scale=low_res_scale,
    )


def normalize_uint8(frames: Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """uint8 ``(..., 3, H, W)`` → normalised float32 ``(x / 255 − mean) / std``: what ``ReIDNet`` does to its
    uint8 input (kept for code that feeds a bare backbone)."""
    m = torch.tensor(mean, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=frames.device).view(3, 1, 1)
    return (frames.float() / 255.0 - m) / s
