"""Train a video re-ID model: `python train.py [experiment=NAME] [key=value ...]` (configs in conf/)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from vidreid.runs.train import optimized_value, run_train

    metrics, _ = run_train(cfg)
    return optimized_value(cfg, metrics)


if __name__ == "__main__":
    main()
