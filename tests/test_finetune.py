"""The transfer recipe's second phase: the end of a frozen backbone starts training on time."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from fakescope.config import (
    DataConfig,
    FinetuneConfig,
    ModelConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)
from fakescope.training.callbacks import UnfreezeBackbone
from fakescope.training.module import DetectorModule


class Snapshots(L.Callback):
    def __init__(self):
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module):
        self.states.append(
            {k: v.clone() for k, v in pl_module.detector.backbone.state_dict().items()}
        )

    def on_train_epoch_end(self, trainer, pl_module):
        self.states.append(
            {k: v.clone() for k, v in pl_module.detector.backbone.state_dict().items()}
        )


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_unfreeze_starts_at_its_epoch_and_keeps_batchnorm_frozen():
    L.seed_everything(0)
    config = TrainConfig(
        data=DataConfig(root="unused"),
        model=ModelConfig(name="effnet-b4-transfer", pretrained=False, card={"input_size": 64}),
        optimizer={"lr_backbone": 1e-3, "lr_head": 1e-2},
        scheduler=SchedulerConfig(name="none"),
        trainer=TrainerConfig(max_epochs=2, early_stopping=None),
        finetune=FinetuneConfig(unfreeze_at_epoch=1, unfreeze_layers=20),
    )
    module = DetectorModule(config.model_dump(mode="json"))
    data = TensorDataset(torch.randn(16, 3, 64, 64), torch.tensor([0, 1] * 8))
    snapshots = Snapshots()
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[UnfreezeBackbone(1, 20, train_batchnorm=False), snapshots],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
    )
    trainer.fit(module, DataLoader(data, batch_size=8))
    start, after_phase1, after_phase2 = snapshots.states
    assert changed(start, after_phase1) == set()  # phase 1: the backbone is frozen, BN stats too
    moved = changed(after_phase1, after_phase2)
    layers = module.detector.backbone_layers()
    names = {id(m): n for n, m in module.detector.backbone.named_modules()}
    last = [
        names[id(m)]
        for m in layers[-20:]
        if not isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    assert moved, "phase 2 changed nothing"
    assert all(any(k.startswith(prefix + ".") for prefix in last) for k in moved), moved
    assert not any("running_" in k for k in moved)  # frozen BatchNorm keeps its statistics
    first = names[id(layers[0])]
    assert not any(k.startswith(first + ".") for k in moved)
