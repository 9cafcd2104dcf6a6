"""Deployment speed and int8 accuracy: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8, side by side in one run.

    python benchmarks/bench_deploy.py [--checkpoint CKPT] [--quick] [--threads 1 2] [--repeats 3]

Network: the ``experiment=pku_reid_pretrained`` checkpoint (MobileNetV2, 256x128, T = 4, flip-test), default
``$VIDREID_DEPLOY_CKPT``; without one, an untrained network of that recipe (same architecture and cost: fine for
speed, no accuracy rows). Timed work: ``--tracklets`` (16) PKU-Reid split-0 test tracklets, half query, half
gallery (8 real frames each: 2 clips of T = 4 per tracklet under ``all_frames``, each clip also mirrored by the
network's flip-test). Accuracy: all 37 query + 37 gallery tracklets, one untimed ``embed`` pass per backend.

For each thread count (torch intra-op threads = onnxruntime intra-op threads), interleaved repetitions of
(``_measure.alternate``: the order rotates every round, medians reported):

- ``forward``: the network alone on the already decoded, resized uint8 clips of the tracklets, in the batches
  ``embed`` forwards (8 tracklets, at most ``evaluation.max_clips_per_forward`` clips) (eager: ``net(clips)``
  under ``no_grad``; ORT: ``session.run``);
- ``embed``: the whole ``vidreid.embed(ckpt, tracklet_folders, backend=...)`` call: checkpoint parse, network
  build, session creation (graphs come from the hash-keyed cache, filled in a warm-up call), frame decode, resize,
  clip batching, forward, averaging.

Rows give tracklets/s, the speed-up over eager fp32 and ``embed / forward`` = the fraction of the pure forward's
throughput the whole call reaches. With a trained checkpoint, rank-1 / mAP on split 0 for each backend (from the
``embed`` embeddings: cosine distance, the evaluation's ranking). ``--quick``: 12 tracklets, 1 repetition, 1
thread, no verdicts; full: 2 interleaved repetitions. Targets (full run): ORT int8 >= 2x eager fp32; embed >= 0.85 of the pure forward.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import REPO, SHARED, alternate, cpu_description, load_average, out_path  # noqa: E402
from _report import report  # noqa: E402

BACKENDS = {"eager fp32": ("pytorch", "fp32"), "ORT fp32": ("onnxruntime", "fp32"), "ORT int8": ("onnxruntime", "int8")}


def _untrained_checkpoint(folder: Path) -> Path:
    """An untrained ``experiment=pku_reid_pretrained`` network saved as a checkpoint (weights + data settings)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", ["experiment=pku_reid_pretrained", "model.net.backbone.pretrained=false"])
    with open_dict(cfg):
        cfg.model.net.backbone.weights_path = None
    torch.manual_seed(0)
    module = instantiate(cfg.model, num_classes=37)
    dm = OmegaConf.to_container(cfg.data, resolve=True)
    dm.pop("_target_", None)
    dm["dataset"] = OmegaConf.to_container(cfg.dataset, resolve=True)
    path = folder / "untrained_pku_reid_pretrained.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "datamodule_hyper_parameters": dm}, path)  # fmt: skip
    return path


def _split0(checkpoint: Path):
    """The PKU-Reid split-0 train / query / gallery tracklets."""
    from vidreid.data.datasets.prid2011 import PRID2011

    return PRID2011(SHARED / "pku-reid", split_id=0, split_file="splits_pku_10fold.json", min_frames=0, name="pku_reid")


def _clips(tracklets, settings) -> list[torch.Tensor]:
    """The uint8 clips ``(n_c, T, 3, H, W)`` of each tracklet, decoded and resized as ``embed`` does."""
    from vidreid.data.clip_sampling import ClipSampler
    from vidreid.data.video_dataset import TestTrackletDataset, collate_tracklets

    ds = TestTrackletDataset(tracklets, [], ClipSampler(seq_len=settings.seq_len, test_scheme="all_frames"),
                             settings.size, settings.interpolation)  # fmt: skip
    batch = collate_tracklets([ds[i] for i in range(len(ds))])
    return [f[c].contiguous() for f, c in zip(batch.frames, batch.clips)]


def _metrics(emb: torch.Tensor, query, gallery) -> dict[str, float]:
    from vidreid.evaluation.ranking import evaluate_ranking, pairwise_distance

    nq = len(query)
    dist = pairwise_distance(emb[:nq], emb[nq:], metric="cosine")
    res = evaluate_ranking(dist, np.array([t.pid for t in query]), np.array([t.pid for t in gallery]),
                           np.array([t.camid for t in query]), np.array([t.camid for t in gallery]))  # fmt: skip
    return {"rank1": res.rank(1), "mAP": float(res.mAP)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=os.environ.get("VIDREID_DEPLOY_CKPT"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=4, help="T, frames per test clip")
    ap.add_argument("--tracklets", type=int, default=16, help="timed tracklets (half query, half gallery)")
    ap.add_argument("--cache-dir", default=None, help="exported graphs (default: a folder beside the results)")
    ap.add_argument("--out", default=str(out_path("deploy")))
    a = ap.parse_args()
    import vidreid
    from vidreid.data.clip_sampling import ClipSampler
    from vidreid.deploy.inference import checkpoint_settings, load_checkpoint, load_network
    from vidreid.deploy.onnxruntime import OrtNet, graph_path

    threads = a.threads or ([1] if a.quick else [1, 2])
    repeats = 1 if a.quick else a.repeats
    cache = Path(a.cache_dir) if a.cache_dir else Path(a.out).parent / "deploy_cache"
    trained = bool(a.checkpoint) and Path(a.checkpoint).is_file()
    cache.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(Path(a.checkpoint)) if trained else load_checkpoint(_untrained_checkpoint(cache))
    # the same network tested with T = seq_len frames per clip (a temporal-average network's embedding of an
    # 8-frame tracklet does not depend on T; the cost per frame neither): a copy with that clip length
    ck["datamodule_hyper_parameters"]["clip"] = {**ck["datamodule_hyper_parameters"]["clip"], "seq_len": a.seq_len}
    ckpt = cache / f"bench_T{a.seq_len}.ckpt"
    torch.save(ck, ckpt)
    settings = checkpoint_settings(ck, ckpt)
    data = _split0(ckpt)
    query, gallery = data.query, data.gallery
    half = 6 if a.quick else a.tracklets // 2
    tracklets = query[:half] + gallery[:half]
    folders = [t.frames[0].parent for t in tracklets]
    # graphs into the cache once, exactly as embed finds them (export checked against PyTorch; int8 calibrated on
    # 64 clips of the checkpoint's training tracklets)
    import hashlib

    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    net = load_network(ckpt)
    clip = ClipSampler(seq_len=settings.seq_len, test_scheme="all_frames")
    graphs = {p: graph_path(net, sha, clip, settings.size, settings.interpolation, p, None, settings.datamodule, 64,
                            cache) for p in ("fp32", "int8")}  # fmt: skip
    fp32, int8 = graphs["fp32"], graphs["int8"]
    clips = _clips(tracklets, settings)
    # the batches embed forwards: its DataLoader's batches of 8 tracklets, cut into max_clips_per_forward chunks
    chunk = int((ck["hyper_parameters"].get("evaluation") or {}).get("max_clips_per_forward", 32))
    chunks = []
    for b in range(0, len(clips), 8):
        batch = torch.cat(clips[b : b + 8])
        chunks += [batch[i : i + chunk] for i in range(0, len(batch), chunk)]
    rows: list[dict] = []
    accuracy: dict[str, dict[str, float]] = {}
    for t in threads:
        torch.set_num_threads(t)
        nets = {"eager fp32": net, "ORT fp32": OrtNet(fp32, t), "ORT int8": OrtNet(int8, t)}

        def forward(m):
            def run():
                with torch.no_grad():
                    return [m(c) for c in chunks]
            return run

        def whole(backend, precision):
            return lambda: vidreid.embed(ckpt, folders, backend=backend, precision=precision, cache_dir=cache,
                                         progress=False, device="cpu")  # fmt: skip

        fns = {}
        for name, (backend, precision) in BACKENDS.items():
            fns[f"forward {name}"] = forward(nets[name])
            fns[f"embed {name}"] = whole(backend, precision)
            with torch.no_grad():  # warm-up on a few tracklets: first-call allocations, kernels, imports
                nets[name](chunks[0][:4])
            vidreid.embed(ckpt, folders[:2], backend=backend, precision=precision, cache_dir=cache, progress=False,
                          device="cpu")  # fmt: skip
        times, _ = alternate(fns, repeats)
        n = len(tracklets)
        for name in BACKENDS:
            tf, te = times[f"forward {name}"], times[f"embed {name}"]
            row = {"backend": name, "threads": t, "tracklets": n, "forward_tracklets_per_s": round(n / tf, 2),
                   "embed_tracklets_per_s": round(n / te, 2),
                   "forward_x_eager": round(times["forward eager fp32"] / tf, 3),
                   "embed_x_eager": round(times["embed eager fp32"] / te, 3),
                   "embed_fraction_of_forward": round(tf / te, 3)}  # fmt: skip
            if trained and not a.quick and t == threads[0]:  # one untimed pass over all of split 0's test set
                emb = vidreid.embed(ckpt, [t_.frames[0].parent for t_ in query + gallery], backend=BACKENDS[name][0],
                                    precision=BACKENDS[name][1], cache_dir=cache, progress=False, device="cpu")  # fmt: skip
                accuracy[name] = _metrics(emb, query, gallery)
                row.update(accuracy[name])
            rows.append(row)
    if accuracy:
        base = accuracy["eager fp32"]
        for row in rows:
            if "rank1" in row:
                row["rank1_change"] = round(row["rank1"] - base["rank1"], 4)
                row["mAP_change"] = round(row["mAP"] - base["mAP"], 4)
    if not a.quick:
        for row in rows:
            if row["backend"] == "ORT int8":
                row["target int8 >= 2x eager"] = "met" if row["forward_x_eager"] >= 2 else "missed"
            row["target embed >= 0.85 forward"] = "met" if row["embed_fraction_of_forward"] >= 0.85 else "missed"
    what = f"checkpoint {ckpt}" if trained else "untrained pku_reid_pretrained network"
    report(f"deploy: {what}, 256x128 T={settings.seq_len}, PKU-Reid split-0 test tracklets; {cpu_description()}; "
           f"load average {load_average()}{' (quick: no verdicts)' if a.quick else ''}", rows, a.out)  # fmt: skip


if __name__ == "__main__":
    main()
