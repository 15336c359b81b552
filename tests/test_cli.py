"""The command line as a user meets it: exit codes, reports, messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fakescope.cli import app

runner = CliRunner()


def cli(*args: str, stdin: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=stdin)


def test_models_lists_every_detector_with_its_card():
    result = cli("models", "--json")
    assert result.exit_code == 0
    cards = json.loads(result.stdout)
    assert set(cards) == {
        "lite0",
        "lite1",
        "lite2",
        "effnet-b4",
        "effnet-b4-transfer",
        "mobilenetv2-attention",
        "multibranch-b4",
    }
    assert cards["multibranch-b4"]["card"]["output"] == "two-logits"


def test_usage_errors_exit_with_1():
    done = subprocess.run(
        [sys.executable, "-m", "fakescope", "scan"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "Missing argument" in done.stderr


def test_a_failed_command_exits_with_its_code(tmp_path: Path):
    """The console entry point, not only the app: `fail` exits 1 from a real process."""
    done = subprocess.run(
        [sys.executable, "-m", "fakescope", "audit", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "data dir not found" in done.stderr


def test_scan_writes_every_report_and_exits_2_on_unreadable_files(
    trained_run: Path, toy_data: Path, tmp_path: Path
):
    model = trained_run / "checkpoints" / "best.ckpt"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    images = sorted((toy_data / "fake").iterdir())[:3] + sorted((toy_data / "real").iterdir())[:3]
    out = tmp_path / "reports"
    result = cli(
        "scan",
        *images,
        broken,
        tmp_path / "missing.jpg",
        "--model",
        model,
        "--json",
        out / "r.json",
        "--jsonl",
        out / "r.jsonl",
        "--csv",
        out / "r.csv",
        "--html",
        out / "r.html",
    )
    assert result.exit_code == 2, result.output
    assert "broken.png" in result.output and "missing.jpg" in result.output
    document = json.loads((out / "r.json").read_text())
    assert len(document["results"]) == 8
    lines = [json.loads(line) for line in (out / "r.jsonl").read_text().splitlines()]
    assert [Path(r["file"]).name for r in lines][:6] == [p.name for p in images]
    assert sum("error" in r for r in lines) == 2
    rows = list(csv.DictReader((out / "r.csv").open()))
    assert len(rows) == 8 and {"file", "prediction", "p_fake"} <= set(rows[0])
    html = (out / "r.html").read_text()
    assert "broken.png" in html and html.count("data:image/") >= 6


def test_scan_of_readable_files_exits_0_and_reads_paths_from_stdin(
    trained_run: Path, toy_data: Path
):
    images = sorted((toy_data / "real").iterdir())[:2]
    result = cli(
        "scan",
        "-",
        "--model",
        trained_run / "checkpoints" / "best.ckpt",
        stdin="\n".join(map(str, images)),
    )
    assert result.exit_code == 0, result.output
    assert "2 scored" in result.output


def test_scan_without_a_model_file_is_a_clear_error(tmp_path: Path):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = cli("scan", image, "--model", tmp_path / "nope.ckpt")
    assert result.exit_code == 1
    assert "nope.ckpt" in result.output


def test_serve_refuses_a_backend_that_cannot_run_the_model_before_it_starts(trained_run: Path):
    result = cli("serve", "--model", trained_run / "checkpoints" / "best.ckpt", "--backend", "onnx")
    assert result.exit_code == 1
    assert "needs an exported model" in result.output


def test_explain_writes_an_overlay(trained_run: Path, toy_data: Path, tmp_path: Path):
    image = next((toy_data / "fake").iterdir())
    out = tmp_path / "heat.png"
    result = cli("explain", image, "-o", out, "--model", trained_run / "checkpoints" / "best.ckpt")
    assert result.exit_code == 0, result.output
    overlay = np.asarray(Image.open(out))
    assert overlay.shape[:2] == np.asarray(Image.open(image)).shape[:2]


def test_evaluate_reports_every_metric(trained_run: Path, toy_data: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = cli(
        "evaluate",
        trained_run / "checkpoints" / "best.ckpt",
        "--data",
        toy_data,
        "-o",
        out,
        "--robustness",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "evaluation.json").read_text())
    metrics = report["datasets"][toy_data.name]
    for key in (
        "accuracy",
        "auc_roc",
        "average_precision",
        "eer",
        "specificity",
        "sensitivity",
        "confusion_matrix",
        "ece",
    ):
        assert key in metrics
    assert metrics["split_source"].endswith("split_manifest.json")  # the run's own test split
    assert (out / toy_data.name / "roc_curve.png").is_file()
    assert (out / toy_data.name / "confusion_matrix.png").is_file()
    sweep = metrics["robustness"]
    assert list(sweep)[:2] == ["none", "jpeg_95"] and len(sweep) == 10
    assert sweep["none"]["auc_roc"] == metrics["auc_roc"]
    with open(out / toy_data.name / metrics["predictions"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    for label in ("real", "fake"):  # which way each degradation moves each class
        mean = np.mean([float(row["p_fake"]) for row in rows if row["label"] == label])
        assert sweep["none"]["mean_p_fake"][label] == pytest.approx(mean, abs=1e-5)
        assert all(0.0 <= entry["mean_p_fake"][label] <= 1.0 for entry in sweep.values())
    assert (out / toy_data.name / "robustness.png").is_file()
    for name, entry in list(sweep.items())[1:]:  # each loss of AUC with its paired interval
        change = entry["auc_change"]
        assert change["value"] == pytest.approx(entry["auc_roc"] - sweep["none"]["auc_roc"])
        assert change["interval"][0] <= change["value"] <= change["interval"][1]
    with open(out / toy_data.name / metrics["robustness_predictions"], newline="") as handle:
        sweep_rows = list(csv.DictReader(handle))
    assert list(sweep_rows[0]) == ["file", "label", *sweep]
    assert [(r["file"], r["label"], r["none"]) for r in sweep_rows] == [
        (r["file"], r["label"], r["p_fake"]) for r in rows
    ]
    assert "robustness on" in result.output and "AUC change (95% interval)" in result.output


def test_evaluate_writes_one_prediction_per_image(
    trained_run: Path, toy_data: Path, tmp_path: Path
):
    """The per-file CSV agrees with the summary: same images, same accuracy at the threshold."""
    out = tmp_path / "eval"
    result = cli(
        "evaluate", trained_run / "checkpoints" / "best.ckpt", "--data", toy_data, "-o", out
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())["datasets"][toy_data.name]
    with open(out / toy_data.name / metrics["predictions"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == metrics["n"] and {row["kind"] for row in rows} == {"image"}
    assert len({row["file"] for row in rows}) == len(rows)
    assert all(
        Path(row["file"]).parent.name == row["label"] for row in rows
    )  # toy layout: real/, fake/
    correct = sum(row["prediction"] == row["label"] for row in rows)
    assert correct / len(rows) == pytest.approx(metrics["accuracy"])


def test_synth_sbi_writes_fakes(tmp_path: Path):
    from skimage import data as skdata

    real = tmp_path / "real"
    real.mkdir()
    Image.fromarray(skdata.astronaut()[20:260, 120:340]).save(real / "astronaut.png")
    result = cli("synth", "sbi", real, tmp_path / "sbi")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "sbi" / "fake").glob("*.png"))) == 1
    assert "1 fakes from 1 images" in result.output


def test_faces_cuts_crops_and_counts_the_other_faces(tmp_path: Path):
    from skimage import data as skdata

    photo = skdata.astronaut()
    for label, pixels in (("real", np.hstack([photo, photo])), ("fake", photo)):
        (tmp_path / "src" / label).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "src" / label / "a.jpg", quality=95)
    result = cli("faces", tmp_path / "src", tmp_path / "crops", "--size", "64")
    assert result.exit_code == 0, result.output
    assert "2 crops" in result.output and "1 other faces" in result.output
    assert (tmp_path / "crops" / "other_faces" / "real" / "a.1.png").is_file()
    assert cli("faces", tmp_path / "missing", tmp_path / "out").exit_code == 1


def test_audit_writes_its_json(toy_data: Path, tmp_path: Path):
    out = tmp_path / "audit.json"
    result = cli("audit", toy_data, "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert "warnings" in report
    assert cli("audit", tmp_path / "missing").exit_code == 1


def test_evaluate_scores_videos_per_frame_and_per_video(
    trained_run: Path, toy_data: Path, tmp_path: Path
):
    """Videos of toy real and fake images: both levels reported, and the toy detector is right."""
    from fakescope.io.images import decode_image
    from media import write_video

    for label in ("real", "fake"):
        (tmp_path / "videos" / label).mkdir(parents=True)
        for i, image in enumerate(sorted((toy_data / label).iterdir())[:6]):
            frames = [decode_image(image)] * 4
            write_video(tmp_path / "videos" / label / f"{label}_{i}.mp4", frames)
    out = tmp_path / "eval"
    result = cli(
        "evaluate",
        trained_run / "checkpoints" / "best.ckpt",
        "--data",
        tmp_path / "videos",
        "--split",
        "all",
        "-o",
        out,
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "evaluation.json").read_text())["datasets"]["videos"]
    assert "auc_roc" not in metrics  # no images: no image level
    frames, videos = metrics["videos"]["frame_level"], metrics["videos"]["video_level"]
    assert videos["n"] == 12 and frames["n"] == 48
    assert videos["auc_roc"] > 0.9 and frames["auc_roc"] > 0.9
    assert (out / "videos" / "video_level_roc_curve.png").is_file()
    with open(out / "videos" / "predictions.csv", newline="") as handle:
        assert [row["kind"] for row in csv.DictReader(handle)] == ["video"] * 12
    assert "video" in result.output and "frame" in result.output
