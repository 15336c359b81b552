import numpy as np
import pytest

from fakescope.evaluation.bootstrap import paired_auc_change, resampled_aucs
from fakescope.evaluation.metrics import MetricInputError, auc_and_average_precision


def _scored(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to 0.05, so that many scores tie across the classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0)
    return labels, np.round(scores * 20) / 20


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return auc_and_average_precision(labels, scores)[0]


def test_a_resample_drawing_each_image_once_has_the_plain_auc():
    labels, scores = _scored()
    real, fake = scores[labels == 0], scores[labels == 1]
    ones = (np.ones((1, real.size)), np.ones((1, fake.size)))
    assert resampled_aucs(real, fake, *ones)[0] == pytest.approx(_auc(labels, scores), abs=1e-12)


def test_a_resample_counts_an_image_as_often_as_it_is_drawn():
    labels, scores = _scored()
    real, fake = scores[labels == 0], scores[labels == 1]
    rng = np.random.default_rng(1)
    real_counts, fake_counts = (
        rng.integers(0, 4, (3, real.size)),
        rng.integers(0, 4, (3, fake.size)),
    )
    aucs = resampled_aucs(real, fake, real_counts, fake_counts)
    for row in range(3):  # the same images written out as many times as drawn, ties included
        repeated = np.concatenate(
            [np.repeat(real, real_counts[row]), np.repeat(fake, fake_counts[row])]
        )
        repeated_labels = np.repeat([0, 1], [real_counts[row].sum(), fake_counts[row].sum()])
        assert aucs[row] == pytest.approx(_auc(repeated_labels, repeated), abs=1e-12)


def test_the_same_scores_twice_change_nothing():
    labels, scores = _scored()
    change = paired_auc_change(labels, scores, scores, resamples=200)
    assert change["value"] == 0.0 and change["interval"] == [0.0, 0.0]


def test_a_degradation_that_hides_some_fakes_is_a_sure_loss():
    labels, scores = _scored()
    rng = np.random.default_rng(2)
    hidden = (labels == 1) & (rng.random(labels.size) < 0.3)  # a third of the fakes look real
    degraded = np.where(hidden, scores * 0.3, scores)
    change = paired_auc_change(labels, scores, degraded, resamples=500)
    assert change["value"] == pytest.approx(_auc(labels, degraded) - _auc(labels, scores))
    low, high = change["interval"]
    assert low <= change["value"] <= high < 0.0
    assert paired_auc_change(labels, scores, degraded, resamples=500) == change  # seeded


def test_pairing_makes_a_small_change_resolvable():
    """A change of about 0.01 AUC on 400 images: the interval of the change is much narrower than
    the spread of the AUC itself over the same resamples (what the pairing is for)."""
    labels, scores = _scored()
    rng = np.random.default_rng(3)
    degraded = np.clip(scores + rng.normal(0.0, 0.02, scores.size) - 0.03 * labels, 0.0, 1.0)
    change = paired_auc_change(labels, scores, degraded, resamples=1000)
    width = change["interval"][1] - change["interval"][0]
    real, fake = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    real_counts = rng.multinomial(real.size, np.full(real.size, 1 / real.size), size=1000)
    fake_counts = rng.multinomial(fake.size, np.full(fake.size, 1 / fake.size), size=1000)
    aucs = resampled_aucs(scores[real], scores[fake], real_counts, fake_counts)
    assert width < 0.5 * (np.quantile(aucs, 0.975) - np.quantile(aucs, 0.025))


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ([1, 1, 1], {}, "needs both classes"),
        ([0, 1, 1], {"resamples": 0}, "resamples must be at least 1"),
        ([0, 1, 1], {"confidence": 1.0}, "confidence must lie strictly between 0 and 1"),
    ],
)
def test_bad_input_is_refused_with_the_reason(labels, kwargs, message):
    with pytest.raises(MetricInputError, match=message):
        paired_auc_change(labels, [0.2, 0.5, 0.9], [0.3, 0.4, 0.8], **kwargs)
