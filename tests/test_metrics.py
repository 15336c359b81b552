import json
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from fakescope.evaluation.metrics import (
    MetricInputError,
    auc_and_average_precision,
    binary_metrics,
    equal_error_rate,
    roc_points,
)


def test_hand_computed_small_case():
    # Reals score 0.1, 0.4; fakes 0.35, 0.8. At 0.5 only the 0.8 fake is called fake.
    result = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.5)
    assert (result["n"], result["n_real"], result["n_fake"]) == (4, 2, 2)
    assert result["confusion_matrix"] == [[2, 0], [1, 1]]
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["specificity"] == pytest.approx(1.0)
    assert result["sensitivity"] == pytest.approx(0.5)
    assert result["balanced_accuracy"] == pytest.approx(0.75)
    assert result["per_class"]["real"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert result["per_class"]["fake"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert result["macro"] == pytest.approx(
        {"precision": 5 / 6, "recall": 0.75, "f1": (0.8 + 2 / 3) / 2}
    )
    # One fake ranked below one real: 3 of 4 pairs ordered correctly.
    assert result["auc_roc"] == pytest.approx(0.75)
    # Precision 1 at recall 0.5, then 2/3 at recall 1.
    assert result["average_precision"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert result["warnings"] == []


def test_confusion_matrix_layout_rows_true_cols_predicted():
    labels = [0, 0, 0, 0, 1, 1, 1]
    scores = [0.9, 0.8, 0.1, 0.2, 0.3, 0.7, 0.6]  # reals: 2 FP, 2 TN; fakes: 1 FN, 2 TP
    result = binary_metrics(labels, scores, threshold=0.5)
    assert result["confusion_matrix"] == [[2, 2], [1, 2]]  # [[TN, FP], [FN, TP]]
    assert "rows = true" in result["confusion_matrix_layout"]
    assert result["specificity"] == pytest.approx(2 / 4)
    assert result["sensitivity"] == pytest.approx(2 / 3)
    weighted_recall = (4 * 0.5 + 3 * 2 / 3) / 7
    assert result["weighted"]["recall"] == pytest.approx(weighted_recall)


def test_score_equal_to_threshold_is_called_fake():
    result = binary_metrics([0, 1], [0.3, 0.5], threshold=0.5)
    assert result["confusion_matrix"] == [[1, 0], [0, 1]]


def test_log_loss_and_brier():
    result = binary_metrics([0, 1], [0.2, 0.6])
    assert result["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert result["brier"] == pytest.approx((0.2**2 + 0.4**2) / 2)


def test_log_loss_is_finite_for_confident_mistakes():
    result = binary_metrics([0, 1], [1.0, 0.0])
    assert math.isfinite(result["log_loss"]) and result["log_loss"] > 20


def test_perfect_reversed_and_tied_rankings():
    labels = [0, 0, 0, 1, 1]
    perfect = binary_metrics(labels, [0.1, 0.2, 0.3, 0.8, 0.9])
    assert (
        perfect["auc_roc"] == 1.0 and perfect["average_precision"] == 1.0 and perfect["eer"] == 0.0
    )
    reversed_ = binary_metrics(labels, [0.9, 0.8, 0.7, 0.2, 0.1])
    assert reversed_["auc_roc"] == 0.0 and reversed_["eer"] == 1.0
    tied = binary_metrics(labels, [0.5] * 5)
    assert tied["auc_roc"] == pytest.approx(0.5)
    assert tied["average_precision"] == pytest.approx(2 / 5)  # the prevalence of fakes
    assert tied["eer"] == pytest.approx(0.5)


def test_eer_of_symmetric_case_at_an_operating_point():
    # One real above one fake on each side of 0.5: FPR = FNR = 1/4 at threshold 0.6.
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    assert equal_error_rate(labels, scores) == pytest.approx((0.25, 0.6))


def test_eer_interpolates_between_operating_points():
    # ROC (0,0) -> (0,0.5) -> (1,1): FPR = FNR where f = 0.5 - 0.5 f, i.e. f = 1/3.
    eer, threshold = equal_error_rate([0, 1, 1], [0.5, 0.5, 0.9])
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.9  # the operating point (FPR 0, FNR 0.5) is nearer than (1, 0)


def test_roc_points_shape_and_order():
    fpr, tpr, thresholds = roc_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thresholds[0] > 0.8
    np.testing.assert_allclose(thresholds[1:], [0.8, 0.4, 0.35, 0.1])


def test_roc_points_are_the_operating_points_of_binary_metrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1), 1)  # with ties
    for fpr, tpr, threshold in zip(*roc_points(labels, scores), strict=True):
        result = binary_metrics(labels, scores, threshold=float(threshold))
        assert 1 - result["specificity"] == pytest.approx(fpr)
        assert result["sensitivity"] == pytest.approx(tpr)


def test_auc_and_average_precision_agree_with_torchmetrics():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    scores = np.round(1 / (1 + np.exp(-rng.normal(labels - 0.5, 1.0))), 2)  # rounding makes ties
    auc, ap = auc_and_average_precision(labels, scores)
    preds_t, target_t = torch.tensor(scores), torch.tensor(labels)
    assert auc == pytest.approx(float(binary_auroc(preds_t, target_t)), abs=1e-6)
    assert ap == pytest.approx(float(binary_average_precision(preds_t, target_t)), abs=1e-6)


def test_one_class_gives_none_with_warnings():
    result = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert result["auc_roc"] is None and result["average_precision"] is None
    assert result["eer"] is None and result["eer_threshold"] is None
    assert result["sensitivity"] is None and result["balanced_accuracy"] is None
    assert result["macro"]["recall"] is None
    assert result["specificity"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["weighted"]["recall"] == pytest.approx(2 / 3)
    assert any("only one class" in w for w in result["warnings"])
    with pytest.raises(MetricInputError, match="no fake samples"):
        roc_points([0, 0, 0], [0.1, 0.7, 0.2])


def test_never_predicted_class_gets_zero_precision_and_a_warning():
    result = binary_metrics([0, 1], [0.1, 0.2], threshold=0.5)
    assert result["per_class"]["fake"]["precision"] == 0.0
    assert result["per_class"]["fake"]["f1"] == 0.0
    assert any("no sample was predicted fake" in w for w in result["warnings"])


def test_result_is_strict_json():
    result = binary_metrics(
        np.array([0, 1, 1, 0]), np.array([0.2, 0.9, 0.4, 0.6], dtype=np.float32), 0.5
    )
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    assert type(result["n"]) is int and type(result["confusion_matrix"][0][0]) is int


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1], [0.1, 2.0], r"\[0, 1\]"),
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([0, 2], [0.1, 0.2], "labels must be 0"),
        ([], [], "empty"),
    ],
)
def test_bad_input_raises_a_clear_error(labels, scores, message):
    with pytest.raises(MetricInputError, match=message):
        binary_metrics(labels, scores)


def test_input_error_is_a_value_error():
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.5, float("nan")])
