"""scripts/pooled_halves.py: the two halves of an avgmax head add up to the detector's logit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from fakescope.models.registry import create_detector

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pooled_halves.py"
_spec = importlib.util.spec_from_file_location("pooled_halves", SCRIPT)
pooled_halves = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pooled_halves)


def test_the_means_and_maxima_terms_plus_the_bias_are_the_logit():
    torch.manual_seed(0)
    model = create_detector("lite0", card_overrides={"input_size": 64}, pooling="avgmax").eval()
    torch.nn.init.normal_(model.classifier.weight)  # both halves weigh in
    images = torch.randn(3, 3, 64, 64)
    terms = pooled_halves.half_terms(model, images)
    assert terms.shape == (3, 2)
    with torch.no_grad():
        logits = model(images).flatten()
    assert torch.allclose(terms.sum(1) + model.classifier.bias, logits, atol=1e-4)
    assert (terms[:, 1] != terms[:, 0]).all()
