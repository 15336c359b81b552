"""`fakescope calibrate`: fit a detector's temperature and decision threshold on validation data.

The temperature is fitted on the fake logits (lowest log loss), the threshold is then chosen on
the temperature-scaled P(fake), either at the highest balanced accuracy or at the lowest
threshold whose false positive rate stays within a target. Both go into the card of a new
detector file, so `scan` and `evaluate` decide with them from then on.

Output dir (default `<run>/calibrated/`, beside the checkpoint's `checkpoints/`):
    detector.safetensors  detector.json  calibration.json  reliability.png
An exported model (`.onnx`, e.g. INT8) is calibrated on its own scores and written as
detector.onnx instead: quantisation moves P(fake), so an INT8 model needs its own temperature
and threshold. Placed there, the calibrated detector finds the run's split manifest as the
checkpoint does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from fakescope.checkpoint import read_metadata, save_detector
from fakescope.evaluation.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    expected_calibration_error,
    fit_temperature,
    threshold_at_fpr,
    threshold_max_balanced_accuracy,
)
from fakescope.evaluation.evaluate import score_split
from fakescope.evaluation.metrics import binary_metrics
from fakescope.evaluation.plots import plot_reliability
from fakescope.export.onnx import read_onnx_metadata, write_onnx
from fakescope.inference.detector import Detector
from fakescope.inference.loading import load_detector
from fakescope.models.card import DetectorCard
from fakescope.models.scoring import probabilities
from fakescope.utils import atomic_write_json

# The test split stays out: a threshold chosen on it would make its later metrics optimistic.
CALIBRATION_SPLITS = ("val", "train")
METHODS = ("max-balanced-accuracy", "fpr")
DETECTOR_FILE = "detector.safetensors"
ONNX_DETECTOR_FILE = "detector.onnx"
METADATA_FILE = "detector.json"
REPORT_FILE = "calibration.json"
RELIABILITY_PLOT = "reliability.png"
OUTPUT_FILES = (DETECTOR_FILE, ONNX_DETECTOR_FILE, METADATA_FILE, REPORT_FILE, RELIABILITY_PLOT)


class CalibrationError(ValueError):
    """Calibration cannot run as asked; the message says why and where."""


def default_output_dir(checkpoint: Path) -> Path:
    """`<run>/calibrated` for a checkpoint at `<run>/checkpoints/NAME.ckpt`."""
    return checkpoint.resolve().parent.parent / "calibrated"


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, method: str, target_fpr: float
) -> float:
    if method == "fpr":
        return threshold_at_fpr(labels, probs, target_fpr)
    return threshold_max_balanced_accuracy(labels, probs)


def operating_summary(
    labels: np.ndarray, probs: np.ndarray, temperature: float, threshold: float, n_bins: int
) -> dict:
    """Calibration quality (ECE, log loss, Brier) and the decisions made at `threshold`."""
    metrics = binary_metrics(labels, probs, threshold)
    false_positives = metrics["confusion_matrix"][0][1]
    return {
        "temperature": temperature,
        "threshold": threshold,
        "ece": expected_calibration_error(labels, probs, n_bins),
        "log_loss": metrics["log_loss"],
        "brier": metrics["brier"],
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "false_positive_rate": false_positives / metrics["n_real"] if metrics["n_real"] else None,
        "true_positive_rate": metrics["sensitivity"],
    }


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and threshold, with P(fake) and quality before and after them."""

    temperature: float
    threshold: float
    probs_before: np.ndarray
    probs_after: np.ndarray
    before: dict  # the card as it was: its temperature and threshold
    after: dict  # the new temperature and threshold
    warnings: list[str]


def calibrate_scores(
    labels: np.ndarray,
    logits: np.ndarray,
    card: DetectorCard,
    method: str,
    target_fpr: float,
    n_bins: int = 15,
) -> Calibration:
    """Fit the temperature on the fake logits, then the threshold on the scaled P(fake)."""
    temperature = fit_temperature(logits, labels)
    probs_before = probabilities(logits, card.temperature)
    probs_after = probabilities(logits, temperature)
    threshold = choose_threshold(labels, probs_after, method, target_fpr)
    warnings = []
    if not MIN_TEMPERATURE * (1 + 1e-6) < temperature < MAX_TEMPERATURE * (1 - 1e-6):
        warnings.append(
            f"the temperature stopped at its bound ({temperature:.3g}): the calibration images "
            "are perfectly separated (or ranked backwards), so they say nothing about the scale "
            "of the logits and the probabilities will be unreliable; calibrate on more or "
            "harder images"
        )
    return Calibration(
        temperature=temperature,
        threshold=threshold,
        probs_before=probs_before,
        probs_after=probs_after,
        before=operating_summary(labels, probs_before, card.temperature, card.threshold, n_bins),
        after=operating_summary(labels, probs_after, temperature, threshold, n_bins),
        warnings=warnings,
    )


def _check_arguments(
    split: str, method: str, target_fpr: float, n_bins: int, data_dirs: list[Path]
) -> None:
    if split not in CALIBRATION_SPLITS:
        raise CalibrationError(
            f"cannot calibrate on split {split!r}: choose {' or '.join(CALIBRATION_SPLITS)} "
            "(the test split must stay unseen)"
        )
    if method not in METHODS:
        raise CalibrationError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= target_fpr <= 1.0:
        raise CalibrationError(f"target FPR must be in [0, 1], got {target_fpr}")
    if n_bins < 1:
        raise CalibrationError(f"n_bins must be at least 1, got {n_bins}")
    if not data_dirs:
        raise CalibrationError("calibration needs at least one data dir")
    names = [Path(d).resolve().name for d in data_dirs]
    if len(set(names)) < len(names):
        raise CalibrationError(f"data dirs must have distinct folder names, got {names}")


def _refuse_existing(out_dir: Path) -> None:
    existing = [out_dir / name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing:
        raise CalibrationError(
            f"{existing[0]} already exists; pass overwrite=True (--overwrite) to replace "
            f"the calibration in {out_dir}, or choose another output dir"
        )


def _threshold_source(method: str, target_fpr: float, split: str, names: list[str], n: int) -> str:
    if method == "fpr":
        rule = f"FPR <= {100 * target_fpr:g}%"
    else:
        rule = "max balanced accuracy"
    day = datetime.now(timezone.utc).date().isoformat()
    return f"{rule} on {split} of {' + '.join(names)} ({n} images), {day}"


def _write_calibrated(
    checkpoint: Path, detector: Detector, card: DetectorCard, out_dir: Path
) -> Path:
    """The detector with its new card, in the checkpoint's own kind: weights or an ONNX model."""
    if checkpoint.suffix == ".onnx":
        metadata = {**read_onnx_metadata(checkpoint), "card": card.model_dump(mode="json")}
        return write_onnx(onnx.load(str(checkpoint)), metadata, out_dir / ONNX_DETECTOR_FILE)
    metadata = read_metadata(checkpoint)
    return save_detector(
        detector.model,
        card,
        metadata["detector"],
        metadata.get("options", {}),
        out_dir / DETECTOR_FILE,
    )


def calibrate_checkpoint(
    checkpoint: Path,
    data_dirs: list[Path],
    out: Path | None = None,
    split: str = "val",
    method: str = "max-balanced-accuracy",
    target_fpr: float = 0.05,
    n_bins: int = 15,
    overwrite: bool = False,
    batch_size: int = 64,
    num_workers: int = 2,
    mirror_average: bool | None = None,
    extra_margins: tuple[float, ...] | None = None,
) -> dict:
    """Calibrate `checkpoint` on the `split` of `data_dirs` (pooled) and return the report.

    mirror_average: switch the card's mirror averaging on or off (None keeps the card's) before
        scoring, so the temperature and threshold are fitted to the scores it will give.
    extra_margins: set the card's extra face cuts likewise (None keeps the card's; () none).

    Writes the calibrated detector, `calibration.json` and the reliability diagram to `out`
    (default `default_output_dir`); refuses to replace existing files unless `overwrite`.
    """
    checkpoint = Path(checkpoint)
    _check_arguments(split, method, target_fpr, n_bins, data_dirs)
    out_dir = Path(out) if out is not None else default_output_dir(checkpoint)
    if not overwrite:
        _refuse_existing(out_dir)

    detector = load_detector(checkpoint)
    if mirror_average is not None:
        detector.card = detector.card.with_updates(mirror_average=mirror_average)
    if extra_margins is not None:
        detector.card = detector.card.with_updates(extra_margins=extra_margins)
    card = detector.card
    scored = {
        data_dir.resolve().name: score_split(
            detector, checkpoint, data_dir, split, batch_size=batch_size, num_workers=num_workers
        )
        for data_dir in data_dirs
    }
    labels = np.concatenate([s.labels for s in scored.values()])
    logits = np.concatenate([s.logits for s in scored.values()])
    for label, cls in ((0, "real"), (1, "fake")):
        if not (labels == label).any():
            raise CalibrationError(
                f"the {split} split of {', '.join(str(d) for d in data_dirs)} has no {cls} "
                f"images ({labels.size} images scored): calibration needs both classes"
            )

    result = calibrate_scores(labels, logits, card, method, target_fpr, n_bins)
    source = _threshold_source(method, target_fpr, split, list(scored), int(labels.size))
    calibrated = card.with_updates(
        temperature=result.temperature, threshold=result.threshold, threshold_source=source
    )
    detector_path = _write_calibrated(checkpoint, detector, calibrated, out_dir)
    plot_reliability(
        labels, result.probs_before, result.probs_after, out_dir / RELIABILITY_PLOT, n_bins
    )
    report = {
        "calibrated_at": datetime.now(timezone.utc).isoformat(),
        "checkpoint": str(checkpoint),
        "detector": card.name,
        "detector_version": card.version,
        "split": split,
        "method": method,
        "target_fpr": target_fpr if method == "fpr" else None,
        "n_bins": n_bins,
        "n": int(labels.size),
        "n_real": int((labels == 0).sum()),
        "n_fake": int(labels.sum()),
        "datasets": {
            name: {
                "n": int(s.labels.size),
                "split_source": s.split_source,
                "skipped": [{"path": str(p), "reason": r} for p, r in s.skipped],
            }
            for name, s in scored.items()
        },
        "temperature": result.temperature,
        "threshold": result.threshold,
        "threshold_source": source,
        "before": result.before,
        "after": result.after,
        "warnings": result.warnings,
        "files": {"detector": str(detector_path), "reliability_diagram": RELIABILITY_PLOT},
    }
    atomic_write_json(out_dir / REPORT_FILE, report)
    return report
