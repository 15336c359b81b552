"""EfficientNet-B4 with a two-layer head, trained end to end."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import BackboneDetector, create_backbone
from fakescope.models.card import DetectorCard
from fakescope.models.registry import register_detector

# timm's own EfficientNet-B4 (symmetric padding, RandAugment ImageNet weights), not the
# TF port: it needs no "same" padding ops, which keeps it faster and simpler to export.
B4_ARCHITECTURE = "efficientnet_b4"
B4_FEATURES = 1792

CARD = DetectorCard(
    name="effnet-b4",
    description=(
        "EfficientNet-B4 (timm efficientnet_b4, ImageNet weights) with an MLP head and one logit."
    ),
    input_size=380,
)


def create_b4_backbone(
    pretrained: bool, weights_path: Path | None, allow_download: bool
) -> nn.Module:
    """EfficientNet-B4 whose forward returns the last feature map, (B, 1792, h, w)."""
    return create_backbone(
        B4_ARCHITECTURE,
        pretrained=pretrained,
        weights_path=weights_path,
        allow_download=allow_download,
        num_classes=0,
        global_pool="",
    )


class EffNetB4Detector(BackboneDetector):
    """Backbone, pool, Dropout, Linear(1792, 512), BN, ReLU, Dropout, Linear(512, 1)."""

    def __init__(self, backbone: nn.Module, head_dropout: float, hidden_dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Dropout(head_dropout),
            nn.Linear(B4_FEATURES, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Dropout(hidden_dropout),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.backbone(x)).flatten(1))


@register_detector(
    "effnet-b4",
    card=CARD,
    loss="bce-focal",
    loss_args={"weight_bce": 0.5, "weight_focal": 0.5, "alpha": 0.25, "gamma": 2.0},
)
def build_effnet_b4(
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    head_dropout: float = 0.4,
    hidden_dropout: float = 0.2,
) -> EffNetB4Detector:
    backbone = create_b4_backbone(pretrained, weights_path, allow_download)
    return EffNetB4Detector(backbone, head_dropout, hidden_dropout)
