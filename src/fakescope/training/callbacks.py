"""Training callbacks: epoch history, exact resume, fine-tuning phase, atomic checkpoints."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fakescope.evaluation.plots import plot_training_curves
from fakescope.utils import atomic_write_bytes, atomic_write_json


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints appear whole or not at all: a stop mid-write never leaves a broken file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


class EpochHistory(L.Callback):
    """Keeps one row of metrics per epoch; rewrites history JSON and curves after each epoch."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, float]] = []
        self._images = 0
        self._seconds = 0.0
        self._batch_started = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch is not None:
            self._seconds += time.perf_counter() - self._batch_started
            self._images += len(batch[1])

    def images_per_second(self) -> float | None:
        """Training throughput of this process (forward, backward, step; loading excluded)."""
        return round(self._images / self._seconds, 2) if self._seconds else None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.endswith("_step"):
                continue
            row[key.removesuffix("_epoch")] = float(value)
        for group in trainer.optimizers[0].param_groups:
            row[f"lr_{group.get('name', 'group')}"] = float(group["lr"])
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.rows or not trainer.is_global_zero:
            return
        # train_* metrics are complete only now, after the epoch's last step.
        for key, value in trainer.callback_metrics.items():
            if key.startswith("train_") and not key.endswith("_step"):
                self.rows[-1][key.removesuffix("_epoch")] = float(value)
        atomic_write_json(self.run_dir / "history.json", self.rows)
        plot_training_curves(self.rows, self.run_dir / "training_curves.png")

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])


class RngState(L.Callback):
    """Saves every random generator in the checkpoint, so a resumed run continues exactly."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": _python_state_to_plain(random.getstate()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        random.setstate(_python_state_from_plain(state_dict["python"]))


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _python_state_from_plain(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


class UnfreezeBackbone(L.Callback):
    """Phase 2 of transfer learning: from `epoch` on, the last `layers` backbone layers train."""

    def __init__(self, epoch: int, layers: int, train_batchnorm: bool):
        self.epoch = epoch
        self.layers = layers
        self.train_batchnorm = train_batchnorm

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch < self.epoch:
            return
        detector = pl_module.detector
        if not hasattr(detector, "backbone_layers"):
            raise TypeError(
                f"detector {pl_module.card.name!r} has no backbone_layers(); "
                "it cannot be fine-tuned in phases"
            )
        for layer in detector.backbone_layers()[-self.layers :]:
            for module in layer.modules():
                if (
                    isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                    and not self.train_batchnorm
                ):
                    continue
                for param in module.parameters(recurse=False):
                    param.requires_grad_(True)
        pl_module.train()  # the detector's train() keeps still-frozen BatchNorm in inference mode
