from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.evaluation.compare import CompareError, compare_evaluations
from fakescope.evaluation.metrics import auc_and_average_precision


def write_evaluation(
    out: Path, scores: dict[str, tuple[str, float]], data_set: str = "faces"
) -> Path:
    """An output dir as `fakescope evaluate` writes it: its report and one predictions.csv."""
    (out / data_set).mkdir(parents=True)
    report = {"datasets": {data_set: {"predictions": "predictions.csv"}}}
    (out / "evaluation.json").write_text(json.dumps(report))
    with open(out / data_set / "predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "kind", "label", "p_fake", "prediction"])
        for file, (label, p) in scores.items():
            writer.writerow([file, "image", label, f"{p:.6f}", "fake" if p >= 0.5 else "real"])
        writer.writerow(["clip.mp4", "video", "fake", "0.100000", "real"])  # videos are not paired
    return out


def scored_images(n: int = 300, seed: int = 0) -> dict[str, tuple[str, float]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0)
    return {
        f"img_{i}.jpg": (("real", "fake")[label], float(p))
        for i, (label, p) in enumerate(zip(labels, scores))
    }


def _auc(scores: dict[str, tuple[str, float]]) -> float:
    labels = [label == "fake" for label, _ in scores.values()]
    return auc_and_average_precision(np.array(labels, dtype=int), [p for _, p in scores.values()])[
        0
    ]


def test_an_evaluation_against_itself_changes_nothing(tmp_path):
    scores = scored_images()
    before = write_evaluation(tmp_path / "a", scores)
    after = write_evaluation(tmp_path / "b", scores)
    row = compare_evaluations(before, after, resamples=200)["datasets"]["faces"]
    assert (row["n"], row["only_before"], row["only_after"]) == (300, 0, 0)
    assert row["auc_before"] == row["auc_after"] == pytest.approx(_auc(scores), abs=1e-6)
    assert row["auc_change"]["value"] == 0.0 and row["auc_change"]["interval"] == [0.0, 0.0]


def test_a_worse_detector_is_a_resolved_loss_on_the_images_both_scored(tmp_path):
    scores = scored_images()
    hidden = {
        f for i, (f, (label, _)) in enumerate(scores.items()) if label == "fake" and i % 3 == 0
    }
    worse = {f: (label, p * 0.2 if f in hidden else p) for f, (label, p) in scores.items()}
    del worse["img_0.jpg"]  # scored by one evaluation only: left out of the pairing
    before = write_evaluation(tmp_path / "a", scores)
    after = write_evaluation(tmp_path / "b", worse)
    row = compare_evaluations(before, after, resamples=500)["datasets"]["faces"]
    assert (row["n"], row["only_before"], row["only_after"]) == (299, 1, 0)
    shared = {f: scores[f] for f in worse}
    assert row["auc_before"] == pytest.approx(_auc(shared), abs=1e-5)
    assert row["auc_change"]["value"] == pytest.approx(_auc(worse) - _auc(shared), abs=1e-5)
    assert row["auc_change"]["interval"][1] < 0.0


def test_evaluations_that_cannot_be_paired_are_refused(tmp_path):
    scores = scored_images(20)
    before = write_evaluation(tmp_path / "a", scores)
    relabelled = {f: ("fake" if label == "real" else "real", p) for f, (label, p) in scores.items()}
    with pytest.raises(CompareError, match="20 images labelled differently"):
        compare_evaluations(before, write_evaluation(tmp_path / "b", relabelled))
    with pytest.raises(CompareError, match="share no data set"):
        compare_evaluations(before, write_evaluation(tmp_path / "c", scores, data_set="other"))
    with pytest.raises(CompareError, match="not a `fakescope evaluate` output dir"):
        compare_evaluations(before, tmp_path)


def test_the_command_prints_and_writes_the_comparison(tmp_path):
    before = write_evaluation(tmp_path / "a", scored_images(seed=0))
    after = write_evaluation(tmp_path / "b", scored_images(seed=0))
    out = tmp_path / "comparison.json"
    result = CliRunner().invoke(
        app, ["compare", str(before), str(after), "--resamples", "100", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "faces" in result.output and "+0.0000 (+0.0000 to +0.0000)" in result.output
    assert json.loads(out.read_text())["datasets"]["faces"]["auc_change"]["resamples"] == 100
    missing = CliRunner().invoke(app, ["compare", str(before), str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no evaluation.json" in " ".join(missing.output.split())
