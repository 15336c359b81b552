"""Grad-CAM heat maps: where in a face crop the detector saw evidence of a fake.

Built on the maintained `grad-cam` package. The target is the logit of P(fake) (for two-logit
detectors, fake minus real), so a hot region is one that pushed the verdict towards "fake".
"""

from __future__ import annotations

import base64
from typing import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from fakescope.faces import crop_square
from fakescope.models.card import DetectorCard


def _fake_logit_target(card: DetectorCard):
    if card.output == "two-logits":
        return lambda output: output[1] - output[0]
    return lambda output: output[0]


def gradcam_maps(model: nn.Module, card: DetectorCard, batch: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) normalised batch -> (B, S, S) heat maps in [0, 1]."""
    # Imported here: grad-cam brings scikit-learn and matplotlib (about 90 MB resident), which
    # a scan without heat maps never needs.
    from pytorch_grad_cam import GradCAM

    model.eval()
    target = _fake_logit_target(card)
    with torch.enable_grad(), GradCAM(model=model, target_layers=[model.cam_layer()]) as cam:
        # Input gradients let the signal reach the CAM layer through frozen backbones too.
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


def explain_crops(
    model: nn.Module,
    card: DetectorCard,
    crops: Sequence[np.ndarray],
    transform,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """Heat maps (model input size, [0, 1]) for RGB crops, `batch_size` crops per backward.

    With the card's `mirror_average` the score is the mean of the crop's and its mirror's, so
    the map is too: the mirror image's map, flipped back, averaged with the crop's.
    """
    maps: list[np.ndarray] = []
    for start in range(0, len(crops), batch_size):
        batch = torch.stack([transform(c) for c in crops[start : start + batch_size]])
        if card.mirror_average:
            both = gradcam_maps(model, card, torch.cat([batch, batch.flip(-1)]))
            maps.extend((both[: len(batch)] + both[len(batch) :, :, ::-1]) / 2)
        else:
            maps.extend(gradcam_maps(model, card, batch))
    return maps


def overlay_png_data_uri(crop: np.ndarray, heatmap: np.ndarray, max_side: int = 256) -> str:
    """The heat map over its crop as a PNG data URI, at most `max_side` px, for reports and APIs."""
    scale = min(1.0, max_side / max(crop.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    overlay = overlay_heatmap(crop, heatmap)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of a heat map failed")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def explain_image(detector, image: np.ndarray) -> tuple[np.ndarray, float]:
    """The image with each scored face's heat map blended in place and its box and P(fake)
    drawn, and the image's P(fake) (its most suspicious face's, as `predict` scores it).

    With no face found (or a whole-image detector) the heat map covers the whole image.
    """
    detection = detector.detect_faces([image])[0]
    prepared = detector.prepare(image, detection)
    scores = detector.score_faces(prepared.views)
    maps = explain_crops(detector.model, detector.card, prepared.crops, detector.transform)
    p_fake = float(max(scores))
    if prepared.fallback:
        return overlay_heatmap(image, maps[0]), p_fake
    canvas = image.copy()
    height, width = image.shape[:2]
    for face, heatmap, score in zip(prepared.faces, maps, scores):
        left, top, side = crop_square(tuple(face["box"]), detector.card.face_margin)
        full = cv2.resize(heatmap, (side, side), interpolation=cv2.INTER_LINEAR)
        x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
        region = full[y1 - top : y2 - top, x1 - left : x2 - left]
        canvas[y1:y2, x1:x2] = overlay_heatmap(canvas[y1:y2, x1:x2], region)
        colour = (255, 40, 40) if score >= detector.threshold else (40, 200, 40)
        bx1, by1, bx2, by2 = (int(round(v)) for v in face["box"])
        thickness = max(2, round(max(height, width) / 400))
        cv2.rectangle(canvas, (bx1, by1), (bx2, by2), colour, thickness)
        cv2.putText(
            canvas,
            f"P(fake) {score:.2f}",
            (bx1, max(by1 - 6, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            max(0.4, thickness / 4),
            colour,
            max(1, thickness // 2),
            cv2.LINE_AA,
        )
    return canvas, p_fake
