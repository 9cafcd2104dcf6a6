"""Every config in conf/ composes (and the model/data nodes instantiate for the light ones)."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, compose

GROUPS = sorted(p.name for p in (REPO / "conf").iterdir() if p.is_dir())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


CASES = [(g, o) for g in GROUPS for o in _options(g) if g not in ("hydra", "paths")]


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_config_composes(group: str, option: str, tmp_path: Path):
    cfg = compose("train", [f"{group}={option}"], output_dir=tmp_path)
    # resolving everything catches broken interpolations and missing keys
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["data"]["_target_"].endswith("ReIDDataModule")
    assert container["model"]["_target_"].endswith("ReIDNet")


def test_evaluate_config_composes(tmp_path: Path):
    cfg = compose("evaluate", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    assert cfg.task_name == "evaluate" and not cfg.callbacks


def test_unknown_option_is_a_clear_error():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="aggregator"):
        compose("train", ["aggregator=nope"])
    with pytest.raises(ConfigCompositionException, match="lrr"):
        compose("train", ["optimizer.lrr=0.1"])


def test_shared_data_default_and_env(monkeypatch, tmp_path: Path):
    cfg = compose("train", output_dir=tmp_path)
    assert cfg.paths.shared_data == "../shared/data"
    monkeypatch.setenv("VIDREID_SHARED_DATA", "/elsewhere")
    assert compose("train", output_dir=tmp_path).paths.shared_data == "/elsewhere"


EXPERIMENTS = _options("experiment")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_arguments_match_constructors(experiment: str, tmp_path: Path):
    """Every key an experiment sets on the aggregator, backbone, dataset and model is a constructor argument
    (catches keys inherited from a parent experiment whose aggregator was swapped)."""
    import importlib
    import inspect

    cfg = OmegaConf.to_container(compose("train", [f"experiment={experiment}"], output_dir=tmp_path), resolve=True)
    for node, supplied in (("aggregator", {"in_channels"}), ("backbone", {"stages"}), ("dataset", set()),
                           ("model", {"num_classes"})):
        kwargs = {k: v for k, v in cfg[node].items() if not k.startswith("_")}
        module, name = cfg[node]["_target_"].rsplit(".", 1)
        target = getattr(importlib.import_module(module), name)
        params = inspect.signature(target).parameters
        unknown = set(kwargs) - set(params)
        assert not unknown, f"{experiment}: {node} keys {unknown} are not arguments of {cfg[node]['_target_']}"
        if node == "model":
            continue
        missing = {p for p, v in params.items() if v.default is inspect.Parameter.empty and v.kind == v.POSITIONAL_OR_KEYWORD}
        assert missing - set(kwargs) - supplied - {"self", "num_classes"} == set(), (experiment, node, missing)
