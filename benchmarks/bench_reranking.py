"""k-reciprocal re-ranking: vidreid's sparse torch version vs the straightforward dense numpy one.

Sizes are total items N = queries + gallery with the MARS query fraction (1980 / 11,310); 11,310 is the
MARS protocol (queries appended to the gallery). Inputs are Euclidean distances of L2-normalised,
clustered random features. Every case runs in its own subprocess; peak memory is the growth of the
process's peak RSS during the call (``/proc/self/status`` VmHWM after resetting it through
``/proc/self/clear_refs``, minus VmRSS before the call; inputs excluded) or, on CUDA,
``torch.cuda.max_memory_allocated`` growth. The numpy version runs up to ``--numpy-max`` items; larger
sizes are extrapolated from the two largest measured ones (time by the fitted power law) and labelled
``extrapolated``. The torch version runs with its default thread policy (``vidreid.runtime.threads``) and with 1 and N
threads, idle and beside one competing process; ``x_best_setting`` is each setting's time over the best one's.

Usage: ``python benchmarks/bench_reranking.py [--sizes 11310] [--numpy-max 11310] [--device cuda] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _measure import LOADS, competing, cpu_description, load_average, out_path
from _report import report

from vidreid.runtime.threads import available_cpus, phase_threads

REPO = Path(__file__).resolve().parents[1]
QUERY_FRACTION = 1980 / 11310


def numpy_rerank(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    """Dense numpy k-reciprocal re-ranking as published (Zhong et al. CVPR 2017; torchreid ``re_ranking``)."""
    nq = q_g.shape[0]
    dist = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0)
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(dist / np.max(dist, axis=0))
    n = dist.shape[0]
    v = np.zeros_like(dist, dtype=np.float32)
    rank = np.argsort(dist).astype(np.int32)

    def reciprocal(i, k):
        fwd = rank[i, : k + 1]
        back = rank[fwd, : k + 1]
        return fwd[np.where(back == i)[0]]

    half = int(np.around(k1 / 2.0))
    for i in range(n):
        r = reciprocal(i, k1)
        expansion = r
        for c in r:
            rc = reciprocal(c, half)
            if len(np.intersect1d(rc, r)) > 2.0 / 3 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        v[i, expansion] = w / np.sum(w)
    dist = dist[:nq]
    if k2 != 1:
        v_qe = np.zeros_like(v, dtype=np.float32)
        for i in range(n):
            v_qe[i] = np.mean(v[rank[i, :k2]], axis=0)
        v = v_qe
        del v_qe
    inv_index = [np.where(v[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros_like(dist, dtype=np.float32)
    for i in range(nq):
        temp_min = np.zeros((1, n), dtype=np.float32)
        nz = np.where(v[i] != 0)[0]
        for c in nz:
            rows = inv_index[c]
            temp_min[0, rows] += np.minimum(v[i, c], v[rows, c])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + dist * lambda_value
    return final[:, nq:]


def make_inputs(n: int, seed: int = 0):
    """Euclidean q_g, q_q, g_g (float32 tensors) of ``n`` clustered unit features, ``round(n·1980/11310)`` queries."""
    nq = round(n * QUERY_FRACTION)
    gen = torch.Generator().manual_seed(seed)
    n_ids = max(2, n // 16)
    centres = torch.randn(n_ids, 128, generator=gen)
    ids = torch.randint(0, n_ids, (n,), generator=gen)
    feats = torch.nn.functional.normalize(centres[ids] + 1.0 * torch.randn(n, 128, generator=gen), dim=1)
    qf, gf = feats[:nq], feats[nq:]

    def dist(a, b):
        return (2.0 - 2.0 * a @ b.T).clamp_(min=0.0).sqrt_()

    return dist(qf, gf), dist(qf, qf), dist(gf, gf)


def _status_kb(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def run_case(method: str, n: int, device: str, save: Path | None, repeats: int = 1, threads: int | str | None = "auto") -> dict:
    """One measurement (in this process): seconds and peak memory growth of the call."""
    from vidreid.evaluation import k_reciprocal_rerank  # imported before the clock starts

    cuda = method == "torch" and device.startswith("cuda")

    def call(q_g, q_q, g_g):
        if method == "numpy":
            return numpy_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy())
        res = k_reciprocal_rerank(q_g.to(device), q_q.to(device), g_g.to(device), num_threads=threads)
        if cuda:
            torch.cuda.synchronize()
        return res.cpu().numpy()

    call(*make_inputs(300, seed=1))  # first calls pay one-off costs (thread pools, lazy init)
    q_g, q_q, g_g = args = tuple(x.to(device) if method == "torch" else x for x in make_inputs(n))
    input_mb = sum(x.numel() * 4 for x in args) / 2**20
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    out = call(*args)
    seconds = time.perf_counter() - start
    peak_mb = (_status_kb("VmHWM") - rss_before) / 1024
    for _ in range(repeats - 1):  # best-of timing on a shared machine; memory is from the first call
        start = time.perf_counter()
        call(*args)
        seconds = min(seconds, time.perf_counter() - start)
    result = {"seconds": seconds, "peak_mb": peak_mb, "input_mb": input_mb,
              "threads": phase_threads("reranking") if threads == "auto" else threads}
    if cuda:
        result["gpu_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    if save is not None:
        np.save(save, out)
    return result


def spawn(method: str, n: int, device: str, save: Path | None, repeats: int = 1, threads: int | str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--case", method, "--n", str(n), "--device", device, "--repeats", str(repeats)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if save is not None:
        cmd += ["--save", str(save)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"case {method} n={n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=out_path("reranking"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[11310])
    parser.add_argument("--numpy-max", type=int, default=11310, help="largest N run with the numpy version")
    parser.add_argument("--device", default="cpu", help="device of the torch version (cpu, cuda)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating rounds over the thread settings; each setting's time is its best round")
    parser.add_argument("--quick", action="store_true", help="idle only")
    parser.add_argument("--case", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", help=argparse.SUPPRESS)
    parser.add_argument("--save", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process: one measurement, JSON on the last stdout line
        threads = args.threads if args.threads in (None, "auto") else int(args.threads)
        print(json.dumps(run_case(args.case, args.n, args.device, args.save, args.repeats, threads)))
        return

    n_cpu = available_cpus()
    settings = ["auto", *sorted({1, n_cpu})]
    rows, numpy_measured = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for load in LOADS[:1] if args.quick else LOADS:
            for n in args.sizes:
                with competing(load == "competing"):
                    la = load_average()
                    # the thread settings in alternating rounds (order rotated each round), each its best round:
                    # a load swing hits every setting alike instead of one (identical settings, e.g. the default
                    # resolving to 1 thread and "1", once differed by 1.35x from one sequential pair of runs)
                    torch_runs: dict = {}
                    for r in range(args.repeats):
                        for t in settings[r % len(settings):] + settings[: r % len(settings)]:
                            run = spawn("torch", n, args.device, Path(tmp) / f"torch_{n}_{t}.npy", 1, t)
                            if t not in torch_runs or run["seconds"] < torch_runs[t]["seconds"]:
                                torch_runs[t] = run
                    torch_runs = {t: torch_runs[t] for t in settings}
                    numpy_run = None
                    if n <= args.numpy_max:
                        numpy_run = spawn("numpy", n, args.device, Path(tmp) / f"numpy_{n}.npy", 1)
                        numpy_measured[n] = numpy_run
                if numpy_run is not None:
                    numpy_s, how = numpy_run["seconds"], "measured"
                elif len(numpy_measured) >= 2:
                    (n1, r1), (n2, r2) = sorted(numpy_measured.items())[-2:]
                    alpha = math.log(r2["seconds"] / r1["seconds"]) / math.log(n2 / n1)
                    numpy_s, how = r2["seconds"] * (n / n2) ** alpha, f"extrapolated (time ~N^{alpha:.2f})"
                else:
                    numpy_s, how = None, "not run"
                for t, tr in torch_runs.items():
                    row = {
                        "load": load, "N": n, "device": args.device,
                        "threads": f"default ({tr['threads']})" if t == "auto" else str(t),
                        "torch_s": round(tr["seconds"], 3), "torch_peak_mb": round(tr.get("gpu_peak_mb", tr["peak_mb"]), 1),
                    }  # fmt: skip
                    if numpy_s is not None:
                        row.update(numpy_s=round(numpy_s, 2), numpy=how, speedup=round(numpy_s / tr["seconds"], 1))
                    if numpy_run is not None:
                        ref = np.load(Path(tmp) / f"numpy_{n}.npy")
                        row["max_abs_diff"] = float(np.abs(np.load(Path(tmp) / f"torch_{n}_{t}.npy") - ref).max())
                    best = min(x["seconds"] for x in torch_runs.values())
                    row["x_best_setting"] = round(tr["seconds"] / best, 2)
                    row["load_1min"] = la[0]
                    rows.append(row)
                    print(row, flush=True)
    report(f"k-reciprocal re-ranking (k1=20, k2=6, λ=0.3) vs the numpy reference, {cpu_description()}", rows, args.out)


if __name__ == "__main__":
    main()
