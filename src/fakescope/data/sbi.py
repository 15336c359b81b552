"""Self-Blended Images (SBI): fakes made by blending a real face with an altered copy of itself.

After Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022),
written here from the paper. A face swap pastes one face into another frame, and what a
detector can learn that carries over to unseen swap methods is the trace of that paste:
a blending boundary, a colour or sharpness mismatch between the inner face and its frame,
a slight misalignment of the two. SBI makes exactly those traces from one real image, with
no second identity, so the detector cannot learn any one generator's fingerprint:

- the *target* is the real image, unchanged; the *source* is a copy whose colour
  (RGB shift, hue/saturation/value, brightness/contrast) and frequency content (blur,
  sharpening, down-and-up-scaling) are jittered, and which is slightly rescaled, shifted and
  elastically warped;
- a *mask* follows the face (a hull of points derived from the landmarks) or, with
  probability `part_mask_prob`, covers only the eyes, the nose or the mouth (the local edits
  of hand-made splices); its outline is jittered and warped, eroded or dilated at random,
  blurred to a soft edge, and scaled by a random blend ratio;
- fake = source * mask + target * (1 - mask).

Only the source is altered, so the fake equals the real image wherever the mask is 0.

*Splices* (`splice_prob`) take the source from another real face instead, a donor: its
five points are aligned onto the target's by a similarity transform, its colours are matched
to the target's under the mask, and a random set of parts (left eye, right eye, nose,
mouth) is pasted. These are the hand-made edits of photoshop-ciplab, whose file names list
the same four parts, and Face X-ray's cross-identity blends (Li et al., CVPR 2020): what
gives them away is a part that does not belong to the face around it, which a copy of the
same face never shows.
No JPEG re-encoding happens here: a training pipeline re-encodes both classes alike.

`SelfBlendedDataset` makes fakes on the fly for training; `synthesize_sbi` writes them to a
folder (`fakescope synth sbi REAL_DIR OUT_DIR`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import Dataset, Sampler

from fakescope.data.dataset import decode_or_warn, with_mask_target
from fakescope.data.discovery import DataError, Sample, find_images
from fakescope.data.learned_traces import learned_trace
from fakescope.data.traces import upsampling_trace
from fakescope.faces import FaceDetector
from fakescope.io.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, encode_png
from fakescope.utils import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

PartKind = Literal["eyes", "nose", "mouth"]
# "generated": no blend, the whole image re-rendered by a generator-style up-sampler.
MASK_KINDS = ("face", "ellipse", "eyes", "nose", "mouth", "splice", "generated")

MANIFEST_NAME = "sbi_manifest.json"
FAKE_FOLDER = "fake"
MASK_FOLDER = "masks"
_MANIFEST_FORMAT = "fakescope-sbi-manifest"
_MANIFEST_VERSION = 2  # 2: each fake names its donor (None unless spliced)

# Images decoded and passed to MTCNN at once: bounds the memory of full-size photos.
_DETECT_CHUNK = 16
# Control points per side of the coarse grid behind a smooth random displacement field:
# 4 cells give a few gentle bends across a face, not noise.
_ELASTIC_CELLS = 4
# The ellipse used without landmarks, as fractions of the image: in a square MTCNN crop with
# margin 0.3 it fills about the bounding box of the landmark face hull (brows to chin),
# which sits a little below the centre because MTCNN's box starts at the forehead.
_FALLBACK_CENTRE = (0.5, 0.55)
_FALLBACK_AXES = (0.29, 0.33)
# Below this the face is a few pixels wide and its mask would be a speck.
_MIN_EYE_DISTANCE = 2.0
# A splice keeps at least this share of its parts' mask where both pictures have pixels.
_MIN_SPLICE_COVER = 0.5
# The 68-point (iBUG / dlib) indices that reduce to MTCNN's five points.
_IBUG_EYES = (slice(36, 42), slice(42, 48))
_IBUG_NOSE_TIP = 30
_IBUG_MOUTH_CORNERS = (48, 54)


class SbiConfig(BaseModel):
    """Probabilities and ranges of the self-blending steps.

    The blend ratios are the paper's; the other defaults are mild values chosen here so that
    the fakes stay hard to see (docs/synthetic-fakes.md). Colour ranges are in 0..255 levels
    or fractions; geometry in fractions of the image side (source) or of the mask region's
    radius (mask), so one config fits any image size.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Source appearance: each step is drawn independently; when none is drawn, one is forced,
    # so the source always differs from the target in more than position.
    rgb_shift_prob: float = Field(0.5, ge=0.0, le=1.0)
    rgb_shift_limit: float = Field(20.0, ge=0.0, le=255.0)
    hsv_prob: float = Field(0.5, ge=0.0, le=1.0)
    hue_shift_limit: float = Field(10.0, ge=0.0, le=180.0)  # degrees
    saturation_limit: float = Field(0.2, ge=0.0, le=1.0)  # relative change
    value_limit: float = Field(0.2, ge=0.0, le=1.0)
    brightness_contrast_prob: float = Field(0.5, ge=0.0, le=1.0)
    brightness_limit: float = Field(0.1, ge=0.0, le=1.0)  # fraction of 255
    contrast_limit: float = Field(0.1, ge=0.0, le=1.0)
    frequency_prob: float = Field(0.5, ge=0.0, le=1.0)  # one of blur / sharpen / downscale
    # The source re-rendered through a random up-sampling layer (fakescope.data.traces): the
    # blended face carries a generator's fingerprint, as a decoded, swapped face does.
    generator_trace_prob: float = Field(0.0, ge=0.0, le=1.0)
    # No blend at all: the whole image re-rendered that way (a face made by a generator).
    generated_prob: float = Field(0.0, ge=0.0, le=1.0)
    # Trained autoencoders (fakescope.data.learned_traces) that make those traces instead of
    # random up-sampling layers: each trace drawn from one of them.
    tracers: tuple[Path, ...] = ()
    # The source taken from another real face (a donor) and pasted through a mask of a random
    # set of its parts: a splice. Only where the target and a donor have landmarks.
    splice_prob: float = Field(0.0, ge=0.0, le=1.0)
    # Under the mask, how far the donor's per-channel mean and spread move to the target's
    # (0: as the donor was, 1: matched): a careful editor matches colours, a hasty one not quite.
    splice_colour_match: tuple[float, float] = (0.5, 1.0)
    blur_sigma: tuple[float, float] = (0.5, 1.5)  # pixels
    sharpen_amount: tuple[float, float] = (0.3, 1.0)
    downscale_factor: tuple[float, float] = (0.35, 0.75)
    # Source geometry (the paper's source-target augmentation): misaligns the blended face.
    scale_range: tuple[float, float] = (0.95, 1.05)  # x and y drawn independently
    translate_limit: float = Field(0.03, ge=0.0, le=0.5)
    source_elastic: float = Field(0.01, ge=0.0, le=0.2)
    # Mask.
    part_mask_prob: float = Field(0.2, ge=0.0, le=1.0)
    part_kinds: tuple[PartKind, ...] = ("eyes", "nose", "mouth")
    mask_vertex_jitter: float = Field(0.06, ge=0.0, le=0.5)
    mask_elastic: float = Field(0.08, ge=0.0, le=0.5)
    mask_erode_sigma: float = Field(0.1, ge=0.0, le=0.5)
    mask_threshold: tuple[float, float] = (0.25, 0.75)  # < 0.5 dilates, > 0.5 erodes
    mask_edge_sigma: tuple[float, float] = (0.03, 0.12)
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)

    @model_validator(mode="after")
    def _check_ranges(self) -> SbiConfig:
        positive = ("blur_sigma", "sharpen_amount", "downscale_factor", "scale_range")
        unit = ("mask_threshold", "mask_edge_sigma")
        low, high = self.splice_colour_match
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"splice_colour_match must be 0 <= low <= high <= 1, got {low, high}")
        for name in positive + unit:
            low, high = getattr(self, name)
            if not 0.0 < low <= high:
                raise ValueError(
                    f"{name} must be (low, high) with 0 < low <= high, got {low, high}"
                )
            if name in unit and high >= 1.0:
                raise ValueError(f"{name} must lie below 1, got {low, high}")
        if self.downscale_factor[1] > 1.0:
            raise ValueError(f"downscale_factor must be at most 1, got {self.downscale_factor}")
        if not self.blend_ratios or not all(0.0 < r <= 1.0 for r in self.blend_ratios):
            raise ValueError(f"blend_ratios must be values in (0, 1], got {self.blend_ratios}")
        if self.part_mask_prob > 0 and not self.part_kinds:
            raise ValueError("part_kinds is empty but part_mask_prob > 0")
        missing = [str(path) for path in self.tracers if not Path(path).is_file()]
        if missing:
            raise ValueError(
                f"tracer(s) not found: {', '.join(missing)} "
                "(fakescope synth train-tracer makes one)"
            )
        return self


@dataclass
class SelfBlend:
    """A self-blended fake and how it was made."""

    fake: np.ndarray  # H x W x 3 uint8 RGB
    mask: np.ndarray  # H x W float32 in [0, 1]: the share of the altered source per pixel
    kind: str  # one of MASK_KINDS
    blend_ratio: float


@dataclass
class Donor:
    """Another real face whose parts a splice pastes into the target."""

    image: np.ndarray  # H x W x 3 uint8 RGB, any size
    landmarks: np.ndarray  # (5, 2) or (68, 2) x, y in the pixels of `image`


def pick_donor(
    rng: np.random.Generator, config: SbiConfig, position: int, count: int
) -> int | None:
    """Whether this fake is a splice, and which of `count` faces with landmarks gives the parts.

    position: the target's own place among those faces (never its own donor). Draws nothing
    when splicing is off, so seeded fakes of configs without splices stay as they were.
    """
    if not config.splice_prob or count < 2 or rng.random() >= config.splice_prob:
        return None
    other = int(rng.integers(count - 1))
    return other + (other >= position)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: SbiConfig | None = None,
    donor: Donor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A fake made from `image` (RGB uint8 face) and the mask it was blended with.

    landmarks: (5, 2) MTCNN points (eyes, nose, mouth corners) or (68, 2) iBUG points, x, y
        in the pixels of `image`; None uses a central face-sized ellipse (weaker: the mask
        does not follow the face).
    donor: another face to splice parts from (needs `landmarks`); None blends the image with
        an altered copy of itself.
    """
    result = self_blend_details(image, landmarks, rng, config, donor)
    return result.fake, result.mask


def self_blend_details(
    image: np.ndarray,
    landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: SbiConfig | None = None,
    donor: Donor | None = None,
) -> SelfBlend:
    """`self_blend` that also reports the mask kind and the blend ratio."""
    config = config or SbiConfig()
    _check_image(image)
    points = None if landmarks is None else _check_landmarks(landmarks, image.shape)
    height, width = image.shape[:2]
    target = image.astype(np.float32)
    if donor is not None and points is None:
        raise ValueError("a splice needs the target's landmarks to place the donor's parts")
    spliced = None if donor is None else _splice(image, points, donor, rng, config)
    if spliced is not None:
        kind = "splice"
        mask, source = spliced
    # Off means no draw at all: seeded fakes of configs without traces stay as they were.
    elif config.generated_prob and rng.random() < config.generated_prob:
        fake = np.rint(_generator_trace(image, rng, config)).astype(np.uint8)
        return SelfBlend(
            fake=fake, mask=np.ones((height, width), np.float32), kind="generated", blend_ratio=1.0
        )
    else:
        kind, region = _pick_region(points, (height, width), rng, config)
        mask = _draw_mask(region, (height, width), rng, config)
        source = target
    blend_ratio = float(config.blend_ratios[rng.integers(len(config.blend_ratios))])
    mask *= blend_ratio

    centre = _centre(points, (height, width))
    source = _misalign(_alter_appearance(source, rng, config), centre, rng, config)
    # target + m * (source - target): exactly the target where m == 0.
    blended = target + mask[:, :, None] * (source - target)
    fake = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return SelfBlend(fake=fake, mask=mask, kind=kind, blend_ratio=blend_ratio)


# --- input checks --------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"self_blend expects an HxWx3 RGB array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"self_blend expects dtype uint8, got {image.dtype}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"self_blend needs an image of at least 16x16 pixels, got {image.shape}")


def _check_landmarks(landmarks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape not in ((5, 2), (68, 2)):
        raise ValueError(f"landmarks must have shape (5, 2) or (68, 2), got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain NaN or infinite values")
    x, y = points.mean(axis=0)
    if not (0 <= x < shape[1] and 0 <= y < shape[0]):
        raise ValueError(
            f"landmarks are centred at ({x:.0f}, {y:.0f}), outside the {shape[1]}x{shape[0]} "
            "image: were they detected on another image or crop?"
        )
    return points


# --- mask ----------------------------------------------------------------------------------


@dataclass
class _Region:
    """Polygons to fill and the region's size, which scales every deformation of the mask."""

    polygons: list[np.ndarray]  # each (K, 2) float x, y
    radius: float


@dataclass
class _FaceFrame:
    """Five points and the face's own axes: u from eye to eye, v from the eyes to the mouth."""

    eyes: np.ndarray  # (2, 2), ordered along u
    nose: np.ndarray
    mouth: np.ndarray  # (2, 2), ordered along u
    u: np.ndarray
    v: np.ndarray
    eye_distance: float
    eye_to_mouth: float

    @classmethod
    def from_points(cls, points: np.ndarray) -> _FaceFrame:
        if len(points) == 68:
            points = np.array(
                [points[_IBUG_EYES[0]].mean(axis=0), points[_IBUG_EYES[1]].mean(axis=0)]
                + [points[_IBUG_NOSE_TIP]]
                + [points[i] for i in _IBUG_MOUTH_CORNERS]
            )
        eyes, nose, mouth = points[:2], points[2], points[3:5]
        axis = eyes[1] - eyes[0]
        eye_distance = float(np.hypot(*axis))
        if eye_distance < _MIN_EYE_DISTANCE:
            raise ValueError(
                f"landmarks are degenerate: the eyes are {eye_distance:.1f} px apart "
                f"(at least {_MIN_EYE_DISTANCE} px needed for a face mask)"
            )
        u = axis / eye_distance
        v = np.array([-u[1], u[0]])
        drop = float((mouth.mean(axis=0) - eyes.mean(axis=0)) @ v)
        if drop < 0:
            v = -v
        # A floor keeps a mouth on the eye line (a profile) from flattening the hull.
        eye_to_mouth = max(abs(drop), 0.5 * eye_distance)
        if (mouth[1] - mouth[0]) @ u < 0:
            mouth = mouth[::-1]
        return cls(eyes, nose, mouth, u, v, eye_distance, eye_to_mouth)

    def offset(self, point: np.ndarray, along_u: float, along_v: float) -> np.ndarray:
        """`point` moved by along_u eye distances across and along_v eye-mouth drops down."""
        return point + along_u * self.eye_distance * self.u + along_v * self.eye_to_mouth * self.v


def _pick_region(
    points: np.ndarray | None,
    shape: tuple[int, int],
    rng: np.random.Generator,
    config: SbiConfig,
) -> tuple[str, _Region]:
    if points is None:
        return "ellipse", _fallback_region(shape)
    frame = _FaceFrame.from_points(points)
    if rng.random() < config.part_mask_prob:
        # Only parts whose centre is in the image: a part outside would leave an empty mask.
        parts = [kind for kind in config.part_kinds if _inside(_part_centre(frame, kind), shape)]
        if parts:
            kind = parts[rng.integers(len(parts))]
            return kind, _part_region(frame, kind)
    return "face", _face_region(frame, points)


def _face_region(frame: _FaceFrame, points: np.ndarray) -> _Region:
    """The convex hull of the face: of the 68 points as given, or of points built from 5.

    From five points the hull imitates the 68-point one (brows, cheeks, jaw, chin), placed
    with average proportions measured from the eyes and mouth, in the face's own axes, so it
    turns and stretches with the face: eye level widened to the cheeks (half an eye distance
    outwards), brows 0.45 of the eye-mouth drop above the eyes, the mouth corners widened to
    the jaw, and the chin 0.8 of the drop below the mouth.
    """
    if len(points) == 68:
        hull_points = points
    else:
        left_eye, right_eye = frame.eyes
        left_mouth, right_mouth = frame.mouth
        mouth_centre = frame.mouth.mean(axis=0)
        hull_points = np.array(
            [
                frame.offset(left_eye, -0.5, 0.0),
                frame.offset(left_eye, -0.3, -0.45),
                frame.offset(left_eye, 0.15, -0.55),
                frame.offset(right_eye, -0.15, -0.55),
                frame.offset(right_eye, 0.3, -0.45),
                frame.offset(right_eye, 0.5, 0.0),
                frame.offset(right_mouth, 0.4, 0.0),
                frame.offset(mouth_centre, 0.5, 0.55),
                frame.offset(mouth_centre, 0.0, 0.8),
                frame.offset(mouth_centre, -0.5, 0.55),
                frame.offset(left_mouth, -0.4, 0.0),
                frame.nose,
            ]
        )
    hull = cv2.convexHull(hull_points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    radius = float(np.sqrt(max(cv2.contourArea(hull.astype(np.float32)), 1.0) / np.pi))
    return _Region([hull], radius)


def _part_centre(frame: _FaceFrame, kind: str) -> np.ndarray:
    if kind == "eyes":
        return frame.eyes.mean(axis=0)
    if kind == "nose":
        return (frame.eyes.mean(axis=0) + frame.nose) / 2
    return frame.mouth.mean(axis=0)


def _part_region(frame: _FaceFrame, kind: str) -> _Region:
    """Ellipses around the eyes (with the lids), the nose (bridge to tip) or the lips."""
    d = frame.eye_distance
    if kind == "eyes":
        axes = (0.36 * d, 0.2 * d)
        polygons = [_ellipse(eye, frame.u, *axes) for eye in frame.eyes]
    elif kind == "nose":
        bridge = frame.offset(frame.eyes.mean(axis=0), 0.0, 0.1)
        tip = frame.offset(frame.nose, 0.0, 0.12)
        length = float(np.hypot(*(tip - bridge)))
        along = (tip - bridge) / length if length > 0 else frame.v
        # The ellipse's first axis runs across the nose, perpendicular to bridge -> tip.
        across = np.array([along[1], -along[0]])
        axes = (0.24 * d, max(length / 2, 0.2 * d))
        polygons = [_ellipse((bridge + tip) / 2, across, *axes)]
    else:
        half_width = float(np.hypot(*(frame.mouth[1] - frame.mouth[0]))) / 2
        axes = (half_width + 0.15 * d, 0.2 * d)
        polygons = [_ellipse(frame.mouth.mean(axis=0), frame.u, *axes)]
    return _Region(polygons, float(np.sqrt(axes[0] * axes[1])))


def _splice_region(frame: _FaceFrame, shape: tuple[int, int], rng: np.random.Generator) -> _Region:
    """A random non-empty set of the parts whose centre lies in the image (the whole face
    when none does): each eye on its own, the nose, the mouth."""
    eyes = _part_region(frame, "eyes")
    parts = [_Region([polygon], eyes.radius) for polygon in eyes.polygons] + [
        _part_region(frame, "nose"),
        _part_region(frame, "mouth"),
    ]
    centres = [*frame.eyes, _part_centre(frame, "nose"), _part_centre(frame, "mouth")]
    inside = [part for part, centre in zip(parts, centres) if _inside(centre, shape)]
    if not inside:
        return _face_region(frame, np.vstack([frame.eyes, frame.nose, frame.mouth]))
    chosen = int(rng.integers(1, 2 ** len(inside)))  # the bits of a non-empty subset
    picked = [part for bit, part in enumerate(inside) if chosen >> bit & 1]
    # The smallest part sets the deformation, so a small eye is not warped away.
    return _Region(
        [p for part in picked for p in part.polygons], min(part.radius for part in picked)
    )


def _fallback_region(shape: tuple[int, int]) -> _Region:
    height, width = shape
    centre = np.array([_FALLBACK_CENTRE[0] * width, _FALLBACK_CENTRE[1] * height])
    axes = (_FALLBACK_AXES[0] * width, _FALLBACK_AXES[1] * height)
    return _Region(
        [_ellipse(centre, np.array([1.0, 0.0]), *axes)], float(np.sqrt(axes[0] * axes[1]))
    )


def _ellipse(centre: np.ndarray, axis: np.ndarray, a: float, b: float) -> np.ndarray:
    """24 points of the ellipse with semi-axis `a` along unit vector `axis`, `b` across it."""
    across = np.array([-axis[1], axis[0]])
    angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    return centre + np.outer(a * np.cos(angles), axis) + np.outer(b * np.sin(angles), across)


def _draw_mask(
    region: _Region, shape: tuple[int, int], rng: np.random.Generator, config: SbiConfig
) -> np.ndarray:
    """The region filled, deformed (outline jitter, elastic warp, erode or dilate), softened."""
    radius = region.radius
    mask = np.zeros(shape, np.float32)
    for polygon in region.polygons:
        jitter = rng.uniform(-1.0, 1.0, polygon.shape) * config.mask_vertex_jitter * radius
        vertices = np.round((polygon + jitter) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(mask, [vertices], 1.0, lineType=cv2.LINE_8, shift=4)
    mask = _warp(mask, _smooth_displacement(rng, shape, config.mask_elastic * radius))

    # Blur then threshold: a threshold below 0.5 grows the mask, above 0.5 shrinks it.
    if config.mask_erode_sigma > 0:
        soft = cv2.GaussianBlur(mask, (0, 0), config.mask_erode_sigma * radius)
        threshold = rng.uniform(*config.mask_threshold)
        mask = (soft >= threshold).astype(np.float32)
    edge_sigma = rng.uniform(*config.mask_edge_sigma) * radius
    mask = cv2.GaussianBlur(mask, (0, 0), edge_sigma)
    return np.clip(mask, 0.0, 1.0)


# --- source --------------------------------------------------------------------------------


def _alter_appearance(image: np.ndarray, rng: np.random.Generator, config: SbiConfig) -> np.ndarray:
    """Colour steps, then one frequency step, each drawn with its probability."""
    steps: list[tuple[Callable[..., np.ndarray], float]] = [
        (_shift_rgb, config.rgb_shift_prob),
        (_shift_hsv, config.hsv_prob),
        (_brightness_contrast, config.brightness_contrast_prob),
        (_frequency, config.frequency_prob),
    ]
    drawn = [step for step, probability in steps if rng.random() < probability]
    if not drawn:
        drawn = [steps[rng.integers(len(steps))][0]]
    for step in drawn:
        image = np.clip(step(image, rng, config), 0.0, 255.0)
    if config.generator_trace_prob and rng.random() < config.generator_trace_prob:
        image = _generator_trace(image, rng, config)
    return image


def _generator_trace(image: np.ndarray, rng: np.random.Generator, config: SbiConfig) -> np.ndarray:
    if config.tracers:
        return learned_trace(image, rng, config.tracers)
    return upsampling_trace(image, rng)


def _shift_rgb(image: np.ndarray, rng: np.random.Generator, config: SbiConfig) -> np.ndarray:
    shift = rng.uniform(-config.rgb_shift_limit, config.rgb_shift_limit, 3)
    return image + shift.astype(np.float32)


def _shift_hsv(image: np.ndarray, rng: np.random.Generator, config: SbiConfig) -> np.ndarray:
    # Float RGB in [0, 1] gives hue in degrees and saturation, value in [0, 1].
    hsv = cv2.cvtColor(image / 255.0, cv2.COLOR_RGB2HSV)
    hue = rng.uniform(-config.hue_shift_limit, config.hue_shift_limit)
    saturation = 1.0 + rng.uniform(-config.saturation_limit, config.saturation_limit)
    value = 1.0 + rng.uniform(-config.value_limit, config.value_limit)
    hsv[:, :, 0] = np.mod(hsv[:, :, 0] + hue, 360.0)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * saturation, 0.0, 1.0)
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] * value, 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def _brightness_contrast(
    image: np.ndarray, rng: np.random.Generator, config: SbiConfig
) -> np.ndarray:
    brightness = rng.uniform(-config.brightness_limit, config.brightness_limit) * 255.0
    contrast = 1.0 + rng.uniform(-config.contrast_limit, config.contrast_limit)
    mean = image.mean(axis=(0, 1), keepdims=True)
    return (image - mean) * contrast + mean + brightness


def _frequency(image: np.ndarray, rng: np.random.Generator, config: SbiConfig) -> np.ndarray:
    """Blur, sharpen, or downscale and upscale again (a face rendered at a lower resolution)."""
    choice = rng.integers(3)
    if choice == 0:
        return cv2.GaussianBlur(image, (0, 0), rng.uniform(*config.blur_sigma))
    if choice == 1:
        detail = image - cv2.GaussianBlur(image, (0, 0), 1.0)
        return image + rng.uniform(*config.sharpen_amount) * detail
    height, width = image.shape[:2]
    factor = rng.uniform(*config.downscale_factor)
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    reduced = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(reduced, (width, height), interpolation=cv2.INTER_LINEAR)


def _splice(
    image: np.ndarray, points: np.ndarray, donor: Donor, rng: np.random.Generator, config: SbiConfig
) -> tuple[np.ndarray, np.ndarray] | None:
    """The mask of the pasted parts and the aligned, colour-matched donor; None when the
    donor's picture covers less than half of the parts (their fake would be barely one)."""
    _check_image(donor.image)
    donor_points = _check_landmarks(donor.landmarks, donor.image.shape)
    frame = _FaceFrame.from_points(points)
    shape = image.shape[:2]
    drawn = _draw_mask(_splice_region(frame, shape, rng), shape, rng, config)
    aligned, valid = _aligned(donor.image, _FaceFrame.from_points(donor_points), frame, shape)
    # Nothing pasted from, or onto, the black padding of a crop: no picture there.
    mask = drawn * valid * image.any(axis=2)
    if mask.sum() < _MIN_SPLICE_COVER * drawn.sum():
        return None
    target = image.astype(np.float32)
    return mask, _match_colours(aligned, target, mask, rng.uniform(*config.splice_colour_match))


def _aligned(
    donor: np.ndarray, donor_face: _FaceFrame, target_face: _FaceFrame, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The donor image moved (similarity transform) so its five points fall on the target's,
    and where it has picture: 0 beyond its edges and on the black padding of a face crop that
    ran over its photo's border (`crop_face`)."""
    matrix = _similarity(_five_points(donor_face), _five_points(target_face))
    size = (shape[1], shape[0])
    moved = cv2.warpAffine(
        donor.astype(np.float32),
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    picture = donor.any(axis=2).astype(np.float32)
    valid = cv2.warpAffine(picture, matrix, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    return moved, valid


def _five_points(face: _FaceFrame) -> np.ndarray:
    return np.vstack([face.eyes, face.nose, face.mouth])


def _similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares rotation + uniform scale + shift taking `source` points to `target`.

    Closed form (Umeyama without reflection): with both point sets centred, the best
    a + ib is sum(conj(s) t) / sum(|s|^2) in complex numbers.
    """
    s = source - source.mean(axis=0)
    t = target - target.mean(axis=0)
    norm = max(float((s**2).sum()), 1e-9)
    a = float((s * t).sum()) / norm
    b = float((s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()) / norm
    rotation = np.array([[a, -b], [b, a]])
    shift = target.mean(axis=0) - rotation @ source.mean(axis=0)
    return np.hstack([rotation, shift[:, None]]).astype(np.float32)


def _match_colours(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray, strength: float
) -> np.ndarray:
    """`source` with its per-channel mean and spread under `weights` moved toward `target`'s."""
    w = weights[:, :, None].astype(np.float64)
    total = max(float(w.sum()), 1e-6)

    def moments(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = (image * w).sum(axis=(0, 1)) / total
        spread = np.sqrt(((image - mean) ** 2 * w).sum(axis=(0, 1)) / total)
        return mean, np.maximum(spread, 1.0)

    source_mean, source_spread = moments(source)
    target_mean, target_spread = moments(target)
    # A gain far from 1 would amplify noise rather than match a colour.
    gain = np.clip(target_spread / source_spread, 0.5, 2.0)
    matched = (source - source_mean) * gain + target_mean
    return (source + strength * (matched - source)).astype(np.float32)


def _misalign(
    image: np.ndarray, centre: np.ndarray, rng: np.random.Generator, config: SbiConfig
) -> np.ndarray:
    """The source rescaled about the face centre, shifted and gently warped."""
    height, width = image.shape[:2]
    scale = rng.uniform(*config.scale_range, 2)
    shift = rng.uniform(-1.0, 1.0, 2) * config.translate_limit * np.array([width, height])
    bend = _smooth_displacement(rng, (height, width), config.source_elastic * max(height, width))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    # Where each output pixel reads the source: the inverse of scale-then-shift, plus the bend.
    map_x = centre[0] + (xs - centre[0] - shift[0]) / scale[0] + bend[:, :, 0]
    map_y = centre[1] + (ys - centre[1] - shift[1]) / scale[1] + bend[:, :, 1]
    return cv2.remap(
        image,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def _centre(points: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if points is None:
        return np.array([shape[1] / 2, shape[0] / 2])
    return points.mean(axis=0)


def _inside(point: np.ndarray, shape: tuple[int, int]) -> bool:
    return bool(0 <= point[0] < shape[1] and 0 <= point[1] < shape[0])


def _smooth_displacement(
    rng: np.random.Generator, shape: tuple[int, int], amplitude: float
) -> np.ndarray:
    """H x W x 2 displacements (pixels) interpolated from random values on a coarse grid."""
    coarse = rng.uniform(-1.0, 1.0, (_ELASTIC_CELLS + 1, _ELASTIC_CELLS + 1, 2)).astype(np.float32)
    field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return field * np.float32(amplitude)


def _warp(mask: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(
        mask,
        xs + displacement[:, :, 0],
        ys + displacement[:, :, 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


# --- landmarks -----------------------------------------------------------------------------


def landmarks_for(paths: Sequence[str | Path], detector: FaceDetector) -> dict[Path, np.ndarray]:
    """Path -> (5, 2) landmarks of its largest face; unreadable and faceless files left out."""
    found: dict[Path, np.ndarray] = {}
    for path, landmarks, reason, _ in _detect_landmarks(paths, detector):
        if landmarks is None:
            logger.info("no landmarks for %s: %s", path, reason)
        else:
            found[path] = landmarks
    return found


def _detect_landmarks(
    paths: Sequence[str | Path], detector: FaceDetector
) -> Iterator[tuple[Path, np.ndarray | None, str | None, np.ndarray | None]]:
    """(path, landmarks or None, reason when None, decoded image or None) for each path."""
    for start in range(0, len(paths), _DETECT_CHUNK):
        decoded: list[tuple[Path, np.ndarray]] = []
        for raw_path in paths[start : start + _DETECT_CHUNK]:
            path = Path(raw_path)
            try:
                decoded.append((path, decode_image(path)))
            except ImageDecodeError as exc:
                yield path, None, exc.reason, None
        detections = detector.detect_batch([image for _, image in decoded])
        for (path, image), detection in zip(decoded, detections):
            if not detection.faces or detection.faces[0].landmarks is None:
                reasons = "; ".join(reason for _, reason in detection.skipped)
                yield path, None, "no face found" + (f" ({reasons})" if reasons else ""), image
            else:
                yield path, detection.faces[0].landmarks.astype(np.float32), None, image


# --- online training data ------------------------------------------------------------------


class SelfBlendedDataset(Dataset):
    """Real faces that come out real (label 0) or self-blended on the fly (label 1).

    In each epoch exactly round(fake_ratio * len) items, chosen by (seed, epoch), are fakes;
    each fake is drawn from (seed, epoch, index) alone, so a run repeats itself. The transform
    must be deterministic too for items to repeat exactly.

    Keys are an index (the epoch set by `set_epoch`) or an (epoch, index) pair. DataLoader
    workers that persist across epochs hold their own copy of the dataset and never see
    `set_epoch`; wrap the sampler in `EpochKeySampler` so the epoch travels with each key.
    Items are (transform(image), label), or None for a file that cannot be decoded (use
    `collate_skip_broken`). Images missing from `landmarks` are blended with the fallback
    ellipse. With `with_masks` (the transform must be an `AugmentTransform`), items are
    (image, label, mask, known): the blend mask through the image's geometry (all zeros for
    a real face) and known = 1.0, as every mask here is known.
    """

    def __init__(
        self,
        real_samples: Sequence[Sample],
        transform: Callable[[np.ndarray], torch.Tensor],
        landmarks_provider: Mapping[Path, np.ndarray],
        fake_ratio: float = 0.5,
        seed: int = 0,
        config: SbiConfig | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        with_masks: bool = False,
    ):
        if not 0.0 <= fake_ratio <= 1.0:
            raise ValueError(f"fake_ratio must be in [0, 1], got {fake_ratio}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        fakes = [sample for sample in real_samples if sample.label != 0]
        if fakes:
            raise ValueError(
                f"SelfBlendedDataset takes real images only; {len(fakes)} sample(s) have label "
                f"{fakes[0].label}, e.g. {fakes[0].path}"
            )
        self.samples = list(real_samples)
        self.transform = transform
        # Looked up once per sample, by resolved path, so relative and absolute paths agree.
        provided = {Path(path).resolve(): points for path, points in landmarks_provider.items()}
        self.landmarks = [provided.get(Path(sample.path).resolve()) for sample in self.samples]
        # Splice donors: the faces with landmarks, and each one's place among them.
        self._donors = [i for i, points in enumerate(self.landmarks) if points is not None]
        self._donor_position = {index: position for position, index in enumerate(self._donors)}
        self.fake_ratio = fake_ratio
        self.seed = seed
        self.config = config or SbiConfig()
        self.max_pixels = max_pixels
        self.with_masks = with_masks
        self.epoch = 0
        self._fakes_of_epoch: tuple[int, np.ndarray] | None = None
        # Per process: each DataLoader worker warns once about each file it meets.
        self._warned: set[str] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def is_fake(self, index: int, epoch: int) -> bool:
        if self._fakes_of_epoch is None or self._fakes_of_epoch[0] != epoch:
            count = len(self.samples)
            order = np.random.default_rng([self.seed, epoch]).permutation(count)
            chosen = np.zeros(count, dtype=bool)
            chosen[order[: round(self.fake_ratio * count)]] = True
            self._fakes_of_epoch = (epoch, chosen)
        return bool(self._fakes_of_epoch[1][index])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple | None:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample = self.samples[index]
        image = decode_or_warn(sample.path, self.max_pixels, self._warned)
        if image is None:
            return None
        if not self.is_fake(index, epoch):
            pixels = self.transform(image)
            return with_mask_target(pixels, 0) if self.with_masks else (pixels, 0)
        # A stream of its own, apart from the [seed, epoch] one that picks the fakes.
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        fake, mask = self_blend(
            image, self.landmarks[index], rng, self.config, self._donor(index, rng)
        )
        if not self.with_masks:
            return self.transform(fake), 1
        pixels, mask = self.transform.with_mask(fake, mask)
        return pixels, 1, mask, 1.0

    def _donor(self, index: int, rng: np.random.Generator) -> Donor | None:
        position = self._donor_position.get(index)
        if position is None:
            return None
        picked = pick_donor(rng, self.config, position, len(self._donors))
        if picked is None:
            return None
        donor_index = self._donors[picked]
        image = decode_or_warn(self.samples[donor_index].path, self.max_pixels, self._warned)
        # An unreadable donor leaves a plain self-blend.
        return None if image is None else Donor(image, self.landmarks[donor_index])


class EpochKeySampler(Sampler[tuple[int, int]]):
    """Turns a sampler's indices into (epoch, index) keys for `SelfBlendedDataset`.

    Lightning calls `set_epoch` on the loader's sampler every epoch in the main process; the
    keys carry the epoch to every worker, persistent or not. `set_epoch` is passed on to the
    wrapped sampler (an epoch-seeded shuffle keeps working).
    """

    def __init__(self, sampler: Sampler[int]):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        inner = getattr(self.sampler, "set_epoch", None)
        if callable(inner):
            inner(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class WithSelfBlends(Dataset):
    """A data set followed by self-blended copies of its real images, keyed (epoch, index).

    With the blend masks on, both must give (image, label, mask, known) items.
    """

    def __init__(self, base: Dataset, blends: SelfBlendedDataset):
        self.base = base
        self.blends = blends

    def __len__(self) -> int:
        return len(self.base) + len(self.blends)

    def __getitem__(self, key: tuple[int, int]) -> tuple | None:
        epoch, index = key
        if index >= len(self.base):
            return self.blends[(epoch, index - len(self.base))]
        return self.base[index]


# --- offline generation --------------------------------------------------------------------


def synthesize_sbi(
    real_dir: str | Path,
    out_dir: str | Path,
    n_per_image: int = 1,
    seed: int = 0,
    detector: FaceDetector | None = None,
    config: SbiConfig | None = None,
) -> dict[str, Any]:
    """Write `n_per_image` self-blended fakes of every real image under `real_dir`.

    Layout: OUT_DIR/fake/<relative path>_sbi<k>.png, OUT_DIR/masks/<same name> (8-bit mask)
    and OUT_DIR/sbi_manifest.json (for each fake: source file, seed, blend ratio, mask kind,
    landmarks; the files skipped as unreadable or faceless, with the reason). Fakes and masks
    sit in separate folders so OUT_DIR/fake can serve as a fake class folder by itself.
    PNG, because a lossy format would give the fakes a compression history the reals lack:
    a shortcut a detector learns instead of the blending. Each fake depends only on
    (seed, relative path, k), so adding files does not change the others; a splice's donor
    is drawn from the faces found, so with `config.splice_prob` it depends on those too.
    Returns a summary: counts, out_dir and manifest path.
    """
    if n_per_image < 1:
        raise ValueError(f"n_per_image must be at least 1, got {n_per_image}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    real_root = Path(real_dir).resolve()
    out_root = Path(out_dir).resolve()
    if out_root == real_root or real_root in out_root.parents:
        raise DataError(
            f"out_dir {out_root} lies inside real_dir {real_root}: the fakes would be taken for "
            "real images on the next run"
        )
    config = config or SbiConfig()
    paths = find_images(real_root)
    detector = detector or FaceDetector()

    fakes: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    # Landmarks of every face first: any of them can be a splice's donor. Images are decoded
    # again below rather than all held in memory.
    faces: list[tuple[Path, np.ndarray]] = []
    for path, landmarks, reason, _ in _detect_landmarks(paths, detector):
        if landmarks is None:
            logger.warning("skipping %s: %s", path, reason)
            skipped.append(
                {"source": path.relative_to(real_root).as_posix(), "reason": str(reason)}
            )
        else:
            faces.append((path, landmarks))
    for position, (path, landmarks) in enumerate(faces):
        relative = path.relative_to(real_root)
        try:
            image = decode_image(path)
        except ImageDecodeError as exc:  # changed since its landmarks were found
            skipped.append({"source": relative.as_posix(), "reason": exc.reason})
            continue
        for k in range(n_per_image):
            entropy = [seed, zlib.crc32(relative.as_posix().encode("utf-8")), k]
            rng = np.random.default_rng(entropy)
            picked = pick_donor(rng, config, position, len(faces))
            donor = None
            if picked is not None:
                try:
                    donor = Donor(decode_image(faces[picked][0]), faces[picked][1])
                except ImageDecodeError:  # changed since: a plain self-blend instead
                    picked = None
            result = self_blend_details(image, landmarks, rng, config, donor)
            name = relative.with_name(f"{relative.stem}_sbi{k}.png")
            atomic_write_bytes(out_root / FAKE_FOLDER / name, encode_png(result.fake))
            mask_pixels = np.rint(result.mask * 255).astype(np.uint8)
            atomic_write_bytes(out_root / MASK_FOLDER / name, encode_png(mask_pixels))
            fakes.append(
                {
                    "file": (Path(FAKE_FOLDER) / name).as_posix(),
                    "mask": (Path(MASK_FOLDER) / name).as_posix(),
                    "source": relative.as_posix(),
                    "seed": entropy,
                    "blend_ratio": result.blend_ratio,
                    "mask_kind": result.kind,
                    "landmarks": landmarks.tolist(),  # float32 values, exact in JSON
                    "donor": (
                        faces[picked][0].relative_to(real_root).as_posix()
                        if result.kind == "splice"
                        else None
                    ),
                }
            )

    manifest = out_root / MANIFEST_NAME
    atomic_write_json(
        manifest,
        {
            "format": _MANIFEST_FORMAT,
            "version": _MANIFEST_VERSION,
            "real_dir": str(real_root),
            "seed": seed,
            "n_per_image": n_per_image,
            "seed_note": (
                "each fake: rng = numpy.random.default_rng([seed, crc32(source), k]); with "
                "splice_prob > 0, pick_donor(rng, ...) draws first, "
                "then self_blend(..., rng, donor)"
            ),
            "config": config.model_dump(mode="json"),
            "fakes": fakes,
            "skipped": skipped,
        },
    )
    return {
        "images": len(paths),
        "fakes": len(fakes),
        "skipped": len(skipped),
        "out_dir": str(out_root),
        "manifest": str(manifest),
    }
