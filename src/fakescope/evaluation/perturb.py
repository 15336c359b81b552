"""The degradations of a robustness sweep: what sharing, re-saving and resizing do to an image.

Each perturbation maps an RGB uint8 image to one of the same size, deterministically (noise is
seeded from the image itself), so a sweep can be repeated to the bit. They are partials of
module-level functions, so DataLoader workers can pickle them.
"""

from __future__ import annotations

import zlib
from functools import partial
from typing import Callable

import cv2
import numpy as np

Perturbation = Callable[[np.ndarray], np.ndarray]


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)


def gaussian_noise(image: np.ndarray, std: float) -> np.ndarray:
    """Additive noise of `std` grey levels, seeded by the image's bytes."""
    rng = np.random.default_rng(zlib.crc32(image.tobytes()))
    noisy = image.astype(np.float32) + rng.normal(0.0, std, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by `factor` and back: the detail a small upload loses."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image,
        (max(1, round(width * factor)), max(1, round(height * factor))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


# The sweep that `fakescope evaluate --robustness` runs, in the order it reports.
SWEEP: dict[str, Perturbation] = {
    "jpeg_95": partial(jpeg, quality=95),
    "jpeg_75": partial(jpeg, quality=75),
    "jpeg_50": partial(jpeg, quality=50),
    "jpeg_30": partial(jpeg, quality=30),
    "blur_sigma_1": partial(gaussian_blur, sigma=1.0),
    "blur_sigma_2": partial(gaussian_blur, sigma=2.0),
    "noise_std_8": partial(gaussian_noise, std=8.0),
    "downscale_0.5": partial(downscale, factor=0.5),
    "downscale_0.25": partial(downscale, factor=0.25),
}
