"""Each method aggregator trains and evaluates through ``train.py``'s run logic on the tiny synthetic set under
bf16 autocast (``trainer.precision=bf16-mixed``, the path the GPU recipes use), switched in with one
``aggregator=<name>`` override on top of the default experiment. The method's own loss terms reach the logs, and
``evaluate.py`` on the checkpoint reproduces the final test metrics."""

from __future__ import annotations

import csv
import math

import pytest

from tests.conftest import compose
from tests.tiny import TINY, tiny_cache

# CPU-small widths; each run is a few seconds. 64x32 input, last stride 1 -> 4x2 maps, T = 4.
SMALL = {
    "staformer": ["aggregator.dim=64", "aggregator.heads=4", "aggregator.mlp_dim=128", "aggregator.attn_hidden=32"],
    "psta": ["aggregator.reduced_dim=128", "aggregator.mid_dim=32", "aggregator.embed_dim=16",
             "aggregator.num_levels=2", "aggregator.map_size=[4,2]"],
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


@pytest.mark.parametrize("name", list(SMALL))
def test_aggregator_trains_and_evaluates_in_bf16(name, tmp_path, tmp_path_factory):
    from vidreid.evaluate import run_evaluate
    from vidreid.train import run_train

    over = _overrides(name, tiny_cache(tmp_path_factory))
    metrics, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert 0.0 < metrics[k] <= 1.0, (k, metrics[k])

    rows = list(csv.DictReader((tmp_path / "train" / "csv" / "metrics.csv").open()))
    for term in ["loss", "ce", "triplet", *AUX_TERMS[name]]:
        vals = [float(r[f"train/{term}_epoch"]) for r in rows if r.get(f"train/{term}_epoch")]
        assert vals and all(math.isfinite(v) for v in vals), (term, list(rows[0]))
    for term in AUX_TERMS[name]:  # a weighted method term that is really computed, not a constant zero
        assert any(float(r[f"train/{term}_epoch"]) != 0.0 for r in rows if r.get(f"train/{term}_epoch")), term

    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    ev = run_evaluate(compose("evaluate", [*over, f"ckpt_path={ckpt}"], output_dir=tmp_path / "eval"))
    for k in ("test/rank1", "test/mAP", "test/mINP"):
        assert ev[k] == pytest.approx(metrics[k], abs=1e-6), k
