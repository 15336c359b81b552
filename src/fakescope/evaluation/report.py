"""One evaluation = metrics JSON + ROC curve + confusion matrix, written together."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fakescope.evaluation.calibration import expected_calibration_error
from fakescope.evaluation.metrics import binary_metrics
from fakescope.evaluation.plots import plot_confusion_matrix, plot_roc


def write_evaluation_plots(
    labels: np.ndarray,
    probs: np.ndarray,
    metrics: dict,
    out_dir: Path,
    prefix: str = "",
    title: str | None = None,
) -> dict[str, str]:
    """ROC and confusion-matrix PNGs; returns their file names."""
    out_dir = Path(out_dir)
    files = {
        "roc_curve": f"{prefix}roc_curve.png",
        "confusion_matrix": f"{prefix}confusion_matrix.png",
    }
    if metrics.get("auc_roc") is not None:
        plot_roc(labels, probs, out_dir / files["roc_curve"], title=title)
    else:
        del files["roc_curve"]  # one class only: no curve to draw
    plot_confusion_matrix(
        np.asarray(metrics["confusion_matrix"]), out_dir / files["confusion_matrix"]
    )
    return files


def evaluate_scores(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    threshold_source: str,
    out_dir: Path,
    prefix: str = "",
    title: str | None = None,
) -> dict:
    """All metrics at `threshold` plus their plots and the expected calibration error (15
    equal-width bins); the threshold and its origin are recorded."""
    metrics = binary_metrics(labels, probs, threshold)
    metrics["ece"] = expected_calibration_error(labels, probs)
    metrics["threshold_source"] = threshold_source
    metrics["plots"] = write_evaluation_plots(labels, probs, metrics, out_dir, prefix, title)
    return metrics
