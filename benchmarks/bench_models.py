"""Per-aggregator cost at T=8, 256x128: parameters, GFLOPs per clip, training clips/s, peak memory.

    python benchmarks/bench_models.py [--device cpu|cuda] [--precision 32,bf16] [--batch 8x4] [--out FILE]

``--precision`` takes a comma-separated list (``32``, ``bf16`` autocast); every aggregator is measured at each, in
one run, so the ratios between rows are side by side. The JSON goes to ``benchmarks/results/models.json`` on CPU
and ``models_<device>.json`` otherwise, unless ``--out`` is given.

Each aggregator runs in its own subprocess so that peak memory (max RSS on CPU, ``max_memory_allocated`` on
CUDA) is its own. Backbones follow the methods: STAFormer on ResNeSt-50 (last stride 2), the others on
ResNet-50 (last stride 1), temporal_avg on ResNet-50 (last stride 1). Figures are for comparison within one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

METHODS = {
    "temporal_avg": ("resnet50", 1, {}),
    "staformer": ("resnest50d", 2, {"seq_len": 8}),
    "psta": ("resnet50", 1, {}),
    "sta": ("resnet50", 1, {}),
    "sticc": ("resnet50", 1, {}),
}


def _aggregator_cls(name: str):
    import importlib

    mod = importlib.import_module(f"vidreid.models.aggregators.{name}")
    return {"temporal_avg": "TemporalAvg", "staformer": "STAFormer", "psta": "PSTA", "sta": "STA", "sticc": "STICC"}[
        name
    ], mod


def measure(name: str, device: str, precision: str, p: int, k: int, t: int, steps: int) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.utils.flop_counter import FlopCounterMode

    from vidreid.models.backbones import Backbone
    from vidreid.models.reid_net import ReIDNet

    torch.manual_seed(0)
    bb, stride, kw = METHODS[name]
    cls_name, mod = _aggregator_cls(name)
    net = ReIDNet(
        partial(Backbone, bb, last_stride=stride), partial(getattr(mod, cls_name), **kw), num_classes=625,
        input_size=(256, 128),
    )
    net.to(device).train()
    params = sum(q.numel() for q in net.parameters())
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):  # the method's own criterion
        crit_cfg = compose("train", [f"aggregator={name}"]).criterion
    criterion = instantiate(OmegaConf.to_container(crit_cfg, resolve=True))
    opt = torch.optim.Adam(net.parameters(), lr=1e-5)
    b = p * k
    clips = torch.randn(b, t, 3, 256, 128, device=device)
    pids = torch.arange(p, device=device).repeat_interleave(k)
    amp = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        with amp:
            loss = criterion(net(clips), pids)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    net.eval()
    # grad mode on: FlopCounterMode's module tracker asserts on STICC's attention under no_grad
    with FlopCounterMode(display=False) as fc:
        net(clips[:1])
    gflops = fc.get_total_flops() / 1e9  # forward of one clip; a multiply-add counts as 2 FLOPs
    net.train()
    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "aggregator": name,
        "backbone": f"{bb} (last stride {stride})",
        "params_M": round(params / 1e6, 2),
        "GFLOPs_per_clip": round(gflops, 1),
        "train_clips_per_s": round(steps * b / dt, 2),
        "peak_memory_MiB": round(peak, 1),
        "batch": f"{p}x{k}",
        "T": t,
        "device": device,
        "precision": precision,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32", help="comma-separated subset of 32,bf16")
    ap.add_argument("--batch", default="2x2", help="P x K clips per step (the papers use 8x4)")
    ap.add_argument("--seq-len", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", help="JSON path (default benchmarks/results/models[_<device>].json)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    p, k = (int(x) for x in a.batch.lower().split("x"))
    precisions = a.precision.split(",")
    bad = [x for x in precisions if x not in ("32", "bf16")]
    if bad:
        ap.error(f"--precision {a.precision!r}: expected a comma-separated subset of 32,bf16, got {bad}")
    if a.one:
        print(json.dumps(measure(a.one, a.device, a.precision, p, k, a.seq_len, a.steps)))
        return
    from _report import report

    suffix = "" if a.device == "cpu" else f"_{a.device}"
    out = a.out or f"benchmarks/results/models{suffix}.json"
    rows = []
    for prec in precisions:
        for name in a.methods.split(","):
            cmd = [sys.executable, __file__, "--one", name, "--device", a.device, "--precision", prec,
                   "--batch", a.batch, "--seq-len", str(a.seq_len), "--steps", str(a.steps)]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines() or ["(no stderr)"]
                rows.append({"aggregator": name, "precision": prec, "error": lines[-1][:120]})
                continue
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    report(f"aggregators at T={a.seq_len}, 256x128, batch {a.batch}, {a.device} {a.precision}", rows, out)


if __name__ == "__main__":
    main()
