"""EfficientNet-B4 plus three designed branches (multi-scale, frequency, edges), fused by a gate.

Face swaps leave traces at several levels: blending seams and resampling show in local
frequency statistics and edges, which a classification backbone tends to pool away. Each
branch turns one such view of the input into a vector; a learned gate weighs the 3136 fused
features before a two-logit classifier.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from fakescope.models.backbones import BackboneDetector
from fakescope.models.card import DetectorCard
from fakescope.models.families.effnet_b4 import B4_FEATURES, create_b4_backbone
from fakescope.models.registry import register_detector

CARD = DetectorCard(
    name="multibranch-b4",
    description=(
        "EfficientNet-B4 (timm efficientnet_b4, ImageNet weights) fused with multi-scale, "
        "block-DCT frequency and edge branches through an attention gate; softmax over "
        "[real, fake]."
    ),
    # 384, not B4's usual 380: the frequency branch pools 8x8 DCT blocks to 8x8, and ONNX can
    # export that pooling only when 8 divides the block grid (384 / 8 = 48 blocks).
    input_size=384,
    output="two-logits",
)

DCT_BLOCK = 8


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class MultiScaleExtractor(nn.Module):
    """Four strided conv stages on the image; each stage's map is pooled, all are concatenated."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        channels = (3, *widths)
        self.stages = nn.ModuleList(
            conv_bn_relu(a, b, stride=2) for a, b in zip(channels, channels[1:])
        )
        self.out_features = sum(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def dct_basis(size: int = DCT_BLOCK) -> torch.Tensor:
    """The orthonormal 2-D DCT-II basis as conv filters, (size*size, 1, size, size)."""
    positions = torch.arange(size, dtype=torch.float64)
    frequencies = torch.arange(size, dtype=torch.float64)
    cosines = torch.cos(math.pi * (2 * positions[None, :] + 1) * frequencies[:, None] / (2 * size))
    scale = torch.full((size,), math.sqrt(2 / size), dtype=torch.float64)
    scale[0] = math.sqrt(1 / size)
    basis_1d = scale[:, None] * cosines  # (frequency, position)
    basis_2d = basis_1d[:, None, :, None] * basis_1d[None, :, None, :]  # (u, v, x, y)
    return basis_2d.reshape(size * size, 1, size, size).float()


class BlockDCT(nn.Module):
    """JPEG-style 8x8 block DCT of each colour channel, as log-magnitudes.

    Output: (B, 3*64, H//8, W//8), one channel per (colour, frequency). A fixed strided conv,
    so it runs at any input size of at least 8 px and exports to ONNX as a plain Conv.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("basis", dct_basis().repeat(in_channels, 1, 1, 1), persistent=False)
        self.out_channels = in_channels * DCT_BLOCK * DCT_BLOCK

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coefficients = nn.functional.conv2d(
            x, self.basis.to(x.dtype), stride=DCT_BLOCK, groups=self.in_channels
        )
        return torch.log(coefficients.abs() + 1e-3)


class FrequencyBranch(nn.Module):
    """Block-DCT log-magnitudes -> BN -> conv 64 -> conv 128 -> pool 8x8 -> Linear(128*64, 256)."""

    def __init__(self) -> None:
        super().__init__()
        self.dct = BlockDCT()
        self.layers = nn.Sequential(
            nn.BatchNorm2d(self.dct.out_channels),  # puts every frequency on one scale
            conv_bn_relu(self.dct.out_channels, 64),
            conv_bn_relu(64, 128),
            nn.AdaptiveAvgPool2d(8),
            nn.Flatten(),
            nn.Linear(128 * 8 * 8, 256),
            nn.ReLU(inplace=True),
        )
        self.out_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.dct(x))


def edge_filters() -> torch.Tensor:
    """Sobel x, Sobel y and Laplacian kernels, (3, 1, 3, 3)."""
    sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    return torch.stack([sobel_x, sobel_x.T, laplacian])[:, None]


class EdgeBranch(nn.Module):
    """Fixed edge filters on grayscale -> conv 32 -> conv 64 -> pool 4x4 -> Linear(64*16, 128)."""

    def __init__(self) -> None:
        super().__init__()
        # ITU-R BT.601 luma weights; the input is normalised, which only shifts and scales it.
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        self.register_buffer("luma", luma, persistent=False)
        self.register_buffer("filters", edge_filters(), persistent=False)
        self.layers = nn.Sequential(
            conv_bn_relu(3, 32, stride=2),
            conv_bn_relu(32, 64, stride=2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(inplace=True),
        )
        self.out_features = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gray = (x * self.luma.to(x.dtype)).sum(dim=1, keepdim=True)
        edges = nn.functional.conv2d(gray, self.filters.to(x.dtype), padding=1)
        return self.layers(edges)


class FeatureGate(nn.Module):
    """Multiplies the fused features by learned weights in (0, 1).

    Linear -> ReLU -> Linear -> Sigmoid, halving the width in between.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weights = nn.Sequential(
            nn.Linear(features, features // 2),
            nn.ReLU(inplace=True),
            nn.Linear(features // 2, features),
            nn.Sigmoid(),
        )

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return fused * self.weights(fused)


class MultiBranchDetector(BackboneDetector):
    """B4 (1792) + multi-scale (960) + frequency (256) + edges (128) = 3136 -> gate -> 2 logits."""

    fused_features = B4_FEATURES + 960 + 256 + 128

    def __init__(self, backbone: nn.Module, dropout: float, hidden_dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.multiscale = MultiScaleExtractor()
        self.frequency = FrequencyBranch()
        self.edges = EdgeBranch()
        self.gate = FeatureGate(self.fused_features)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.fused_features, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(hidden_dropout),
            nn.Linear(512, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = torch.cat(
            [
                self.backbone(x).mean(dim=(2, 3)),
                self.multiscale(x),
                self.frequency(x),
                self.edges(x),
            ],
            dim=1,
        )
        return self.classifier(self.gate(fused))


@register_detector("multibranch-b4", card=CARD, loss="adaptive-focal", loss_args={"gamma": 2.0})
def build_multibranch_b4(
    *,
    card: DetectorCard,
    pretrained: bool,
    weights_path: Path | None,
    allow_download: bool,
    dropout: float = 0.5,
    hidden_dropout: float = 0.3,
) -> MultiBranchDetector:
    backbone = create_b4_backbone(pretrained, weights_path, allow_download)
    return MultiBranchDetector(backbone, dropout, hidden_dropout)
