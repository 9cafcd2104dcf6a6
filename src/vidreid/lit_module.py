"""LightningModule: ReIDNet training with identity + batch-hard triplet + the aggregator's own losses,
and query/gallery evaluation (DESIGN.md §3.6)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from vidreid.evaluation.features import embed_tracklet_batch
from vidreid.evaluation.metric import ReIDMetric
from vidreid.evaluation.spatial_temporal import fit_st_model
from vidreid.losses import BatchHardTripletLoss, CrossEntropyLabelSmooth
from vidreid.schedulers import lr_lambda


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss is NaN/Inf; the message gives the step and every loss term."""


class ReIDLitModule(pl.LightningModule):
    """Args:
        model: the ``model`` config node (``ReIDNet``); built with ``num_classes``.
        optimizer: a Hydra partial of a ``torch.optim`` class (``_partial_: true``).
        scheduler: keyword arguments of :func:`vidreid.schedulers.lr_lambda` (``max_epochs`` filled from the trainer).
        loss: ``{ce_weight, label_smoothing, triplet_weight, triplet_margin, triplet_distance,
            triplet_soft_margin, triplet_feature: post_bn|pre_bn}``.
        evaluation: ``{distance, append_query_to_gallery, max_clips_per_forward}``; more options are read by
            :mod:`vidreid.evaluation` at test time.
        num_classes: training identities.
        compile: wrap the network in ``torch.compile``.
        backbone_lr_mult: the backbone's learning rate is ``optimizer.lr × backbone_lr_mult`` (PCB: 0.1).
        data_settings: ``{size, interpolation, clip, max_clips_per_forward}`` of the run, saved in the
            checkpoint so that :func:`vidreid.embed` preprocesses new tracklets the same way.
    """

    def __init__(
        self,
        model: DictConfig | dict,
        optimizer: DictConfig | dict,
        scheduler: DictConfig | dict,
        loss: DictConfig | dict,
        evaluation: DictConfig | dict,
        num_classes: int,
        compile: bool = False,
        backbone_lr_mult: float = 1.0,
        data_settings: dict | None = None,
    ):
        super().__init__()
        to_c = lambda c: OmegaConf.create(OmegaConf.to_container(c, resolve=True) if isinstance(c, DictConfig) else c)  # noqa: E731
        self.save_hyperparameters(
            {
                "model": OmegaConf.to_container(to_c(model)), "optimizer": OmegaConf.to_container(to_c(optimizer)),
                "scheduler": OmegaConf.to_container(to_c(scheduler)), "loss": OmegaConf.to_container(to_c(loss)),
                "evaluation": OmegaConf.to_container(to_c(evaluation)), "num_classes": num_classes, "compile": compile,
                "backbone_lr_mult": backbone_lr_mult, "data_settings": data_settings,
            }
        )
        self.net = instantiate(to_c(model), num_classes=num_classes)
        self.loss_cfg = dict(to_c(loss))
        self.eval_cfg = dict(to_c(evaluation))
        self.optimizer_cfg = to_c(optimizer)
        self.scheduler_cfg = dict(to_c(scheduler))
        self.ce = CrossEntropyLabelSmooth(self.loss_cfg.get("label_smoothing", 0.1))
        self.triplet = BatchHardTripletLoss(
            margin=self.loss_cfg.get("triplet_margin", 0.3),
            distance=self.loss_cfg.get("triplet_distance", "cosine"),
            soft_margin=self.loss_cfg.get("triplet_soft_margin", False),
        )
        if self.loss_cfg.get("triplet_feature", "post_bn") not in ("post_bn", "pre_bn"):
            raise ValueError(f"loss.triplet_feature must be post_bn or pre_bn, got {self.loss_cfg['triplet_feature']!r}")
        self.forward_net = torch.compile(self.net) if compile else self.net
        metric_kwargs = dict(
            metric=self.eval_cfg.get("distance", "cosine"),
            ap_mode=self.eval_cfg.get("ap_mode", "standard"),
            append_query_to_gallery=self.eval_cfg.get("append_query_to_gallery", False),
        )
        rerank = dict(self.eval_cfg.get("rerank") or {})
        st = dict(self.eval_cfg.get("st") or {})
        self.val_metric = ReIDMetric(**metric_kwargs)
        # the final test also reports re-ranked and spatial-temporal numbers when enabled (C1)
        self.test_metric = ReIDMetric(
            **metric_kwargs,
            rerank=bool(rerank.pop("enabled", False)),
            rerank_kwargs=rerank,
            st=st if st.pop("enabled", False) else None,
        )
        self.last_test_results: dict[str, Any] = {}

    @classmethod
    def from_config(cls, cfg: DictConfig, num_classes: int) -> ReIDLitModule:
        """Build from the composed run config (``model``, ``optimizer``, ``scheduler``, ``loss``, ``evaluation``)."""
        return cls(
            model=cfg.model, optimizer=cfg.optimizer, scheduler=cfg.scheduler, loss=cfg.loss,
            evaluation=cfg.evaluation, num_classes=num_classes, compile=cfg.get("compile", False),
            backbone_lr_mult=cfg.get("backbone_lr_mult", 1.0),
            data_settings={
                "size": list(cfg.data.transforms.size),
                "interpolation": cfg.data.transforms.get("test_interpolation", "bilinear"),
                "clip": OmegaConf.to_container(cfg.clip, resolve=True),
                "max_clips_per_forward": cfg.clip.get("max_clips_per_forward", 32),
            },
        )

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Eval-mode embedding ``(B, D)`` of clips ``(B, T, 3, H, W)``."""
        return self.net(clips)

    # ------------------------------------------------------------------ training
    def compute_losses(self, clips: torch.Tensor, pids: torch.Tensor) -> dict[str, torch.Tensor]:
        """All weighted loss terms of one batch; ``loss`` is their sum."""
        out = self.forward_net(clips)
        cfg = self.loss_cfg
        terms: dict[str, torch.Tensor] = {}
        n = len(out.logits)  # 0 for aggregators without a BNNeck (PCB): only their own losses apply
        if n:
            if cfg.get("ce_weight", 1.0):
                terms["ce"] = cfg.get("ce_weight", 1.0) * sum(self.ce(lg, pids) for lg in out.logits) / n
            if cfg.get("triplet_weight", 1.0):
                feats = out.bn_features if cfg.get("triplet_feature", "post_bn") == "post_bn" else out.features
                terms["triplet"] = cfg.get("triplet_weight", 1.0) * sum(self.triplet(f, pids) for f in feats) / n
        terms.update(self.net.aggregator.aux_losses(out.agg, pids, self.ce, self.triplet))
        terms["loss"] = sum(terms.values())
        return terms

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        clips, pids, _ = batch
        terms = self.compute_losses(clips, pids)
        if not torch.isfinite(terms["loss"]):
            detail = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"non-finite training loss at global step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}): {detail}. The last good checkpoint is kept; lower the lr or use bf16/fp32."
            )
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach(), on_step=True, on_epoch=True, prog_bar=k == "loss", batch_size=len(pids))
        return terms["loss"]

    def configure_optimizers(self):
        backbone = [p for p in self.net.backbone.parameters() if p.requires_grad]
        ids = {id(p) for p in backbone}
        rest = [p for p in self.net.parameters() if p.requires_grad and id(p) not in ids]
        lr = self.optimizer_cfg.lr
        groups = [{"params": backbone, "lr": lr * self.hparams.backbone_lr_mult}, {"params": rest, "lr": lr}]
        opt = instantiate(self.optimizer_cfg)(params=[g for g in groups if g["params"]])
        kw = dict(self.scheduler_cfg)
        kw.setdefault("max_epochs", self.trainer.max_epochs if self.trainer and self.trainer.max_epochs else 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(**kw))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch: list[dict], metric: ReIDMetric) -> None:
        emb = embed_tracklet_batch(self.net, batch, self.eval_cfg.get("max_clips_per_forward", 32))
        dev = emb.device
        metric.update(
            emb,
            torch.tensor([b["pid"] for b in batch], device=dev),
            torch.tensor([b["camid"] for b in batch], device=dev),
            torch.tensor([b["is_query"] for b in batch], device=dev),
            timestamps=torch.tensor([b.get("timestamp", float("nan")) for b in batch], dtype=torch.float64, device=dev),
            indices=torch.tensor([b["index"] for b in batch], device=dev),
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metric)

    def on_validation_epoch_end(self) -> None:
        res = self.val_metric.compute()
        self.val_metric.reset()
        for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"):
            self.log(f"val/{k}", float(res[k]), sync_dist=False, prog_bar=k in ("rank1", "mAP"))

    def on_test_start(self) -> None:
        if self.test_metric.st is not None and self.test_metric.st_model is None:
            dm = self.trainer.datamodule
            if dm is None or getattr(dm, "data", None) is None:
                raise RuntimeError("evaluation.st.enabled needs the datamodule's training set to fit the st model")
            self.test_metric.st_model = fit_st_model(dm.data, **self.eval_cfg["st"])

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metric)

    def on_test_epoch_end(self) -> None:
        res = self.test_metric.compute()
        self.test_metric.reset()
        self.last_test_results = res
        for k, v in res.items():
            self.log(f"test/{k}", float(v), sync_dist=False)
