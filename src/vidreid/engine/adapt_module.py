"""LightningModule of unsupervised adaptation on unlabelled tracklets (``experiment=video_adapt``; docs/methods.md,
"Learning from unlabelled video"): :class:`ReIDLitModule` whose training objective is one of the memory-based
objectives of :mod:`vidreid.losses.unsupervised` instead of identity CE + triplet on labels.

The training set is ``dataset=track_runs`` (:class:`vidreid.data.datasets.track_runs.TrackRuns`): pid = tracklet
index, ``extra["cannot_link"]`` the co-occurrence cannot-links. When the fit starts the memory holds one feature per
tracklet, embedded by the starting network (eval mode, ``init_frames`` evenly spaced crops per tracklet); each
training sample then updates its tracklet's row by momentum.

Methods (``adapt.method``):
    ``utal``: per-camera tracklet discrimination + ``assoc_weight`` × cross-tracklet association (TAUDL/UTAL);
    the association neighbours (mutual ``k`` nearest, never a cannot-link, ``cross_camera_only`` to restrict to
    other cameras as in UTAL) are recomputed from the memory at every epoch start.
    ``cluster_contrast``: at every epoch start the memory is clustered (constrained agglomerative clustering,
    threshold = ``quantile`` of the cannot-link distances) and ClusterNCE trains against one momentum feature per
    cluster (Dai et al. 2021). With ``pseudo_labels: track`` the clusters are instead the identities ``track.py``'s
    association gave the tracklets (``extra["identities"]`` of ``dataset=track_runs``: the same constrained
    clustering, with the motion gate, the gap limit and the hidden-in-place rule that a feature-only clustering
    lacks), fixed for the whole fit.

Checkpoints are plain ``ReIDLitModule`` checkpoints (the memory is not saved; ``adapt`` is recorded in the
hyper-parameters), so ``evaluate.py``, ``track.py`` and :func:`vidreid.embed` read them as any other.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader

from vidreid.data.clip_sampling import ClipSampler
from vidreid.data.video_dataset import TestTrackletDataset, collate_tracklets
from vidreid.engine.lit_module import ReIDLitModule
from vidreid.evaluation.features import DEFAULT_MAX_CLIPS_PER_FORWARD, embed_tracklet_batch
from vidreid.losses.unsupervised import (
    TrackletMemory,
    cluster_nce,
    mutual_neighbours,
    per_camera_tracklet_nce,
    pseudo_labels,
    tracklet_association_nce,
)
from vidreid.runtime.config import plain

log = logging.getLogger(__name__)

__all__ = ["ADAPT_DEFAULTS", "AdaptLitModule"]

METHODS = ("utal", "cluster_contrast")
PSEUDO_LABELS = ("memory", "track")
ADAPT_DEFAULTS = dict(method="utal", tau=0.05, momentum=0.2, assoc_weight=1.0, k=2,
                      cross_camera_only=False, quantile=0.05, threshold=None, init_frames=8,
                      pseudo_labels="memory", frozen_bn=False)  # fmt: skip


class AdaptLitModule(ReIDLitModule):
    """:class:`ReIDLitModule` trained by an unsupervised tracklet objective (module docstring).

    Args:
        adapt: ``{method: utal|cluster_contrast, tau, momentum, assoc_weight, k, cross_camera_only, quantile,
            threshold, init_frames, pseudo_labels: memory|track, frozen_bn}`` (:data:`ADAPT_DEFAULTS` for the
            missing keys; ``pseudo_labels`` is read by ``cluster_contrast`` only). ``frozen_bn``: every batch-norm
            layer stays in eval mode while training (running statistics of the starting network, not the batch's),
            so training features live in the space of the memory, which was embedded in eval mode.
        the others: :class:`ReIDLitModule`'s (its ``criterion`` is built but not used in training).
    Raises:
        ValueError: unknown method or key; at fit start, a training set without ``extra["cannot_link"]`` (not
            ``dataset=track_runs``) or whose pids are not ``0..N-1`` one per tracklet.
    """

    def __init__(self, net, loss, optimizer, scheduler, evaluation, num_classes: int, compile: bool | dict = False,
                 backbone_lr_mult: float = 1.0, freeze_backbone_epochs: int = 0, finite_check_every_n_steps: int = 50,
                 criterion=None, adapt: dict | None = None):  # fmt: skip
        # a plain dict before Lightning collects the init arguments as hyper-parameters: the checkpoint must hold
        # plain containers only (read with weights_only=True)
        adapt = dict(plain(adapt) or {})
        net, loss, optimizer, scheduler, evaluation, criterion, compile = (
            plain(x) for x in (net, loss, optimizer, scheduler, evaluation, criterion, compile))
        super().__init__(net, loss, optimizer, scheduler, evaluation, num_classes, compile, backbone_lr_mult,
                         freeze_backbone_epochs, finite_check_every_n_steps, criterion)  # fmt: skip
        cfg = dict(adapt)
        unknown = sorted(set(cfg) - set(ADAPT_DEFAULTS))
        if unknown:
            raise ValueError(f"adapt: unknown keys {unknown}; expected {sorted(ADAPT_DEFAULTS)}")
        self.adapt_cfg = {**ADAPT_DEFAULTS, **cfg}
        if self.adapt_cfg["method"] not in METHODS:
            raise ValueError(f"adapt.method={self.adapt_cfg['method']!r}: expected one of {METHODS}")
        if self.adapt_cfg["pseudo_labels"] not in PSEUDO_LABELS:
            raise ValueError(f"adapt.pseudo_labels={self.adapt_cfg['pseudo_labels']!r}: expected one of {PSEUDO_LABELS}")
        self.hparams["adapt"] = dict(self.adapt_cfg)
        self.memory: TrackletMemory | None = None
        self.centroids: TrackletMemory | None = None
        self.labels: torch.Tensor | None = None
        self.neighbours: torch.Tensor | None = None
        self.mem_camids: torch.Tensor | None = None
        self.forbid: np.ndarray | None = None
        self.track_labels: np.ndarray | None = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ memory
    @torch.no_grad()
    def embed_tracklets(self, tracklets, dm) -> torch.Tensor:
        """``(N, D)`` eval-mode embeddings of ``tracklets`` from ``init_frames`` evenly spaced crops each (one clip
        per ``T`` of them, averaged), with the test preprocessing of the datamodule ``dm``."""
        n = int(self.adapt_cfg["init_frames"])
        clip = ClipSampler(seq_len=dm.clip.seq_len, train_scheme="restricted_random", test_scheme="all_frames")
        from vidreid.data.tracklet import Tracklet

        short = []
        for t in tracklets:
            idx = np.linspace(0, len(t) - 1, min(n, len(t))).round().astype(int)
            short.append(Tracklet(tuple(t.frames[i] for i in idx), t.pid, t.camid))
        ds = TestTrackletDataset(short, [], clip, dm.size, dm.transform_cfg.get("test_interpolation", "bilinear"),
                                 dm.skip_corrupt)  # fmt: skip
        loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=0, collate_fn=collate_tracklets)
        was = self.net.training
        self.net.eval()
        out = []
        chunk = self.eval_cfg.get("max_clips_per_forward", DEFAULT_MAX_CLIPS_PER_FORWARD)
        for batch in loader:
            out.append(embed_tracklet_batch(self.net, move_data_to_device(batch, self.device), chunk).float())
        self.net.train(was)
        return torch.cat(out)

    def on_fit_start(self) -> None:
        self.init_memory(self.trainer.datamodule)

    def init_memory(self, dm) -> None:
        """Build the tracklet memory from the training tracklets of the set-up datamodule ``dm`` (its ``data``
        must be ``dataset=track_runs``: pids ``0..N-1``, ``extra["cannot_link"]``)."""
        data = dm.data
        extra = getattr(data, "extra", {}) or {}
        if "cannot_link" not in extra:
            raise ValueError(f"adaptation needs unlabelled tracklets with co-occurrence cannot-links "
                             f"(dataset=track_runs); the training set {data.name!r} has none")  # fmt: skip
        pids = [t.pid for t in data.train]
        if pids != list(range(len(pids))):
            raise ValueError("adaptation expects one pseudo-identity per training tracklet (pids 0..N-1 in order, "
                             "as dataset=track_runs gives); a validation split (data.val_identities) breaks that: "
                             "set data.val_identities=0")  # fmt: skip
        self.forbid = np.asarray(extra["cannot_link"], bool)
        if self.adapt_cfg["method"] == "cluster_contrast" and self.adapt_cfg["pseudo_labels"] == "track":
            if "identities" not in extra:
                raise ValueError(f"adapt.pseudo_labels=track reads the identities of track.py's association (pids in "
                                 f"each run's tracklets.npz); the training set {data.name!r} has none")  # fmt: skip
            self.track_labels = np.unique(np.asarray(extra["identities"]), return_inverse=True)[1].astype(np.int64)
        self.mem_camids = torch.tensor([t.camid for t in data.train], device=self.device)
        feats = self.embed_tracklets(data.train, dm)
        self.memory = TrackletMemory(feats, self.adapt_cfg["momentum"])
        log.info("adaptation (%s): memory of %d tracklets x %d, %d cannot-link pairs", self.adapt_cfg["method"],
                 len(feats), feats.shape[1], int(np.triu(self.forbid, 1).sum()))  # fmt: skip

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if self.adapt_cfg["frozen_bn"]:
            for m in self.net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.memory is None:
            return
        mem = self.memory.features
        if self.adapt_cfg["method"] == "cluster_contrast":
            if self.track_labels is not None:
                labels, thr = self.track_labels, float("nan")
            else:
                labels, thr = pseudo_labels(mem, self.forbid, self.adapt_cfg["quantile"], self.adapt_cfg["threshold"])
            self.labels = torch.from_numpy(labels).to(mem.device)
            k = int(labels.max()) + 1
            cent = torch.zeros(k, mem.shape[1], device=mem.device).index_add_(0, self.labels, mem)
            self.centroids = TrackletMemory(cent, self.adapt_cfg["momentum"])
            log.info("epoch %d: %d tracklets -> %d pseudo-identities (threshold %.3f)", self.current_epoch,
                     len(labels), k, thr)  # fmt: skip
            if self._trainer is not None:
                self.log("train/clusters", float(k), on_epoch=True, on_step=False)
        else:
            allowed = torch.from_numpy(~self.forbid).to(mem.device)
            if self.adapt_cfg["cross_camera_only"]:
                allowed &= self.mem_camids[:, None] != self.mem_camids[None, :]
            self.neighbours = mutual_neighbours(mem, allowed, int(self.adapt_cfg["k"]))
            log.info("epoch %d: %d mutual association pairs", self.current_epoch, int(self.neighbours.sum()) // 2)

    # ------------------------------------------------------------------ training
    def compute_losses(self, clips: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The adaptation terms of one batch of ``clips (B, T, 3, H, W)`` of tracklets ``pids (B,)`` (memory rows);
        ``loss`` is their weighted sum."""
        if self.memory is None:
            raise RuntimeError("the tracklet memory is built when the fit starts (on_fit_start); call trainer.fit")
        out = self.net(clips)
        feats = torch.cat(out.bn_features, dim=1)
        if feats.shape[1] != self.memory.features.shape[1]:
            raise ValueError(f"training feature width {feats.shape[1]} != memory width {self.memory.features.shape[1]}"
                             " (the test embedding): adaptation needs test_feature=post_bn")  # fmt: skip
        mem = self.memory.features
        cfg = self.adapt_cfg
        terms: dict[str, torch.Tensor] = {}
        if cfg["method"] == "cluster_contrast":
            assert self.labels is not None and self.centroids is not None
            terms["cluster_nce"] = cluster_nce(feats, self.labels[pids], self.centroids.features, cfg["tau"])
        else:
            assert self.neighbours is not None
            camids = self.mem_camids[pids]
            terms["tracklet_nce"] = per_camera_tracklet_nce(feats, pids, mem, self.mem_camids, camids, cfg["tau"])
            if cfg["assoc_weight"]:
                terms["assoc_nce"] = cfg["assoc_weight"] * tracklet_association_nce(feats, pids, mem, self.neighbours,
                                                                                    cfg["tau"])  # fmt: skip
        terms["loss"] = sum(terms.values())
        self._pending = (F.normalize(feats.detach(), dim=1), pids.detach())
        return terms

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._pending is None:
            return
        feats, rows = self._pending
        self._pending = None
        self.memory.update(feats, rows)
        if self.adapt_cfg["method"] == "cluster_contrast":
            self.centroids.update(feats, self.labels[rows])
