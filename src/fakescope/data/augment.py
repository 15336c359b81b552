"""Augmentation presets (Albumentations 2.x) that end in a normalised CHW float tensor.

Every preset's evaluation transform (and the "none" preset) is the same: resize to the
detector's input size, normalise with its mean/std. Training presets:

- "light":    flips, mild brightness/contrast, mild JPEG re-compression;
- "enhanced": many photometric and geometric branches, noise, blur, JPEG, distortions,
              cut-outs (the multi-branch seed recipe);
- "robust":   resize a little larger and random-crop, then rotation/scale, colour jitter,
              strong JPEG, blur, down-scaling and noise (the EfficientNet-B4 seed recipe,
              built to survive re-encoded and resized images);
- "degrade":  "light", then (sometimes) one of the degradations files meet on their way to a
              scan, at the strengths of `fakescope evaluate --robustness`: Gaussian blur up to
              sigma 2, Gaussian noise, down-scaling to a quarter, JPEG down to quality 30.
              The default detector's preset: mild enough to leave most faces sharp.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import get_worker_info

# Albumentations asks PyPI for a newer version of itself when imported (an HTTP request,
# up to 2 s when offline); fakescope never goes online on its own.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402

PRESETS = ("none", "light", "enhanced", "robust", "degrade")

# The robust seed resized 380-pixel inputs to 412 before a random 380 crop.
_ROBUST_RESIZE_RATIO = 412 / 380


class AugmentTransform:
    """Callable image (H x W x 3 uint8 RGB) -> tensor (3 x S x S float32).

    A class rather than a closure so DataLoader workers can pickle it. Each worker re-seeds
    the pipeline from its own torch seed: forked workers would otherwise repeat each
    other's random augmentations, and a seeded run would not be reproducible.
    """

    def __init__(self, pipeline: A.Compose):
        self.pipeline = pipeline
        self._worker_seed: int | None = None

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        self._seed_for_worker()
        return self.pipeline(image=image)["image"]

    def with_mask(self, image: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The image and a mask of its pixels (H x W float) through the same geometry.

        Crops, flips and resizes move the mask with the image; photometric steps leave it.
        """
        self._seed_for_worker()
        out = self.pipeline(image=image, mask=mask)
        return out["image"], out["mask"]

    def _seed_for_worker(self) -> None:
        worker = get_worker_info()
        if worker is not None and worker.seed != self._worker_seed:
            self._worker_seed = worker.seed
            self.pipeline.set_random_seed(worker.seed % 2**32)


def build_transform(
    preset: str,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    seed: int | None = None,
    equalize_history: bool = False,
    reframe: tuple[float, float] | None = None,
) -> Callable[[np.ndarray], torch.Tensor]:
    """The transform for `preset`; `train=False` gives the deterministic evaluation transform.

    equalize_history: (training only) give every image, real or fake, a new file history
        first, so that how a class was saved cannot be learnt in place of the face.

    reframe: (training only) (p, min_scale): with probability p, cut the image to a random
        window whose sides are min_scale to 1 of the image's, before everything else.

    seed: seeds the augmentations in the main process; None takes torch's seed, so a run
        seeded with `torch.manual_seed` / Lightning's `seed_everything` repeats itself.
        DataLoader workers always re-seed from their own torch worker seed.
    """
    if preset not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {preset!r}; choose one of {', '.join(PRESETS)}"
        )
    if input_size <= 0:
        raise ValueError(f"input_size must be positive, got {input_size}")
    if not train or preset == "none":
        steps = [_resize(input_size)]
    else:
        steps = _TRAIN_PRESETS[preset](input_size)
    if train and reframe is not None:
        steps = [RandomReframe(min_scale=reframe[1], p=reframe[0]), *steps]
    if train and equalize_history:
        steps = [*_equalize_history(), *steps]
    finish = [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
    if seed is None:
        seed = torch.initial_seed() % 2**32
    return AugmentTransform(A.Compose([*steps, *finish], seed=seed))


class RandomReframe(A.DualTransform):
    """Cut a window of random scale (min_scale to 1, same for both sides) at a random place.

    On a face crop this is another face detector's box: tighter or shifted. The window is
    not resized; the preset's resize that follows brings it to the input size. A mask is cut
    with the image.
    """

    def __init__(self, min_scale: float, p: float = 1.0):
        super().__init__(p=p)
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.min_scale = min_scale

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(self.min_scale, 1.0)
        cut_h, cut_w = max(1, round(height * scale)), max(1, round(width * scale))
        top = self.py_random.randint(0, height - cut_h)
        left = self.py_random.randint(0, width - cut_w)
        return {"window": (top, left, cut_h, cut_w)}

    def apply(self, img: np.ndarray, window: tuple[int, int, int, int], **params) -> np.ndarray:
        top, left, cut_h, cut_w = window
        return np.ascontiguousarray(img[top : top + cut_h, left : left + cut_w])


def _equalize_history() -> list:
    # A random rescale moves any 8x8 JPEG block grid off its blocks; a JPEG encode at a random
    # quality then replaces the quantisation tables the file came with.
    return [
        A.RandomScale(scale_limit=(-0.4, 0.1), interpolation=cv2.INTER_AREA, p=1.0),
        A.ImageCompression(quality_range=(60, 98), p=1.0),
    ]


def _resize(size: int) -> A.Resize:
    return A.Resize(size, size, interpolation=cv2.INTER_LINEAR)


def _light(size: int) -> list:
    return [
        _resize(size),
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.3),
        A.ImageCompression(quality_range=(70, 100), p=0.2),
    ]


def _enhanced(size: int) -> list:
    return [
        _resize(size),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.05),
        A.RandomRotate90(p=0.15),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.4),
        A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=10, p=0.3),
        A.OneOf(
            [
                A.GaussNoise(std_range=(0.02, 0.08)),
                A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.4)),
                A.MultiplicativeNoise(multiplier=(0.9, 1.1)),
            ],
            p=0.3,
        ),
        A.OneOf(
            [
                A.MotionBlur(blur_limit=(3, 5)),
                A.MedianBlur(blur_limit=(3, 5)),
                A.GaussianBlur(blur_limit=(3, 5)),
            ],
            p=0.3,
        ),
        A.ImageCompression(quality_range=(60, 100), p=0.3),
        A.OneOf([A.GridDistortion(distort_limit=(-0.2, 0.2)), A.OpticalDistortion()], p=0.2),
        A.CoarseDropout(
            num_holes_range=(1, 6),
            hole_height_range=(0.05, 0.15),
            hole_width_range=(0.05, 0.15),
            p=0.2,
        ),
    ]


def _robust(size: int) -> list:
    return [
        A.Resize(round(size * _ROBUST_RESIZE_RATIO), round(size * _ROBUST_RESIZE_RATIO)),
        A.RandomCrop(size, size),
        A.HorizontalFlip(p=0.5),
        A.Affine(rotate=(-15, 15), scale=(0.85, 1.15), p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.0, p=0.5),
        A.ImageCompression(quality_range=(30, 100), p=0.5),
        A.GaussianBlur(blur_limit=(3, 7), p=0.2),
        A.Downscale(
            scale_range=(0.5, 0.9),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=0.2,
        ),
        A.GaussNoise(std_range=(0.02, 0.1), p=0.2),
        A.ISONoise(p=0.2),
    ]


def _degrade(size: int) -> list:
    # Degrade at the file's own resolution, before the resize: that is where a re-saved,
    # blurred or shrunk file did its harm. Noise std 0.01-0.05 of the range (~3-13 levels).
    return [
        A.OneOf(
            [
                A.GaussianBlur(sigma_limit=(0.5, 2.0), blur_limit=0),
                A.GaussNoise(std_range=(0.01, 0.05)),
                A.Downscale(
                    scale_range=(0.25, 0.75),
                    interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                ),
            ],
            p=0.3,
        ),
        A.ImageCompression(quality_range=(30, 60), p=0.15),
        *_light(size),
    ]


_TRAIN_PRESETS: dict[str, Callable[[int], list]] = {
    "light": _light,
    "enhanced": _enhanced,
    "robust": _robust,
    "degrade": _degrade,
}
