"""`calibrate_checkpoint` on the tiny trained run: the calibrated detector, its card and report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fakescope.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_detector
from fakescope.data.discovery import DataError
from fakescope.data.toy import make_toy_dataset
from fakescope.evaluation.calibrate import (
    CalibrationError,
    calibrate_checkpoint,
    calibrate_scores,
)
from fakescope.evaluation.calibration import MIN_TEMPERATURE
from fakescope.evaluation.evaluate import evaluate_checkpoint
from fakescope.models.card import DetectorCard

CALIBRATED_FIELDS = {"temperature", "threshold", "threshold_source"}


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """The trained run's best checkpoint and split manifest in a run dir of this test's own,
    so each test writes its default `<run>/calibrated` output apart from the others."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run / "checkpoints" / "best.ckpt", run / "checkpoints" / "best.ckpt")
    shutil.copy(trained_run / "split_manifest.json", run / "split_manifest.json")
    return run


def _state_dicts_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _without_calibration(card: DetectorCard) -> dict:
    return {k: v for k, v in card.model_dump().items() if k not in CALIBRATED_FIELDS}


def test_save_detector_round_trip(run_copy: Path, tmp_path: Path):
    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    model, card = load_checkpoint(checkpoint)
    metadata = read_metadata(checkpoint)
    assert metadata["detector"] == "lite0" and metadata["card"] == card.model_dump(mode="json")
    card = card.with_updates(threshold=0.7, threshold_source="test")
    path = save_detector(model, card, "lite0", metadata["options"], tmp_path / "d/d.safetensors")

    # The pair and nothing else: no temporary file left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == ["d.json", "d.safetensors"]
    loaded, loaded_card = load_checkpoint(path)
    assert loaded_card == card
    assert _state_dicts_equal(model, loaded)
    assert read_metadata(path)["detector"] == "lite0"
    with pytest.raises(CheckpointError, match="NAME.safetensors"):
        save_detector(model, card, "lite0", {}, tmp_path / "d.pt")


def test_calibrate_writes_a_detector_whose_card_carries_the_fit(run_copy: Path, toy_data: Path):
    report = calibrate_checkpoint(run_copy / "checkpoints" / "best.ckpt", [toy_data], num_workers=0)

    out = run_copy / "calibrated"
    for name in ("detector.safetensors", "detector.json", "calibration.json", "reliability.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "calibration.json").read_text()) == report
    assert report["n"] == report["n_real"] + report["n_fake"] > 0
    # The run's own validation split, not a fresh split of the folder.
    assert report["datasets"][toy_data.name]["split_source"].endswith("split_manifest.json")
    before, after = report["before"], report["after"]
    assert before["temperature"] == 1.0 and before["threshold"] == 0.5
    # The temperature minimises the log loss on these very images, T = 1 included.
    assert after["log_loss"] <= before["log_loss"] + 1e-6
    # The threshold maximises balanced accuracy over every threshold, 0.5 before scaling included.
    assert after["balanced_accuracy"] >= before["balanced_accuracy"]

    original, original_card = load_checkpoint(run_copy / "checkpoints" / "best.ckpt")
    calibrated, card = load_checkpoint(out / "detector.safetensors")
    assert card.temperature == report["temperature"] != 1.0
    assert card.threshold == report["threshold"]
    assert card.threshold_source == report["threshold_source"]
    assert card.threshold_source.startswith(f"max balanced accuracy on val of {toy_data.name}")
    assert _without_calibration(card) == _without_calibration(original_card)
    assert _state_dicts_equal(original, calibrated)


def test_an_exported_int8_model_is_calibrated_on_its_own_scores(run_copy: Path, toy_data: Path):
    from fakescope.export.onnx import export_command
    from fakescope.inference.loading import load_detector

    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    int8 = Path(export_command(checkpoint, int8=True, calibration_crops=8)["files"]["onnx_int8"])
    out = run_copy / "calibrated-int8"
    report = calibrate_checkpoint(int8, [toy_data], out=out, num_workers=0)

    assert report["datasets"][toy_data.name]["split_source"].endswith("split_manifest.json")
    assert (out / "detector.onnx").is_file() and not (out / "detector.safetensors").exists()
    calibrated = load_detector(out / "detector.onnx")
    assert calibrated.card.temperature == report["temperature"] != 1.0
    assert calibrated.card.threshold == report["threshold"]
    assert json.loads((out / "detector.json").read_text())["precision"] == "int8"
    # The same INT8 network, now deciding with its own fit.
    image = next((toy_data / "real").iterdir())
    logit = load_detector(int8).predict(image)["probabilities"]["fake"]
    scaled = calibrated.predict(image)["probabilities"]["fake"]
    raw_logit = np.log(logit / (1 - logit))
    assert scaled == pytest.approx(1 / (1 + np.exp(-raw_logit / report["temperature"])), abs=1e-4)


def test_calibration_repairs_an_underconfident_detector(run_copy: Path, toy_data: Path):
    # Shrinking the last layer divides every logit by 5: same ranking, timid probabilities.
    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    model, card = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.classifier.weight.mul_(0.2)
        model.classifier.bias.mul_(0.2)
    timid = save_detector(model, card, "lite0", {}, run_copy / "timid" / "detector.safetensors")

    report = calibrate_checkpoint(timid, [toy_data], num_workers=0)
    assert report["temperature"] < 0.5
    assert report["before"]["ece"] > 0.15
    assert report["after"]["ece"] < report["before"]["ece"] - 0.1
    assert report["after"]["log_loss"] < report["before"]["log_loss"]


def test_fpr_threshold_holds_on_val_and_evaluate_uses_it(
    run_copy: Path, toy_data: Path, tmp_path: Path
):
    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    report = calibrate_checkpoint(
        checkpoint, [toy_data], method="fpr", target_fpr=0.05, num_workers=0
    )
    assert report["method"] == "fpr" and report["target_fpr"] == 0.05
    assert report["after"]["false_positive_rate"] <= 0.05
    assert report["after"]["true_positive_rate"] > 0.5
    assert report["threshold_source"].startswith(f"FPR <= 5% on val of {toy_data.name}")

    calibrated = run_copy / "calibrated" / "detector.safetensors"
    evaluation = evaluate_checkpoint(
        calibrated, [toy_data], tmp_path / "eval", split="val", num_workers=0
    )
    assert evaluation["threshold"] == report["threshold"]
    assert evaluation["threshold_source"] == report["threshold_source"]
    metrics = evaluation["datasets"][toy_data.name]
    assert metrics["n"] == report["n"]
    assert metrics["confusion_matrix"][0][1] / metrics["n_real"] <= 0.05
    assert metrics["accuracy"] == pytest.approx(report["after"]["accuracy"])


def test_existing_output_is_kept_unless_overwrite(run_copy: Path, toy_data: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "detector.safetensors").write_bytes(b"earlier calibration")
    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    with pytest.raises(CalibrationError, match="already exists.*--overwrite"):
        calibrate_checkpoint(checkpoint, [toy_data], out=out, num_workers=0)
    assert (out / "detector.safetensors").read_bytes() == b"earlier calibration"

    report = calibrate_checkpoint(checkpoint, [toy_data], out=out, overwrite=True, num_workers=0)
    assert load_checkpoint(out / "detector.safetensors")[1].threshold == report["threshold"]


def test_data_with_one_class_is_a_clear_error(run_copy: Path, tmp_path: Path):
    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    split_data = make_toy_dataset(tmp_path / "split", n_per_class=10, size=32, layout="split")
    shutil.rmtree(split_data / "Validation" / "Fake")
    with pytest.raises(CalibrationError, match="val split of .* has no fake images"):
        calibrate_checkpoint(checkpoint, [split_data], out=tmp_path / "out", num_workers=0)

    flat = make_toy_dataset(tmp_path / "flat", n_per_class=6, size=32)
    shutil.rmtree(flat / "fake")
    with pytest.raises(DataError, match="has no fake"):
        calibrate_checkpoint(checkpoint, [flat], out=tmp_path / "out", num_workers=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"split": "test"}, "test split must stay unseen"),
        ({"split": "all"}, "cannot calibrate on split 'all'"),
        ({"method": "youden"}, "unknown method"),
        ({"target_fpr": 1.5}, r"target FPR must be in \[0, 1\]"),
        ({"data_dirs": []}, "at least one data dir"),
        ({"data_dirs": [Path("a/data"), Path("b/data")]}, "distinct folder names"),
    ],
)
def test_bad_arguments_fail_before_loading_anything(arguments: dict, message: str, tmp_path: Path):
    # The checkpoint does not exist: the arguments must be refused first.
    call = {"data_dirs": [tmp_path], "out": tmp_path / "out", **arguments}
    with pytest.raises(CalibrationError, match=message):
        calibrate_checkpoint(tmp_path / "missing.ckpt", **call)


def test_perfectly_separated_images_warn_that_the_temperature_is_unreliable():
    card = DetectorCard(name="toy")
    labels = np.array([0, 0, 0, 1, 1, 1])
    separated_logits = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], np.float32)
    separated = calibrate_scores(labels, separated_logits, card, "fpr", 0.0)
    assert separated.temperature == pytest.approx(MIN_TEMPERATURE)
    assert "perfectly separated" in separated.warnings[0]
    overlapping_logits = np.array([-3.0, -2.0, 1.5, -1.0, 2.0, 3.0], np.float32)
    overlapping = calibrate_scores(labels, overlapping_logits, card, "fpr", 0.0)
    assert overlapping.warnings == []
    assert overlapping.threshold > overlapping.probs_after[2]  # the real at 1.5 is not flagged


def test_calibrate_can_switch_mirror_averaging_on_and_fits_it(
    run_copy: Path, toy_data: Path, tmp_path: Path
):
    from fakescope.inference.loading import load_detector

    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    plain = calibrate_checkpoint(checkpoint, [toy_data], out=tmp_path / "plain", num_workers=0)
    mirrored = calibrate_checkpoint(
        checkpoint, [toy_data], out=tmp_path / "mirror", num_workers=0, mirror_average=True
    )

    _, card = load_checkpoint(tmp_path / "mirror" / "detector.safetensors")
    assert card.mirror_average and card.temperature == mirrored["temperature"]
    # Fitted on the averaged scores, which differ from the plain ones.
    assert mirrored["before"]["log_loss"] != pytest.approx(plain["before"]["log_loss"], abs=1e-6)
    detector = load_detector(tmp_path / "mirror" / "detector.safetensors")
    assert detector.card.mirror_average
    # Exported, the ONNX model carries the setting in its card.
    from fakescope.export.onnx import export_command

    exported = export_command(tmp_path / "mirror" / "detector.safetensors", calibration_crops=8)
    onnx = Path(exported["files"]["onnx"])
    assert load_detector(onnx).card.mirror_average


def test_calibrate_sets_extra_margins_and_the_export_carries_them(
    run_copy: Path, toy_data: Path, tmp_path: Path
):
    from fakescope.export.onnx import export_command
    from fakescope.inference.loading import load_detector

    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    out = tmp_path / "views"
    calibrate_checkpoint(checkpoint, [toy_data], out=out, num_workers=0, extra_margins=(0.2,))
    assert load_detector(out / "detector.safetensors").card.extra_margins == (0.2,)
    onnx = Path(export_command(out / "detector.safetensors", calibration_crops=8)["files"]["onnx"])
    assert load_detector(onnx).card.extra_margins == (0.2,)


def test_calibrate_command_adds_or_drops_extra_margins(
    run_copy: Path, toy_data: Path, tmp_path: Path
):
    from typer.testing import CliRunner

    from fakescope.cli import app

    def calibrate(checkpoint: Path, out: str, *flags: str):
        args = ["calibrate", str(checkpoint), "--data", str(toy_data), "-o", str(tmp_path / out)]
        return CliRunner().invoke(app, [*args, *flags])

    def margins(out: str) -> tuple[float, ...]:
        return load_checkpoint(tmp_path / out / "detector.safetensors")[1].extra_margins

    checkpoint = run_copy / "checkpoints" / "best.ckpt"
    added = calibrate(checkpoint, "views", "--extra-margin", "0.2", "--extra-margin", "0.4")
    assert added.exit_code == 0
    assert margins("views") == (0.2, 0.4)
    views = tmp_path / "views" / "detector.safetensors"
    assert calibrate(views, "kept").exit_code == 0 and margins("kept") == (0.2, 0.4)  # as the card
    assert calibrate(views, "plain", "--no-extra-margins").exit_code == 0 and margins("plain") == ()
    both = calibrate(views, "both", "--extra-margin", "0.2", "--no-extra-margins")
    assert both.exit_code == 1 and "contradict" in both.output


def test_face_crops_tighter_than_a_detectors_cuts_are_refused(trained_run: Path, tmp_path: Path):
    from fakescope.evaluation.evaluate import check_crop_margin, score_split
    from fakescope.inference.loading import load_detector

    checkpoint = trained_run / "checkpoints" / "best.ckpt"
    crops = tmp_path / "crops"
    crops.mkdir()
    (crops / "face_crops.json").write_text(json.dumps({"margin": 0.3}))
    detector = load_detector(checkpoint, use_faces=True)
    check_crop_margin(detector, crops)  # one cut, at the card's margin: as before
    detector.card = detector.card.with_updates(extra_margins=(0.2,))
    check_crop_margin(detector, crops)  # within what the crops hold
    detector.card = detector.card.with_updates(extra_margins=(0.2, 0.5))
    with pytest.raises(ValueError, match=r"cut with margin 0\.3.*margin 0\.5"):
        score_split(detector, checkpoint, crops, "val")
    check_crop_margin(detector, tmp_path)  # raw images: every cut can be made
