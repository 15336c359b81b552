"""Turn detector outputs into the one score everything else uses: the logit of P(fake)."""

from __future__ import annotations

import numpy as np
import torch

from fakescope.models.card import DetectorCard


def fake_logit(logits: torch.Tensor, card: DetectorCard) -> torch.Tensor:
    """(B, 1) or (B, 2) logits -> (B,) logit of P(fake).

    For two logits [real, fake], softmax(...)[1] == sigmoid(fake - real), so both kinds of
    output share one temperature and one threshold.
    """
    if card.output == "two-logits":
        return logits[:, 1] - logits[:, 0]
    return logits.reshape(-1)


def fake_probability(logits: torch.Tensor, card: DetectorCard) -> torch.Tensor:
    """(B,) calibrated P(fake), using the card's temperature."""
    return torch.sigmoid(fake_logit(logits, card).float() / card.temperature)


def probabilities(fake_logits: np.ndarray, temperature: float) -> np.ndarray:
    """P(fake) = sigmoid(logit / T) from logits of P(fake), in float32 as `fake_probability`.

    One computation everywhere keeps a threshold chosen on these probabilities exact when the
    detector scores the same images later.
    """
    return torch.sigmoid(
        torch.from_numpy(np.asarray(fake_logits, dtype=np.float32)) / temperature
    ).numpy()
