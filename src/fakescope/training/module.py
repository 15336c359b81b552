"""The LightningModule: one registered detector, its loss, its optimiser groups and schedule."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from fakescope import __version__
from fakescope.checkpoint import CHECKPOINT_KEY
from fakescope.config import TrainConfig
from fakescope.models.losses import blend_mask_loss, create_loss
from fakescope.models.registry import create_detector, get_spec
from fakescope.models.scoring import fake_logit


class DetectorModule(L.LightningModule):
    def __init__(self, config: dict[str, Any], class_weights: list[float] | None = None):
        super().__init__()
        # Plain JSON types only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.config = TrainConfig.model_validate(config)
        model_cfg = self.config.model
        self.detector = create_detector(
            model_cfg.name,
            pretrained=model_cfg.pretrained,
            weights_path=model_cfg.weights_path,
            allow_download=model_cfg.allow_download,
            card_overrides=model_cfg.card,
            **model_cfg.options,
        )
        self.card = self.detector.card
        spec = get_spec(model_cfg.name)
        loss_name = self.config.loss.name or spec.loss
        loss_args = {
            **(spec.loss_args if self.config.loss.name is None else {}),
            **self.config.loss.args,
        }
        if class_weights is not None:
            loss_args["class_weights"] = torch.tensor(class_weights, dtype=torch.float32)
        self.loss_fn = create_loss(loss_name, **loss_args)
        self.mask_head = self._mask_head()
        self.train_acc = BinaryAccuracy()
        self.val_acc = BinaryAccuracy()
        self.val_auc = BinaryAUROC()

    def _mask_head(self) -> nn.Module | None:
        """The blend-mask head (`data.self_blend.mask_loss_weight`): training only.

        It lives here, not in the detector, so that checkpoints still hold the detector's
        weights alone under `detector.` and exports keep their one output.
        """
        blends = self.config.data.self_blend
        if blends is None or blends.mask_loss_weight == 0:
            return None
        if not hasattr(self.detector, "forward_features"):
            raise ValueError(
                f"data.self_blend.mask_loss_weight needs a detector with one feature map "
                f"(lite0, lite1, lite2); {self.config.model.name} has none"
            )
        return nn.Conv2d(self.detector.num_features, 1, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images)

    def on_train_epoch_start(self) -> None:
        # Lightning restores per-module modes without calling train(); calling it here applies
        # the detector's own rule (frozen BatchNorm keeps its running statistics).
        self.detector.train()

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(classification loss, P(fake), labels, blend-mask loss or None).

        Training batches carry (masks, known) after the labels when the mask loss is on.
        """
        images, labels, *mask_targets = batch
        if self.config.trainer.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.mask_head is not None and mask_targets:
            features = self.detector.forward_features(images)
            logits = self.detector.forward_head(features)
            mask_loss = blend_mask_loss(self.mask_head(features), *mask_targets)
        else:
            logits, mask_loss = self(images), None
        loss = self.loss_fn(logits, labels)
        probs = torch.sigmoid(fake_logit(logits, self.card).float())
        return loss, probs, labels, mask_loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every file of this batch failed to decode
            return None
        loss, probs, labels, mask_loss = self._step(batch)
        # update(), not a call: a call also scores the batch on its own, which nothing logs.
        self.train_acc.update(probs, labels)
        batch_size = labels.shape[0]
        if mask_loss is not None:
            self.log("train_mask_loss", mask_loss, on_epoch=True, batch_size=batch_size)
            loss = loss + self.config.data.self_blend.mask_loss_weight * mask_loss
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch_size,
            sync_dist=True,
        )
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        if batch is None:
            return
        loss, probs, labels, _ = self._step(batch)
        # update(), not a call: a per-batch AUC is meaningless (and warns) on a batch of one
        # class, and the metrics are only logged for the whole epoch. The sanity pass before
        # training reads only a batch or two, so it scores no AUC at all.
        self.val_acc.update(probs, labels)
        batch_size = labels.shape[0]
        self.log(
            "val_loss", loss, on_epoch=True, prog_bar=True, batch_size=batch_size, sync_dist=True
        )
        self.log("val_acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=batch_size)
        if not self.trainer.sanity_checking:
            self.val_auc.update(probs, labels)
            self.log("val_auc", self.val_auc, on_epoch=True, prog_bar=True, batch_size=batch_size)

    def configure_optimizers(self):
        opt_cfg = self.config.optimizer
        # Frozen backbone parameters sit in their group from the start, so unfreezing them later
        # (the fine-tuning phase) needs no new group and every scheduler keeps working.
        groups = [
            {
                "params": list(self.detector.backbone_parameters()),
                "lr": opt_cfg.lr_backbone,
                "name": "backbone",
            },
            {
                "params": list(self.detector.head_parameters())
                + (list(self.mask_head.parameters()) if self.mask_head is not None else []),
                "lr": opt_cfg.lr_head,
                "name": "head",
            },
        ]
        groups = [g for g in groups if g["params"]]
        optimizer = torch.optim.AdamW(groups, weight_decay=opt_cfg.weight_decay)
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _scheduler(self, optimizer) -> dict | None:
        cfg = self.config.scheduler
        if cfg.name == "none":
            return None
        if cfg.name == "cosine-warm-restarts":
            sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
                optimizer, T_0=cfg.t_0, T_mult=cfg.t_mult, eta_min=cfg.eta_min
            )
            return {"scheduler": sched, "interval": "epoch"}
        if cfg.name == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=cfg.plateau_factor,
                patience=cfg.plateau_patience,
                min_lr=cfg.min_lr,
            )
            return {"scheduler": sched, "interval": "epoch", "monitor": "val_loss"}
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=int(self.trainer.estimated_stepping_batches),
            pct_start=cfg.onecycle_pct_start,
        )
        return {"scheduler": sched, "interval": "step"}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "detector": self.config.model.name,
            "options": self.config.model.options,
            "card": self.card.model_dump(mode="json"),
            "fakescope_version": __version__,
        }


def count_parameters(module: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return total, trainable
