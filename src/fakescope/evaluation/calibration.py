"""Calibration: temperature scaling, expected calibration error and decision thresholds.

Everything works on one logit (or probability) of "fake" per sample. A two-logit model's
caller passes ``logit_fake - logit_real``, which is the logit of its softmax P(fake).
Thresholds follow the project's rule: a sample is called fake when P(fake) >= threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fakescope.evaluation.metrics import (
    MetricInputError,
    operating_points,
    validate_labels,
    validate_labels_scores,
)

# Temperatures outside this range mean the logits carry no usable scale (or are anti-correlated
# with the labels); the fit stops at the bound instead of running off to 0 or infinity.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2
# Each step halves an interval of width ln(1e4) ~ 9.2, so 60 reach float precision.
_BISECTION_STEPS = 60


def _validate_logits_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    labels_arr = validate_labels(labels)
    logits_arr = np.asarray(logits, dtype=np.float64).reshape(-1)
    if logits_arr.size != labels_arr.size:
        raise MetricInputError(
            "logits and labels differ in length: "
            f"{logits_arr.size} logits, {labels_arr.size} labels"
        )
    if not np.isfinite(logits_arr).all():
        raise MetricInputError(
            f"logits contain {int((~np.isfinite(logits_arr)).sum())} NaN or infinite value(s)"
        )
    return logits_arr, labels_arr


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only, so large |x| neither overflows nor warns.
    exp_neg_abs = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs))


def apply_temperature(logits: Any, temperature: float) -> np.ndarray:
    """P(fake) = sigmoid(logit / T) for each logit of fake."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise MetricInputError(f"temperature must be a positive finite number, got {temperature}")
    return _sigmoid(np.asarray(logits, dtype=np.float64) / temperature)


def fit_temperature(logits: Any, labels: Any) -> float:
    """The temperature T that minimises the mean negative log-likelihood of sigmoid(logit / T).

    With b = 1 / T the NLL, mean(softplus(b z) - y b z), is convex in b, so its derivative
    mean((sigmoid(b z) - y) z) rises monotonically and bisection on its sign (in log b)
    finds the minimum without an optimiser library. The result is kept within
    [MIN_TEMPERATURE, MAX_TEMPERATURE].
    """
    logits_arr, labels_arr = _validate_logits_labels(logits, labels)
    if labels_arr.min() == labels_arr.max():
        raise MetricInputError("fitting a temperature needs both real and fake samples")

    def nll_slope(log_inverse_t: float) -> float:
        inverse_t = math.exp(log_inverse_t)
        return float(np.mean((_sigmoid(inverse_t * logits_arr) - labels_arr) * logits_arr))

    low, high = -math.log(MAX_TEMPERATURE), -math.log(MIN_TEMPERATURE)
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        if nll_slope(middle) < 0.0:
            low = middle
        else:
            high = middle
    return float(math.exp(-(low + high) / 2.0))


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of a reliability diagram; empty bins hold NaN confidence and accuracy."""

    edges: np.ndarray  # n_bins + 1 edges from 0.5 to 1.0
    confidence: np.ndarray  # mean confidence of the predicted class per bin
    accuracy: np.ndarray  # fraction of correct predictions per bin
    counts: np.ndarray  # samples per bin

    @property
    def expected_calibration_error(self) -> float:
        filled = self.counts > 0
        weights = self.counts[filled] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability_bins(labels: Any, probs: Any, n_bins: int = 15) -> ReliabilityBins:
    """Bin samples by the confidence of their predicted class (top-label, as in Guo et al. 2017).

    The predicted class is fake when P(fake) >= 0.5 and its confidence is max(p, 1 - p), which
    lies in [0.5, 1]; the bins split that range into ``n_bins`` equal widths, each closed on
    the left (the last one also on the right).
    """
    labels_arr, probs_arr = validate_labels_scores(labels, probs)
    if n_bins < 1:
        raise MetricInputError(f"n_bins must be at least 1, got {n_bins}")
    predicted = (probs_arr >= 0.5).astype(np.int64)
    confidence = np.where(predicted == 1, probs_arr, 1.0 - probs_arr)
    correct = (predicted == labels_arr).astype(np.float64)
    edges = np.linspace(0.5, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], confidence, side="right")
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / counts
    return ReliabilityBins(
        edges=edges, confidence=mean_confidence, accuracy=accuracy, counts=counts
    )


def expected_calibration_error(labels: Any, probs: Any, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of (share of samples) * |accuracy - mean confidence|.

    Bins and the predicted class are those of `reliability_bins`.
    """
    return reliability_bins(labels, probs, n_bins).expected_calibration_error


def threshold_at_fpr(labels: Any, probs: Any, target_fpr: float) -> float:
    """The lowest candidate threshold whose false positive rate on the reals is <= target_fpr.

    FPR is the fraction of reals with P(fake) >= threshold. Candidates are the distinct scores
    plus a value just above the highest score (which flags nothing and so always qualifies;
    it exceeds 1.0 when a real scores exactly 1.0). The lowest qualifying candidate catches
    the most fakes at that false alarm rate.
    """
    labels_arr, probs_arr = validate_labels_scores(labels, probs)
    if not 0.0 <= target_fpr <= 1.0:
        raise MetricInputError(f"target_fpr must be in [0, 1], got {target_fpr}")
    n_real = int((labels_arr == 0).sum())
    if n_real == 0:
        raise MetricInputError("a false positive rate needs real samples; there are none")
    thresholds, false_positives, _ = operating_points(labels_arr, probs_arr)
    qualifying = np.flatnonzero(false_positives / n_real <= target_fpr)
    return float(thresholds[qualifying[-1]])


def threshold_max_balanced_accuracy(labels: Any, probs: Any) -> float:
    """The observed score that, as a threshold, maximises (TPR + TNR) / 2 (Youden's J).

    Among equally good thresholds the highest is chosen, the one with the fewest false alarms.
    """
    labels_arr, probs_arr = validate_labels_scores(labels, probs)
    n_fake = int(labels_arr.sum())
    n_real = labels_arr.size - n_fake
    if n_fake == 0 or n_real == 0:
        raise MetricInputError("balanced accuracy needs both real and fake samples")
    thresholds, false_positives, true_positives = operating_points(labels_arr, probs_arr)
    # Balanced accuracy times 2 * n_real * n_fake, in integers so ties are exact.
    scaled = true_positives * n_real + (n_real - false_positives) * n_fake
    # argmax returns the first maximum, and thresholds run from highest to lowest.
    return float(thresholds[int(np.argmax(scaled))])
