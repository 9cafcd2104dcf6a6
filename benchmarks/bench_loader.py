"""Training-clip loading per core against the bare JPEG-decode floor, and all-frames extraction memory.

    python benchmarks/bench_loader.py [--quick]

1. **Loader.** Real frames (PKU-Reid from ``../shared/data``, else synthetic) resized to 256×128 and stored as
   JPEG (quality 90) in a temporary folder. The floor is a bare ``torchvision.io.decode_jpeg`` loop over the
   frames' bytes already in memory (the bar; a bare loop of ``simplejpeg.decode_jpeg``, the decoder the
   loader uses for these files — same pixels, faster — is reported beside it); vidreid's number is ``TrainClipDataset`` items (T = 8, restricted-random
   clips, flip + random erasing on uint8, numpy-generator draws) collated into 8×4 batches by torch's
   ``collate_clips`` (the datamodule's collate) — file reads included — in the same process on one thread. Both run in alternating
   repetitions (medians), idle and beside one competing process; also a ``DataLoader`` with one worker per
   usable CPU (frames/s divided by the CPUs).
2. **All-frames extraction memory.** One query tracklet of 128 and of 900 frames (256×128 JPEG, T = 4, every
   frame in a clip, 32 clips per forward — so both lengths run full 32-clip forwards — ResNet-18 in eval mode) is
   loaded and embedded in a fresh process each; the growth of the process's peak RSS over the call is compared:
   growth(900) / growth(128).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _measure import LOADS, SHARED, alternate, competing, cpu_description, load_average, out_path
from _report import report
from torch.utils.data import DataLoader
from torchvision.io import decode_jpeg, encode_jpeg, read_file

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.tracklet import Tracklet
from vidreid.data.transforms import build_transforms, resize_uint8
from vidreid.data.video_dataset import TrainClipDataset, collate_clips, read_frame
from vidreid.runtime.threads import available_cpus, worker_init_threads

SIZE = (256, 128)


def source_frames(limit: int = 256) -> list[torch.Tensor]:
    """uint8 (3, 256, 128) frames: real PKU-Reid crops resized, or synthetic noise-textured images."""
    paths = sorted((SHARED / "pku-reid" / "multi_shot").rglob("*.png"))[:limit]
    if paths:
        return [resize_uint8(read_frame(p)[None], SIZE, "bicubic")[0] for p in paths]
    gen = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (limit, 3, 32, 16), dtype=torch.uint8, generator=gen)
    return [resize_uint8(b[None], SIZE, "bicubic")[0] for b in base]


def write_tracklets(root: Path, frames: list[torch.Tensor], n_tracklets: int, length: int) -> list[Tracklet]:
    out = []
    for i in range(n_tracklets):
        folder = root / f"t{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for j in range(length):
            p = folder / f"{j:04d}.jpg"
            p.write_bytes(encode_jpeg(frames[(i * length + j) % len(frames)], quality=90).numpy().tobytes())
            paths.append(p)
        out.append(Tracklet(tuple(paths), pid=i // 4, camid=i % 4))
    return out


def loader_rows(tmp: Path, quick: bool) -> list[dict]:
    frames = source_frames()
    tracklets = write_tracklets(tmp / "train", frames, 32, 24)
    blobs = [read_file(str(p)) for t in tracklets for p in t.frames]
    clip = ClipSampler(seq_len=8, train_scheme="restricted_random", test_scheme="all_frames")
    tf = build_transforms(SIZE, train=True, flip_p=0.5, erasing_p=0.5)
    ds = TrainClipDataset(tracklets, clip, tf, SIZE, seed=0)
    batch = 32
    n_items = 128 if quick else 256

    def floor() -> int:
        # as many decodes as `ours` makes frames (cycling over the stored JPEGs): the same time window, so a
        # load swing or a clock change weighs on both alike (a third of the frames made the ratio swing 0.63-0.83)
        n = 0
        for k in range(n_items * 8):
            decode_jpeg(blobs[k % len(blobs)])
            n += 1
        return n

    raw = [b.numpy().tobytes() for b in blobs]

    def simplejpeg_floor() -> int:
        # the decoder the loader itself uses for YCbCr/greyscale JPEGs (same pixels): its own bare loop, reported
        # beside torchvision's so the ratio to the faster decoder is visible too
        import simplejpeg

        for k in range(n_items * 8):
            simplejpeg.decode_jpeg(raw[k % len(raw)])
        return n_items * 8

    state = {"epoch": 0}

    def ours() -> int:
        state["epoch"] += 1
        n = 0
        for a in range(0, n_items, batch):
            clips, _, _ = collate_clips(ds.__getitems__([(i % len(ds), state["epoch"]) for i in range(a, a + batch)]))
            n += clips.shape[0] * clips.shape[1]
        return n

    rows = []
    torch.set_num_threads(1)
    try:  # "1 thread" holds for OpenCV's pool too (the mirror in the loader), as in a DataLoader worker
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    for load in LOADS:
        with competing(load == "competing"):
            la = load_average()
            med, res = alternate({"floor": floor, "ours": ours, "simplejpeg": simplejpeg_floor}, 2 if quick else 7)
            fps_floor, fps_ours = res["floor"] / med["floor"], res["ours"] / med["ours"]
            fps_sj = res["simplejpeg"] / med["simplejpeg"]
            rows.append({"work": "train clips, in process, 1 thread", "load": load,
                         "frames_per_s": round(fps_ours, 1), "decode_floor_frames_per_s": round(fps_floor, 1),
                         "fraction_of_floor": round(fps_ours / fps_floor, 3),
                         "simplejpeg_floor_frames_per_s": round(fps_sj, 1),
                         "fraction_of_simplejpeg_floor": round(fps_ours / fps_sj, 3), "load_1min": la[0]})  # fmt: skip
            workers = available_cpus()
            sampler = [[(i % len(ds), e) for i in range(a, a + batch)] for e in range(2) for a in range(0, n_items, batch)]
            ds.share_batches_with_workers(batch, workers * 3 + 2)  # as the datamodule does for forked workers
            loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers, worker_init_fn=worker_init_threads,
                                collate_fn=collate_clips)
            start, n = time.perf_counter(), 0
            for clips, _, _ in loader:
                assert clips.dtype == torch.uint8
                n += clips.shape[0] * clips.shape[1]
            fps = n / (time.perf_counter() - start)
            t0 = time.perf_counter()
            nf = floor()
            fps_floor2 = nf / (time.perf_counter() - t0)
            rows.append({"work": f"train clips, DataLoader {workers} workers (per CPU)", "load": load,
                         "frames_per_s": round(fps / workers, 1), "decode_floor_frames_per_s": round(fps_floor2, 1),
                         "fraction_of_floor": round(fps / workers / fps_floor2, 3), "load_1min": la[0]})  # fmt: skip
    return rows


def memory_case(length: int, tmp: Path) -> dict:
    """In a fresh process: peak-RSS growth of loading + embedding one all-frames tracklet of ``length`` frames."""
    from functools import partial

    from vidreid.data.batch import TestBatch
    from vidreid.data.video_dataset import TestTrackletDataset
    from vidreid.evaluation.features import embed_tracklet_batch
    from vidreid.models.aggregators.temporal_avg import TemporalAvg
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    torch.set_num_threads(1)
    frames = source_frames(64)
    (t,) = write_tracklets(tmp / f"len{length}", frames, 1, length)
    net = ReIDNet(partial(Backbone, "resnet18", pretrained=False), partial(TemporalAvg), num_classes=10).eval()
    ds = TestTrackletDataset([t], [], ClipSampler(seq_len=4, test_scheme="all_frames"), SIZE)
    warm = TestTrackletDataset([Tracklet(t.frames[:16], 0, 0)], [], ClipSampler(seq_len=4, test_scheme="all_frames"), SIZE)
    embed_tracklet_batch(net, TestBatch.collate([warm[0]]), 32)  # allocator and kernels warm

    def status(key: str) -> int:
        import re

        return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    rss = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    emb = embed_tracklet_batch(net, TestBatch.collate([ds[0]]), 32)
    seconds = time.perf_counter() - start
    growth = (status("VmHWM") - rss) / 1024
    return {"frames": length, "clips": length // 4 + (length % 4 > 0), "growth_mib": round(growth, 1),
            "seconds": round(seconds, 2), "dim": int(emb.shape[1])}  # fmt: skip


def memory_rows(tmp: Path) -> list[dict]:
    out = {}
    for length in (128, 900):
        done = subprocess.run([sys.executable, __file__, "--memory-case", str(length), "--tmp", str(tmp)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"memory case {length} failed:\n{done.stderr[-3000:]}")
        out[length] = json.loads(done.stdout.strip().splitlines()[-1])
    ratio = out[900]["growth_mib"] / out[128]["growth_mib"]
    return [{"work": "all-frames extraction, ResNet-18, T=4, 256x128, 32 clips/forward", **out[128],
             "growth_900_over_128": None},
            {"work": "all-frames extraction, ResNet-18, T=4, 256x128, 32 clips/forward", **out[900],
             "growth_900_over_128": round(ratio, 3)}]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=out_path("loader"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--memory-case", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_case:
        print(json.dumps(memory_case(a.memory_case, a.tmp)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = loader_rows(Path(tmp), a.quick)
        report(f"training-clip loading vs the decode_jpeg floor, {cpu_description()}", rows, a.out)
        mem = memory_rows(Path(tmp))
        report(f"all-frames extraction memory, {cpu_description()}", mem, a.out.with_name("extraction_memory.json"))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
