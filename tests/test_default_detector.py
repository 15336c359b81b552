"""The shipped default detector: present, small, loadable offline on both backends, consistent."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data as skdata

import fakescope
from fakescope.export.onnx import read_onnx_metadata
from fakescope.inference.loading import DEFAULT_INT8, DEFAULT_WEIGHTS

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default detector in this checkout")

MAX_SHIPPED_BYTES = 25 * 1024 * 1024


def faces() -> list[np.ndarray]:
    photo = skdata.astronaut()
    return [photo, np.ascontiguousarray(photo[:, ::-1]), photo[20:260, 120:340]]


def test_shipped_files_are_small_and_their_cards_agree():
    files = [DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".json"), DEFAULT_INT8]
    assert sum(f.stat().st_size for f in files if f.is_file()) < MAX_SHIPPED_BYTES
    torch_card = fakescope.load("default", backend="torch").card
    if DEFAULT_INT8.is_file():
        onnx_card = read_onnx_metadata(DEFAULT_INT8)["card"]
        assert onnx_card == torch_card.model_dump(mode="json")


def test_default_scores_faces_on_both_backends_alike():
    reference = fakescope.load("default", backend="torch")
    assert reference.card.face_crop == "mtcnn" and reference.threshold_source != "default"
    torch_scores = [r["probabilities"]["fake"] for r in reference.predict_batch(faces())]
    assert all(r["faces"] for r in reference.predict_batch(faces()))
    if not DEFAULT_INT8.is_file():
        return
    fast = fakescope.load("default")
    assert fast.backend.name == "onnxruntime" and fast.source == "default (int8 onnx)"
    fast_scores = [r["probabilities"]["fake"] for r in fast.predict_batch(faces())]
    assert np.max(np.abs(np.array(fast_scores) - torch_scores)) < 0.05
    # Grad-CAM still runs: the PyTorch weights are loaded beside the INT8 model.
    assert fast.predict(faces()[0], explain=True)["face"]["heatmap"].startswith("data:image/png")
