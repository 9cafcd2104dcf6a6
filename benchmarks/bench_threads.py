"""The default training loop at 1 and N torch threads and at the thread policy's default, idle and beside one
competing process.

    python benchmarks/bench_threads.py [--steps 12] [--quick]

The embedded default recipe (ResNet-10-T with last stride 1, temporal average pooling over 2 stripes, T = 4
restricted-random clips at 64×32, 8 identities × 4 tracklets, Adam, identity CE + triplet) on the embedded
synthetic set (generated into ``.cache`` on first use), with the configured 2 DataLoader workers decoding while
the main process trains — the situation the thread policy budgets for. Each setting runs in its own process;
clips/s over ``--steps`` steps after 2 warm-up steps. ``x_best_setting`` = the best setting's clips/s over this
one's (on idle cores the policy's default must stay within 1.3x; beside a competitor its count is unchanged —
same command, same numbers — and the row is information); ``worker_cpu_share`` = the CPU seconds both workers used per
second of those steps (1.0 = one core kept busy; the thread policy does not budget workers because it is small).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from _measure import LOADS, REPO, competing, cpu_description, load_average, out_path
from _report import report

WORKERS = 2


def run_setting(threads: str, steps: int) -> dict:
    from torch.utils.data import DataLoader

    from vidreid.data.clip_sampling import ClipSampler
    from vidreid.data.datasets.synthetic import Synthetic
    from vidreid.data.samplers import PKBatchSampler
    from vidreid.data.transforms import build_transforms
    from vidreid.data.video_dataset import TrainClipDataset
    from vidreid.evaluation.ranking import pairwise_distance  # noqa: F401 - the import cost is outside the clock
    from vidreid.losses.functional import BatchHardTripletLoss, CrossEntropyLabelSmooth
    from vidreid.models.aggregators.temporal_avg import TemporalAvg
    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet
    from vidreid.runtime.threads import phase_threads, worker_init_threads

    n = phase_threads("train") if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    root = Path(os.environ.get("VIDREID_CACHE_DIR", REPO / ".cache")) / "synthetic_v1"
    data = Synthetic(root, generate=not root.exists())  # the config's defaults; never regenerates a shared set
    size = (64, 32)
    ds = TrainClipDataset(data.train, ClipSampler(seq_len=4), build_transforms(size, train=True), size, seed=0)
    sampler = PKBatchSampler([t.pid for t in data.train], num_identities=8, num_instances=4, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=WORKERS, worker_init_fn=worker_init_threads,
                        persistent_workers=True)  # fmt: skip
    torch.manual_seed(0)
    net = ReIDNet(partial(Backbone, "resnet10t", last_stride=1), partial(TemporalAvg, stripes=2),
                  num_classes=data.num_train_pids).train()  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    ce, tri = CrossEntropyLabelSmooth(0.1), BatchHardTripletLoss(0.3, "cosine")
    done, clips_seen, start = 0, 0, None
    epoch = 0
    while done < steps + 2:
        sampler.set_epoch(epoch)
        for clips, pids, _ in loader:
            if done == 2:
                start, clips_seen = time.perf_counter(), 0
                workers = [w.pid for w in loader._iterator._workers]  # persistent: the same processes all run
                cpu0 = _cpu_seconds(workers)
            out = net(clips)
            loss = sum(ce(lg, pids) for lg in out.logits) + sum(tri(f, pids) for f in out.bn_features)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            clips_seen += len(clips)
            if done >= steps + 2:
                break
        epoch += 1
    wall = time.perf_counter() - start
    return {"threads": n, "clips_per_s": clips_seen / wall, "worker_cpu_share": (_cpu_seconds(workers) - cpu0) / wall}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` so far (``/proc/<pid>/stat`` fields 14-15)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=out_path("threads"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="idle only, 6 steps")
    ap.add_argument("--setting", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.setting:
        print(json.dumps(run_setting(a.setting, a.steps)))
        return
    from vidreid.runtime.threads import available_cpus

    settings = ["auto", *[str(t) for t in sorted({1, available_cpus()})]]
    rows = []
    for load in LOADS[:1] if a.quick else LOADS:
        res = {}
        with competing(load == "competing"):
            la = load_average()
            for s in settings:
                cmd = [sys.executable, __file__, "--setting", s, "--steps", str(6 if a.quick else a.steps)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
                if done.returncode != 0:
                    raise RuntimeError(f"setting {s} failed:\n{done.stderr[-3000:]}")
                res[s] = json.loads(done.stdout.strip().splitlines()[-1])
        best = max(r["clips_per_s"] for r in res.values())
        for s, r in res.items():
            rows.append({"load": load, "setting": f"default ({r['threads']})" if s == "auto" else s,
                         "torch_threads": r["threads"], "dataloader_workers": WORKERS,
                         "clips_per_s": round(r["clips_per_s"], 2), "x_best_setting": round(best / r["clips_per_s"], 2),
                         "worker_cpu_share": round(r["worker_cpu_share"], 3),
                         "load_1min": la[0]})  # fmt: skip
    report(f"default training loop (ResNet-10-T, T=4, 64x32, 8x4, 2 workers), {cpu_description()}", rows, a.out)


if __name__ == "__main__":
    main()
