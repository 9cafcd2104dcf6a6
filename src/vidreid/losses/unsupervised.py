"""Unsupervised objectives on unlabelled tracklets (docs/methods.md, "Learning from unlabelled video").

A tracklet of a tracker is one person for sure; two tracklets co-occurring in one camera are two people for sure
(the cannot-link of :func:`vidreid.video.associate.cannot_link`). Two families of objectives learn from that:

* **Tracklet discrimination + association** (TAUDL, Li, Zhu & Gong, ECCV 2018; UTAL, Li, Zhu & Gong, TPAMI 2019):
  :func:`per_camera_tracklet_nce` — every tracklet is its own class *within its camera* (non-parametric: the
  classifier weights are a memory of tracklet features, as UTAL's per-camera tracklet discrimination), so
  tracklets of other cameras, which may be the same person, are never pushed away;
  :func:`tracklet_association_nce` — each tracklet is also pulled towards its mutual nearest neighbours among the
  tracklets it may be (not cannot-linked), UTAL's cross-camera tracklet association (its "cyclic ranking"
  consistency is the mutual-neighbour test here). On single-camera footage the candidates are the same camera's
  tracklets that do not co-occur (re-entries), which is what association on one video needs.
* **Cluster contrast** (Dai, Wang, Yuan, Zhu & Wang, "Cluster Contrast for Unsupervised Person Re-Identification",
  2021): tracklet features are clustered into pseudo-identities — here by the constrained agglomerative clustering
  ``track.py`` uses (:func:`vidreid.video.associate.agglomerate`, cannot-links respected, threshold = a quantile of
  the known different-person distances, :func:`pseudo_labels`) — and :func:`cluster_nce` (InfoNCE against one
  momentum-updated feature per cluster) pulls each sample to its cluster and away from the others.

Every feature and memory row is L2-normalised; similarities are cosines divided by a temperature ``tau``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vidreid.video.associate import agglomerate, auto_threshold, cosine_distances

__all__ = ["TrackletMemory", "cluster_nce", "mutual_neighbours", "per_camera_tracklet_nce", "pseudo_labels",
           "tracklet_association_nce"]  # fmt: skip


class TrackletMemory:
    """One L2-normalised feature per row (a tracklet or a cluster), updated by momentum:
    ``m_i <- normalise(mu * m_i + (1 - mu) * f)`` for each batch feature ``f`` of row ``i`` (the memory of UTAL and
    of Cluster Contrast). Not a module buffer: it is rebuilt from the data when a fit starts and never saved.

    Args:
        features: ``(N, D)`` initial features (normalised here). momentum: ``mu`` in ``[0, 1)``.
    Raises:
        ValueError: ``features`` not 2-D / not finite, or ``momentum`` out of range.
    """

    def __init__(self, features: Tensor, momentum: float = 0.2):
        if features.ndim != 2 or not torch.isfinite(features).all():
            raise ValueError(f"memory features must be a finite (N, D) tensor, got shape {tuple(features.shape)}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"memory momentum must be in [0, 1), got {momentum}")
        self.features = F.normalize(features.detach().float(), dim=1).clone()
        self.momentum = float(momentum)

    def __len__(self) -> int:
        return len(self.features)

    @torch.no_grad()
    def update(self, feats: Tensor, rows: Tensor) -> None:
        """Momentum update with ``feats (B, D)`` (detached, normalised here) of rows ``rows (B,)`` in batch order
        (a row seen several times in the batch is updated once per sample, in order)."""
        f = F.normalize(feats.detach().float(), dim=1).to(self.features.device)
        for x, r in zip(f, rows.tolist()):
            self.features[r] = F.normalize(self.momentum * self.features[r] + (1 - self.momentum) * x, dim=0)


def per_camera_tracklet_nce(feats: Tensor, rows: Tensor, memory: Tensor, mem_camids: Tensor,
                            camids: Tensor, tau: float = 0.1) -> Tensor:  # fmt: skip
    """Per-camera tracklet discrimination (UTAL §3.1, non-parametric): softmax over the memory rows of the
    sample's own camera, target = its own tracklet.

    Args:
        feats: ``(B, D)`` batch features (normalised here). rows: ``(B,)`` their tracklet rows of the memory.
        memory: ``(N, D)`` normalised tracklet features. mem_camids: ``(N,)`` camera of each row. camids: ``(B,)``.
        tau: temperature.
    Returns:
        Scalar mean cross-entropy.
    """
    logits = F.normalize(feats, dim=1) @ memory.t() / tau  # (B, N)
    logits = logits.masked_fill(camids[:, None] != mem_camids[None, :], float("-inf"))
    return F.cross_entropy(logits, rows)


@torch.no_grad()
def mutual_neighbours(memory: Tensor, allowed: Tensor, k: int = 2) -> Tensor:
    """``(N, N)`` bool: ``j`` is among the ``k`` nearest allowed rows of ``i`` *and* ``i`` among those of ``j``
    (UTAL's cyclic ranking consistency, by cosine similarity of the memory).

    Args:
        memory: ``(N, D)`` normalised. allowed: ``(N, N)`` bool candidate pairs (diagonal ignored). k: neighbours.
    """
    n = len(memory)
    sim = memory @ memory.t()
    ok = allowed.clone().bool()
    ok.fill_diagonal_(False)
    sim = sim.masked_fill(~ok, float("-inf"))
    kk = min(k, max(n - 1, 0))
    if kk == 0:
        return torch.zeros(n, n, dtype=torch.bool, device=memory.device)
    top = sim.topk(kk, dim=1).indices
    knn = torch.zeros(n, n, dtype=torch.bool, device=memory.device)
    knn.scatter_(1, top, True)
    return knn & knn.t() & ok


def tracklet_association_nce(feats: Tensor, rows: Tensor, memory: Tensor, neighbours: Tensor,
                             tau: float = 0.1) -> Tensor:  # fmt: skip
    """Cross-tracklet association (UTAL §3.2): ``-log Σ_{j ∈ {i} ∪ N(i)} softmax(f·M / tau)_j`` over the whole
    memory, ``N(i)`` the association neighbours of the sample's tracklet ``i`` (:func:`mutual_neighbours`).

    Args:
        feats: ``(B, D)``. rows: ``(B,)``. memory: ``(N, D)``. neighbours: ``(N, N)`` bool. tau: temperature.
    Returns:
        Scalar mean over the batch.
    """
    logp = F.log_softmax(F.normalize(feats, dim=1) @ memory.t() / tau, dim=1)  # (B, N)
    pos = neighbours[rows].clone()
    pos[torch.arange(len(rows), device=rows.device), rows] = True
    return -(torch.logsumexp(logp.masked_fill(~pos, float("-inf")), dim=1)).mean()


def cluster_nce(feats: Tensor, labels: Tensor, centroids: Tensor, tau: float = 0.05) -> Tensor:
    """ClusterNCE (Cluster Contrast, Dai et al. 2021, Eq. 3): InfoNCE of each sample against one feature per
    cluster, positive = its own cluster.

    Args:
        feats: ``(B, D)`` (normalised here). labels: ``(B,)`` cluster of each sample. centroids: ``(K, D)``
            normalised cluster memory. tau: temperature (0.05 in the paper).
    """
    return F.cross_entropy(F.normalize(feats, dim=1) @ centroids.t() / tau, labels)


def pseudo_labels(memory: Tensor, forbid: np.ndarray, quantile: float = 0.05, threshold: float | None = None,
                  linkage: str = "average") -> tuple[np.ndarray, float]:  # fmt: skip
    """Pseudo-identities of the memory rows by the constrained agglomerative clustering of ``track.py``
    (:func:`vidreid.video.associate.agglomerate`): merge while the closest allowed pair of clusters is nearer than
    ``threshold``, never across a cannot-link.

    Args:
        memory: ``(N, D)`` tracklet features. forbid: ``(N, N)`` bool cannot-links.
        quantile: ``threshold=None``: the threshold is this quantile of the cosine distances of the cannot-link
            pairs (:func:`vidreid.video.associate.auto_threshold`), i.e. a merge needs a pair closer than
            ``1 - quantile`` of the pairs known to be different people in this footage.
        threshold: a fixed cosine-distance threshold instead. linkage: as :func:`agglomerate`.
    Returns:
        ``(labels (N,) int64 0..K-1, threshold used)``.
    Raises:
        ValueError: no ``threshold`` and fewer than 10 cannot-link pairs to set one from.
    """
    dist = cosine_distances(memory)
    if threshold is None:
        threshold, n = auto_threshold(dist, forbid, quantile)
        if threshold is None:
            raise ValueError(f"only {n} cannot-link pairs (co-occurring tracklets) in the training tracklets: too "
                             "few to set the clustering threshold from; set adapt.threshold to a cosine distance")  # fmt: skip
    return agglomerate(dist, float(threshold), forbid, linkage), float(threshold)
