"""Losses for real (0) / fake (1) classification, built by name with `create_loss`.

Every loss takes ``(logits, targets)``: logits ``(B, 1)`` (or ``(B,)``) for one logit, or
``(B, 2)`` for a softmax over [real, fake]; targets ``(B,)`` or ``(B, 1)`` holding 0/1 (soft
targets in [0, 1] work too). Two logits reduce exactly to one, ``z = logit_fake - logit_real``:
softmax cross-entropy and softmax focal loss over two classes equal their sigmoid forms on
``z``, so one implementation serves both output kinds.

Class weights: every loss accepts ``class_weights=[w_real, w_fake]`` (e.g. inverse
frequency, ``total / count_c``). They are rescaled to mean 1 so they change the balance
between the classes but not the size of the loss. "adaptive-focal" turns them into its
per-class alpha; every other loss multiplies each sample's loss by the weight of its class.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ClassWeights = torch.Tensor | Sequence[float] | None


class _BinaryLoss(nn.Module):
    """Reduces both logit layouts to one logit, applies class weights, averages."""

    def __init__(self, class_weights: ClassWeights = None) -> None:
        super().__init__()
        self.register_buffer("class_weights", _normalised_class_weights(class_weights))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        z, y = binary_view(logits, targets)
        losses = self.per_sample(z, y)
        if self.class_weights is not None:
            losses = losses * per_class(self.class_weights, y)
        return losses.mean()

    def per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BinaryCrossEntropy(_BinaryLoss):
    """Sigmoid BCE on one logit; for two logits this is exactly softmax cross-entropy."""

    def per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z, y, reduction="none")


class FocalLoss(_BinaryLoss):
    """Binary focal loss (Lin et al. 2017): ``-alpha_t (1 - p_t)^gamma log(p_t)``.

    alpha weights the fake class and 1 - alpha the real class; None means no alpha term.
    gamma = 0 with alpha None is plain BCE.
    """

    def __init__(
        self, alpha: float | None = 0.25, gamma: float = 2.0, class_weights: ClassWeights = None
    ):
        super().__init__(class_weights)
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"focal alpha must be in [0, 1] or None, got {alpha}")
        self.alpha = alpha
        self.gamma = _checked_gamma(gamma)

    def per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = focal_terms(z, y, self.gamma)
        if self.alpha is not None:
            losses = losses * (self.alpha * y + (1.0 - self.alpha) * (1.0 - y))
        return losses


class BCEFocalLoss(_BinaryLoss):
    """``weight_bce * BCE + weight_focal * focal``: hard samples count more, BCE keeps it steady."""

    def __init__(
        self,
        weight_bce: float = 0.5,
        weight_focal: float = 0.5,
        alpha: float | None = 0.25,
        gamma: float = 2.0,
        class_weights: ClassWeights = None,
    ):
        super().__init__(class_weights)
        self.weight_bce = weight_bce
        self.weight_focal = weight_focal
        # Class weights are applied once, here, not again inside the parts.
        self.bce = BinaryCrossEntropy()
        self.focal = FocalLoss(alpha=alpha, gamma=gamma)

    def per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bce = self.bce.per_sample(z, y)
        return self.weight_bce * bce + self.weight_focal * self.focal.per_sample(z, y)


class AdaptiveFocalLoss(_BinaryLoss):
    """Softmax focal loss whose per-class alpha comes from the class weights.

    alpha_c = w_c / (w_real + w_fake), so inverse-frequency weights give the rarer class the
    larger alpha; without class weights both alphas are 0.5.
    """

    def __init__(self, gamma: float = 2.0, class_weights: ClassWeights = None):
        super().__init__(None)
        weights = _normalised_class_weights(class_weights)
        alpha = torch.full((2,), 0.5) if weights is None else weights / weights.sum()
        self.register_buffer("alpha", alpha)
        self.gamma = _checked_gamma(gamma)

    def per_sample(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return focal_terms(z, y, self.gamma) * per_class(self.alpha, y)


LOSSES: dict[str, type[_BinaryLoss]] = {
    "bce": BinaryCrossEntropy,
    "ce": BinaryCrossEntropy,
    "focal": FocalLoss,
    "bce-focal": BCEFocalLoss,
    "adaptive-focal": AdaptiveFocalLoss,
}


def create_loss(name: str, **args) -> nn.Module:
    """Build a loss by name, e.g. ``create_loss("focal", alpha=0.5, gamma=3)``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    loss_class = LOSSES[name]
    try:
        inspect.signature(loss_class).bind(**args)
    except TypeError as err:
        raise ValueError(f"bad arguments for loss {name!r}: {err}") from err
    return loss_class(**args)


def binary_view(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One fake-vs-real logit per sample and float targets, both shaped (B,)."""
    if logits.dim() == 2 and logits.shape[1] == 2:
        z = logits[:, 1] - logits[:, 0]
    elif logits.dim() == 2 and logits.shape[1] == 1:
        z = logits[:, 0]
    elif logits.dim() == 1:
        z = logits
    else:
        raise ValueError(f"logits must be (B,), (B, 1) or (B, 2), got {tuple(logits.shape)}")
    y = targets.reshape(-1).to(z.dtype)
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"{y.shape[0]} targets for {z.shape[0]} logits ({tuple(targets.shape)})")
    return z, y


def focal_terms(z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 - p_t)^gamma * CE`` per sample, with p_t = exp(-CE) for stability."""
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    if gamma == 0:
        return ce  # (1 - p_t)^0 == 1, and pow(0, 0) would give a NaN gradient
    return (-torch.expm1(-ce)).pow(gamma) * ce


def per_class(values: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """values[y] per sample, interpolated for soft targets."""
    values = values.to(y.dtype)
    return values[0] * (1.0 - y) + values[1] * y


def _normalised_class_weights(class_weights: ClassWeights) -> torch.Tensor | None:
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32).detach().flatten().cpu()
    if weights.numel() != 2 or not torch.isfinite(weights).all() or (weights <= 0).any():
        raise ValueError(
            f"class_weights must be two positive numbers [real, fake], got {class_weights}"
        )
    return weights / weights.mean()


def _checked_gamma(gamma: float) -> float:
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    return float(gamma)


def blend_mask_loss(
    mask_logits: torch.Tensor, masks: torch.Tensor, known: torch.Tensor
) -> torch.Tensor:
    """Where a face was blended: BCE of per-cell logits against the mask pooled to the cells.

    mask_logits: (B, 1, h, w), one logit per cell of a feature map; masks: (B, H, W) in [0, 1]
    at the input's size; known: (B,) 1.0 where the mask is known, 0.0 where it is not (a data
    set's own fake). The mean over the known items; 0 when none is known.
    """
    targets = F.adaptive_avg_pool2d(masks[:, None].float(), mask_logits.shape[-2:])
    per_cell = F.binary_cross_entropy_with_logits(mask_logits.float(), targets, reduction="none")
    known = known.float()
    return (per_cell.mean(dim=(1, 2, 3)) * known).sum() / known.sum().clamp(min=1.0)
