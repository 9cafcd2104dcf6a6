"""Shared fixtures: repository paths, real-data location, Hydra config composition."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VIDREID_SHARED_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def _native_bf16() -> bool:
    from vidreid.runtime.precision import cpu_has_native_bf16

    if os.environ.get("VIDREID_BF16_TESTS") in ("0", "1"):  # force: 1 = run them anyway, 0 = skip them
        return os.environ["VIDREID_BF16_TESTS"] == "1"
    return cpu_has_native_bf16() is not False  # unknown CPU (no /proc/cpuinfo): run


#: Mark CPU bfloat16 tests: they run only where the CPU has native bf16 (x86 flags avx512_bf16 / amx_bf16, Arm bf16;
#: vidreid.runtime.precision.cpu_has_native_bf16). Elsewhere (AVX2-only laptops and CI machines) bf16 autocast is emulated
#: and ~20x slower than fp32 (ResNet-18 forward 6.6 s vs 0.32 s on a 2-core AVX2 CPU), so they skip with that
#: reason; the same code paths keep fp32 tests. VIDREID_BF16_TESTS=1 forces them, =0 skips them.
needs_native_bf16 = pytest.mark.skipif(
    not _native_bf16(), reason="CPU without native bfloat16 (no avx512_bf16/amx_bf16): bf16 autocast is emulated, "
    "~20x slower than fp32; the fp32 tests cover the same paths (VIDREID_BF16_TESTS=1 forces them)"
)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real data folder (../shared/data); skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} not found (set VIDREID_SHARED_DATA)")
    return SHARED_DATA


def compose(config_name: str = "train", overrides: list[str] | None = None, output_dir: Path | None = None):
    """Compose a config with Hydra's compose API, with the hydra runtime values (cwd, output dir) set."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.runtime.output_dir = str(output_dir or REPO / "logs" / "pytest")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A briefly trained tiny checkpoint (the operations tests' recipe, 64x32 inputs, 2 batches)."""
    from tests.tiny import tiny_cache, tiny_overrides
    from vidreid.runs.train import run_train

    out = tmp_path_factory.mktemp("video_train")
    cfg = compose("train", tiny_overrides(tiny_cache(tmp_path_factory), "trainer.max_epochs=1", "test=false",
                                          "logger=none", "+trainer.limit_train_batches=2",
                                          "+trainer.limit_val_batches=0"), output_dir=out)  # fmt: skip
    run_train(cfg)
    return out / "checkpoints" / "last.ckpt"
