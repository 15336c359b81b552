"""Run a detector over a DataLoader and collect labels and fake logits."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fakescope.models.card import DetectorCard
from fakescope.models.scoring import fake_logit


@torch.inference_mode()
def predict_loader(
    model: nn.Module, card: DetectorCard, loader: DataLoader
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (labels, logits of P(fake) before temperature) for every decodable sample."""
    model.eval()
    device = next(model.parameters()).device
    labels, logits = [], []
    for batch in loader:
        if batch is None:
            continue
        images, batch_labels = batch
        logits.append(fake_logit(model(images.to(device)), card).float().cpu())
        labels.append(batch_labels.cpu())
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return torch.cat(labels).numpy().astype(np.int64), torch.cat(logits).numpy()
