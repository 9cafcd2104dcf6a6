"""Score a saved ``embeddings.npz`` without the network: ``python evaluate.py embeddings=<run>/embeddings.npz``.

The file is the one ``evaluate.py export=true`` writes (:func:`vidreid.deploy.export.write_embeddings`): query and
gallery embeddings ``(N, D)`` with their pids and 0-based camids, and the dataset's declared protocol
(``query_in_gallery``, applied by :func:`vidreid.data.tracklet.query_in_gallery_applied` exactly as testing the
checkpoint applies it). Ranking, re-ranking and the metrics are the evaluation's own
(:class:`~vidreid.evaluation.metric.ReIDMetric`), so a distance, re-ranking or
``ap_mode`` change can be tried on MARS-scale embeddings in seconds, without a GPU or the frames. st-ReID fusion
needs the tracklets' time stamps and the training set, which the file does not hold: it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidreid.data.tracklet import Tracklet, query_in_gallery_applied
from vidreid.evaluation.metric import ReIDMetric

log = logging.getLogger(__name__)

__all__ = ["REQUIRED_KEYS", "fused_npz_metrics", "load_embeddings", "score_embeddings"]

REQUIRED_KEYS = ("query_embeddings", "gallery_embeddings", "query_pids", "gallery_pids", "query_camids",
                 "gallery_camids")  # fmt: skip


def load_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``embeddings.npz``, checked: :data:`REQUIRED_KEYS` present, 2-D embeddings of one
    width, one pid and one camid per row.

    Raises:
        FileNotFoundError: no file at ``path``; ValueError: a missing array or inconsistent shapes (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file not found: {path} (write one with `evaluate.py ... export=true`)")
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {missing}; expected the arrays {list(REQUIRED_KEYS)} "
                         "(as written by evaluate.py export=true)")  # fmt: skip
    q, g = arrays["query_embeddings"], arrays["gallery_embeddings"]
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"{path}: query_embeddings {q.shape} and gallery_embeddings {g.shape} must be (N, D) "
                         "with the same D")  # fmt: skip
    for side, emb in (("query", q), ("gallery", g)):
        for what in ("pids", "camids"):
            n = len(arrays[f"{side}_{what}"])
            if n != len(emb):
                raise ValueError(f"{path}: {side}_{what} has {n} entries for {len(emb)} {side} embeddings")
    return arrays


def score_embeddings(path: str | Path, evaluation: Mapping[str, Any]) -> dict[str, float]:
    """CMC rank-k, mAP and mINP (and ``rerank/<name>`` when ``evaluation.rerank.enabled``) of the query and
    gallery embeddings in ``path``; the names of :class:`ReIDMetric.compute`, values in ``[0, 1]``.

    Args:
        path: an ``embeddings.npz`` (:func:`load_embeddings`).
        evaluation: the ``evaluation`` config node: ``distance`` (the file's recorded ``distance`` is only
            compared, with a warning when different), ``append_query_to_gallery`` (``None``: the file's
            ``query_in_gallery``, the dataset's declared protocol; a file without it counts as ``False``, with a
            warning), ``ap_mode``, ``average``, ``rerank: {enabled, k1, k2, lambda_value}``.

    Raises:
        ValueError: ``evaluation.st.enabled`` (the file has no time stamps or training set); see also
            :func:`load_embeddings`.
    """
    ev = dict(evaluation)
    if (ev.get("st") or {}).get("enabled", False):
        raise ValueError("evaluation.st.enabled needs tracklet time stamps and the training set, which an "
                         "embeddings.npz does not hold; score it without st or evaluate the checkpoint")  # fmt: skip
    arrays = load_embeddings(path)
    distance = ev.get("distance", "cosine")
    saved = str(arrays["distance"]) if "distance" in arrays else None
    if saved is not None and saved != distance:
        log.warning("%s was exported for distance=%s; scoring with evaluation.distance=%s", path, saved, distance)
    override = ev.get("append_query_to_gallery")
    if "query_in_gallery" in arrays:
        declared = bool(arrays["query_in_gallery"])
    else:
        declared = False
        if override is None:
            log.warning("%s does not record its dataset's protocol (query_in_gallery); scoring without the queries "
                        "in the gallery (set evaluation.append_query_to_gallery to choose)", path)  # fmt: skip
    rerank = dict(ev.get("rerank") or {})
    kwargs: dict[str, Any] = dict(
        distance=distance,
        append_query_to_gallery=query_in_gallery_applied(declared, override),
        ap_mode=ev.get("ap_mode", "standard"),
        rerank=bool(rerank.pop("enabled", False)),
        rerank_kwargs=rerank,
    )
    if "average" in ev:
        kwargs["average"] = ev["average"]
    metric = ReIDMetric(**kwargs)
    q, g = torch.from_numpy(arrays["query_embeddings"]).float(), torch.from_numpy(arrays["gallery_embeddings"]).float()
    metric.update(
        torch.cat([q, g]),
        torch.from_numpy(np.concatenate([arrays["query_pids"], arrays["gallery_pids"]]).astype(np.int64)),
        torch.from_numpy(np.concatenate([arrays["query_camids"], arrays["gallery_camids"]]).astype(np.int64)),
        torch.arange(len(q) + len(g)) < len(q),
        indices=torch.arange(len(q) + len(g)),
    )
    return {k: float(v) for k, v in metric.compute().items()}


def fused_npz_metrics(npz: str, query: Sequence[Tracklet], gallery: Sequence[Tracklet], weights: Sequence[float],
                      evaluation: dict, color: torch.Tensor | None = None, size: tuple[int, int] = (128, 64)
                      ) -> tuple[dict[float, dict[str, float]], torch.Tensor]:  # fmt: skip
    """CMC/mAP of the network embeddings of ``npz`` (``evaluate.py export=true``) fused with the colour histograms
    of the same ``query + gallery`` tracklets at each weight of ``weights``; with ``evaluation.rerank.enabled``
    also ``rerank/<name>``: the fused distances k-reciprocal re-ranked (the evaluation's own re-ranking).

    Returns:
        ``({w: metrics}, colour embeddings (N, C))`` (pass the latter back as ``color`` to skip recomputing).
    Raises:
        ValueError: the file's tracklets (first-frame paths) are not ``query + gallery`` in order.
    """
    from vidreid.evaluation.baselines import color_histogram_embeddings
    from vidreid.evaluation.fusion import fuse_embeddings

    a = load_embeddings(npz)
    items = list(query) + list(gallery)
    paths = [str(p) for p in np.concatenate([a["query_paths"], a["gallery_paths"]])] if "query_paths" in a else None
    if paths is not None and paths != [str(t.frames[0]) for t in items]:
        raise ValueError(f"{npz}: its tracklets are not the configured query + gallery (first-frame paths differ)")
    if color is None:
        color = color_histogram_embeddings(items, size=size)
    net = torch.from_numpy(np.concatenate([a["query_embeddings"], a["gallery_embeddings"]]))
    rerank = dict(evaluation.get("rerank") or {})
    out = {}
    for w in weights:
        metric = ReIDMetric(distance="cosine", append_query_to_gallery=bool(a.get("query_in_gallery", False)),
                            average=evaluation.get("average", "valid"), rerank=bool(rerank.pop("enabled", False)),
                            rerank_kwargs=rerank)  # fmt: skip
        metric.update(fuse_embeddings(net, color, float(w)), torch.tensor([t.pid for t in items]),
                      torch.tensor([t.camid for t in items]), torch.arange(len(items)) < len(query),
                      indices=torch.arange(len(items)))  # fmt: skip
        out[float(w)] = {k: float(v) for k, v in metric.compute().items()}
    return out, color
