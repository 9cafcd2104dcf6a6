"""Evaluate a checkpoint: `python evaluate.py ckpt_path=PATH [dataset=...] [evaluation.rerank.enabled=true]`.

Outputs go beside the checkpoint's training run: `<run>/evaluate/<time>/` for `ckpt_path=<run>/checkpoints/*.ckpt`
(vidreid.runs.outputs).
"""

import hydra
from omegaconf import DictConfig

from vidreid.runs.outputs import register_resolvers

register_resolvers()  # hydra.run.dir of conf/evaluate.yaml: beside the checkpoint's run


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from vidreid.runs.evaluate import run_evaluate

    run_evaluate(cfg)


if __name__ == "__main__":
    main()
