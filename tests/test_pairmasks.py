"""Masks of where a paired fake differs from its real, and how training finds them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

from fakescope.data.pairmasks import difference_mask, load_crop_masks, mask_name, read_mask


def _swapped(real: np.ndarray, box: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
    """`real` with new content in `box` (x1, y1, x2, y2) and JPEG-like noise elsewhere."""
    rng = np.random.default_rng(seed)
    fake = real.astype(np.int16) + rng.integers(-2, 3, real.shape)
    x1, y1, x2, y2 = box
    fake[y1:y2, x1:x2] = 255 - fake[y1:y2, x1:x2]
    return np.clip(fake, 0, 255).astype(np.uint8)


def test_the_mask_covers_the_swapped_region_and_nothing_far_from_it():
    real = cv2.resize(skdata.astronaut(), (224, 224))
    mask = difference_mask(real, _swapped(real, (80, 60, 150, 140)))
    assert mask is not None and mask.shape == (224, 224) and mask.dtype == np.float32
    assert mask[70:130, 90:140].mean() > 0.95
    assert mask[:40].max() == 0 and mask[190:].max() == 0
    assert 0.0 <= mask.min() and mask.max() <= 1.0


def test_frames_that_do_not_line_up_or_do_not_differ_get_no_mask():
    real = cv2.resize(skdata.astronaut(), (224, 224))
    shifted = np.roll(real, 12, axis=1)
    assert difference_mask(real, _swapped(shifted, (80, 60, 150, 140))) is None
    assert difference_mask(real, real.copy()) is None
    assert difference_mask(real, cv2.resize(real, (200, 200))) is None


def test_masks_are_found_by_the_crop_they_belong_to(tmp_path: Path):
    crops = tmp_path / "crops"
    (crops / "fake").mkdir(parents=True)
    saved = crops / mask_name("fake/abc.png")
    saved.parent.mkdir(parents=True)
    pixels = np.zeros((16, 16), np.uint8)
    pixels[4:8, 4:8] = 255
    cv2.imwrite(str(saved), pixels)
    found = load_crop_masks(crops)
    assert found == {(crops / "fake" / "abc.png").resolve(): saved.resolve()}
    mask = read_mask(saved)
    assert mask.dtype == np.float32 and mask.max() == 1.0 and mask.sum() == 16
    assert load_crop_masks(tmp_path / "no-masks-here") == {}
