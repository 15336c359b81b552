"""`fakescope compare`: is one evaluation better than another on the same images?

Two `fakescope evaluate` output dirs (two detectors, two cards of one detector, two seeds of a
recipe) scored the same data sets; each data set's predictions.csv gives every image's
P(fake). The images both scored are paired, and the change in AUC gets a paired-bootstrap
interval (`bootstrap`): a gain whose interval holds 0 is not resolved on these images.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fakescope.evaluation.bootstrap import RESAMPLES, paired_auc_change

REPORT = "evaluation.json"


class CompareError(ValueError):
    """Two evaluations that cannot be compared, with the reason."""


def read_report(evaluation_dir: Path) -> dict:
    report_path = evaluation_dir / REPORT
    if not report_path.is_file():
        raise CompareError(f"{evaluation_dir}: no {REPORT} (not a `fakescope evaluate` output dir)")
    return json.loads(report_path.read_text())


def read_image_scores(
    evaluation_dir: Path, report: dict, data_set: str
) -> dict[str, tuple[int, float]]:
    """file -> (label, P(fake)) of every image one evaluation scored in one data set."""
    predictions = evaluation_dir / data_set / report["datasets"][data_set]["predictions"]
    with open(predictions, newline="") as handle:
        return {
            row["file"]: (int(row["label"] == "fake"), float(row["p_fake"]))
            for row in csv.DictReader(handle)
            if row["kind"] == "image"
        }


def compare_evaluations(
    before: Path, after: Path, resamples: int | None = None, seed: int = 0
) -> dict:
    """Per data set both evaluations scored: each AUC on the images both scored, and the
    change from `before` to `after` with its interval."""
    report_before, report_after = read_report(before), read_report(after)
    shared = [name for name in report_before["datasets"] if name in report_after["datasets"]]
    if not shared:
        raise CompareError(f"{before} and {after} share no data set")
    result: dict = {"before": str(before), "after": str(after), "datasets": {}}
    for name in shared:
        scores_before = read_image_scores(before, report_before, name)
        scores_after = read_image_scores(after, report_after, name)
        files = sorted(scores_before.keys() & scores_after.keys())
        relabelled = [f for f in files if scores_before[f][0] != scores_after[f][0]]
        if relabelled:
            raise CompareError(
                f"{name}: {len(relabelled)} images labelled differently, e.g. {relabelled[0]}"
            )
        labels = np.array([scores_before[f][0] for f in files])
        p_before = np.array([scores_before[f][1] for f in files])
        p_after = np.array([scores_after[f][1] for f in files])
        if len(np.unique(labels)) < 2:
            raise CompareError(f"{name}: the images both evaluations scored are of one class only")
        change = paired_auc_change(labels, p_before, p_after, resamples or RESAMPLES, seed=seed)
        result["datasets"][name] = {
            "n": len(files),
            "only_before": len(scores_before) - len(files),
            "only_after": len(scores_after) - len(files),
            "auc_before": change["before"],
            "auc_after": change["after"],
            "auc_change": change,
        }
    return result
