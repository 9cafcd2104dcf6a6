"""Where ``evaluate.py`` writes: beside the checkpoint's training run, so its outputs are found from the run.

``conf/evaluate.yaml`` sets ``hydra.run.dir: ${vidreid_eval_dir:...}``; the resolver (:func:`evaluate_output_dir`)
is registered by ``evaluate.py`` before Hydra composes the config (and on import of this module).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

__all__ = ["RESOLVER", "evaluate_output_dir", "register_resolvers"]

RESOLVER = "vidreid_eval_dir"


def evaluate_output_dir(ckpt_path: str | None, embeddings: str | None, log_dir: str, stamp: str) -> str:
    """The run folder of one ``evaluate.py`` call.

    - ``ckpt_path=<run>/checkpoints/<name>.ckpt`` (what ``train.py`` writes) → ``<run>/evaluate/<stamp>``: the
      metrics, figures, ``embeddings.npz``, ``ranked_lists.csv`` and ONNX file sit beside the training run.
    - ``embeddings=<dir>/embeddings.npz`` (no checkpoint) → ``<dir>/scored/<stamp>``.
    - anything else (``untrained``, a baseline, a checkpoint outside a ``checkpoints/`` folder, ``last``) →
      ``<log_dir>/evaluate/runs/<stamp>``.

    ``hydra.run.dir=...`` on the command line overrides all of these.
    """
    if ckpt_path and ckpt_path not in ("untrained", "last", "???"):
        ckpt = Path(ckpt_path)
        if ckpt.parent.name == "checkpoints":
            return str(ckpt.parent.parent / "evaluate" / stamp)
    elif embeddings:
        return str(Path(embeddings).parent / "scored" / stamp)
    return str(Path(log_dir) / "evaluate" / "runs" / stamp)


def register_resolvers() -> None:
    """Register :data:`RESOLVER` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(
            RESOLVER, lambda ckpt, emb, log_dir, stamp: evaluate_output_dir(
                None if ckpt is None else str(ckpt), None if emb is None else str(emb), str(log_dir), str(stamp)))


register_resolvers()
