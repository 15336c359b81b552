"""Robustness perturbations: same size, deterministic, and each really degrades."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from skimage import data as skdata

from fakescope.evaluation.perturb import SWEEP


@pytest.mark.parametrize("name", list(SWEEP))
def test_each_perturbation_keeps_the_size_repeats_and_changes_the_image(name: str):
    image = skdata.astronaut()[:200, :240]
    out = SWEEP[name](image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, SWEEP[name](image))
    assert not np.array_equal(out, image)
    assert pickle.loads(pickle.dumps(SWEEP[name]))(image).shape == image.shape


def test_stronger_settings_lose_more():
    image = skdata.astronaut()[:200, :240].astype(np.float32)
    error = {n: np.abs(SWEEP[n](image.astype(np.uint8)) - image).mean() for n in SWEEP}
    assert error["jpeg_30"] > error["jpeg_75"] > error["jpeg_95"]
    assert error["blur_sigma_2"] > error["blur_sigma_1"]
    assert error["downscale_0.25"] > error["downscale_0.5"]
