"""torch Datasets over tracklets: frame decoding, training clips, test clips (DESIGN.md §3.2–3.4)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.transforms import resize_uint8

log = logging.getLogger(__name__)


class CorruptFrameError(RuntimeError):
    """A frame file that is missing or cannot be decoded; the message names the path."""


def read_frame(path: Path | str) -> Tensor:
    """Decode one image file to uint8 ``(3, H, W)`` RGB.

    Raises:
        CorruptFrameError: the file is missing, empty or not a decodable JPEG/PNG; the message names it.
    """
    try:
        data = torch.frombuffer(bytearray(Path(path).read_bytes()), dtype=torch.uint8)
        if data.numel() == 0:
            raise ValueError("empty file")
        return decode_image(data, mode=ImageReadMode.RGB)
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise CorruptFrameError(f"cannot read frame {path}: {e}") from e


def load_frames(
    tracklet: Tracklet,
    positions: Sequence[int],
    size: Sequence[int] | None,
    skip_corrupt: bool = False,
    interpolation: str = "bilinear",
) -> Tensor:
    """Decode the frames at ``positions`` of ``tracklet`` to uint8 ``(len(positions), 3, H, W)``.

    Each frame is resized to ``size`` (H, W) when given, so frames of different sizes stack.
    With ``skip_corrupt`` an unreadable frame is replaced by the nearest readable frame of the tracklet and a
    warning names it; if no frame is readable, :class:`CorruptFrameError` is raised.
    """
    cache: dict[int, Tensor] = {}

    def get(pos: int) -> Tensor:
        if pos not in cache:
            img = read_frame(tracklet.frames[pos])
            cache[pos] = resize_uint8(img[None], size, interpolation)[0] if size is not None else img
        return cache[pos]

    out = []
    for p in positions:
        p = int(p)
        try:
            out.append(get(p))
        except CorruptFrameError as e:
            if not skip_corrupt:
                raise
            log.warning("%s; using the nearest readable frame instead (data.skip_corrupt=true)", e)
            order = sorted(range(len(tracklet)), key=lambda q: (abs(q - p), q))
            for q in order[1:]:
                try:
                    out.append(get(q))
                    break
                except CorruptFrameError:
                    continue
            else:
                raise CorruptFrameError(f"no readable frame in tracklet starting at {tracklet.frames[0]}") from e
    return torch.stack(out)


class TrainClipDataset(Dataset):
    """Training clips: item ``i`` = one clip of tracklet ``i`` drawn with the clip sampler's training scheme.

    The clip's frame positions and augmentation depend only on ``(seed, epoch, i)``, so a resumed run sees the
    same clips. Index with ``i`` (epoch from :meth:`set_epoch`) or ``(i, epoch)`` (as the datamodule's
    epoch-tagged batch sampler does). Returns ``(clip (T, 3, H, W) float, pid, camid)``.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        clip: ClipSampler,
        transform: Callable[[Tensor], Tensor],
        size: Sequence[int],
        seed: int = 0,
        skip_corrupt: bool = False,
    ):
        self.tracklets, self.clip, self.transform = list(tracklets), clip, transform
        self.size, self.seed, self.skip_corrupt = tuple(size), seed, skip_corrupt
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int, int]:
        i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
        t = self.tracklets[i]
        rng = np.random.default_rng([self.seed, epoch, i])
        positions = self.clip.train(len(t), rng)
        frames = load_frames(t, positions, None, self.skip_corrupt)
        if len({tuple(f.shape) for f in frames}) > 1:
            frames = torch.stack([resize_uint8(f[None], self.size)[0] for f in frames])
        with torch.random.fork_rng(devices=[]):  # augmentation is a function of (seed, epoch, i) too
            torch.manual_seed(hash((self.seed, epoch, i)) % (2**31))
            clip = self.transform(frames)
        return clip, t.pid, t.camid


class TestTrackletDataset(Dataset):
    """Test items: every clip of one tracklet under the test scheme.

    Item ``i`` is a dict: ``frames`` uint8 ``(F, 3, H, W)`` (only the frames the clips use, resized),
    ``clips`` int64 ``(n_clips, T)`` positions into ``frames``, ``pid``, ``camid``, ``index`` (= i),
    ``is_query``, ``timestamp`` (mean global frame number, NaN if unknown; st-ReID). Frames stay uint8 until the forward, so a 900-frame tracklet costs 900·3·H·W bytes.
    """

    def __init__(
        self,
        query: Sequence[Tracklet],
        gallery: Sequence[Tracklet],
        clip: ClipSampler,
        size: Sequence[int],
        interpolation: str = "bilinear",
        skip_corrupt: bool = False,
    ):
        self.items = [(t, True) for t in query] + [(t, False) for t in gallery]
        self.clip, self.size = clip, tuple(size)
        self.interpolation, self.skip_corrupt = interpolation, skip_corrupt

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        t, is_query = self.items[i]
        clips = self.clip.test(len(t))
        used, inverse = np.unique(clips, return_inverse=True)
        frames = load_frames(t, used, self.size, self.skip_corrupt, self.interpolation)
        return dict(
            frames=frames,
            clips=torch.from_numpy(inverse.reshape(clips.shape).astype(np.int64)),
            pid=t.pid,
            camid=t.camid,
            index=i,
            is_query=is_query,
            timestamp=float("nan") if t.timestamp is None else float(t.timestamp),
        )


def collate_tracklets(items: list[dict]) -> list[dict]:
    """Test batches stay lists of per-tracklet dicts (tracklets have different frame and clip counts)."""
    return items
