"""Each aggregator trains and evaluates through ``train.py``'s run logic on the tiny synthetic set.

* fp32, every ``conf/aggregator/*.yaml`` at its full configured width, switched in with the one override
  ``aggregator=<name>`` (plus ``debug=fast``): the map sizes, PSTA's relation layers and pyramid depth, PCB's parts and
  each method's loss terms (its criterion) all follow from the run's input size and clip length.
* bf16 autocast (``trainer.precision=bf16-mixed``, the path the GPU recipes use) at CPU-small widths, only on CPUs
  with native bfloat16 (elsewhere bf16 autocast is ~20x slower than fp32): the method's own loss terms reach the logs,
  and ``evaluate.py`` on the checkpoint reproduces the final test metrics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from tests.conftest import compose, needs_native_bf16
from tests.tiny import TINY, tiny_cache

REPO = Path(__file__).resolve().parents[1]
AGGREGATORS = sorted(p.stem for p in (REPO / "conf" / "aggregator").glob("*.yaml"))
# the loss terms each aggregator's criterion logs (train/<name>)
TERMS = {
    "staformer": ["ce", "triplet", "frame_ce", "frame_triplet", "nce"],
    "sta": ["ce", "triplet", "sta_reg"],
    "sticc": ["ce", "triplet", "slot_diversity"],
    "pcb": ["pcb_ce"],
}

# CPU-small widths; each run is a few seconds. 64x32 input, last stride 1 -> 4x2 maps, T = 4.
SMALL = {
    "staformer": ["aggregator.dim=64", "aggregator.heads=4", "aggregator.mlp_dim=128", "aggregator.attn_hidden=32"],
    "psta": ["aggregator.reduced_dim=128", "aggregator.mid_dim=32", "aggregator.embed_dim=16"],
    "sta": ["aggregator.embed_dim=128", "aggregator.num_stripes=2"],
    "sticc": ["aggregator.d_model=64", "aggregator.num_heads=4", "aggregator.ffn_dim=128", "aggregator.num_slots=4",
              "aggregator.enc_layers=1", "aggregator.pos_grid=[4,2]"],
}  # fmt: skip
# the method-specific loss terms each aggregator adds to ID + triplet (PSTA's are the per-level ID/triplet terms)
AUX_TERMS = {"staformer": ["frame_ce", "frame_triplet", "nce"], "psta": [], "sta": ["sta_reg"],
             "sticc": ["slot_diversity"]}  # fmt: skip


def _overrides(name: str, cache) -> list[str]:
    base = [o for o in TINY if not o.startswith("aggregator.")]
    return [*base, f"paths.cache_dir={cache}", f"aggregator={name}", "backbone.last_stride=1",
            "trainer.precision=bf16-mixed", "trainer.max_epochs=1", *SMALL[name]]  # fmt: skip


def _logged(run_dir: Path) -> dict[str, list[float]]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            if k.startswith("train/") and k.endswith("_epoch") and v:
                out.setdefault(k[len("train/") : -len("_epoch")], []).append(float(v))
    return out


@pytest.mark.parametrize("name", AGGREGATORS)
def test_every_aggregator_runs_with_one_override(name, tmp_path, tmp_path_factory):
    """``python train.py aggregator=<name> debug=fast`` on the tiny set with the default recipe's network (ResNet-10-T
    last stride 1 at 64x32: 4x2 stage-4 maps, T = 4) in fp32: builds, trains its own criterion terms, validates and
    tests."""
    from vidreid.runs.train import run_train

    base = [o for o in TINY if not o.startswith(("aggregator.", "backbone"))]
    over = [*base, f"paths.cache_dir={tiny_cache(tmp_path_factory)}", f"aggregator={name}", "debug=fast",
            "trainer.max_epochs=1", "data.max_test_tracklets=20", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1"]  # fmt: skip
    cfg = compose("train", over, output_dir=tmp_path)
    metrics, _ = run_train(cfg)
    assert 0.0 <= metrics["test/mAP"] <= 1.0 and math.isfinite(metrics["test/mAP"])
    logged = _logged(tmp_path)
    expect = TERMS.get(name, ["ce", "triplet"])
    assert set(logged) == {"loss", *expect}, sorted(logged)
    assert all(math.isfinite(v) for vals in logged.values() for v in vals)
    assert sum(logged[k][-1] for k in expect) == pytest.approx(logged["loss"][-1], rel=1e-5)  # loss = Σ terms


@needs_native_bf16
@pytest.mark.parametrize("name", list(SMALL))
def test_aggregator_trains_and_evaluates_in_bf16(name, tmp_path, tmp_path_factory):
    from vidreid.runs.evaluate import run_evaluate
    from vidreid.runs.train import run_train

    over = _overrides(name, tiny_cache(tmp_path_factory))
    metrics, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert 0.0 < metrics[k] <= 1.0, (k, metrics[k])

    logged = _logged(tmp_path / "train")
    for term in ["loss", "ce", "triplet", *AUX_TERMS[name]]:
        assert logged.get(term) and all(math.isfinite(v) for v in logged[term]), (term, sorted(logged))
    for term in AUX_TERMS[name]:  # a weighted method term that is really computed, not a constant zero
        assert any(v != 0.0 for v in logged[term]), term

    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    ev = run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}"], output_dir=tmp_path / "eval"))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert ev[k] == pytest.approx(metrics[k], abs=1e-6), k
