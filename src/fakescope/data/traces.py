"""Generator traces: a real face re-rendered through the up-sampling layer of a generator.

Every GAN, autoencoder face swap and latent diffusion decoder ends in up-sampling layers
(transposed convolutions, or nearest-neighbour up-sampling followed by a convolution). Their
learnt kernels never interpolate perfectly: the four output phases of a stride-2 layer get
slightly different gains and blurs, which leaves a period-2 pattern in the pixels and
replicas of the spectrum at half the sampling rate (Zhang, Karaman & Chang, "Detecting and
Simulating Artifacts in GAN Fake Images", WIFS 2019; Durall et al., CVPR 2020). AutoGAN
trains an autoencoder to reproduce such an up-sampler. Training one here would teach the
detector the fingerprint of that one autoencoder; drawing a new imperfect up-sampling kernel
for every image instead gives the whole family of such fingerprints, costs no training, and
leaves the face content unchanged, so the only thing that tells the copy from the original
is the up-sampling trace itself.
"""

from __future__ import annotations

import cv2
import numpy as np

# A 4-tap stride-2 transposed convolution that interpolates exactly (bilinear): both output
# phases sum to 1 (0.25 + 0.75). Jittering its taps breaks that balance, as learnt kernels do.
_BILINEAR_TAPS = np.array([0.25, 0.75, 0.75, 0.25], dtype=np.float32)
# Relative tap jitter (standard deviation): the weakest traces sit near the JPEG noise floor,
# the strongest are visible checkerboards.
_TAP_JITTER = (0.03, 0.15)
# Per-channel gain spread: colour channels leave the last layer through different filters.
_CHANNEL_JITTER = 0.02


def upsampling_trace(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (H x W x 3, uint8 or float 0..255) halved, then up-sampled 2x by a random layer.

    Returns float32 H x W x 3 in 0..255 (not rounded: callers blend or encode it).
    """
    height, width = image.shape[:2]
    pixels = image.astype(np.float32)
    small = cv2.resize(pixels, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        upsampled = _transposed_convolution(small, rng)
    else:
        upsampled = _nearest_then_convolution(small, rng)
    gains = 1.0 + rng.normal(0.0, _CHANNEL_JITTER, 3).astype(np.float32)
    return np.clip(upsampled[:height, :width] * gains, 0.0, 255.0)


def _transposed_convolution(small: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Zero insertion then a jittered 4x4 kernel: a stride-2 transposed convolution."""
    h, w = small.shape[:2]
    spread = rng.uniform(*_TAP_JITTER)
    taps = _BILINEAR_TAPS[:, None] * _BILINEAR_TAPS[None, :]
    kernel = taps * (1.0 + rng.normal(0.0, spread, taps.shape)).astype(np.float32)
    # Keep the mean gain at 1 (4 inputs feed each output on average): only the phases differ.
    kernel *= 4.0 / kernel.sum()
    inserted = np.zeros((2 * h, 2 * w, 3), dtype=np.float32)
    inserted[::2, ::2] = small
    return cv2.filter2D(inserted, -1, kernel, borderType=cv2.BORDER_REFLECT)


def _nearest_then_convolution(small: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Nearest-neighbour 2x up-sampling then a random 3x3 kernel near the identity.

    A learnt kernel there is no clean low-pass: it leaves much of the 2x2 blockiness (the
    spectral replicas of nearest-neighbour imaging) and adds its own ringing.
    """
    upsampled = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    kernel = rng.normal(0.0, rng.uniform(*_TAP_JITTER), (3, 3)).astype(np.float32)
    kernel[1, 1] += 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(upsampled, -1, kernel, borderType=cv2.BORDER_REFLECT)
