"""Grad-CAM heat maps: where in a face crop the detector saw evidence of a fake.

Built on the maintained `grad-cam` package. The target is the logit of P(fake) (for two-logit
detectors, fake minus real), so a hot region is one that pushed the verdict towards "fake".
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from fakescope.models.card import DetectorCard


def _fake_logit_target(card: DetectorCard):
    if card.output == "two-logits":
        return lambda output: output[1] - output[0]
    return lambda output: output[0]


def gradcam_maps(model: nn.Module, card: DetectorCard, batch: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) normalised batch -> (B, S, S) heat maps in [0, 1]."""
    model.eval()
    target = _fake_logit_target(card)
    # Input gradients let the signal reach the CAM layer even through frozen backbones.
    with torch.enable_grad(), GradCAM(model=model, target_layers=[model.cam_layer()]) as cam:
        cam.compute_input_gradient = True
        maps = cam(input_tensor=batch, targets=[target] * batch.shape[0])
    model.zero_grad(set_to_none=True)
    return maps.astype(np.float32)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (any size) onto an RGB uint8 image with the JET colour map."""
    height, width = image.shape[:2]
    resized = cv2.resize(heatmap, (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(np.clip(resized, 0, 1) * 255), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour, 0, 255))


def explain_crops(model: nn.Module, card: DetectorCard, crops: Sequence[np.ndarray], transform) -> list[np.ndarray]:
    """Heat maps for RGB crops, each at its crop's own size."""
    if not crops:
        return []
    batch = torch.stack([transform(c) for c in crops])
    maps = gradcam_maps(model, card, batch)
    return [cv2.resize(m, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR) for m, c in zip(maps, crops)]
