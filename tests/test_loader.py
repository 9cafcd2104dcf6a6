"""The uint8 data path: training items as pure functions of (seed, epoch, index), streamed test frames, loaders
with one thread per worker and persistent workers."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import ReIDDataset, Tracklet
from vidreid.data.transforms import build_transforms
from vidreid.data.video_dataset import TestTrackletDataset, TrackletFrames, TrainClipDataset, load_frames


def _tracklet(root, n, pid=0, camid=0, size=(32, 16), seed=0):
    gen = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(n):
        img = torch.randint(0, 256, (3, size[0] // 4, size[1] // 4), dtype=torch.uint8, generator=gen)
        img = torch.nn.functional.interpolate(img[None].float(), size=size, mode="bilinear")[0].round().byte()
        p = root / f"{j:04d}.jpg"
        p.write_bytes(encode_jpeg(img, quality=90).numpy().tobytes())
        paths.append(p)
    return Tracklet(tuple(paths), pid=pid, camid=camid)


def test_training_item_is_a_function_of_seed_epoch_index(tmp_path, monkeypatch):
    tracklets = [_tracklet(tmp_path / f"t{i}", 10, pid=i, seed=i) for i in range(3)]
    tf = build_transforms((32, 16), train=True, flip_p=0.5, erasing_p=0.5)
    ds = TrainClipDataset(tracklets, ClipSampler(seq_len=4), tf, (32, 16), seed=7)

    def no_seeding(*a, **k):
        raise AssertionError("items must not reseed torch (per-item manual_seed/fork_rng)")

    monkeypatch.setattr(torch, "manual_seed", no_seeding)
    monkeypatch.setattr(torch.random, "fork_rng", no_seeding)
    state = torch.random.get_rng_state()
    first = [ds[(i, e)] for i in range(3) for e in range(4)]
    assert torch.equal(torch.random.get_rng_state(), state)  # the global torch stream is untouched
    again = [ds[(i, e)] for e in reversed(range(4)) for i in reversed(range(3))][::-1]
    again = [again[e * 3 + i] for i in range(3) for e in range(4)]  # back to (i, e) order
    for (c1, p1, k1), (c2, p2, k2) in zip(first, again):
        assert c1.dtype == torch.uint8 and c1.shape == (4, 3, 32, 16)
        assert torch.equal(c1, c2) and (p1, k1) == (p2, k2)
    assert len({c.sum().item() for c, _, _ in first}) > 6  # epochs and indices draw different clips
    ds.set_epoch(2)
    assert torch.equal(ds[1][0], ds[(1, 2)][0])


def test_streamed_test_frames_equal_decoding_everything(tmp_path):
    t = _tracklet(tmp_path / "long", 37)
    clip = ClipSampler(seq_len=4, test_scheme="all_frames")
    full = TestTrackletDataset([t], [], clip, (16, 8), worker_decoded_frames=10_000)[0]
    streamed = TestTrackletDataset([t], [], clip, (16, 8), worker_decoded_frames=8)[0]
    assert isinstance(streamed["frames"], TrackletFrames)
    assert streamed["frames"].first.shape[0] == 8  # only the first chunk is decoded by the worker
    expect = load_frames(t, sorted(set(np.unique(clip.test(37)).tolist())), (16, 8))
    for item in (full, streamed):
        got = item["frames"][torch.arange(len(item["frames"]))]
        assert got.dtype == torch.uint8 and torch.equal(got, expect)
        clips = item["frames"][item["clips"]]
        assert clips.shape == (*item["clips"].shape, 3, 16, 8)


def test_streamed_embedding_matches_and_network_sees_uint8(tmp_path):
    from vidreid.data.batch import TestBatch
    from vidreid.evaluation.features import embed_tracklet_batch

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3))

        def forward(self, clips):
            seen.append((clips.dtype, clips.shape[0]))
            return clips.float().mean(dim=(1, 3, 4)) * self.w

    ts = [_tracklet(tmp_path / f"t{i}", n, seed=i) for i, n in enumerate((5, 23, 9))]
    clip = ClipSampler(seq_len=4, test_scheme="all_frames")
    out = {}
    for decoded in (0, 10_000):
        ds = TestTrackletDataset(ts, [], clip, (16, 8), worker_decoded_frames=decoded)
        out[decoded] = embed_tracklet_batch(Probe(), TestBatch.collate([ds[i] for i in range(3)]), 3)
    torch.testing.assert_close(out[0], out[10_000], rtol=0, atol=0)
    assert all(dtype == torch.uint8 and n <= 3 for dtype, n in seen)
    with pytest.raises(ValueError, match="max_clips_per_forward"):
        embed_tracklet_batch(Probe(), TestBatch.collate([ds[0]]), 0)


def test_datamodule_loaders_persistent_and_single_threaded_workers(tmp_path):
    from vidreid.data.datamodule import ReIDDataModule
    from vidreid.runtime.threads import worker_init_threads

    train = [_tracklet(tmp_path / f"tr{i}", 6, pid=i // 2, camid=i % 2, seed=i) for i in range(8)]
    query = [_tracklet(tmp_path / f"q{i}", 6, pid=i, camid=0, seed=10 + i) for i in range(2)]
    gallery = [_tracklet(tmp_path / f"g{i}", 6, pid=i, camid=1, seed=20 + i) for i in range(2)]
    data = ReIDDataset("hand", train, query, gallery)
    dm = ReIDDataModule(
        data, clip={"seq_len": 4}, transforms={"size": [32, 16]}, num_workers=2, test_batch_size=2,
        sampler={"_target_": "vidreid.data.samplers.PKBatchSampler", "num_identities": 2, "num_instances": 2},
        val_identities=0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.worker_init_fn is worker_init_threads
    clips, pids, _ = next(iter(loader))
    assert clips.dtype == torch.uint8 and clips.shape == (4, 4, 3, 32, 16)
    # the batch a worker wrote into one buffer equals the items drawn one by one
    keys = next(iter(loader.batch_sampler))
    items = [loader.dataset[k] for k in keys]
    assert torch.equal(next(iter(loader))[0], torch.stack([c for c, _, _ in items]))
    assert dm.test_dataloader().worker_init_fn is worker_init_threads


def test_reidnet_trains_on_uint8_batches():
    from vidreid.models.aggregators.temporal_avg import TemporalAvg
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    net = ReIDNet(partial(Backbone, "resnet18", pretrained=False), partial(TemporalAvg), num_classes=4).train()
    clips = torch.randint(0, 256, (4, 2, 3, 32, 16), dtype=torch.uint8)
    out = net(clips)
    out.logits[0].sum().backward()
    assert next(net.parameters()).grad is not None


def test_large_batches_in_huge_page_buffers_equal_single_items(tmp_path):
    """A batch of >= 4 MiB is decoded into an anonymous huge-page mapping (no per-batch 4 KiB page
    faults); its clips equal the same items decoded one by one (torch's allocator) and stay valid after the
    dataset and the batch list are gone."""
    import gc

    from vidreid.data.video_dataset import _HUGE_PAGE_MIN_BYTES, batch_buffer, collate_clips

    size = (128, 64)
    tracklets = [_tracklet(tmp_path / f"t{i}", 6, pid=i, size=size, seed=i) for i in range(8)]
    tf = build_transforms(size, train=True, flip_p=0.5, erasing_p=0.5, pad=4)
    ds = TrainClipDataset(tracklets, ClipSampler(seq_len=4), tf, size, seed=1)
    keys = [(i % 8, i // 8) for i in range(48)]
    assert 48 * 4 * size[0] * size[1] * 3 >= _HUGE_PAGE_MIN_BYTES
    clips, pids, _ = collate_clips(ds.__getitems__(keys))
    singles = [ds[k][0] for k in keys]
    del ds
    gc.collect()
    assert clips.shape == (48, 4, 3, *size) and pids.tolist() == [k[0] for k in keys]
    assert all(torch.equal(clips[j], singles[j]) for j in range(48))
    big = batch_buffer((5, 1024, 1024), shared=False)
    big.fill_(7)
    assert big.shape == (5, 1024, 1024) and int(big.sum()) == 7 * 5 * 1024 * 1024


def test_huge_page_buffers_are_reused_only_when_no_view_is_alive():
    """The in-process batch-buffer pool reuses a mapping only after every tensor, view and numpy array made from
    its batch is gone (a reused live buffer would overwrite a batch the model is still reading)."""
    import gc

    from vidreid.data.video_dataset import batch_buffer

    shape = (4, 1024, 1024)
    a = batch_buffer(shape, shared=False)
    a.fill_(1)
    ptr = a.data_ptr()
    view, arr = a[2].permute(1, 0), a.numpy()[1]
    del a
    for _keep in (view, arr):
        b = batch_buffer(shape, shared=False)
        assert b.data_ptr() != ptr
        b.fill_(2)
        del b
    assert int(view.sum()) == 1024 * 1024 and int(arr.sum()) == 1024 * 1024  # untouched by the later batches
    del view, arr, _keep
    gc.collect()
    assert batch_buffer(shape, shared=False).data_ptr() == ptr  # free again: reused, no new page faults


@pytest.mark.parametrize("opencv", [True, False])
def test_mirrored_copy_equals_the_transform_on_decoded_frames(tmp_path, monkeypatch, opencv):
    """The dataset draws the flip first and mirrors frames while copying them into the batch (OpenCV, or torch
    without it); each item equals the plain transform applied to the decoded frames with the same draws."""
    import vidreid.data.video_dataset as vd

    if not opencv:
        monkeypatch.setattr(vd, "_cv2", None)
    elif vd._cv2 is None:
        pytest.skip("OpenCV (the video extra) not installed")
    size = (32, 16)
    tracklets = [_tracklet(tmp_path / f"t{i}", 9, pid=i, size=size, seed=i) for i in range(4)]
    tf = build_transforms(size, train=True, flip_p=0.5, erasing_p=0.5, pad=2)
    clip = ClipSampler(seq_len=4)
    ds = TrainClipDataset(tracklets, clip, tf, size, seed=5)
    flips = 0
    for i in range(4):
        for e in range(6):
            rng = np.random.default_rng([5, e, i])
            frames = load_frames(tracklets[i], clip.train(9, rng), size)
            state = rng.bit_generator.state
            flips += tf.draw_flip(rng)
            rng.bit_generator.state = state
            assert torch.equal(ds[(i, e)][0], tf(frames, rng)), (i, e)
    assert 4 <= flips <= 20  # both branches ran


_FORKED_WORKERS_SCRIPT = r"""
import sys
import torch
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_loader import _tracklet
from torch.utils.data import DataLoader
from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.samplers import PKBatchSampler
from vidreid.data.transforms import build_transforms
from vidreid.data.video_dataset import TrainClipDataset
from vidreid.runtime.threads import worker_init_threads

torch.set_num_threads(2)
torch.ones(1 << 22).mul_(2).sum()  # the parent runs libgomp parallel regions with 2 threads before forking
root, size = Path(sys.argv[1]), (64, 32)
tracklets = [_tracklet(root / f"t{i}", 6, pid=i // 2, size=size, seed=i) for i in range(8)]
ds = TrainClipDataset(tracklets, ClipSampler(seq_len=8), build_transforms(size, train=True), size, seed=0)
sampler = PKBatchSampler([t.pid for t in tracklets], num_identities=4, num_instances=2, seed=0)
loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, worker_init_fn=worker_init_threads, timeout=60)
clips, pids, _ = next(iter(loader))
assert clips.shape == (8, 8, 3, *size) and clips.is_shared(), (clips.shape, clips.is_shared())
print("ok")
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="forked DataLoader workers")
def test_forked_workers_deliver_under_a_thread_override(tmp_path):
    """Regression: with ``VIDREID_NUM_THREADS=2`` the workers got 2 intra-op threads and the shared batch buffer
    was made by ``empty().share_memory_()``, whose parallel copy waited forever in libgomp for threads a forked
    child does not have — training hung before its first step. Workers now always run 1 thread and the buffer is
    allocated in shared memory directly. Run in a fresh interpreter (the parent's OpenMP state must be its own)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "VIDREID_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _FORKED_WORKERS_SCRIPT, str(tmp_path), str(Path(__file__).parent)],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def _pil_jpegs(root, kind: str, n: int, size=(32, 16), seed=0) -> Tracklet:
    """``n`` frames of one encoding ``kind``: 420 / 422 / 444 / progressive / gray / cmyk JPEG, png, or ``big``
    (a 4:2:0 JPEG of twice the size: resized by the loader)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for j in range(n):
        h, w = (size[0] * 2, size[1] * 2) if kind == "big" else size
        small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        p = root / f"{j:04d}.{'png' if kind == 'png' else 'jpg'}"
        if kind == "png":
            img.save(p)
        elif kind == "gray":
            img.convert("L").save(p, quality=85)
        elif kind == "cmyk":
            img.convert("CMYK").save(p, quality=85)
        else:
            sub = {"422": 1, "444": 0}.get(kind, 2)
            img.save(p, quality=85, subsampling=sub, progressive=kind == "progressive")
        paths.append(p)
    return Tracklet(tuple(paths), pid=0, camid=0)


def test_simplejpeg_decoding_equals_torchvision(tmp_path, monkeypatch):
    """Frames decoded by simplejpeg — straight into the batch buffer for training, into new arrays for test
    clips — are pixel for pixel what torchvision's decoder gives, for every JPEG flavour; CMYK JPEGs, PNGs and
    frames of another size take torchvision's path (and the fast path really ran for the others)."""
    from torchvision.io import ImageReadMode, decode_image

    import vidreid.data.video_dataset as vd

    if vd._simplejpeg is None:
        pytest.skip("simplejpeg not installed")
    kinds = ["420", "422", "444", "progressive", "gray", "cmyk", "png", "big"]
    size = (32, 16)
    tracklets = [_pil_jpegs(tmp_path / k, k, 6, size, seed=i) for i, k in enumerate(kinds)]
    for t in tracklets:  # test-time decoding (TrackletFrames / load_frames) against torchvision's
        ours = vd._decode_many([vd._read_bytes(p) for p in t.frames], list(t.frames))
        ref = [decode_image(vd._read_bytes(p), mode=ImageReadMode.RGB) for p in t.frames]
        assert all(torch.equal(a, b) for a, b in zip(ours, ref)), t.frames[0]

    tf = build_transforms(size, train=True, flip_p=0.5, erasing_p=0.5, pad=2)
    ds = TrainClipDataset(tracklets, ClipSampler(seq_len=8), tf, size, seed=3)
    keys = [(i, e) for e in range(3) for i in range(len(kinds))]
    in_place = []
    real = vd._decode_clip_in_place

    def spy(*a):
        in_place.append(real(*a))
        return in_place[-1]

    monkeypatch.setattr(vd, "_decode_clip_in_place", spy)
    fast = [c for c, _, _ in ds.__getitems__(keys)]
    assert in_place == [kinds[i] not in ("cmyk", "png", "big") for i, _ in keys]
    monkeypatch.setattr(vd, "_simplejpeg", None)
    slow = [c for c, _, _ in ds.__getitems__(keys)]
    for k, a, b in zip(keys, fast, slow):
        assert torch.equal(a, b), (kinds[k[0]], k)


def test_worker_batch_slots_are_reused_but_never_while_a_batch_is_alive(tmp_path):
    """Forked workers write batches into reusable shared slots (``WorkerBatchSlots``) and send only the slot
    number. Every batch equals the same keys decoded in this process; batches (and a view and a numpy array of
    one) kept alive are never overwritten, slots whose batches were dropped are reused, and when every slot is held
    the workers fall back to fresh shared memory."""
    import multiprocessing

    from torch.utils.data import DataLoader

    from vidreid.data.video_dataset import collate_clips
    from vidreid.runtime.threads import worker_init_threads

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    size = (64, 32)
    tracklets = [_tracklet(tmp_path / f"t{i}", 7, pid=i, size=size, seed=i) for i in range(6)]
    tf = build_transforms(size, train=True, flip_p=0.5, erasing_p=0.5, pad=2)
    ds = TrainClipDataset(tracklets, ClipSampler(seq_len=4), tf, size, seed=2)
    batches = [[(i % 6, e) for i in range(e, e + 4)] for e in range(40)]
    ds.share_batches_with_workers(batch_size=4, slots=10)
    slot_ptrs = {torch.frombuffer(m, dtype=torch.uint8).data_ptr() for m in ds.worker_slots.maps}
    loader = DataLoader(ds, batch_sampler=batches, num_workers=2, worker_init_fn=worker_init_threads,
                        collate_fn=collate_clips, multiprocessing_context="fork", timeout=120)  # fmt: skip
    kept, ptrs = {}, []
    for n, (clips, pids, _) in enumerate(loader):
        ptrs.append(clips.untyped_storage().data_ptr())
        assert pids.tolist() == [k[0] for k in batches[n]]
        if n in (0, 4) or n >= 20:  # hold these (from batch 20 on every batch: the slots run out)
            kept[n] = (clips, clips[1, 2], clips[0].numpy()) if n == 4 else (clips,)
    # at most 4 batches in flight (2 workers x prefetch 2) + 2 kept + the current and the previous one = 8 < 10
    # slots: every batch before the hoarding came through a slot, and slots were reused
    assert all(p in slot_ptrs for p in ptrs[:20]) and len(set(ptrs[:20])) <= 10
    assert any(p not in slot_ptrs for p in ptrs[20:])  # all slots held: fresh shared memory instead
    expected = {n: collate_clips(ds.__getitems__(batches[n]))[0] for n in kept}
    for n, held in kept.items():
        assert torch.equal(held[0], expected[n]), n
    assert torch.equal(kept[4][1], expected[4][1, 2]) and np.array_equal(kept[4][2], expected[4][0].numpy())



def test_forked_workers_start_after_the_parent_used_opencv():
    """Regression: after the parent ran OpenCV's HOG detector (a detector test, or track.py before it embeds),
    forked DataLoader workers hung in ``cv2.setNumThreads(1)`` (``worker_init_threads``): the child inherits the
    pthreads pool's bookkeeping but not its threads. The pool is now held to one thread across each fork
    (``os.register_at_fork`` in vidreid.runtime.threads). Reproduced as it was found: the fused-detector test, then
    the datamodule's persistent workers, in one fresh pytest process (the parent's OpenCV and OpenMP state must be
    that sequence's own; the pair alone did not hang outside pytest's process)."""
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("cv2")
    here = Path(__file__).parent
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
           f"{here / 'test_detect.py'}::test_fused_detector_instantiates_from_a_hydra_mapping",
           f"{here / 'test_loader.py'}::test_datamodule_loaders_persistent_and_single_threaded_workers"]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=150, check=False, cwd=here.parent)
    except subprocess.TimeoutExpired:
        pytest.fail("forked DataLoader workers hung after the parent used OpenCV")
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
