"""Where a paired fake differs from the real it was made from: masks for the blend-mask loss.

A dfdc-faces fake is the frame of its real video with another face swapped in, so the two
differ where the swap went and, elsewhere, by compression noise only. That difference,
smoothed and closed into regions, is a mask of the swap that no self-blend can give: where
a real generator changed a face. Pairs whose frames do not line up (another frame, another
crop) differ everywhere, most visibly along the border, and get no mask.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

MASKS_DIR = "face_masks"

# Levels (0-255) of the largest channel difference, after smoothing: below LOW, compression
# noise (the aligned pairs' borders differ by about 3); from HIGH up, surely changed.
DIFFERENCE_LOW, DIFFERENCE_HIGH = 6.0, 24.0
SMOOTHING = 0.013  # Gaussian sigma, as a share of the image side (3 px at 224)
CLOSING = 0.07  # closing kernel, as a share of the side: fills the swap's flat patches
BORDER = 0.1  # the ring along the edges that a swap rarely reaches, as a share of the side
# Above this mean of the mask on the ring, the frames do not line up. dfdc-faces: about two
# pairs in three pass (the ring's median is 0.075; a shifted frame scores 0.5 or more).
MAX_BORDER_CHANGE = 0.15
MIN_CHANGE = 0.002  # a fake this close to its real (100 px of 224 x 224) shows no swap


def difference_mask(real: np.ndarray, fake: np.ndarray) -> np.ndarray | None:
    """A float32 mask in [0, 1] of where `fake` differs from `real` (RGB uint8, one size).

    None when the two do not line up or hardly differ: then the swap's place is unknown.
    """
    if real.shape != fake.shape or real.ndim != 3:
        return None
    side = min(real.shape[:2])
    difference = np.abs(real.astype(np.float32) - fake.astype(np.float32)).max(axis=2)
    difference = cv2.GaussianBlur(difference, (0, 0), max(0.5, SMOOTHING * side))
    mask = np.clip((difference - DIFFERENCE_LOW) / (DIFFERENCE_HIGH - DIFFERENCE_LOW), 0.0, 1.0)
    kernel_side = 2 * round(CLOSING * side / 2) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_side, kernel_side))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    ring = np.ones(mask.shape, dtype=bool)
    width = max(1, round(BORDER * side))
    ring[width:-width, width:-width] = False
    if mask[ring].mean() > MAX_BORDER_CHANGE or mask.mean() < MIN_CHANGE:
        return None
    return mask.astype(np.float32)


def mask_name(crop_name: str) -> str:
    """Where a crop's mask lies, relative to the crops folder: `face_masks/fake/abc.png`."""
    return f"{MASKS_DIR}/{crop_name}"


def load_crop_masks(crops_root: str | Path) -> dict[Path, Path]:
    """{resolved crop path: its mask file} for every mask under a crops folder."""
    crops_root = Path(crops_root).resolve()
    masks_root = crops_root / MASKS_DIR
    found = sorted(masks_root.rglob("*.png"))
    return {crops_root / path.relative_to(masks_root): path for path in found}


def read_mask(path: str | Path) -> np.ndarray:
    """A saved mask (8-bit gray PNG) as float32 in [0, 1]."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        raise ValueError(f"cannot read the mask {path}")
    return pixels.astype(np.float32) / 255.0
