"""Generator traces: content kept, a period-2 up-sampling pattern added, and SBI wiring."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fakescope.data.sbi import SbiConfig, self_blend_details
from fakescope.data.traces import upsampling_trace


def smooth_face_like(size: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth colour variation only: any period-2 energy in a trace comes from the trace."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 215, (4, 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255).astype(
        np.uint8
    )


def textured(size: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = smooth_face_like(size, seed) + rng.normal(0, 10, (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def top_band_share(image: np.ndarray) -> float:
    """The share of the spectrum's energy above 0.35 cycles/pixel (where up-sampling leaves
    its replicas and period-2 peaks)."""
    grey = image.astype(np.float64).mean(axis=2)
    spectrum = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy = np.abs(np.fft.fftfreq(grey.shape[0]))[:, None]
    fx = np.abs(np.fft.fftfreq(grey.shape[1]))[None, :]
    return float(spectrum[np.maximum(fy, fx) > 0.35].sum() / spectrum.sum())


def clean_resampling(image: np.ndarray) -> np.ndarray:
    """The same halving, then an interpolator with no up-sampling artefact to speak of."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("shape", [(96, 96), (97, 131)])
def test_trace_keeps_shape_range_and_content(shape):
    image = cv2.resize(smooth_face_like(), shape[::-1])
    for seed in range(6):
        traced = upsampling_trace(image, np.random.default_rng(seed))
        assert traced.shape == image.shape and traced.dtype == np.float32
        assert traced.min() >= 0.0 and traced.max() <= 255.0
        # The face is the same face: a few grey levels of change on average, not a new image.
        assert np.abs(traced - image).mean() < 8.0


def test_trace_leaves_more_high_frequency_energy_than_a_clean_resampling():
    image = textured()
    clean = top_band_share(clean_resampling(image))
    shares = [top_band_share(upsampling_trace(image, np.random.default_rng(s))) for s in range(12)]
    # Both kinds of layer (seeds pick one at random) leave replicas a cubic interpolator does not.
    assert min(shares) > 1.1 * clean


def test_trace_is_reproducible_from_its_generator():
    image = smooth_face_like()
    first = upsampling_trace(image, np.random.default_rng(3))
    again = upsampling_trace(image, np.random.default_rng(3))
    other = upsampling_trace(image, np.random.default_rng(4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_generated_fakes_are_whole_re_rendered_images():
    image = smooth_face_like()
    result = self_blend_details(
        image, None, np.random.default_rng(0), SbiConfig(generated_prob=1.0)
    )
    assert result.kind == "generated" and result.mask.min() == 1.0
    assert result.fake.dtype == np.uint8 and not np.array_equal(result.fake, image)


def test_traced_sources_change_the_fake_inside_the_blend_mask_only():
    image = textured(128)
    # Same seed, same draws (a probability of 0 would skip the draw): only whether the
    # source was re-rendered differs.
    traced = self_blend_details(
        image, None, np.random.default_rng(1), SbiConfig(generator_trace_prob=1.0)
    )
    plain = self_blend_details(
        image, None, np.random.default_rng(1), SbiConfig(generator_trace_prob=1e-12)
    )
    assert np.array_equal(traced.mask, plain.mask)
    outside, inside = traced.mask == 0, traced.mask >= 0.9 * traced.mask.max()
    assert np.array_equal(traced.fake[outside], image[outside])
    changed = np.abs(traced.fake.astype(int) - plain.fake.astype(int))[inside].mean()
    assert changed > 1.0
