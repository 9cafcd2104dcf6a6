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
    in_defaults = group in compose("train", output_dir=tmp_path).hydra.runtime.choices
    cfg = compose("train", [f"{'' if in_defaults else '+'}{group}={option}"], output_dir=tmp_path)
    # resolving everything catches broken interpolations and missing keys
    container = OmegaConf.to_container(cfg, resolve=True)
    assert container["data"]["_target_"].endswith("ReIDDataModule")
    from hydra.utils import get_class

    from vidreid.engine.lit_module import ReIDLitModule

    # the LightningModule is ReIDLitModule or a subclass (experiment=video_adapt: AdaptLitModule)
    assert issubclass(get_class(container["model"]["_target_"]), ReIDLitModule)
    assert container["model"]["net"]["_target_"].endswith("ReIDNet")


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
    monkeypatch.delenv("VIDREID_SHARED_DATA", raising=False)  # the caller's environment must not decide the result
    cfg = compose("train", output_dir=tmp_path)
    assert cfg.paths.shared_data == "../shared/data"
    monkeypatch.setenv("VIDREID_SHARED_DATA", "/elsewhere")
    assert compose("train", output_dir=tmp_path).paths.shared_data == "/elsewhere"


EXPERIMENTS = _options("experiment")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_arguments_match_constructors(experiment: str, tmp_path: Path):
    """Every key an experiment sets on the aggregator, backbone, dataset, network and LightningModule is a
    constructor argument (catches keys inherited from a parent experiment whose aggregator was swapped)."""
    import importlib
    import inspect

    cfg = OmegaConf.to_container(compose("train", [f"experiment={experiment}"], output_dir=tmp_path), resolve=True)
    cfg["net"] = cfg["model"]["net"]
    for node, supplied in (("aggregator", {"in_channels"}), ("backbone", {"stages"}), ("dataset", set()),
                           ("net", {"num_classes"}), ("model", {"num_classes"})):
        kwargs = {k: v for k, v in cfg[node].items() if not k.startswith("_")}
        module, name = cfg[node]["_target_"].rsplit(".", 1)
        target = getattr(importlib.import_module(module), name)
        params = inspect.signature(target).parameters
        unknown = set(kwargs) - set(params)
        assert not unknown, f"{experiment}: {node} keys {unknown} are not arguments of {cfg[node]['_target_']}"
        if node in ("net", "model"):
            continue
        missing = {p for p, v in params.items() if v.default is inspect.Parameter.empty and v.kind == v.POSITIONAL_OR_KEYWORD}
        assert missing - set(kwargs) - supplied - {"self", "num_classes"} == set(), (experiment, node, missing)


def test_default_run_is_the_group_defaults(tmp_path: Path):
    """`python train.py` = the group defaults (the embedded recipe lives in the groups; no experiment selected)."""
    cfg = compose("train", output_dir=tmp_path)
    choices = cfg.hydra.runtime.choices
    assert choices["experiment"] is None and choices["hparams_search"] is None
    assert (choices["backbone"], choices["aggregator"], choices["scheduler"]) == ("resnet10t", "temporal_avg_stripes2", "cosine")
    assert cfg.backbone.last_stride == 1 and list(cfg.data.transforms.size) == [64, 32]
    assert cfg.optimizer.lr == 1e-3 and cfg.trainer.max_epochs == 20 and cfg.trainer.check_val_every_n_epoch == 10
    assert cfg.scheduler._target_ == "torch.optim.lr_scheduler.CosineAnnealingLR" and cfg.scheduler.T_max == 20


def test_clip_schemes_are_named_separately(tmp_path: Path):
    """The train and test clip schemes are two keys (a `clip=all_frames` group option used to set the *training*
    scheme to restricted_random silently)."""
    from hydra.errors import ConfigCompositionException

    cfg = compose("train", ["clip.train_scheme=random_interval", "clip.test_scheme=dense"], output_dir=tmp_path)
    assert (cfg.clip.train_scheme, cfg.clip.test_scheme) == ("random_interval", "dense")
    with pytest.raises(ConfigCompositionException, match="all_frames"):
        compose("train", ["clip=all_frames"], output_dir=tmp_path)


def test_max_clips_per_forward_has_one_home(tmp_path: Path):
    """The test-time chunk is `evaluation.max_clips_per_forward` only (it used to live in `clip` too, with
    `evaluation` interpolating it); the paper recipes' values moved with it; the old key is a clear error."""
    from vidreid.data.datamodule import ReIDDataModule

    expected = {"mars_staformer": 45, "mars_sta": 64, "duke_video_psta": 64, "occluded_duke_sticc": 64,
                "prai_sticc": 256, "pku_reid": 32}
    for experiment, chunk in expected.items():
        cfg = compose("train", [f"experiment={experiment}"], output_dir=tmp_path)
        assert "max_clips_per_forward" not in cfg.clip, experiment
        assert cfg.evaluation.max_clips_per_forward == chunk == cfg.model.evaluation.max_clips_per_forward, experiment
    cfg = compose("train", ["evaluation.max_clips_per_forward=7"], output_dir=tmp_path)
    assert cfg.model.evaluation.max_clips_per_forward == 7
    clip = {**OmegaConf.to_container(cfg.clip), "max_clips_per_forward": 64}
    with pytest.raises(ValueError, match="evaluation.max_clips_per_forward"):
        ReIDDataModule(dataset=cfg.dataset, clip=clip, sampler=cfg.sampler, transforms=cfg.data.transforms)


def _lr_per_epoch(scheduler_cfg, lr: float, epochs: int) -> list[float]:
    """The learning rate of each epoch under the configured scheduler (one optimiser group starting at ``lr``)."""
    import torch

    from vidreid.engine.schedulers import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = build_scheduler(scheduler_cfg, opt)
    got = []
    for _ in range(epochs):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return got


@pytest.mark.parametrize("name,expected", [
    ("cosine", [1e-3 * (0.01 + 0.99 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * e / 20))) for e in range(20)]),
])
def test_scheduler_group_gives_the_recipe_schedule(name, expected, tmp_path: Path):
    """Schedulers are torch's classes chosen by _target_; the default cosine decays to 0.01 x lr over 20 epochs."""
    cfg = compose("train", [f"scheduler={name}"], output_dir=tmp_path)
    got = _lr_per_epoch(cfg.scheduler, cfg.optimizer.lr, 20)
    assert got == pytest.approx(expected, rel=1e-9)


def test_multistep_decays_at_its_milestones(tmp_path: Path):
    """scheduler=multistep: lr x 0.1 at epochs 40 and 80 (the schedule is followed past both milestones)."""
    cfg = compose("train", ["scheduler=multistep"], output_dir=tmp_path)
    assert list(cfg.scheduler.milestones) == [40, 80]
    got = _lr_per_epoch(cfg.scheduler, cfg.optimizer.lr, 90)
    assert got == pytest.approx([1e-3] * 40 + [1e-4] * 40 + [1e-5] * 10, rel=1e-9)


def test_default_run_logs_training_steps_without_lightnings_warning(tmp_path: Path):
    """Lightning warns when an epoch has fewer batches than trainer.log_every_n_steps (and logs no training step):
    the embedded default has 273 training tracklets of 72 identities, 9 P x K batches of 8 x 4."""
    from vidreid.data.samplers import PKBatchSampler

    cfg = compose("train", output_dir=tmp_path)
    pids = [p for p in range(72) for _ in range(4 if p < 57 else 3)]
    assert len(pids) == 273
    batches = len(PKBatchSampler(pids, num_identities=cfg.sampler.num_identities,
                                 num_instances=cfg.sampler.num_instances, epoch_mode=cfg.sampler.epoch_mode))  # fmt: skip
    assert batches == 9 and cfg.trainer.log_every_n_steps <= batches


def test_warmup_multistep_is_the_psta_schedule(tmp_path: Path):
    """PSTA (docs/methods.md §2.3): 10 warmup epochs from 0.01x, then x0.3 at the absolute epochs 70/140/210/310/410."""
    cfg = compose("train", ["scheduler=warmup_multistep"], output_dir=tmp_path)
    got = _lr_per_epoch(cfg.scheduler, 1.0, 420)
    assert got[0] == pytest.approx(0.01) and got[5] == pytest.approx(0.505) and got[10] == 1.0
    assert got[69] == 1.0 and got[70] == pytest.approx(0.3) and got[140] == pytest.approx(0.09)
    assert got[410] == pytest.approx(0.3**5)
