"""On a CUDA machine: training clips/s at the papers' batch for each aggregator, fp32 and
bf16-mixed with ``channels_last``, with data loading included (synthetic 256×128 JPEGs) and excluded, peak GPU
memory, and whether GPU JPEG decoding is needed to keep the GPU fed.

    python benchmarks/gpu_check.py [--steps 20] [--workers 8] [--aggregators temporal_avg psta ...]

Never needed for CI; exits with a message when no GPU is present. Rows (JSON to benchmarks/results/gpu.json):

* ``model only``: clips/s of forward + backward (identity CE + triplet; the aggregators' own loss terms left out)
  + Adam step on a device-resident uint8 batch (8 ids × 4 clips,
  T = 8, 256×128, ResNet-50 backbone), per aggregator × {fp32, bf16-mixed} × channels_last; peak memory.
* ``with loading``: the same step fed by a ``DataLoader`` (``--workers`` workers, ``TrainClipDataset`` on
  temporary 256×128 JPEG tracklets, pinned memory, non-blocking copies); the ratio to ``model only`` says how
  much the CPU loader holds the GPU back.
* ``decode``: frames/s of CPU ``decode_jpeg`` per worker vs ``decode_jpeg(list, device="cuda")`` batches; the
  frames/s the GPU step consumes is printed next to them (GPU decoding is needed when the workers' total CPU
  decode rate is below the step's frame rate).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
from _measure import cpu_description, out_path
from _report import report
from bench_loader import SIZE, source_frames, write_tracklets

AGGREGATORS = {
    "temporal_avg": ("vidreid.models.aggregators.temporal_avg", "TemporalAvg", {}),
    "sta": ("vidreid.models.aggregators.sta", "STA", {}),
    "psta": ("vidreid.models.aggregators.psta", "PSTA", {}),
    "staformer": ("vidreid.models.aggregators.staformer", "STAFormer", {}),
    "sticc": ("vidreid.models.aggregators.sticc", "STICC", {}),
}


def build(name: str, num_classes: int, device: torch.device):
    import importlib

    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    module, cls, kw = AGGREGATORS[name]
    agg = partial(getattr(importlib.import_module(module), cls), **kw)
    net = ReIDNet(partial(Backbone, "resnet50", last_stride=1), agg, num_classes=num_classes, input_size=SIZE)
    return net.to(device).to(memory_format=torch.channels_last).train()


def step_fn(net, opt, precision: str):
    from vidreid.losses.functional import BatchHardTripletLoss, CrossEntropyLabelSmooth

    ce, tri = CrossEntropyLabelSmooth(0.1), BatchHardTripletLoss(0.3, "cosine")

    def step(clips, pids):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            out = net(clips)
            loss = sum(ce(lg, pids) for lg in out.logits) + sum(tri(f, pids) for f in out.bn_features)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed_steps(step, batches, steps: int) -> float:
    """clips/s over ``steps`` steps after 3 warm-up steps (CUDA-synchronised)."""
    it = iter(batches)
    for _ in range(3):
        step(*next(it))
    torch.cuda.synchronize()
    start, n = time.perf_counter(), 0
    for _ in range(steps):
        clips, pids = next(it)
        step(clips, pids)
        n += len(clips)
    torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--aggregators", nargs="+", default=list(AGGREGATORS))
    ap.add_argument("--out", type=Path, default=out_path("gpu"))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check.py needs a CUDA device; nothing measured")
    from torch.utils.data import DataLoader
    from torchvision.io import decode_jpeg

    from vidreid.data.clip_sampling import ClipSampler
    from vidreid.data.samplers import PKBatchSampler
    from vidreid.data.transforms import build_transforms
    from vidreid.data.video_dataset import TrainClipDataset, _read_bytes
    from vidreid.runtime.threads import worker_init_threads

    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tracklets = write_tracklets(Path(tmp), source_frames(), 64, 24)
        ds = TrainClipDataset(tracklets, ClipSampler(seq_len=8), build_transforms(SIZE, train=True), SIZE)
        pids = torch.arange(32, device=dev) // 4

        def loader_batches():
            sampler = PKBatchSampler([t.pid for t in tracklets], 8, 4, seed=0)
            loader = DataLoader(ds, batch_sampler=sampler, num_workers=a.workers, pin_memory=True,
                                persistent_workers=True, worker_init_fn=worker_init_threads)  # fmt: skip
            epoch = 0
            while True:
                sampler.set_epoch(epoch)
                for clips, p, _ in loader:
                    yield clips.to(dev, non_blocking=True), p.to(dev, non_blocking=True)
                epoch += 1

        fixed = torch.randint(0, 256, (32, 8, 3, *SIZE), dtype=torch.uint8, device=dev)
        frame_rate = 0.0
        for name in a.aggregators:
            for precision in ("32-true", "bf16-mixed"):
                torch.manual_seed(0)
                net = build(name, 16, dev)
                opt = torch.optim.Adam(net.parameters(), lr=3.5e-4)
                step = step_fn(net, opt, precision)
                torch.cuda.reset_peak_memory_stats()
                model_only = timed_steps(step, iter(lambda: (fixed, pids), None), a.steps)
                peak = torch.cuda.max_memory_allocated() / 2**30
                with_loading = timed_steps(step, loader_batches(), a.steps)
                frame_rate = max(frame_rate, model_only * 8)
                rows.append({"gpu": gpu, "aggregator": name, "precision": precision, "channels_last": True,
                             "model_only_clips_s": round(model_only, 1), "with_loading_clips_s": round(with_loading, 1),
                             "loading_keeps_up": round(with_loading / model_only, 2), "peak_gib": round(peak, 2)})  # fmt: skip
                print(rows[-1], flush=True)
                del net, opt
                torch.cuda.empty_cache()
        blobs = [_read_bytes(p) for t in tracklets[:8] for p in t.frames]
        start = time.perf_counter()
        for b in blobs:
            decode_jpeg(b)
        cpu_fps = len(blobs) / (time.perf_counter() - start)
        decode_jpeg(blobs[:8], device="cuda")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            decode_jpeg(blobs, device="cuda")
        torch.cuda.synchronize()
        gpu_fps = 5 * len(blobs) / (time.perf_counter() - start)
        rows.append({"gpu": gpu, "aggregator": "(JPEG decode)", "cpu_decode_frames_s_per_worker": round(cpu_fps),
                     "cpu_decode_frames_s_all_workers": round(cpu_fps * a.workers), "gpu_decode_frames_s": round(gpu_fps),
                     "fastest_step_frames_s": round(frame_rate),
                     "gpu_decoding_needed": cpu_fps * a.workers < frame_rate})  # fmt: skip
    report(f"GPU training throughput, 8x4 clips, T=8, 256x128, ResNet-50 ({gpu}; host {cpu_description()})", rows, a.out)


if __name__ == "__main__":
    main()
