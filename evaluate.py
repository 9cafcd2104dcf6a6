"""Evaluate a checkpoint: `python evaluate.py ckpt_path=PATH [dataset=...] [evaluation.rerank.enabled=true]`."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from vidreid.runs.evaluate import run_evaluate

    run_evaluate(cfg)


if __name__ == "__main__":
    main()
