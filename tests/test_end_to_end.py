"""End to end: train.py and evaluate.py on a tiny synthetic set, in-process and under 2-process CPU DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, compose
from tests.tiny import TINY


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _overrides(cache_dir: Path) -> list[str]:
    return TINY + [f"paths.cache_dir={cache_dir}"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir):
    from vidreid.runs.train import run_train

    out = tmp_path_factory.mktemp("train_run")
    cfg = compose("train", _overrides(cache_dir), output_dir=out)
    metrics, _ = run_train(cfg)
    return out, metrics


def test_train_writes_metrics_and_checkpoints(trained_run):
    out, metrics = trained_run
    saved = json.loads((out / "metrics.json").read_text())
    for k in ("test/rank1", "test/rank5", "test/rank10", "test/mAP", "test/mINP", "val/mAP"):
        assert 0.0 <= saved[k] <= 1.0, k
    assert saved["test/rank1"] <= saved["test/rank5"] <= saved["test/rank10"]
    from vidreid.runtime.threads import phase_threads

    assert saved["threads"] == phase_threads("train")  # the intra-op count the run trained with is recorded
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert list((out / "csv").glob("metrics.csv"))


def test_evaluate_reproduces_the_final_test_metrics(trained_run, tmp_path, cache_dir):
    from vidreid.runs.evaluate import run_evaluate

    out, metrics = trained_run
    cfg = compose("evaluate", _overrides(cache_dir) + [f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"], output_dir=tmp_path)
    ev = run_evaluate(cfg)
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert ev[k] == pytest.approx(metrics[k], abs=1e-6), k
    assert json.loads((tmp_path / "metrics.json").read_text())["test/mAP"] == pytest.approx(metrics["test/mAP"], abs=1e-6)


def test_missing_checkpoint_is_named(tmp_path, cache_dir):
    from vidreid.runs.evaluate import run_evaluate

    cfg = compose("evaluate", _overrides(cache_dir) + [f"ckpt_path={tmp_path / 'nope.ckpt'}"], output_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        run_evaluate(cfg)


# Installed through sitecustomize into both DDP processes (Lightning starts rank 1 as a new `python train.py`):
# every evaluate_ranking call of the metric appends a line to <spy dir>/rank<global rank>.calls.
_RANK_SPY = """
import importlib.abc, importlib.util, os, sys

class _Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "vidreid.evaluation.metric":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            real = module.evaluate_ranking

            def spy(*args, **kwargs):
                import torch.distributed as dist
                rank = dist.get_rank() if dist.is_initialized() else -1
                with open(os.path.join(os.environ["VIDREID_RANK_SPY"], f"rank{rank}.calls"), "a") as f:
                    f.write("evaluate_ranking\\n")
                return real(*args, **kwargs)

            module.evaluate_ranking = spy

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, _Spy())
"""


def test_ddp_two_processes_matches_single_process_evaluation(tmp_path, cache_dir):
    """2-process CPU DDP (gloo): training runs, the rank-gathered test metrics equal a 1-process evaluation of
    the same final weights, and only rank 0 ranked (validation and test): rank 1 received the metrics."""
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_RANK_SPY)
    env = {**os.environ, "PYTHONPATH": f"{spy}{os.pathsep}{REPO / 'src'}", "VIDREID_RANK_SPY": str(spy)}
    run_dir = tmp_path / "ddp"
    cmd = [sys.executable, "train.py", *_overrides(cache_dir), "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.precision=32-true", "logger=csv", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 1 re-runs train.py: the config summary and the dataset statistics come from global rank 0 only
    both = proc.stdout + proc.stderr
    assert both.count("dataset: synthetic") == 1 and both.count("] - config:") == 1, both[-3000:]
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert sorted(p.name for p in spy.glob("rank*.calls")) == ["rank0.calls"]  # rank 1 never ranked
    assert len((spy / "rank0.calls").read_text().splitlines()) >= 2  # validation and test
    ev_dir = tmp_path / "eval"
    cmd = [sys.executable, "evaluate.py", *_overrides(cache_dir), f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
           "logger=none", f"hydra.run.dir={ev_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((ev_dir / "metrics.json").read_text())
    for k in ("test/rank1", "test/rank5", "test/mAP", "test/mINP"):
        assert ddp[k] == pytest.approx(single[k], abs=1e-6), k


def test_interleaved_order_mixes_queries_and_gallery():
    from vidreid.data.datamodule import interleaved_order

    assert interleaved_order(2, 4) == [2, 0, 3, 4, 1, 5]
    order = interleaved_order(37, 400)
    assert sorted(order) == list(range(437))
    for n in (12, 40, 100):  # every prefix of n items holds queries and gallery in about the 37:400 proportion
        q = sum(i < 37 for i in order[:n])
        assert abs(q - n * 37 / 437) <= 1, (n, q)
    assert interleaved_order(0, 3) == [0, 1, 2] and interleaved_order(3, 0) == [0, 1, 2]


def test_fast_dev_run_validates_on_one_batch(tmp_path, cache_dir):
    """``debug=fdr`` (fast_dev_run: one validation batch) with test batches much smaller than query + gallery:
    the one batch must hold both queries and gallery items for the metric to rank anything."""
    from vidreid.runs.train import run_train

    over = _overrides(cache_dir) + ["debug=fdr", "data.test_batch_size=6", "logger=none"]
    metrics, _ = run_train(compose("train", over, output_dir=tmp_path))
    assert 0.0 < metrics["val/mAP"] <= 1.0


# ------------------------------------------------------------------ the checkpoint's settings win
@pytest.fixture(scope="module")
def odd_size_run(tmp_path_factory, cache_dir):
    """A run trained at 48x24 (not the 64x32 default): one short epoch, then its final test."""
    from vidreid.runs.train import run_train

    out = tmp_path_factory.mktemp("odd_size")
    over = [o for o in _overrides(cache_dir) if not o.startswith("data.transforms.size")]
    over += ["data.transforms.size=[48,24]", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
             "trainer.check_val_every_n_epoch=2", "logger=none"]  # fmt: skip
    metrics, _ = run_train(compose("train", over, output_dir=out))
    return out / "checkpoints" / "last.ckpt", metrics, [o for o in over if not o.startswith("data.transforms.size")]


def test_evaluate_uses_the_checkpoints_input_size(odd_size_run, tmp_path):
    """No size on the command line: evaluate.py tests at the trained 48x24 (before: the config default 64x32,
    silently, with other numbers) and reproduces the run's final test."""
    from vidreid.runs.evaluate import run_evaluate

    ckpt, metrics, over = odd_size_run
    try:
        import onnx  # noqa: F401

        onnx_on = True
    except ImportError:
        onnx_on = False
    ev = run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", f"export_onnx={onnx_on}"], output_dir=tmp_path))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert ev[k] == pytest.approx(metrics[k], abs=1e-6), k
    if onnx_on:  # named after the trained size (before: the config's 64x32)
        assert [p.name for p in tmp_path.glob("*.onnx")] == ["model_T4_48x24.onnx"]


def test_conflicting_overrides_name_both_values(odd_size_run, tmp_path):
    from vidreid.deploy.inference import SettingsConflict
    from vidreid.runs.evaluate import run_evaluate

    ckpt, _, over = odd_size_run
    with pytest.raises(SettingsConflict, match=r"size: requested \(64, 32\), the checkpoint was trained with \(48, 24\)"):
        run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", "data.transforms.size=[64,32]"], output_dir=tmp_path))
    with pytest.raises(SettingsConflict, match=r"seq_len: requested 8, the checkpoint was trained with 4"):
        run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", "clip.seq_len=8"], output_dir=tmp_path))
    with pytest.raises(SettingsConflict, match=r"model\.net\.aggregator\.stripes: requested 2, the checkpoint's network has 1"):
        run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", "aggregator.stripes=2"], output_dir=tmp_path))


def test_evaluate_without_a_checkpoint_says_what_to_pass(tmp_path, cache_dir):
    """`python evaluate.py` with no ckpt_path: a message naming ckpt_path (before: 'NoneType' object has no
    attribute 'seek')."""
    from vidreid.runs.evaluate import run_evaluate

    with pytest.raises(ValueError, match=r"evaluate.py needs a checkpoint: ckpt_path="):
        run_evaluate(compose("evaluate", _overrides(cache_dir), output_dir=tmp_path))
    proc = subprocess.run([sys.executable, "evaluate.py", f"hydra.run.dir={tmp_path / 'cli'}"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "ckpt_path=" in proc.stderr + proc.stdout and "seek" not in proc.stderr


# ------------------------------------------------------------------ compile=true
@pytest.mark.parametrize("compile_arg", ["{backend:eager}", pytest.param("true", marks=pytest.mark.slow)])
def test_compiled_run_can_be_evaluated_embedded_and_exported(compile_arg, tmp_path, cache_dir):
    """A compile run's checkpoint holds one plain copy of the weights (before: net.* and forward_net._orig_mod.*,
    and evaluate.py / vidreid.embed / ONNX export failed on the strict load). `{backend: eager}` wraps the network
    exactly as `true` does, without the inductor build (minutes on 2 cores: the `true` case is a slow test)."""
    import torch

    import vidreid
    from vidreid.runs.evaluate import run_evaluate
    from vidreid.runs.train import run_train

    over = _overrides(cache_dir) + ["trainer.max_epochs=1", "+trainer.limit_train_batches=2", "logger=none",
                                    "trainer.check_val_every_n_epoch=2"]  # fmt: skip
    metrics, module = run_train(compose("train", [*over, f"compile={compile_arg}"], output_dir=tmp_path / "train"))
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith("net.") and "_orig_mod" not in k for k in state), sorted(state)[:5]
    assert sorted(state) == sorted(f"net.{k}" for k in module.net.state_dict())
    ev = run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}"], output_dir=tmp_path / "eval"))
    assert ev["test/mAP"] == pytest.approx(metrics["test/mAP"], abs=1e-5)
    from hydra.utils import instantiate

    data = instantiate(compose("train", over, output_dir=tmp_path).dataset)
    emb = vidreid.embed(ckpt, data.query[:3], device="cpu", progress=False)
    assert emb.shape == (3, 512) and torch.isfinite(emb).all()
    pytest.importorskip("onnx", reason="ONNX export needs the export extra")
    from vidreid.deploy.onnx_export import export_onnx

    res = export_onnx(ckpt, tmp_path / "model.onnx", seq_len=4, size=(64, 32))
    assert res["embedding_dim"] == 512 and (res["max_abs_diff"] is None or res["max_abs_diff"] <= 1e-4)


def test_evaluate_exports_onnx_without_testing(odd_size_run, tmp_path):
    """``test=false export_onnx=true`` writes the graph only (before: the whole test ran first)."""
    pytest.importorskip("onnx", reason="ONNX export needs the export extra")
    from vidreid.runs.evaluate import run_evaluate

    ckpt, _, over = odd_size_run
    ev = run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", "test=false", "export_onnx=true"],
                              output_dir=tmp_path))  # fmt: skip
    assert ev == {} and not (tmp_path / "metrics.json").exists()
    assert [p.name for p in tmp_path.glob("*.onnx")] == ["model_T4_48x24.onnx"]
    with pytest.raises(ValueError, match="nothing to do"):
        run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}", "test=false"], output_dir=tmp_path))
