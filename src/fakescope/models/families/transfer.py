"""EfficientNet-B4 transfer learning: a frozen backbone first, then its last layers unfrozen.

Phase 1 trains the head alone (the backbone is frozen here, at build time). Phase 2 is the
fine-tuning callback's job: it unfreezes the last N of `backbone_layers()` (config
`finetune.unfreeze_layers`, default 20) at a lower learning rate.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import PartlyFrozenDetector, freeze
from fakescope.models.card import DetectorCard
from fakescope.models.families.effnet_b4 import B4_FEATURES, create_b4_backbone
from fakescope.models.registry import register_detector

CARD = DetectorCard(
    name="effnet-b4-transfer",
    description=(
        "EfficientNet-B4 (timm efficientnet_b4, ImageNet weights), frozen, with a new head; "
        "the end of the backbone is unfrozen in a second phase."
    ),
    input_size=380,
)


class EffNetB4TransferDetector(PartlyFrozenDetector):
    """Frozen backbone; head: pool, BN, Linear(1792, 512), ReLU, BN, Dropout, Linear(512, 1)."""

    def __init__(self, backbone: nn.Module, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        freeze(self.backbone)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.BatchNorm1d(B4_FEATURES),
            nn.Linear(B4_FEATURES, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Dropout(dropout),
            nn.Linear(512, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.backbone(x)).flatten(1))


# alpha 0.5 weighs both classes alike: these data sets are near balanced, and imbalance is
# handled by the data's balance option (class weights); Lin et al.'s 0.25 was tuned for
# object detection's extreme background-to-object ratio, where it down-weights the rare class.
@register_detector(
    "effnet-b4-transfer", card=CARD, loss="focal", loss_args={"alpha": 0.5, "gamma": 2.0}
)
def build_effnet_b4_transfer(
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    dropout: float = 0.5,
) -> EffNetB4TransferDetector:
    backbone = create_b4_backbone(pretrained, weights_path, allow_download)
    return EffNetB4TransferDetector(backbone, dropout)
