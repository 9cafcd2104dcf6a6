"""Train a video re-ID model: `python train.py [experiment=NAME] [key=value ...]` (configs in conf/)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from vidreid.train import run_train

    metrics, _ = run_train(cfg)
    value = metrics.get(cfg.get("optimized_metric") or "")
    return float(value) if value is not None else None


if __name__ == "__main__":
    main()
