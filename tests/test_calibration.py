import math
import warnings

import numpy as np
import pytest

from fakescope.evaluation.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    threshold_at_fpr,
    threshold_max_balanced_accuracy,
)
from fakescope.evaluation.metrics import MetricInputError, binary_metrics


def _logistic_toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from them, so sigmoid(true logit) is calibrated."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-true_logits))).astype(int)
    return true_logits, labels


def test_fit_temperature_recovers_overconfident_scale_and_lowers_ece():
    true_logits, labels = _logistic_toy(20_000, seed=0)
    logits = 3.0 * true_logits
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    ece_before = expected_calibration_error(labels, apply_temperature(logits, 1.0))
    ece_after = expected_calibration_error(labels, apply_temperature(logits, temperature))
    assert ece_before > 0.1
    assert ece_after < 0.02


def test_fit_temperature_exact_small_case():
    # At logit +1, 3 of 4 are fake; at -1, 1 of 4: the MLE is sigmoid(1 / T) = 3/4, T = 1 / ln 3.
    logits = [1, 1, 1, 1, -1, -1, -1, -1]
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    assert fit_temperature(logits, labels) == pytest.approx(1 / math.log(3), rel=1e-9)


def test_fit_temperature_stays_within_bounds():
    separated = fit_temperature([-2.0, -1.0, 1.0, 2.0], [0, 0, 1, 1])
    reversed_ = fit_temperature([-2.0, -1.0, 1.0, 2.0], [1, 1, 0, 0])
    assert separated == pytest.approx(MIN_TEMPERATURE)
    assert reversed_ == pytest.approx(MAX_TEMPERATURE)


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        ([1.0, 2.0], [1, 1], "both real and fake"),
        ([1.0, float("nan")], [0, 1], "NaN or infinite"),
        ([1.0, 2.0, 3.0], [0, 1], "differ in length"),
    ],
)
def test_fit_temperature_rejects_bad_input(logits, labels, message):
    with pytest.raises(MetricInputError, match=message):
        fit_temperature(logits, labels)


def test_apply_temperature_values_and_extreme_logits():
    np.testing.assert_allclose(apply_temperature([2.0, 0.0], 2.0), [1 / (1 + math.e**-1), 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings
        probs = apply_temperature(np.array([-1000.0, 1000.0]), 0.5)
    np.testing.assert_array_equal(probs, [0.0, 1.0])
    with pytest.raises(MetricInputError, match="positive"):
        apply_temperature([1.0], 0.0)


def test_ece_exact_small_case():
    # Confidences 0.95, 0.85, 0.75, 0.65 fall one per bin; correct, wrong, correct, correct.
    labels = [1, 0, 0, 1]
    probs = [0.95, 0.85, 0.25, 0.65]
    bins = reliability_bins(labels, probs, n_bins=5)
    np.testing.assert_allclose(bins.edges, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_array_equal(bins.counts, [0, 1, 1, 1, 1])
    np.testing.assert_allclose(bins.confidence[1:], [0.65, 0.75, 0.85, 0.95])
    np.testing.assert_allclose(bins.accuracy[1:], [1, 1, 0, 1])
    assert math.isnan(bins.accuracy[0])
    expected = (0.35 + 0.25 + 0.85 + 0.05) / 4
    assert expected_calibration_error(labels, probs, n_bins=5) == pytest.approx(expected)


def test_ece_is_zero_for_coin_flip_confidence_on_balanced_labels():
    assert expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.0)


def test_ece_rejects_bad_bins():
    with pytest.raises(MetricInputError, match="n_bins"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)


def test_threshold_at_fpr_exact_cases():
    labels = [0, 0, 1, 1]
    probs = [0.1, 0.5, 0.3, 0.9]
    # FPR <= 0.5 needs the 0.1 real below the threshold; 0.3 is the smallest such score.
    assert threshold_at_fpr(labels, probs, 0.5) == 0.3
    assert threshold_at_fpr(labels, probs, 0.0) == 0.9
    assert threshold_at_fpr(labels, probs, 1.0) == 0.1


def test_threshold_at_fpr_above_every_score_when_the_top_score_is_real():
    threshold = threshold_at_fpr([0, 1], [0.95, 0.5], 0.0)
    assert threshold > 0.95
    assert binary_metrics([0, 1], [0.95, 0.5], threshold)["specificity"] == 1.0


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.3])
def test_threshold_at_fpr_meets_target_and_is_the_smallest(target):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    probs = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0, 1), 3)
    threshold = threshold_at_fpr(labels, probs, target)
    real = probs[labels == 0]
    assert np.mean(real >= threshold) <= target
    lower_scores = np.unique(probs[probs < threshold])
    if lower_scores.size:
        assert np.mean(real >= lower_scores[-1]) > target


def test_threshold_at_fpr_rejects_bad_input():
    with pytest.raises(MetricInputError, match="target_fpr"):
        threshold_at_fpr([0, 1], [0.1, 0.9], 1.5)
    with pytest.raises(MetricInputError, match="real samples"):
        threshold_at_fpr([1, 1], [0.1, 0.9], 0.1)


def test_threshold_max_balanced_accuracy_exact_cases():
    assert threshold_max_balanced_accuracy([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.8
    # 0.9 and 0.4 both give balanced accuracy 0.75: the higher (fewer false alarms) wins.
    assert threshold_max_balanced_accuracy([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == 0.9


def test_threshold_max_balanced_accuracy_beats_every_observed_score():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    probs = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 2)
    best = binary_metrics(labels, probs, threshold_max_balanced_accuracy(labels, probs))[
        "balanced_accuracy"
    ]
    for candidate in np.unique(probs):
        assert binary_metrics(labels, probs, float(candidate))["balanced_accuracy"] <= best + 1e-12
    with pytest.raises(MetricInputError, match="both"):
        threshold_max_balanced_accuracy([0, 0], [0.1, 0.2])
