"""Slow learning tests (``pytest -m slow`` / ``make test-all``): on the real PKU-Reid split 0, each aggregator's
CPU recipe, trained briefly, beats the same network untrained, and the baseline beats the colour histogram."""

from __future__ import annotations

import pytest

from tests.conftest import compose

pytestmark = pytest.mark.slow

EXPERIMENTS = ["pku_reid", "pku_reid_staformer", "pku_reid_psta", "pku_reid_sta", "pku_reid_sticc"]
SHORT = ["trainer.max_epochs=15", "trainer.check_val_every_n_epoch=15", "logger=none", "++callbacks.progress_bar=null"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_trained_beats_untrained(experiment, shared_data, tmp_path):
    from vidreid.evaluate import run_evaluate
    from vidreid.train import run_train

    over = [f"experiment={experiment}", f"paths.shared_data={shared_data}", *SHORT]
    trained, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    untrained = run_evaluate(compose("evaluate", over + ["ckpt_path=untrained"], output_dir=tmp_path / "untrained"))
    assert trained["test/mAP"] > untrained["test/mAP"] + 0.05, (trained, untrained)
    assert trained["test/rank1"] > untrained["test/rank1"], (trained, untrained)


def test_baseline_beats_colour_histogram(shared_data, tmp_path):
    from vidreid.evaluate import run_evaluate
    from vidreid.train import run_train

    over = ["experiment=pku_reid", f"paths.shared_data={shared_data}", *SHORT]
    trained, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    hist = run_evaluate(compose("evaluate", over + ["ckpt_path=untrained", "baseline=color_histogram"],
                                output_dir=tmp_path / "hist"))
    assert trained["test/mAP"] > hist["test/mAP"] + 0.1, (trained, hist)
