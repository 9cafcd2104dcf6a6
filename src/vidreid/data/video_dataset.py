"""torch Datasets over tracklets: frame decoding, training clips, test clips (docs/architecture.md §3.2–3.4)."""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate, get_worker_info
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from vidreid.data.batch import TestBatch
from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.transforms import ClipTransform, resize_uint8

log = logging.getLogger(__name__)

try:  # optional (the `video` extra): mirrors frames straight into the batch buffer
    import cv2 as _cv2
except ImportError:  # pragma: no cover - depends on the install
    _cv2 = None

try:  # a core dependency; torchvision's decoder is the fallback where no wheel exists
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - depends on the install
    _simplejpeg = None

# JPEG colour spaces that simplejpeg (libjpeg-turbo, RGB output) decodes to exactly torchvision's pixels; CMYK/YCCK
# go to torchvision (its CMYK->RGB conversion rounds differently: off by 1)
_SIMPLEJPEG_SPACES = ("YCbCr", "Gray")


class CorruptFrameError(RuntimeError):
    """A frame file that is missing or cannot be decoded; the message names the path."""


def read_frame(path: Path | str) -> Tensor:
    """Decode one image file to uint8 ``(3, H, W)`` RGB.

    Raises:
        CorruptFrameError: the file is missing, empty or not a decodable JPEG/PNG; the message names it.
    """
    return _decode(_read_bytes(path), path)


def _read_bytes(path: Path | str) -> Tensor:
    """The file's bytes as a uint8 tensor (no copy; see :func:`_read_array`)."""
    return torch.from_numpy(_read_array(path))


def _read_array(path: Path | str) -> np.ndarray:
    """The file's bytes as a uint8 numpy array (read once, straight into a writable buffer; no copy; os-level calls,
    no file object: ~2 us a frame less than ``open().readinto``).

    Raises:
        CorruptFrameError: the file is missing, unreadable or empty; the message names it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = bytearray(os.fstat(fd).st_size)
            n = os.readv(fd, [data])
        finally:
            os.close(fd)
    except OSError as e:
        raise CorruptFrameError(f"cannot read frame {path}: {e}") from e
    if not n:
        raise CorruptFrameError(f"cannot read frame {path}: empty file")
    if n != len(data):  # the file changed size under us
        del data[n:]
    return np.frombuffer(data, dtype=np.uint8)


def _decode(data: Tensor, path: Path | str) -> Tensor:
    try:
        return decode_image(data, mode=ImageReadMode.RGB)
    except Exception as e:  # noqa: BLE001 - re-raised with the path
        raise CorruptFrameError(f"cannot read frame {path}: {e}") from e


def _is_jpeg(data: np.ndarray) -> bool:
    """Whether the bytes start with a JPEG's SOI marker ``FF D8``."""
    return len(data) > 1 and data[0] == 0xFF and data[1] == 0xD8


def _decode_jpeg_into(data: np.ndarray, dst: np.ndarray | None = None) -> np.ndarray | None:
    """Decode a YCbCr/greyscale JPEG (uint8 bytes) to RGB ``(H, W, 3)`` with simplejpeg (libjpeg-turbo), into
    ``dst`` — a contiguous uint8 ``(H, W, 3)`` array — when the image has exactly that size, else into a new array.

    The pixels equal ``torchvision.io.decode_jpeg(..., mode=RGB)``'s (both libjpeg-turbo with its default accurate
    DCT and fancy upsampling; tests compare them on 4:2:0, 4:2:2, 4:4:4, progressive and greyscale files), and it
    decodes ~20 % faster (``benchmarks/bench_loader.py``: 124 vs 157 us for a 256x128 frame, AMD EPYC) and
    straight into the batch buffer, which saves a copy per frame.

    Returns:
        The decoded array (``dst`` itself when it was filled), or ``None`` when simplejpeg is not installed, the
        data is not a JPEG in those colour spaces, ``dst`` has another size, or decoding fails — the caller then
        takes torchvision's path, which names the file in its error.
    """
    if _simplejpeg is None or not _is_jpeg(data):
        return None
    try:
        height, width, space, _ = _simplejpeg.decode_jpeg_header(data)
        if space not in _SIMPLEJPEG_SPACES:
            return None
        if dst is None:
            return _simplejpeg.decode_jpeg(data, colorspace="RGB")
        if dst.shape != (height, width, 3):
            return None
        return _simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=dst)
    except ValueError:  # corrupt or truncated: torchvision's decode reports it with the path
        return None


def _decode_many(datas: list[Tensor], paths: list[Path | str]) -> list[Tensor]:
    """Decode several frames: YCbCr/greyscale JPEGs with simplejpeg (:func:`_decode_jpeg_into`), other JPEGs in
    one ``decode_jpeg`` call (no per-frame Python overhead), others one by one; a failure is retried frame by frame
    so the error names the bad file. Frames are ``(3, H, W)`` views of HWC memory, whichever decoder made them."""
    out: list[Tensor | None] = [None] * len(datas)
    for i, d in enumerate(datas):
        arr = _decode_jpeg_into(d.numpy())
        if arr is not None:
            out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    jpeg = [i for i, d in enumerate(datas) if out[i] is None and _is_jpeg(d.numpy())]
    if len(jpeg) > 1:
        try:
            for i, img in zip(jpeg, decode_jpeg([datas[i] for i in jpeg], mode=ImageReadMode.RGB)):
                out[i] = img
        except Exception:  # noqa: BLE001 - one bad frame: fall through to the per-frame decode below
            pass
    return [img if img is not None else _decode(d, p) for img, d, p in zip(out, datas, paths)]


# below this size a batch buffer comes from torch's allocator (huge pages would not pay for themselves)
_HUGE_PAGE_MIN_BYTES = 4 << 20


class _MappingPool:
    """Anonymous huge-page mappings for in-process batch buffers, each reused once nothing references it.

    A tensor made by ``torch.frombuffer(mapping)`` holds one reference to the mapping until its storage — shared by
    every view, slice and numpy array made from it — is freed, so ``sys.getrefcount`` tells exactly whether a
    batch handed out earlier is still alive anywhere; a live one is never reused. At most ``limit`` mappings per
    size are kept (a training loop holds about two batches: the current one and the prefetched one).
    """

    def __init__(self, limit: int = 4):
        self.limit, self.maps = limit, []

    def get(self, n: int) -> mmap.mmap:
        for i in range(len(self.maps)):
            # references: the list and getrefcount's argument; a third means a batch still uses it
            if len(self.maps[i]) == n and sys.getrefcount(self.maps[i]) == 2:
                return self.maps[i]
        mm = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            mm.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # THP disabled for this process/kernel: a plain mapping
            pass
        if sum(len(m) == n for m in self.maps) < self.limit:
            self.maps.append(mm)
        return mm


_POOL = _MappingPool()


class WorkerBatchSlots:
    """Batch buffers shared by the main process and its *forked* DataLoader workers, reused from batch to batch.

    Without it a worker fills a fresh shared-memory segment per batch (as torch's ``default_collate`` does): every
    page is faulted in and zeroed in the worker, and mapped again in the main process — one worker delivered 3,000–
    3,450 256x128 frames/s that way against 4,600–5,000 through the slots (AMD EPYC, side by side in one process;
    ``bench_loader.py``'s frames, T = 8, 32 clips a batch).

    Created in the main process before the workers fork (:meth:`TrainClipDataset.share_batches_with_workers`):
    ``slots`` ``MAP_SHARED`` anonymous mappings of ``nbytes`` each, a shared state byte per slot (0 free, 1 taken)
    and a fork-inherited lock. A worker claims a free slot under the lock and writes its batch there;
    :func:`collate_clips` sends only ``(slot, shape)`` (:class:`_SlotClips`), and unpickling it in the main process
    (:meth:`receive`) makes the tensor from the main process's own mapping of that slot. Only the main process frees
    a slot, at a later :meth:`receive`, once nothing references its mapping any more (the exact
    ``sys.getrefcount`` test of :class:`_MappingPool`: ``torch.frombuffer`` holds the mapping until the tensor's
    storage — shared by every view, slice and numpy array — dies). A worker that finds no free slot, or a batch
    larger than a slot, falls back to a fresh shared segment; with a start method other than ``fork`` the slots
    are not sent to the workers at all (:meth:`TrainClipDataset.__getstate__`), so the fallback is always taken.
    Batches must be collated by :func:`collate_clips` (the datamodule's): another ``collate_fn`` would get the slot's
    tensor copied by torch's pickling (correct, slower) and leave that slot taken.
    """

    def __init__(self, nbytes: int, slots: int):
        import multiprocessing

        if nbytes < 1 or slots < 1:
            raise ValueError(f"WorkerBatchSlots(nbytes={nbytes}, slots={slots}): expected both >= 1")
        self.nbytes = int(nbytes)
        flags = mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
        self.maps = [mmap.mmap(-1, self.nbytes, flags=flags) for _ in range(slots)]
        self.state = mmap.mmap(-1, slots, flags=flags)
        self.lock = multiprocessing.get_context("fork").Lock()
        self.held: set[int] = set()  # main process: slots received whose tensors may still be alive
        self.id = next(_SLOT_IDS)
        _SLOT_POOLS[self.id] = self

    def claim(self, nbytes: int) -> Tensor | None:
        """In a worker: a free slot's first ``nbytes`` as a flat uint8 tensor (marked taken), or ``None``."""
        if nbytes > self.nbytes:
            return None
        with self.lock:
            for slot in range(len(self.maps)):
                if self.state[slot] == 0:
                    self.state[slot] = 1
                    break
            else:
                return None
        out = torch.frombuffer(self.maps[slot], dtype=torch.uint8, count=nbytes)
        _CLAIMED[out.untyped_storage().data_ptr()] = (self.id, slot)
        return out

    def release_unsent(self, claimed: Tensor) -> None:
        """In a worker: give back a slot whose batch failed before it was sent (the main process never saw it)."""
        pool_slot = _CLAIMED.get(claimed.untyped_storage().data_ptr())
        if pool_slot is not None and pool_slot[0] == self.id:
            self.state[pool_slot[1]] = 0

    def receive(self, slot: int, nbytes: int) -> Tensor:
        """In the main process: the batch a worker wrote into ``slot``; first frees the slots received earlier
        whose tensors are all gone."""
        for s in list(self.held):
            if sys.getrefcount(self.maps[s]) == 2:  # the list's and getrefcount's references only
                self.held.discard(s)
                self.state[s] = 0
        self.held.add(slot)
        return torch.frombuffer(self.maps[slot], dtype=torch.uint8, count=nbytes)


# inherited by forked workers; weak: a pool goes (and unmaps its idle slots) with its dataset, while a batch still
# alive keeps its own slot's mapping
_SLOT_POOLS: weakref.WeakValueDictionary[int, WorkerBatchSlots] = weakref.WeakValueDictionary()
_SLOT_IDS = itertools.count()
_CLAIMED: dict[int, tuple[int, int]] = {}  # in a worker: data_ptr of a claimed slot -> (pool id, slot)


class _SlotClips:
    """What a worker sends for a batch written into a :class:`WorkerBatchSlots` slot: unpickled in the main
    process as the ``(B, T, 3, H, W)`` uint8 tensor (channels-last memory) on that slot."""

    def __init__(self, pool: int, slot: int, shape: tuple[int, ...]):
        self.pool, self.slot, self.shape = pool, slot, shape

    def __reduce__(self):
        return _receive_slot_clips, (self.pool, self.slot, self.shape)


def _receive_slot_clips(pool: int, slot: int, shape: tuple[int, ...]) -> Tensor:
    flat = _SLOT_POOLS[pool].receive(slot, int(np.prod(shape)))
    return flat.view(shape).permute(0, 1, 4, 2, 3)


def _shared_empty(shape: Sequence[int]) -> Tensor:
    """An uninitialised uint8 tensor in a fresh shared-memory segment, allocated there directly as torch's
    ``default_collate`` does: ``empty().share_memory_()`` would copy a fresh buffer into the shared one — a wasted
    pass, and a parallel copy that hangs in a forked worker whose parent had used libgomp threads."""
    n = int(np.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(n)).view(tuple(shape))


def batch_buffer(shape: Sequence[int], shared: bool) -> Tensor:
    """An uninitialised uint8 tensor of ``shape`` for one batch of decoded frames.

    ``shared`` (inside a DataLoader worker): in shared memory, so the batch reaches the main process without a
    copy. Otherwise, from 4 MiB up, an anonymous mapping advised for transparent huge pages (Linux
    ``MADV_HUGEPAGE``) and reused once the batch that used it is gone (:class:`_MappingPool`): a 256x128 batch of
    32x8 frames is 25 MB, which torch's allocator hands back to the kernel after each batch, so every batch took
    ~6,400 page faults and a kernel zeroing while the frames were copied in — ~76 vs ~22 us per frame
    (``benchmarks/bench_loader.py``). Without THP (other kernels, other platforms) it is an ordinary mapping.
    """
    n = int(np.prod(shape))
    if shared:
        return _shared_empty(shape)
    if n < _HUGE_PAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(tuple(shape), dtype=torch.uint8)
    return torch.frombuffer(_POOL.get(n), dtype=torch.uint8).view(tuple(shape))


def _copy_hwc(src: Tensor, dst: np.ndarray, flip: bool) -> None:
    """Copy a uint8 ``(H, W, 3)`` frame into ``dst``, mirrored left-right when ``flip``. OpenCV's ``cv2.flip``
    (the ``video`` extra) writes the mirror straight into the batch, ~5 us for 256x128 where torch's flip + copy
    took ~17 us; without OpenCV, torch's."""
    if not flip:
        np.copyto(dst, src.numpy())
    elif _cv2 is not None and src.is_contiguous():
        _cv2.flip(src.numpy(), 1, dst=dst)
    else:
        torch.from_numpy(dst).copy_(src.flip(1))


def _decode_clip_in_place(tracklet: Tracklet, positions: Sequence[int], dst: np.ndarray, flip: bool) -> bool:
    """Decode the clip's frames straight into ``dst`` (uint8 ``(T, H, W, 3)``, one batch row), mirrored in place
    when ``flip``; a position repeated in the clip is copied from its first slot. Returns ``False`` — ``dst`` then
    holds garbage for the caller's general path to overwrite — as soon as a frame cannot be read or is not a
    YCbCr/greyscale JPEG of exactly ``H x W`` (:func:`_decode_jpeg_into`)."""
    if _simplejpeg is None:
        return False
    first: dict[int, int] = {}
    for j, p in enumerate(positions):
        p = int(p)
        if p in first:
            np.copyto(dst[j], dst[first[p]])
            continue
        try:
            data = _read_array(tracklet.frames[p])
        except CorruptFrameError:
            return False
        if _decode_jpeg_into(data, dst[j]) is None:
            return False
        if flip:
            _flip_in_place(dst[j])
        first[p] = j
    return True


def _flip_in_place(img: np.ndarray) -> None:
    """Mirror a contiguous ``(H, W, 3)`` uint8 image left-right in place (``cv2.flip`` swaps symmetric pixels;
    without OpenCV, torch's flip into a temporary and a copy back — ~28 us for 256x128, where numpy's reversed
    3-byte-pixel view took ~265 us)."""
    if _cv2 is not None:
        _cv2.flip(img, 1, dst=img)
    else:
        t = torch.from_numpy(img)
        t.copy_(t.flip(1))


def _stack(frames: list[Tensor]) -> Tensor:
    """Stack decoded ``(3, H, W)`` frames into a uint8 ``(n, 3, H, W)`` tensor whose memory is channels-last
    (``(n, H, W, 3)`` contiguous, viewed as ``(n, 3, H, W)``). The decoders produce HWC pixels, so this is one
    plain copy per frame; the network makes its float input contiguous on the device
    (``ReIDNet.preprocess``), where the transposition is free on a GPU instead of a strided copy in every worker."""
    out = np.empty((len(frames), *frames[0].shape[1:], frames[0].shape[0]), dtype=np.uint8)
    for i, f in enumerate(frames):
        np.copyto(out[i], f.permute(1, 2, 0).numpy())
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def is_channels_last(x: Tensor) -> bool:
    """Whether a ``(..., 3, H, W)`` tensor is an HWC-contiguous view (as :func:`load_frames` returns)."""
    return x.dim() >= 3 and x.movedim(-3, -1).is_contiguous()


def collate_clips(batch: list[tuple[Tensor, int, int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Collate training items ``(clip (T, 3, H, W) uint8, pid, camid)`` into ``(clips (B, T, 3, H, W), pids (B,),
    camids (B,))``. Channels-last clips are copied as they are (one ``memcpy`` each, into shared memory inside a
    DataLoader worker, as torch's ``default_collate`` does); anything else goes to ``default_collate``."""
    clips = [b[0] for b in batch]
    if not all(is_channels_last(c) and c.shape == clips[0].shape for c in clips):
        return default_collate(batch)
    t, c, h, w = clips[0].shape
    pids = torch.tensor([b[1] for b in batch], dtype=torch.long)
    camids = torch.tensor([b[2] for b in batch], dtype=torch.long)
    storage = clips[0].untyped_storage()
    if (storage.nbytes() == len(clips) * clips[0].numel() and clips[0].storage_offset() == 0
            and all(x.untyped_storage().data_ptr() == storage.data_ptr() and x.storage_offset() == k * x.numel()
                    for k, x in enumerate(clips))):  # fmt: skip
        # TrainClipDataset.__getitems__ wrote the batch into one buffer: hand it on as it is (a worker's shared
        # slot goes by reference: WorkerBatchSlots)
        shape = (len(clips), t, h, w, c)
        claimed = _CLAIMED.get(storage.data_ptr()) if get_worker_info() is not None else None
        if claimed is not None:
            return _SlotClips(*claimed, shape), pids, camids
        whole = torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)
        return whole.permute(0, 1, 4, 2, 3), pids, camids
    out = _shared_empty((len(clips), t, h, w, c)) if get_worker_info() is not None else torch.empty(
        (len(clips), t, h, w, c), dtype=torch.uint8)
    dst = out.numpy()
    for i, clip in enumerate(clips):
        np.copyto(dst[i], clip.movedim(-3, -1).numpy())
    return out.permute(0, 1, 4, 2, 3), pids, camids


def _nearest_readable(tracklet: Tracklet, pos: int, error: CorruptFrameError) -> Tensor:
    """``data.skip_corrupt``: the nearest readable frame of the tracklet (lower position on a tie), with a warning."""
    log.warning("%s; using the nearest readable frame instead (data.skip_corrupt=true)", error)
    for q in sorted(range(len(tracklet)), key=lambda q: (abs(q - pos), q))[1:]:
        try:
            return read_frame(tracklet.frames[q])
        except CorruptFrameError:
            continue
    raise CorruptFrameError(f"no readable frame in tracklet starting at {tracklet.frames[0]}") from error


def _decoded_frames(tracklet: Tracklet, positions: Sequence[int], skip_corrupt: bool) -> list[Tensor]:
    """The decoded ``(3, H, W)`` frame (HWC memory) at each of ``positions``; each distinct position is read and
    decoded once (JPEGs in one call); ``skip_corrupt`` as in :func:`load_frames`."""
    distinct = list(dict.fromkeys(int(p) for p in positions))
    paths = [tracklet.frames[p] for p in distinct]
    try:
        decoded = _decode_many([_read_bytes(p) for p in paths], paths)
    except CorruptFrameError:
        if not skip_corrupt:
            raise
        decoded = []
        for p, path in zip(distinct, paths):
            try:
                decoded.append(read_frame(path))
            except CorruptFrameError as e:
                decoded.append(_nearest_readable(tracklet, p, e))
    where = {p: j for j, p in enumerate(distinct)}
    return [decoded[where[int(p)]] for p in positions]


def load_frames(
    tracklet: Tracklet,
    positions: Sequence[int],
    size: Sequence[int] | None,
    skip_corrupt: bool = False,
    interpolation: str = "bilinear",
) -> Tensor:
    """Decode the frames at ``positions`` of ``tracklet`` to uint8 ``(len(positions), 3, H, W)`` (channels-last
    memory, see :func:`_stack`).

    Each distinct position is read and decoded once (JPEGs in one batched call). Frames are resized to ``size``
    (H, W) when given, and frames of different sizes are resized to the first one's when not, so they stack.
    With ``skip_corrupt`` an unreadable frame is replaced by the nearest readable frame of the tracklet and a
    warning names it.

    Raises:
        CorruptFrameError: an unreadable frame (without ``skip_corrupt``), or no readable frame at all.
    """
    frames = _decoded_frames(tracklet, positions, skip_corrupt)
    target = tuple(size) if size is not None else tuple(frames[0].shape[-2:])
    if any(tuple(f.shape[-2:]) != target for f in frames):
        frames = [resize_uint8(f[None], target, interpolation)[0] for f in frames]
    return _stack(frames)


class TrainClipDataset(Dataset):
    """Training clips: item ``i`` = one clip of tracklet ``i`` drawn with the clip sampler's training scheme.

    The clip's frame positions and every augmentation draw come from one numpy generator seeded by
    ``(seed, epoch, i)``, so a resumed run sees the same clips. Index with ``i`` (epoch from :meth:`set_epoch`)
    or ``(i, epoch)`` (as the datamodule's epoch-tagged batch sampler does).

    Returns ``(clip, pid, camid)`` with ``clip`` uint8 ``(T, 3, H, W)`` (channels-last memory; collate with
    :func:`collate_clips`): the network normalises on the device (``ReIDNet.pixel_mean/pixel_std``), so workers ship
    a quarter of the bytes of a float clip.
    """

    def __init__(
        self,
        tracklets: Sequence[Tracklet],
        clip: ClipSampler,
        transform: ClipTransform,
        size: Sequence[int],
        seed: int = 0,
        skip_corrupt: bool = False,
    ):
        self.tracklets, self.clip, self.transform = list(tracklets), clip, transform
        self.size, self.seed, self.skip_corrupt = tuple(size), seed, skip_corrupt
        self.epoch = 0
        self.worker_slots: WorkerBatchSlots | None = None

    def share_batches_with_workers(self, batch_size: int, slots: int) -> None:
        """Before a DataLoader with forked workers starts: give them ``slots`` reusable shared batch buffers of
        ``batch_size`` clips (:class:`WorkerBatchSlots`; the datamodule reserves ``workers × (prefetch + 1) + 2``).
        Memory is committed only as slots are first used."""
        t = self.clip.seq_len
        h, w = self.transform.size
        self.worker_slots = WorkerBatchSlots(int(batch_size) * t * h * w * 3, int(slots))

    def __getstate__(self) -> dict:
        # a spawned/forkserver worker gets a pickled copy: the slots' mappings and lock cannot travel there
        state = self.__dict__.copy()
        state["worker_slots"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int, int]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[tuple[Tensor, int, int]]:
        """A batch of items (the DataLoader calls this with each batch's keys). Every frame is decoded and copied
        once, straight into one ``(B, T, H, W, 3)`` uint8 buffer (shared memory inside a worker) that
        :func:`collate_clips` hands on without another copy; flip/crop/jitter results are written back into it and
        erasing works in place."""
        draws = []
        for key in keys:
            i, epoch = key if isinstance(key, tuple) else (key, self.epoch)
            t = self.tracklets[i]
            rng = np.random.default_rng([self.seed, epoch, i])
            draws.append((t, self.clip.train(len(t), rng), rng))
        h, w = self.transform.size
        shape = (len(draws), len(draws[0][1]), h, w, 3)
        in_worker = get_worker_info() is not None
        flat = self.worker_slots.claim(int(np.prod(shape))) if in_worker and self.worker_slots is not None else None
        buf = flat.view(shape) if flat is not None else batch_buffer(shape, shared=in_worker)
        try:
            return self._fill(draws, buf)
        except BaseException:
            if flat is not None:
                self.worker_slots.release_unsent(flat)
            raise

    def _fill(self, draws: list, buf: Tensor) -> list[tuple[Tensor, int, int]]:
        h, w = self.transform.size
        dst = buf.numpy()
        out = []
        for b, (t, positions, rng) in enumerate(draws):
            flip = self.transform.draw_flip(rng)  # mirrored while copied in: one pass instead of three
            if not _decode_clip_in_place(t, positions, dst[b], flip):
                # any frame that is not a same-size YCbCr/greyscale JPEG: torchvision's decode, resize, copy
                frames = _decoded_frames(t, positions, self.skip_corrupt)
                for j, f in enumerate(frames):
                    if tuple(f.shape[-2:]) != (h, w):
                        f = resize_uint8(f[None], (h, w), self.transform.interpolation)[0]
                    _copy_hwc(f.permute(1, 2, 0), dst[b, j], flip)
            clip = buf[b].permute(0, 3, 1, 2)  # (T, 3, H, W) view, channels-last memory
            result = self.transform(clip, rng, inplace=True, flipped=flip)
            if result is not clip:
                clip.copy_(result)
            out.append((clip, t.pid, t.camid))
        return out


class TrackletFrames:
    """The frames one test tracklet's clips use, decoded chunk by chunk.

    The DataLoader worker decodes the first ``decoded`` frames; the rest are read and decoded when a clip asks for
    them (:meth:`__getitem__`) and not kept, so an all-frames test of a 900-frame tracklet holds one chunk of
    decoded frames at a time instead of all of them.

    Index with local frame positions (``TestTrackletDataset`` item ``clips`` rows): ``frames[idx]`` is uint8
    ``(*idx.shape, 3, H, W)`` at the test size.
    """

    def __init__(
        self, tracklet: Tracklet, positions: Sequence[int], size: Sequence[int], interpolation: str,
        skip_corrupt: bool, decoded: int,
    ):
        self.tracklet, self.positions = tracklet, [int(p) for p in positions]
        self.size, self.interpolation, self.skip_corrupt = tuple(size), interpolation, skip_corrupt
        n_first = min(len(self.positions), max(0, int(decoded)))
        self.first = load_frames(tracklet, self.positions[:n_first], size, skip_corrupt, interpolation) if n_first else None

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), 3, *self.size)

    def _frame(self, j: int) -> Tensor:
        """Frame ``j`` (a local position) decoded and resized, as a ``(3, H, W)`` uint8 view (channels-last memory
        straight from the decoder)."""
        if self.first is not None and j < len(self.first):
            return self.first[j]
        pos = self.positions[j]
        try:
            img = read_frame(self.tracklet.frames[pos])
        except CorruptFrameError as e:
            if not self.skip_corrupt:
                raise
            img = _nearest_readable(self.tracklet, pos, e)
        return resize_uint8(img[None], self.size, self.interpolation)[0]

    def __getitem__(self, idx) -> Tensor:
        idx = torch.as_tensor(idx, dtype=torch.long)
        flat = idx.reshape(-1)
        if self.first is not None and bool((flat < len(self.first)).all()):
            return self.first[idx]
        # decode each distinct frame once, straight into the output (no intermediate stack)
        out = np.empty((len(flat), 3, *self.size), dtype=np.uint8)
        first_use: dict[int, int] = {}
        for row, j in enumerate(flat.tolist()):
            if j in first_use:
                out[row] = out[first_use[j]]
            else:
                first_use[j] = row
                np.copyto(out[row], self._frame(j).numpy())
        return torch.from_numpy(out).view(*idx.shape, 3, *self.size)


class TestTrackletDataset(Dataset):
    """Test items: every clip of one tracklet under the test scheme.

    Item ``i`` is a dict: ``frames`` a :class:`TrackletFrames` (the frames the clips use at the test ``size``;
    the first ``worker_decoded_frames`` decoded by the worker, the rest on demand, so memory does not grow with
    the tracklet's length), ``clips`` int64 ``(n_clips, T)`` positions into ``frames``, ``pid``, ``camid``,
    ``index`` (= i), ``is_query``, ``timestamp`` (mean global frame number, NaN if unknown; st-ReID).
    """

    def __init__(
        self,
        query: Sequence[Tracklet],
        gallery: Sequence[Tracklet],
        clip: ClipSampler,
        size: Sequence[int],
        interpolation: str = "bilinear",
        skip_corrupt: bool = False,
        worker_decoded_frames: int = 128,
    ):
        self.items = [(t, True) for t in query] + [(t, False) for t in gallery]
        self.clip, self.size = clip, tuple(size)
        self.interpolation, self.skip_corrupt = interpolation, skip_corrupt
        self.worker_decoded_frames = int(worker_decoded_frames)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        t, is_query = self.items[i]
        clips = self.clip.test(len(t))
        used, inverse = np.unique(clips, return_inverse=True)
        frames = TrackletFrames(t, used, self.size, self.interpolation, self.skip_corrupt, self.worker_decoded_frames)
        return dict(
            frames=frames,
            clips=torch.from_numpy(inverse.reshape(clips.shape).astype(np.int64)),
            pid=t.pid,
            camid=t.camid,
            index=i,
            is_query=is_query,
            timestamp=float("nan") if t.timestamp is None else float(t.timestamp),
        )


def collate_tracklets(items: list[dict]) -> TestBatch:
    """A :class:`~vidreid.data.batch.TestBatch` of test items (frames and clips stay per-tracklet lists: tracklets
    have different frame and clip counts)."""
    return TestBatch.collate(items)
