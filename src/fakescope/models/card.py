"""The detector card: everything needed to feed a detector and read its output.

A card travels with the weights (inside checkpoints, beside exported models), so training,
evaluation, scanning, export and serving all preprocess the same way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1].
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

LABELS = {0: "real", 1: "fake"}


class DetectorCard(BaseModel):
    """How to preprocess for a detector and how to read its output."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str = "0"
    description: str = ""
    input_size: int = Field(224, gt=0)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # "binary-logit": one logit, P(fake) = sigmoid; "two-logits": softmax over [real, fake].
    output: Literal["binary-logit", "two-logits"] = "binary-logit"
    labels: dict[int, str] = Field(default_factory=lambda: dict(LABELS))
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    threshold_source: str = "default"
    temperature: float = Field(1.0, gt=0.0)
    # Face stage: "mtcnn" crops faces with a margin; "none" scores the whole image.
    face_crop: Literal["mtcnn", "none"] = "mtcnn"
    face_margin: float = Field(0.3, ge=0.0)
    # Score each crop and its mirror image and average the two logits: a steadier score for
    # twice the model's work (the default's raw dfdc-faces test AUC +0.0099). Temperature and
    # threshold must be fitted with it on (`fakescope calibrate --mirror-average`).
    mirror_average: bool = False
    # Also cut each face with these margins and average the logits of all its cuts (and, with
    # mirror_average, of their mirrors): two framings of one face steady its score (the
    # default's raw dfdc-faces AUC +0.005 on test). Heat maps show the face_margin cut.
    # Temperature and threshold must be fitted with them (`fakescope calibrate
    # --extra-margin`), on images that hold the widest cut: raw ones, or crops cut wider.
    extra_margins: tuple[Annotated[float, Field(ge=0.0)], ...] = ()

    def with_updates(self, **changes) -> "DetectorCard":
        return self.model_validate({**self.model_dump(), **changes})
