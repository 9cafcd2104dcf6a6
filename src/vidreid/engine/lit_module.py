"""LightningModule: ReIDNet training with identity + batch-hard triplet + the aggregator's own losses,
and query/gallery evaluation (docs/architecture.md §3.6).

Built by Hydra from the ``model`` node (``conf/train.yaml``; lightning-hydra-template style)::

    model = hydra.utils.instantiate(cfg.model, num_classes=datamodule.num_classes)

The node has ``_recursive_: false``: the module receives the ``net``, ``loss``, ``optimizer``, ``scheduler`` and
``evaluation`` nodes as plain configs, builds the network and the losses itself, and saves every argument as
its hyper-parameters (``save_hyperparameters(logger=False)``), so ``ReIDLitModule.load_from_checkpoint(path)``
rebuilds exactly the trained module.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from vidreid.data.batch import TestBatch
from vidreid.data.tracklet import query_in_gallery_applied
from vidreid.engine.schedulers import build_scheduler
from vidreid.evaluation.features import DEFAULT_MAX_CLIPS_PER_FORWARD, embed_tracklet_batch
from vidreid.evaluation.metric import METRIC_NAMES, ReIDMetric
from vidreid.evaluation.spatial_temporal import fit_st_model
from vidreid.losses.criterion import Criterion
from vidreid.runtime.config import plain

__all__ = ["NonFiniteLossError", "ReIDLitModule"]


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN/Inf; the message gives the step and every loss term."""


class ReIDLitModule(pl.LightningModule):
    """Args:
        net: the ``ReIDNet`` config (``_target_``, ``backbone``, ``aggregator``, head options); built with
            ``num_classes``.
        loss: ``{ce_weight, label_smoothing, triplet_weight, triplet_margin, triplet_distance,
            triplet_soft_margin, triplet_feature: post_bn|pre_bn}`` — the generic settings the criterion config
            interpolates; used directly only when ``criterion`` is ``None``.
        criterion: the :class:`~vidreid.losses.criterion.Criterion` config (``conf/criterion/``: named, weighted terms,
            each logged as ``train/<name>``); ``None`` = identity CE + triplet from ``loss``
            (:meth:`Criterion.from_loss_config`).
        optimizer: a Hydra partial of a ``torch.optim`` class (``_partial_: true``), called with the parameter
            groups (the backbone's at ``lr × backbone_lr_mult``).
        scheduler: a ``torch.optim.lr_scheduler`` config (``_target_``; see :func:`vidreid.engine.schedulers.build_scheduler`),
            stepped once per epoch.
        evaluation: ``{distance, append_query_to_gallery, ap_mode, average, max_clips_per_forward, rerank, st}``.
            ``append_query_to_gallery: null`` applies the test dataset's declared protocol
            (``ReIDDataset.query_in_gallery``: MARS) to the test metric; validation never appends.
        num_classes: training identities.
        compile: ``torch.compile`` the network in place (``nn.Module.compile``): the state dict keeps the plain
            parameter names, so the checkpoint holds one copy of the weights and loads without compile. ``true``
            or a dict of ``torch.compile`` keyword arguments (e.g. ``{mode: max-autotune}``, ``{backend: eager}``).
        backbone_lr_mult: the backbone's learning rate is ``optimizer.lr × backbone_lr_mult`` (PCB: 0.1).
        freeze_backbone_epochs: for the first this many epochs the backbone is frozen — eval mode (BN running
            statistics and dropout fixed) and no optimizer update (its gradients are dropped before each step, so
            Adam's moments and weight decay leave it untouched) — while the randomly initialised aggregator and
            heads train on the pretrained features; then everything trains. fast-reid's ``SOLVER.FREEZE_ITERS``
            (``fastreid/engine/hooks.py`` ``LayerFreeze``), counted in epochs. DDP-safe: gradients are still
            computed and reduced. 0 = off.
        finite_check_every_n_steps: on an accelerator, the loss is checked for NaN/Inf (a host sync) every this
            many steps and on each epoch's last batch; between checks a device-side flag remembers the first bad
            step. On the CPU every step is checked (no sync to save).

    Raises:
        ValueError: ``loss.triplet_feature`` is not ``post_bn``/``pre_bn``; a criterion term is misconfigured.
    """

    #: ``None``: defer the NaN/Inf check (a device flag, synced every ``finite_check_every_n_steps``) on
    #: accelerators only; ``True``/``False`` forces it (tests exercise the deferred path on the CPU).
    defer_finite_check: bool | None = None

    def __init__(
        self,
        net: DictConfig | dict,
        loss: DictConfig | dict,
        optimizer: DictConfig | dict,
        scheduler: DictConfig | dict,
        evaluation: DictConfig | dict,
        num_classes: int,
        compile: bool | dict = False,
        backbone_lr_mult: float = 1.0,
        freeze_backbone_epochs: int = 0,
        finite_check_every_n_steps: int = 50,
        criterion: DictConfig | dict | None = None,
    ):
        super().__init__()
        net, loss, optimizer, scheduler, evaluation, criterion, compile = (
            plain(x) for x in (net, loss, optimizer, scheduler, evaluation, criterion, compile)
        )
        self.save_hyperparameters(logger=False)
        self.net = instantiate(net, num_classes=num_classes)
        if compile:
            self.net.compile(**(compile if isinstance(compile, dict) else {}))
        self.loss_cfg = dict(loss)
        self.eval_cfg = dict(evaluation)
        self.criterion = Criterion.from_loss_config(self.loss_cfg) if criterion is None else instantiate(criterion)
        metric_kwargs = dict(
            distance=self.eval_cfg.get("distance", "cosine"),
            ap_mode=self.eval_cfg.get("ap_mode", "standard"),
            average=self.eval_cfg.get("average", "valid"),
        )
        rerank = dict(self.eval_cfg.get("rerank") or {})
        st = dict(self.eval_cfg.get("st") or {})
        self.val_metric = ReIDMetric(**metric_kwargs, append_query_to_gallery=bool(self.eval_cfg.get("append_query_to_gallery")))
        # the final test also reports re-ranked and spatial-temporal numbers when enabled (C1)
        self.test_metric = ReIDMetric(
            **metric_kwargs,
            rerank=bool(rerank.pop("enabled", False)),
            rerank_kwargs=rerank,
            st=st if st.pop("enabled", False) else None,
        )
        self._first_bad_step: torch.Tensor | None = None

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Eval-mode embedding ``(B, D)`` of clips ``(B, T, 3, H, W)``."""
        return self.net(clips)

    # ------------------------------------------------------------------ training
    def compute_losses(self, clips: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """All weighted loss terms of one batch (the criterion's names); ``loss`` is their sum."""
        return self.criterion(self.net(clips), pids)

    def _check_finite(self, terms: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Raise :class:`NonFiniteLossError` on a NaN/Inf loss without a host sync on every accelerator step."""
        loss = terms["loss"].detach()
        defer = loss.device.type != "cpu" if self.defer_finite_check is None else self.defer_finite_check
        if not defer:
            bad_step = None if torch.isfinite(loss) else self.global_step
        else:
            step = torch.tensor(self.global_step, device=loss.device)
            if self._first_bad_step is None:
                self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
            new_bad = ~torch.isfinite(loss) & (self._first_bad_step < 0)
            self._first_bad_step = torch.where(new_bad, step, self._first_bad_step)
            every = max(int(self.hparams.finite_check_every_n_steps), 1)
            if (self.global_step + 1) % every and not (self.trainer and self.trainer.is_last_batch):
                return
            first = int(self._first_bad_step)  # the only host sync: every N steps and at epoch end
            bad_step = None if first < 0 else first
        if bad_step is not None:
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            where = f"epoch {self.current_epoch}, batch {batch_idx}"
            if bad_step != self.global_step:
                where = f"detected at step {self.global_step}, {where}"
            raise NonFiniteLossError(
                f"non-finite training loss at global step {bad_step} ({where}): {detail}. The last good checkpoint "
                "is kept; lower the lr or use bf16/fp32."
            )

    def _backbone_frozen(self) -> bool:
        return self.current_epoch < int(self.hparams.get("freeze_backbone_epochs", 0) or 0)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # per batch: Lightning puts the module back in train mode after each validation
        if self._backbone_frozen():
            self.net.backbone.eval()

    def on_train_epoch_start(self) -> None:
        if not self._backbone_frozen() and not self.net.backbone.training and self.net.training:
            self.net.backbone.train()

    def on_before_optimizer_step(self, optimizer) -> None:
        if self._backbone_frozen():
            for p in self.net.backbone.parameters():
                p.grad = None

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        clips, pids, _ = batch
        terms = self.compute_losses(clips, pids)
        self._check_finite(terms, batch_idx)
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach(), on_step=True, on_epoch=True, prog_bar=k == "loss", batch_size=len(pids))
        return terms["loss"]

    def configure_optimizers(self):
        backbone = [p for p in self.net.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        rest = [p for p in self.net.parameters() if p.requires_grad and id(p) not in ids]
        opt_cfg = self.hparams.optimizer
        lr = opt_cfg["lr"]
        groups = [{"params": backbone, "lr": lr * self.hparams.backbone_lr_mult}, {"params": rest, "lr": lr}]
        opt = instantiate(opt_cfg)(params=[g for g in groups if g["params"]])
        sched = build_scheduler(self.hparams.scheduler, opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ evaluation
    def _embed(self, batch: TestBatch) -> torch.Tensor:
        chunk = self.eval_cfg.get("max_clips_per_forward", DEFAULT_MAX_CLIPS_PER_FORWARD)
        return embed_tracklet_batch(self.net, batch, chunk)

    def _eval_step(self, batch: TestBatch, metric: ReIDMetric) -> None:
        metric.update(self._embed(batch), batch.pids, batch.camids, batch.is_query, timestamps=batch.timestamps,
                      indices=batch.indices)  # fmt: skip

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metric)

    def on_validation_epoch_end(self) -> None:
        res = self.val_metric.compute()
        self.val_metric.reset()
        for k in (k for k in METRIC_NAMES if k in res):
            self.log(f"val/{k}", float(res[k]), sync_dist=False, prog_bar=k in ("rank1", "mAP"))

    def on_test_start(self) -> None:
        dm = self.trainer.datamodule if self.trainer is not None else None
        data = getattr(dm, "data", None)
        append = self.eval_cfg.get("append_query_to_gallery")
        # the dataset declares its protocol (MARS: queries also in the gallery); only the metric applies it
        self.test_metric.append_query_to_gallery = query_in_gallery_applied(
            getattr(data, "query_in_gallery", False), append
        )
        if self.test_metric.st is not None and self.test_metric.st_model is None:
            if data is None:
                raise RuntimeError("evaluation.st.enabled needs the datamodule's training set to fit the st model")
            self.test_metric.st_model = fit_st_model(data, **self.eval_cfg["st"])

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metric)

    def on_test_epoch_end(self) -> None:
        res = self.test_metric.compute()
        self.test_metric.reset()
        for k, v in res.items():
            self.log(f"test/{k}", float(v), sync_dist=False)

    # ------------------------------------------------------------------ inference
    def predict_step(self, batch: TestBatch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Embeddings ``(len(batch), D)`` float32 of a :class:`~vidreid.data.batch.TestBatch` of tracklets:
        the average of each tracklet's clip embeddings (``trainer.predict`` behind :func:`vidreid.embed`)."""
        return self._embed(batch)
