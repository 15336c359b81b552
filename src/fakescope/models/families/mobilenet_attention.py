"""MobileNetV2 with channel attention over its pooled features and a deep classifier."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import PartlyFrozenDetector, create_backbone, freeze
from fakescope.models.card import DetectorCard
from fakescope.models.registry import register_detector

MOBILENET_FEATURES = 1280

CARD = DetectorCard(
    name="mobilenetv2-attention",
    description=(
        "MobileNetV2 (timm mobilenetv2_100, ImageNet weights, early stages frozen) with channel "
        "attention and a three-layer classifier."
    ),
    input_size=224,
)


class ChannelAttention(nn.Module):
    """Per-channel weights in (0, 1) computed from the pooled features (squeeze-and-excitation)."""

    def __init__(self, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)


class MobileNetAttentionDetector(PartlyFrozenDetector):
    """Backbone -> pool -> attention-weighted channels -> 1280-256-64-1 classifier.

    The attention weights multiply the pooled vector: a per-channel constant commutes with
    average pooling, so this equals weighting the feature map, at a fraction of the cost.
    """

    def __init__(self, backbone: nn.Module, freeze_blocks: int) -> None:
        super().__init__()
        self.backbone = backbone
        self._freeze_early_layers(freeze_blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.attention = ChannelAttention(MOBILENET_FEATURES, 256, dropout=0.2)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(MOBILENET_FEATURES, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.35),
            nn.Linear(256, 64),
            nn.BatchNorm1d(64),
            nn.ReLU(inplace=True),
            nn.Dropout(0.25),
            nn.Linear(64, 1),
        )

    def _freeze_early_layers(self, freeze_blocks: int) -> None:
        stages = len(self.backbone.blocks)
        if not 0 <= freeze_blocks <= stages:
            raise ValueError(f"freeze_blocks must be between 0 and {stages}, got {freeze_blocks}")
        if freeze_blocks:
            stem = (self.backbone.conv_stem, self.backbone.bn1)
            for module in (*stem, *self.backbone.blocks[:freeze_blocks]):
                freeze(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.backbone(x)).flatten(1)
        return self.classifier(pooled * self.attention(pooled))


@register_detector(
    "mobilenetv2-attention", card=CARD, loss="focal", loss_args={"alpha": 0.5, "gamma": 3.0}
)
def build_mobilenet_attention(
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    freeze_blocks: int = 3,
) -> MobileNetAttentionDetector:
    """freeze_blocks: freeze the stem and this many of timm's 7 stages (3: up to stride 8)."""
    backbone = create_backbone(
        "mobilenetv2_100",
        pretrained=pretrained,
        weights_path=weights_path,
        allow_download=allow_download,
        num_classes=0,
        global_pool="",
    )
    return MobileNetAttentionDetector(backbone, freeze_blocks)
