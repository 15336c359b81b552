"""Binary detection metrics from labels (0 = real, 1 = fake) and scores P(fake).

One decision rule everywhere: a sample is called fake when ``score >= threshold``. The ROC
points of `roc_points` are exactly the operating points of that rule at each returned
threshold, so a threshold read off the ROC means the same thing in `binary_metrics`.

Quantities whose denominator is zero (the recall of a class with no samples, and what
depends on it) are reported as None and named in the result's ``warnings`` list instead of
raising, so an evaluation of a one-class subset still produces a report. The precision of a
class that is never predicted is 0.0 (as in scikit-learn), also with a warning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CLASS_NAMES = ("real", "fake")
CONFUSION_LAYOUT = "rows = true (real, fake), cols = predicted (real, fake): [[TN, FP], [FN, TP]]"
# Probabilities are clipped this far from 0 and 1 before taking logs in the log loss.
LOG_LOSS_EPS = 1e-12


class MetricInputError(ValueError):
    """Labels or scores that metrics cannot be computed from, with the reason."""


def validate_labels(labels: Any) -> np.ndarray:
    """Return labels as a 1-D int64 array of 0/1, or raise MetricInputError."""
    labels_arr = np.asarray(labels).reshape(-1)
    if labels_arr.size == 0:
        raise MetricInputError("no samples: labels are empty")
    invalid = ~np.isin(labels_arr, (0, 1))
    if invalid.any():
        raise MetricInputError(
            "labels must be 0 (real) or 1 (fake); found "
            f"{sorted(set(labels_arr[invalid].tolist()))}"
        )
    return labels_arr.astype(np.int64)


def validate_labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 and scores P(fake) as float64 1-D arrays, or raise MetricInputError."""
    labels_arr = validate_labels(labels)
    scores_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels_arr.size != scores_arr.size:
        raise MetricInputError(
            "labels and scores differ in length: "
            f"{labels_arr.size} labels, {scores_arr.size} scores"
        )
    if np.isnan(scores_arr).any():
        raise MetricInputError(f"scores contain {int(np.isnan(scores_arr).sum())} NaN value(s)")
    if ((scores_arr < 0.0) | (scores_arr > 1.0)).any():
        raise MetricInputError(
            f"scores must be probabilities P(fake) in [0, 1]; got range "
            f"[{scores_arr.min():.4g}, {scores_arr.max():.4g}] (logits? apply a sigmoid first)"
        )
    return labels_arr, scores_arr


def operating_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count false and true positives at every distinct threshold, highest threshold first.

    Returns ``(thresholds, false_positives, true_positives)``. The first threshold lies just
    above the highest score (nothing called fake, counts 0); each further threshold is a
    distinct score, and the counts are those of the rule ``score >= threshold``.
    """
    labels_arr, scores_arr = validate_labels_scores(labels, scores)
    order = np.argsort(-scores_arr, kind="stable")
    sorted_scores = scores_arr[order]
    sorted_labels = labels_arr[order]
    # The last index of each run of equal scores: all tied samples switch together.
    run_ends = np.append(np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1)
    true_positives = np.cumsum(sorted_labels)[run_ends]
    false_positives = (run_ends + 1) - true_positives
    above_all = math.nextafter(float(sorted_scores[0]), math.inf)
    thresholds = np.concatenate(([above_all], sorted_scores[run_ends]))
    return (
        thresholds,
        np.concatenate(([0], false_positives)),
        np.concatenate(([0], true_positives)),
    )


def _both_classes(labels: np.ndarray, what: str) -> tuple[int, int]:
    n_fake = int(labels.sum())
    n_real = labels.size - n_fake
    if n_fake == 0 or n_real == 0:
        missing = "fake" if n_fake == 0 else "real"
        raise MetricInputError(f"{what} needs both classes; there are no {missing} samples")
    return n_real, n_fake


def roc_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve ``(fpr, tpr, thresholds)`` from (0, 0) to (1, 1), highest threshold first."""
    labels_arr, scores_arr = validate_labels_scores(labels, scores)
    n_real, n_fake = _both_classes(labels_arr, "a ROC curve")
    thresholds, false_positives, true_positives = operating_points(labels_arr, scores_arr)
    return false_positives / n_real, true_positives / n_fake, thresholds


def auc_and_average_precision(labels: Any, scores: Any) -> tuple[float, float]:
    """Area under the ROC (trapezoids; a run of tied scores counts half) and average precision.

    Average precision is the step-wise sum of precision times the rise in recall at each
    distinct threshold (no interpolation), the definition scikit-learn and torchmetrics use.
    """
    labels_arr, scores_arr = validate_labels_scores(labels, scores)
    n_real, n_fake = _both_classes(labels_arr, "AUC and average precision")
    _, false_positives, true_positives = operating_points(labels_arr, scores_arr)
    fpr = false_positives / n_real
    tpr = true_positives / n_fake
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    # Index 0 (nothing called fake) adds no recall, so precision starts at the first score.
    precision = true_positives[1:] / (true_positives[1:] + false_positives[1:])
    average_precision = float(np.sum(np.diff(tpr) * precision))
    return auc, average_precision


def equal_error_rate(labels: Any, scores: Any) -> tuple[float, float]:
    """The rate where false positive and false negative rates meet, and a threshold near it.

    The EER is read where the ROC's straight segments cross FPR = FNR (linear interpolation
    between neighbouring operating points). The threshold is that of the operating point
    closest to the crossing, so it is a threshold one can actually use.
    """
    fpr, tpr, thresholds = roc_points(labels, scores)
    gap = fpr - (1.0 - tpr)  # rises from -1 at the first point to +1 at the last
    after = int(np.argmax(gap >= 0.0))
    before = after - 1
    fraction = gap[before] / (gap[before] - gap[after])
    eer = fpr[before] + fraction * (fpr[after] - fpr[before])
    nearest = before if abs(gap[before]) < abs(gap[after]) else after
    return float(eer), float(thresholds[nearest])


def _ratio(numerator: int, denominator: int, name: str, warnings: list[str]) -> float | None:
    if denominator == 0:
        warnings.append(f"{name} is undefined (zero denominator); reported as None")
        return None
    return numerator / denominator


def _precision(numerator: int, denominator: int, class_name: str, warnings: list[str]) -> float:
    # A class that is never predicted gets precision 0 (it earns no credit), as scikit-learn does.
    if denominator == 0:
        warnings.append(
            f"no sample was predicted {class_name}; precision of {class_name} reported as 0.0"
        )
        return 0.0
    return numerator / denominator


def _f1(precision: float, recall: float | None) -> float | None:
    if recall is None:
        return None
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _per_class(cm: np.ndarray, warnings: list[str]) -> dict[str, dict[str, float | int | None]]:
    per_class: dict[str, dict[str, float | int | None]] = {}
    for index, name in enumerate(CLASS_NAMES):
        correct = int(cm[index, index])
        support = int(cm[index, :].sum())
        predicted = int(cm[:, index].sum())
        precision = _precision(correct, predicted, name, warnings)
        recall = _ratio(correct, support, f"recall of {name}", warnings)
        per_class[name] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": support,
        }
    return per_class


def _averages(per_class: dict[str, dict[str, float | int | None]], n: int) -> dict[str, dict]:
    macro: dict[str, float | None] = {}
    weighted: dict[str, float | None] = {}
    for key in ("precision", "recall", "f1"):
        values = [per_class[name][key] for name in CLASS_NAMES]
        supports = [per_class[name]["support"] for name in CLASS_NAMES]
        # Macro needs every class; weighted skips absent classes (their weight is zero anyway).
        macro[key] = None if None in values else float(np.mean(values))
        weighted[key] = sum(v * s for v, s in zip(values, supports, strict=True) if s) / n
    return {"macro": macro, "weighted": weighted}


def _log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    clipped = np.clip(scores, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1.0 - clipped)))


def binary_metrics(labels: Any, scores: Any, threshold: float = 0.5) -> dict[str, Any]:
    """All binary metrics of one evaluation, as plain JSON-serialisable values.

    ``labels`` are 0 (real) / 1 (fake), ``scores`` are P(fake) and a sample is called fake
    when its score is >= ``threshold``. Threshold-free metrics (AUC, AP, EER) are None when
    only one class is present; every None is explained in ``warnings``.
    """
    labels_arr, scores_arr = validate_labels_scores(labels, scores)
    if not math.isfinite(threshold):
        raise MetricInputError(f"threshold must be a finite number, got {threshold}")
    warnings: list[str] = []
    n = int(labels_arr.size)
    n_fake = int(labels_arr.sum())
    n_real = n - n_fake

    predicted = (scores_arr >= threshold).astype(np.int64)
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (labels_arr, predicted), 1)
    tn, fp, fn, tp = (int(v) for v in cm.ravel())

    per_class = _per_class(cm, warnings)
    specificity = per_class["real"]["recall"]
    sensitivity = per_class["fake"]["recall"]
    balanced = (
        None if specificity is None or sensitivity is None else (specificity + sensitivity) / 2
    )

    auc_roc = average_precision = eer = eer_threshold = None
    if n_real and n_fake:
        auc_roc, average_precision = auc_and_average_precision(labels_arr, scores_arr)
        eer, eer_threshold = equal_error_rate(labels_arr, scores_arr)
    else:
        missing = "fake" if n_fake == 0 else "real"
        warnings.append(
            f"only one class present (no {missing} samples): "
            "auc_roc, average_precision and eer are None"
        )

    return {
        "n": n,
        "n_real": n_real,
        "n_fake": n_fake,
        "threshold": float(threshold),
        "accuracy": (tn + tp) / n,
        "balanced_accuracy": balanced,
        "specificity": specificity,
        "sensitivity": sensitivity,
        "per_class": per_class,
        **_averages(per_class, n),
        "auc_roc": auc_roc,
        "average_precision": average_precision,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "confusion_matrix": cm.tolist(),
        "confusion_matrix_layout": CONFUSION_LAYOUT,
        "log_loss": _log_loss(labels_arr, scores_arr),
        "brier": float(np.mean((scores_arr - labels_arr) ** 2)),
        "warnings": warnings,
    }
