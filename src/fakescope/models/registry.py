"""Detector registry: every detector family registers a builder and its default card.

`create_detector(name, ...)` is the one way to build a detector, in training, evaluation,
inference and export alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from torch import nn

from fakescope.models.card import DetectorCard


class DetectorModel(Protocol):
    """What every registered detector module provides besides `forward(x) -> logits`."""

    card: DetectorCard

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Pretrained parameters: trained at the lower (backbone) learning rate."""

    def head_parameters(self) -> list[nn.Parameter]:
        """New parameters: trained at the higher (head) learning rate."""

    def cam_layer(self) -> nn.Module:
        """The last spatial feature layer, the target for Grad-CAM."""


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    builder: Callable[..., nn.Module]
    card: DetectorCard
    loss: str
    loss_args: dict = field(default_factory=dict)


_REGISTRY: dict[str, DetectorSpec] = {}


def register_detector(name: str, *, card: DetectorCard, loss: str, loss_args: dict | None = None):
    """Register `builder(card, pretrained, weights_path, allow_download, **kwargs) -> nn.Module`."""

    def decorator(builder):
        if name in _REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice")
        _REGISTRY[name] = DetectorSpec(
            name, builder, card.with_updates(name=name), loss, loss_args or {}
        )
        return builder

    return decorator


def _ensure_builtin_detectors_registered() -> None:
    # Importing the families runs their @register_detector decorators.
    import fakescope.models.families  # noqa: F401


def list_detectors() -> list[DetectorSpec]:
    _ensure_builtin_detectors_registered()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_spec(name: str) -> DetectorSpec:
    _ensure_builtin_detectors_registered()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown detector {name!r}; registered detectors: {known}")
    return _REGISTRY[name]


def create_detector(
    name: str,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    allow_download: bool = False,
    card_overrides: dict | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered detector.

    pretrained: initialise the backbone from ImageNet weights found offline (a file that ships
        in a package, `weights_path`, or the local timm/Hugging Face cache). A weight that is
        not on disk is an error naming the file, never a silent random init.
    allow_download: let timm fetch missing backbone weights (only when the user asked).
    card_overrides: e.g. {"input_size": 128}; the card travels with the model.
    kwargs: family-specific options (e.g. dropout rates).
    """
    spec = get_spec(name)
    card = spec.card.with_updates(**(card_overrides or {}))
    model = spec.builder(
        card=card,
        pretrained=pretrained,
        weights_path=Path(weights_path) if weights_path else None,
        allow_download=allow_download,
        **kwargs,
    )
    model.card = card
    return model
