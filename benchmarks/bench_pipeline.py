"""Data loading and baseline training throughput on real frames.

    python benchmarks/bench_pipeline.py [--out benchmarks/results/pipeline.json]

Rows: (1) decoding + clip sampling + transforms of training clips (frames/s) with 0 and 2 DataLoader workers,
(2) a baseline training step (ResNet-18 + temporal average pooling, T=4, 128x64, 8x4 clips) in clips/s,
(3) test-time all-frames extraction (clips/s). Frames come from the real PKU-Reid set in ../shared/data when present,
otherwise from a small generated synthetic set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import report  # noqa: E402

from vidreid.data.clip_sampling import ClipSampler  # noqa: E402
from vidreid.data.samplers import PKBatchSampler  # noqa: E402
from vidreid.data.transforms import build_transforms  # noqa: E402
from vidreid.data.video_dataset import TestTrackletDataset, TrainClipDataset, collate_tracklets  # noqa: E402
from vidreid.evaluation.features import embed_tracklet_batch  # noqa: E402
from vidreid.losses import BatchHardTripletLoss, CrossEntropyLabelSmooth  # noqa: E402
from vidreid.models.aggregators.temporal_avg import TemporalAvg  # noqa: E402
from vidreid.models.backbones import Backbone  # noqa: E402
from vidreid.models.reid_net import ReIDNet  # noqa: E402


def load_dataset():
    shared = Path(os.environ.get("VIDREID_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if (shared / "pku-reid").is_dir():
        from vidreid.data.datasets.prid2011 import PRID2011

        return PRID2011(shared / "pku-reid", split_file="splits_pku_10fold.json", name="pku_reid"), "pku_reid (real)"
    from vidreid.data.datasets.synthetic import Synthetic

    root = Path(tempfile.mkdtemp()) / "synthetic"
    return Synthetic(root, num_train_ids=16, num_test_ids=8, num_cams=4, num_distractors=2), "synthetic"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/pipeline.json")
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    data, name = load_dataset()
    size, t = (128, 64), 4
    clip = ClipSampler(seq_len=t, test_scheme="all_frames")
    ds = TrainClipDataset(data.train, clip, build_transforms(size, train=True), size)
    rows = []
    for workers in (0, 2):
        sampler = PKBatchSampler([x.pid for x in data.train], 8, 4, seed=0)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=workers)
        t0, frames = time.perf_counter(), 0
        for epoch in range(2):
            sampler.set_epoch(epoch)
            for clips, _, _ in loader:
                frames += clips.shape[0] * clips.shape[1]
        dt = time.perf_counter() - t0
        rows.append({"stage": f"train clip loading, {workers} workers", "dataset": name, "throughput": round(frames / dt, 1), "unit": "frames/s"})

    torch.manual_seed(0)
    net = ReIDNet(partial(Backbone, "resnet18"), partial(TemporalAvg), num_classes=data.num_train_pids).train()
    opt = torch.optim.Adam(net.parameters(), lr=3.5e-4)
    ce, tri = CrossEntropyLabelSmooth(0.1), BatchHardTripletLoss(0.3, "cosine")
    batch = next(iter(DataLoader(ds, batch_sampler=PKBatchSampler([x.pid for x in data.train], 8, 4, seed=0))))
    clips, pids, _ = batch
    for i in range(a.steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        out = net(clips)
        loss = ce(out.logits[0], pids) + tri(out.bn_features[0], pids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    rows.append({"stage": "train step, resnet18 + temporal_avg, T=4, 128x64, 8x4", "dataset": name,
                 "throughput": round(a.steps * len(clips) / dt, 2), "unit": "clips/s"})

    net.eval()
    test = TestTrackletDataset(data.query, data.gallery, clip, size)
    loader = DataLoader(test, batch_size=16, collate_fn=collate_tracklets)
    t0, n_clips = time.perf_counter(), 0
    for b in loader:
        embed_tracklet_batch(net, b, max_clips_per_forward=32)
        n_clips += sum(len(c) for c in b.clips)
    dt = time.perf_counter() - t0
    rows.append({"stage": "all-frames extraction (load + forward), T=4", "dataset": name,
                 "throughput": round(n_clips / dt, 2), "unit": "clips/s"})
    report("data loading and baseline training throughput (CPU)", rows, a.out)


if __name__ == "__main__":
    main()
