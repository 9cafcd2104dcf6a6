"""st-ReID spatial-temporal model and joint score (Wang et al., "Spatial-Temporal Person
Re-identification", AAAI 2019; reference Wanggcong/Spatial-Temporal-Re-identification).

docs/methods.md §5.3–5.5:

* :meth:`SpatialTemporalModel.fit` (``gen_st_model_market.py::spatial_temporal_distribution``): per training
  identity and camera the mean frame ``μ``; for each identity and unordered camera pair seen by it, one
  sample ``Δ = |μ_j − μ_k|`` in bin ``⌊Δ / bin_size⌋`` of ``H[later][earlier]``; each histogram is
  normalised to sum 1 (``H / (ΣH + 1e-7)``). Like the script, only pairs of cameras that the identity was
  seen in count (``gen_st_model_market.py`` l.68–69 skips a pair when either camera's count is 0; docs/methods.md
  §5.3 step 2, "both observed"). One difference: the mean is the true mean (the script divides the frame sum
  by ``count + 1e-7``, a relative error below 1e-7).
* :meth:`SpatialTemporalModel.smooth` (``evaluate_st.py::gauss_smooth2``): Parzen smoothing with a
  Gaussian kernel ``N(|u − v|; 0, σ)`` truncated to ``|u − v| ≤ 3σ``, then renormalised (eps 1e-7).
* :meth:`SpatialTemporalModel.score` (``evaluate_st.py::evaluate``): ``p_st`` of a query / gallery pair,
  indexed by the later camera first; same camera gives 0 (its histogram is all zero).
* :func:`joint_score`: ``P = f(s; λ0, γ0) · f(p_st; λ1, γ1)``, ``f(x; λ, γ) = 1 / (1 + λ e^{−γx})``.
* :func:`joint_distance`: ``2 − 2·P`` (st-ReID ``re_ranking.py``), ≥ 0 and ranking like ``−P``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SpatialTemporalModel", "fit_st_model", "joint_distance", "joint_score", "logistic"]

EPS = 1e-7


def _vec(x, name: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype).cpu()
    if t.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {tuple(t.shape)}")
    return t


def _normalise(hist: torch.Tensor) -> torch.Tensor:
    return hist / (hist.sum(-1, keepdim=True) + EPS)


@dataclass
class SpatialTemporalModel:
    """Camera-pair transit-time distributions.

    Attributes:
        hist: ``(num_cams, num_cams, num_bins)`` float64; ``hist[later, earlier, b]`` is the probability
            that a person seen by ``earlier`` reaches ``later`` after ``b·bin_size .. (b+1)·bin_size``
            frames. ``hist[c, c]`` is all zero.
        bin_size: frames per bin (100 in st-ReID).
    """

    hist: torch.Tensor
    bin_size: float = 100.0

    @property
    def num_cams(self) -> int:
        return self.hist.shape[0]

    @property
    def num_bins(self) -> int:
        return self.hist.shape[2]

    @classmethod
    def fit(
        cls,
        pids,
        camids,
        timestamps,
        num_cams: int,
        bin_size: float = 100.0,
        num_bins: int = 5000,
    ) -> SpatialTemporalModel:
        """Histograms from training samples (images or tracklets).

        Args:
            pids: ``(N,)`` int identity labels. camids: ``(N,)`` 0-based camera ids < ``num_cams``.
            timestamps: ``(N,)`` global frame numbers (for a tracklet its mean frame,
                :attr:`vidreid.data.tracklet.Tracklet.timestamp`).
            num_cams: camera slots (8 for Market / Duke in st-ReID). bin_size: frames per bin.
            num_bins: histogram length (5000 for Market, 3000 for Duke). A Δ beyond it is dropped with a
                warning (the reference script would fail with an IndexError).

        Raises:
            ValueError: on length mismatches, camera ids outside ``[0, num_cams)``, non-finite timestamps
                or non-positive ``bin_size`` / ``num_bins``.
        """
        pid = _vec(pids, "pids", torch.int64)
        cam = _vec(camids, "camids", torch.int64)
        t = _vec(timestamps, "timestamps", torch.float64)
        if not (len(pid) == len(cam) == len(t)):
            raise ValueError(f"pids/camids/timestamps: lengths {len(pid)}/{len(cam)}/{len(t)} differ")
        if bin_size <= 0 or num_bins <= 0:
            raise ValueError(f"bin_size={bin_size}, num_bins={num_bins}: expected both > 0")
        if len(cam) and (int(cam.min()) < 0 or int(cam.max()) >= num_cams):
            raise ValueError(f"camids: expected values in [0, {num_cams}), got [{int(cam.min())}, {int(cam.max())}]")
        if not torch.isfinite(t).all():
            raise ValueError("timestamps: expected finite frame numbers")
        _, ids = torch.unique(pid, return_inverse=True)
        n_ids = int(ids.max()) + 1 if len(ids) else 0
        total = torch.zeros(n_ids * num_cams, dtype=torch.float64).index_add_(0, ids * num_cams + cam, t)
        count = torch.zeros(n_ids * num_cams, dtype=torch.float64).index_add_(
            0, ids * num_cams + cam, torch.ones_like(t)
        )
        seen = (count > 0).view(n_ids, num_cams)
        mean = (total / count.clamp_min(1)).view(n_ids, num_cams)

        j, k = torch.triu_indices(num_cams, num_cams, offset=1)  # unordered pairs j < k
        both = seen[:, j] & seen[:, k]  # (ids, pairs)
        mj, mk = mean[:, j], mean[:, k]
        later = torch.where(mj > mk, j, k)  # ties go to the higher camera index, as in the script
        earlier = torch.where(mj > mk, k, j)
        bins = torch.floor((mj - mk).abs() / bin_size).long()
        keep = both & (bins < num_bins)
        dropped = int((both & (bins >= num_bins)).sum())
        if dropped:
            warnings.warn(
                f"SpatialTemporalModel.fit: {dropped} transit times exceed num_bins={num_bins} × bin_size={bin_size} "
                "frames and were dropped",
                stacklevel=2,
            )
        hist = torch.zeros(num_cams * num_cams * num_bins, dtype=torch.float64)
        flat = (later * num_cams + earlier) * num_bins + bins
        hist.index_add_(0, flat[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
        return cls(_normalise(hist.view(num_cams, num_cams, num_bins)), float(bin_size))

    def smooth(self, sigma: float = 50.0, truncate: float = 3.0) -> SpatialTemporalModel:
        """Parzen-smoothed copy: ``p[a][b] = normalise(M · H[a][b])``, ``M[u, v] = N(|u − v|; 0, σ)`` for
        ``|u − v| ≤ truncate·σ`` (bins), else 0; no reflection at the ends (``evaluate_st.py::gauss_smooth2``).

        Raises:
            ValueError: if ``sigma <= 0``.
        """
        if sigma <= 0:
            raise ValueError(f"sigma={sigma}: expected > 0")
        half = min(int(math.floor(truncate * sigma)), self.num_bins - 1)
        offsets = torch.arange(-half, half + 1, dtype=torch.float64)
        kernel = torch.exp(-(offsets**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
        x = self.hist.reshape(-1, 1, self.num_bins)
        smoothed = torch.nn.functional.conv1d(x, kernel.view(1, 1, -1), padding=half)  # symmetric kernel
        return SpatialTemporalModel(_normalise(smoothed.view_as(self.hist)), self.bin_size)

    def score(self, q_camids, q_times, g_camids, g_times, chunk_size: int = 1024) -> torch.Tensor:
        """Spatial-temporal probability ``p_st`` of every query / gallery pair.

        Args:
            q_camids, q_times: ``(Nq,)`` 0-based cameras and frame numbers; g_camids, g_times: ``(Ng,)``.
            chunk_size: query rows computed at once.

        Returns:
            ``(Nq, Ng)`` float64: ``hist[c_q, c_g, ⌊(t_q − t_g)/bin⌋]`` if ``t_q > t_g`` else
            ``hist[c_g, c_q, ⌊(t_g − t_q)/bin⌋]``; 0 beyond ``num_bins`` and for the same camera.

        Raises:
            ValueError: on length mismatches or camera ids outside ``[0, num_cams)``.
        """
        qc, gc = _vec(q_camids, "q_camids", torch.int64), _vec(g_camids, "g_camids", torch.int64)
        qt, gt = _vec(q_times, "q_times", torch.float64), _vec(g_times, "g_times", torch.float64)
        if len(qc) != len(qt) or len(gc) != len(gt):
            raise ValueError(f"camids/times lengths differ: query {len(qc)}/{len(qt)}, gallery {len(gc)}/{len(gt)}")
        for name, c in (("q_camids", qc), ("g_camids", gc)):
            if len(c) and (int(c.min()) < 0 or int(c.max()) >= self.num_cams):
                raise ValueError(
                    f"{name}: expected values in [0, {self.num_cams}), got [{int(c.min())}, {int(c.max())}]"
                )
        nc, nb = self.num_cams, self.num_bins
        flat_hist = self.hist.reshape(-1)
        out = torch.empty(len(qc), len(gc), dtype=torch.float64)
        for a in range(0, len(qc), chunk_size):
            b = min(len(qc), a + chunk_size)
            diff = qt[a:b, None] - gt[None, :]
            q_later = diff > 0
            bins = torch.floor(diff.abs() / self.bin_size).long()
            later = torch.where(q_later, qc[a:b, None], gc[None, :])
            earlier = torch.where(q_later, gc[None, :], qc[a:b, None])
            inside = bins < nb
            idx = (later * nc + earlier) * nb + bins.clamp_max(nb - 1)
            out[a:b] = torch.where(inside, flat_hist[idx], torch.zeros((), dtype=torch.float64))
        return out


def logistic(x, lam: float, gamma: float):
    """``f(x; λ, γ) = 1 / (1 + λ·e^{−γx})`` (st-ReID logistic smoothing, docs/methods.md §5.4)."""
    return 1.0 / (1.0 + lam * torch.exp(-gamma * torch.as_tensor(x, dtype=torch.float64)))


def joint_score(
    visual_sim, p_st, lambda0: float = 1.0, gamma0: float = 5.0, lambda1: float = 2.0, gamma1: float = 5.0
) -> torch.Tensor:
    """``P_joint = f(s; λ0, γ0) · f(p_st; λ1, γ1)`` (``evaluate_st.py``: ``--alpha`` sets both γ).

    Args:
        visual_sim: ``(Nq, Ng)`` visual similarity ``s`` (cosine of L2-normalised features, in [−1, 1]).
        p_st: ``(Nq, Ng)`` from :meth:`SpatialTemporalModel.score`.

    Returns:
        ``(Nq, Ng)`` float64 in (0, 1); larger = more likely the same person.

    Raises:
        ValueError: if the shapes differ.
    """
    s, p = torch.as_tensor(visual_sim), torch.as_tensor(p_st)
    if s.shape != p.shape:
        raise ValueError(f"visual_sim {tuple(s.shape)} and p_st {tuple(p.shape)}: expected equal shapes")
    return logistic(s, lambda0, gamma0) * logistic(p, lambda1, gamma1)


def joint_distance(p_joint) -> torch.Tensor:
    """Distance ``2 − 2·P_joint`` (st-ReID ``re_ranking.py``): ≥ 0, same order as ``−P_joint``.

    Use it with :func:`vidreid.evaluation.evaluate_ranking`, and with
    :func:`vidreid.evaluation.k_reciprocal_rerank` ``(..., square=False)`` to reproduce st-ReID's
    re-ranking (which scales each column by its maximum and does not square, docs/methods.md §5.5).
    """
    return 2.0 - 2.0 * torch.as_tensor(p_joint, dtype=torch.float64)


def fit_st_model(
    data,
    bin_size: float = 100.0,
    sigma: float = 50.0,
    num_bins: int | None = None,
    **_: object,
) -> SpatialTemporalModel:
    """Fit and smooth the spatial-temporal model on a dataset's training split (docs/methods.md §5.3).

    Each training tracklet contributes its mean global frame (:attr:`Tracklet.timestamp`); for image sets a
    "tracklet" is one image, as in st-ReID. Works for video sets whose frame names carry global frame numbers
    (DukeMTMC-VideoReID) — the tracklet's mean frame is its time.

    Args:
        data: a :class:`~vidreid.data.tracklet.ReIDDataset`.
        bin_size: frames per bin (100). sigma: Parzen smoothing width in bins (50).
        num_bins: histogram length; ``None`` = enough bins for the largest time span in the data.
        **_: other ``evaluation.st`` options (the logistic constants) are ignored here.

    Raises:
        ValueError: if a training, query or gallery tracklet has no timestamp.
    """
    items = list(data.train) + list(data.query) + list(data.gallery)
    missing = [t for t in items if t.timestamp is None]
    if missing:
        raise ValueError(
            f"evaluation.st.enabled needs global frame numbers, but {len(missing)} tracklets of {data.name!r} have "
            f"none (e.g. {missing[0].frames[0]}); set evaluation.st.enabled=false"
        )
    times = [t.timestamp for t in items]
    if num_bins is None:
        num_bins = int((max(times) - min(times)) // bin_size) + 1
    num_cams = max(t.camid for t in items) + 1
    model = SpatialTemporalModel.fit(
        [t.pid for t in data.train], [t.camid for t in data.train], [t.timestamp for t in data.train],
        num_cams=num_cams, bin_size=bin_size, num_bins=num_bins,
    )
    return model.smooth(sigma)
