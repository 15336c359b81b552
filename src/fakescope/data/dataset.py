"""A torch Dataset over discovered samples; files that break after discovery are skipped."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Mapping

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from fakescope.data.discovery import Sample
from fakescope.data.pairmasks import read_mask
from fakescope.io.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

logger = logging.getLogger(__name__)

# The seed's sharpening kernel: the image plus its negative Laplacian.
SHARPEN_KERNEL = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32)


def laplacian_variance(image: np.ndarray) -> float:
    """Focus measure of an RGB uint8 image: variance of the Laplacian of its gray levels."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def sharpen(image: np.ndarray) -> np.ndarray:
    return cv2.filter2D(image, -1, SHARPEN_KERNEL)


class ImageDataset(Dataset):
    """Items are (transform(image), label), or None for a file that cannot be decoded.

    Use `collate_skip_broken` as the DataLoader's collate_fn to drop the None items.
    sharpen_blurry: sharpen images whose Laplacian variance is below `blur_threshold`.
    masks: for the blend-mask loss, {resolved path: mask file} of the fakes whose altered
        pixels are known (`pairmasks`); items are then (image, label, mask, known), the mask
        through the image's geometry (the transform must be an `AugmentTransform`).
    """

    def __init__(
        self,
        samples: list[Sample],
        transform: Callable[[np.ndarray], torch.Tensor],
        sharpen_blurry: bool = False,
        blur_threshold: float = 100.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        masks: Mapping[Path, Path] | None = None,
    ):
        self.samples = list(samples)
        self.masks = masks
        # Looked up once, not per item: each sample's mask file, None where none is known.
        self.mask_files = (
            None
            if masks is None
            else [masks.get(Path(s.path).resolve()) if s.label else None for s in self.samples]
        )
        self.transform = transform
        self.sharpen_blurry = sharpen_blurry
        self.blur_threshold = blur_threshold
        self.max_pixels = max_pixels
        # Per process: each DataLoader worker warns once about each file it meets.
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple | None:
        sample = self.samples[index]
        image = decode_or_warn(sample.path, self.max_pixels, self._warned)
        if image is None:
            return None
        if self.sharpen_blurry and laplacian_variance(image) < self.blur_threshold:
            image = sharpen(image)
        if self.mask_files is None:
            return self.transform(image), sample.label
        mask_file = self.mask_files[index]
        if mask_file is None:
            return with_mask_target(self.transform(image), sample.label)
        mask = cv2.resize(read_mask(mask_file), image.shape[1::-1], interpolation=cv2.INTER_AREA)
        pixels, mask = self.transform.with_mask(image, mask)
        return pixels, sample.label, mask, 1.0


def decode_or_warn(path: Path, max_pixels: int, warned: set[str]) -> np.ndarray | None:
    """The image, or None for a file that broke after validation (warned about once)."""
    try:
        return decode_image(path, max_pixels)
    except ImageDecodeError as exc:
        if exc.source not in warned:
            warned.add(exc.source)
            logger.warning("skipping a broken image during loading: %s", exc)
        return None


def with_mask_target(pixels: torch.Tensor, label: int) -> tuple:
    """An item without a known mask, as (image, label, mask, known) for the mask loss.

    A real face is known to be altered nowhere (mask all zeros, known 1.0); where a fake
    was altered is not known (known 0.0: the loss leaves it out).
    """
    return pixels, label, torch.zeros(pixels.shape[-2:]), float(label == 0)


def collate_skip_broken(batch: list[tuple | None]) -> tuple | None:
    """Default collate without the None items; None when the whole batch was broken.

    A LightningModule step that receives None should skip the batch (return None).
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    return default_collate(items)
