"""Evaluation and training plots, each written as one PNG file.

Figures are built with matplotlib's object API on an Agg canvas (no pyplot, no display, no
global state), rendered to memory and written atomically, so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fakescope.evaluation.calibration import reliability_bins
from fakescope.evaluation.metrics import auc_and_average_precision, roc_points
from fakescope.utils import atomic_write_bytes

DPI = 120
# Panels of the training-curve figure and the history keys each one draws, when present.
TRAINING_PANELS: dict[str, tuple[str, ...]] = {
    "loss": ("train_loss", "val_loss"),
    "accuracy": ("train_acc", "val_acc"),
    "AUC": ("train_auc", "val_auc"),
}


class PlotInputError(ValueError):
    """Data that cannot be drawn, with the output path and the reason."""


def _save(fig: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def plot_roc(labels: Any, scores: Any, path: str | Path, title: str | None = None) -> Path:
    """ROC curve with its AUC in the legend and the chance diagonal."""
    fpr, tpr, _ = roc_points(labels, scores)
    auc, _ = auc_and_average_precision(labels, scores)
    fig = _new_figure(5, 5)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"detector (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance (AUC = 0.5)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (reals called fake)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_title(title or "ROC curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Sequence[Sequence[int]] | np.ndarray,
    path: str | Path,
    labels: Sequence[str] = ("real", "fake"),
) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts and row percentages.

    Cells are shaded by the row percentage, so a class's recall reads the same whatever its size.
    """
    counts = np.asarray(cm)
    if counts.shape != (len(labels), len(labels)):
        raise PlotInputError(
            f"{path}: confusion matrix shape {counts.shape} does not match labels {tuple(labels)}"
        )
    if (counts < 0).any():
        raise PlotInputError(f"{path}: confusion matrix has negative counts")
    row_totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_share = np.where(row_totals > 0, counts / row_totals, np.nan)

    fig = _new_figure(4.6, 4)
    ax = fig.add_subplot()
    image = ax.imshow(np.nan_to_num(row_share), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    for row in range(counts.shape[0]):
        for col in range(counts.shape[1]):
            share = row_share[row, col]
            percent = "n/a" if math.isnan(share) else f"{100 * share:.1f}%"
            dark = not math.isnan(share) and share > 0.5
            ax.text(
                col,
                row,
                f"{int(counts[row, col])}\n{percent}",
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize=11,
            )
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels=list(labels))
    ax.set_yticks(ticks, labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    return _save(fig, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of one key, skipping rows where it is missing, None or NaN."""
    epochs: list[float] = []
    values: list[float] = []
    for index, row in enumerate(history):
        value = row.get(key)
        if value is None or math.isnan(float(value)):
            continue
        epochs.append(float(row.get("epoch", index)))
        values.append(float(value))
    return epochs, values


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Loss, accuracy and AUC per epoch, one panel each, for the keys in TRAINING_PANELS.

    Rows are per-epoch dicts; ``epoch`` gives the x position (the row index when absent).
    Missing keys are skipped, and a panel with no data at all is left out.
    """
    panels: dict[str, list[tuple[str, list[float], list[float]]]] = {}
    for title, keys in TRAINING_PANELS.items():
        series = [(key, *_series(history, key)) for key in keys]
        drawn = [(key, epochs, values) for key, epochs, values in series if values]
        if drawn:
            panels[title] = drawn
    if not panels:
        raise PlotInputError(
            f"{path}: history has no values for any of "
            f"{[key for keys in TRAINING_PANELS.values() for key in keys]}"
        )
    fig = _new_figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, series) in zip(axes, panels.items(), strict=True):
        for key, epochs, values in series:
            style = "--" if key.startswith("train_") else "-"
            ax.plot(epochs, values, style, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_reliability(
    labels: Any, probs_before: Any, probs_after: Any | None, path: str | Path, n_bins: int = 15
) -> Path:
    """Reliability diagram (accuracy against confidence per bin) before and after calibration.

    Uses the top-label bins of `reliability_bins`; each curve's ECE is in the legend. Pass
    ``probs_after=None`` to draw one curve.
    """
    curves = [("before", probs_before, "tab:red")]
    if probs_after is not None:
        curves.append(("after", probs_after, "tab:green"))
    fig = _new_figure(5, 5)
    ax = fig.add_subplot()
    ax.plot(
        [0.5, 1], [0.5, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration"
    )
    for name, probs, color in curves:
        bins = reliability_bins(labels, probs, n_bins)
        filled = bins.counts > 0
        ece = bins.expected_calibration_error
        ax.plot(
            bins.confidence[filled],
            bins.accuracy[filled],
            marker="o",
            color=color,
            label=f"{name} (ECE = {ece:.3f})",
        )
    ax.set_xlim(0.5, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)


def plot_robustness(results: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """AUC and accuracy per perturbation, as grouped bars; a None AUC (one class) draws no bar.

    ``results`` maps a perturbation name to its `binary_metrics` result (or any dict with
    ``auc_roc`` and ``accuracy``), in the order the bars should appear.
    """
    if not results:
        raise PlotInputError(f"{path}: no robustness results to plot")
    names = list(results)
    bar_width = 0.38
    positions = np.arange(len(names))
    fig = _new_figure(max(5.0, 1.1 * len(names) + 2), 4)
    ax = fig.add_subplot()
    for offset, (key, label, color) in zip(
        (-bar_width / 2, bar_width / 2),
        (("auc_roc", "AUC", "tab:blue"), ("accuracy", "accuracy", "tab:orange")),
        strict=True,
    ):
        values = [results[name].get(key) for name in names]
        heights = [np.nan if v is None else float(v) for v in values]
        bars = ax.bar(positions + offset, heights, bar_width, label=label, color=color)
        ax.bar_label(bars, labels=["" if np.isnan(h) else f"{h:.2f}" for h in heights], fontsize=8)
        for x, height in zip(positions + offset, heights, strict=True):
            if np.isnan(height):  # bar_label cannot place text on a bar with no height
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8, color=color)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(positions, labels=names, rotation=30, ha="right")
    ax.set_ylim(0, 1.2)  # room above the bars for the legend
    ax.set_ylabel("score")
    ax.set_title("robustness to perturbations")
    ax.legend(loc="upper right", ncols=2)
    return _save(fig, path)
