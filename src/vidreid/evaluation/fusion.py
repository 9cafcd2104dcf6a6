"""Appearance fusion: the network's and the colour histogram's embeddings as one weighted cosine distance
(``evaluate.py fusion.color_weight=w``; the association stage: :func:`vidreid.video.reassociate.fused_distances`).

With L2-normalised embeddings ``n`` (network) and ``c`` (colour histogram, :mod:`vidreid.evaluation.baselines`),
the fused embedding ``[sqrt(1 - w) n, sqrt(w) c]`` has unit norm and its cosine distance is exactly
``(1 - w) d_net + w d_colour``, so the evaluation's own ranking and metrics score the fusion unchanged. Measured on
``dataset=mot_tracklets`` in docs/results.md ("Learning from unlabelled video").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidreid.data.tracklet import Tracklet

__all__ = ["fuse_embeddings", "fused_npz_metrics"]


def fuse_embeddings(net: torch.Tensor, color: torch.Tensor, color_weight: float) -> torch.Tensor:
    """``(N, D + C)`` embeddings whose cosine distance is ``(1 - w) d_net + w d_colour`` (module docstring).

    Args:
        net: ``(N, D)``. color: ``(N, C)``. color_weight: ``w`` in ``[0, 1]``.
    Raises:
        ValueError: ``w`` out of range or row counts that differ.
    """
    if not 0.0 <= color_weight <= 1.0:
        raise ValueError(f"fusion.color_weight={color_weight}: expected a weight in [0, 1]")
    if len(net) != len(color):
        raise ValueError(f"fusion: {len(net)} network embeddings for {len(color)} colour embeddings")
    return torch.cat([math.sqrt(1 - color_weight) * F.normalize(net.float(), dim=1),
                      math.sqrt(color_weight) * F.normalize(color.float(), dim=1)], dim=1)  # fmt: skip


def fused_npz_metrics(npz: str, query: Sequence[Tracklet], gallery: Sequence[Tracklet], weights: Sequence[float],
                      evaluation: dict, color: torch.Tensor | None = None, size: tuple[int, int] = (128, 64)
                      ) -> tuple[dict[float, dict[str, float]], torch.Tensor]:  # fmt: skip
    """CMC/mAP of the network embeddings of ``npz`` (``evaluate.py export=true``) fused with the colour histograms
    of the same ``query + gallery`` tracklets at each weight of ``weights``.

    Returns:
        ``({w: metrics}, colour embeddings (N, C))`` (pass the latter back as ``color`` to skip recomputing).
    Raises:
        ValueError: the file's tracklets (first-frame paths) are not ``query + gallery`` in order.
    """
    from vidreid.deploy.score_npz import load_embeddings
    from vidreid.evaluation.baselines import color_histogram_embeddings
    from vidreid.evaluation.metric import ReIDMetric

    a = load_embeddings(npz)
    items = list(query) + list(gallery)
    paths = [str(p) for p in np.concatenate([a["query_paths"], a["gallery_paths"]])] if "query_paths" in a else None
    if paths is not None and paths != [str(t.frames[0]) for t in items]:
        raise ValueError(f"{npz}: its tracklets are not the configured query + gallery (first-frame paths differ)")
    if color is None:
        color = color_histogram_embeddings(items, size=size)
    net = torch.from_numpy(np.concatenate([a["query_embeddings"], a["gallery_embeddings"]]))
    out = {}
    for w in weights:
        metric = ReIDMetric(distance="cosine", append_query_to_gallery=bool(a.get("query_in_gallery", False)),
                            average=evaluation.get("average", "valid"))  # fmt: skip
        metric.update(fuse_embeddings(net, color, float(w)), torch.tensor([t.pid for t in items]),
                      torch.tensor([t.camid for t in items]), torch.arange(len(items)) < len(query),
                      indices=torch.arange(len(items)))  # fmt: skip
        out[float(w)] = {k: float(v) for k, v in metric.compute().items()}
    return out, color
