"""ONNX export, INT8 quantisation, parity report, and loading exported detectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from timm.layers.conv2d_same import Conv2dSame
from torch import nn

import fakescope
from fakescope.checkpoint import CheckpointError, load_checkpoint, read_metadata
from fakescope.export.onnx import (
    METADATA_KEY,
    ExportError,
    export_command,
    export_onnx,
    read_onnx_metadata,
)
from fakescope.inference import backends, loading
from fakescope.inference.backends import OnnxBackend, TorchBackend
from fakescope.inference.detector import TorchModelRequiredError
from fakescope.models.registry import create_detector, list_detectors

SMALL_SIZE = 64  # the multibranch frequency branch needs a multiple of 64 (8x8 DCT, then 8x8 pool)


@pytest.fixture(scope="module")
def checkpoint(trained_run: Path) -> Path:
    return trained_run / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def exported(checkpoint: Path, toy_data: Path, tmp_path_factory) -> dict:
    """fp32 + INT8 export of the trained toy run, with AUC on its own test split."""
    out_dir = tmp_path_factory.mktemp("export")
    return export_command(
        checkpoint,
        int8=True,
        out_dir=out_dir,
        labelled_dir=toy_data,
        eval_split="test",
        calibration_crops=32,
    )


def batch(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def test_export_writes_models_metadata_and_report(exported: dict):
    files = {name: Path(path) for name, path in exported["files"].items()}
    assert set(files) == {"onnx", "onnx_int8", "parity"}
    for name in ("onnx", "onnx_int8"):
        assert files[name].is_file() and files[name].with_suffix(".json").is_file()
    assert json.loads(files["parity"].read_text())["files"]["onnx"] == str(files["onnx"])
    graph = onnx.load(str(files["onnx"])).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert onnx.load(str(files["onnx"])).opset_import[0].version >= 17


@pytest.mark.parametrize("n", [1, 5])
def test_onnx_logits_match_torch_at_any_batch_size(exported: dict, checkpoint: Path, n: int):
    model, card = load_checkpoint(checkpoint)
    inputs = batch(n, card.input_size)
    reference = TorchBackend(model, precision="fp32", channels_last=False).logits(inputs)
    onnx_logits = OnnxBackend(exported["files"]["onnx"]).logits(inputs)
    assert onnx_logits.shape == reference.shape == (n, 1)
    assert np.abs(onnx_logits - reference).max() < 1e-4


def export_small(name: str, folder: Path, **options) -> tuple[nn.Module, Path]:
    model = create_detector(
        name, pretrained=False, card_overrides={"input_size": SMALL_SIZE}, **options
    ).eval()
    metadata = {"detector": name, "options": options, "card": model.card.model_dump(mode="json")}
    return model, export_onnx(model, metadata, folder / f"{name}.onnx")


def test_same_padding_is_exported_as_constants(tmp_path: Path):
    """timm works "same" padding out from the input's shape: Shape ops ONNX Runtime cannot fold."""
    model, path = export_small("lite0", tmp_path)
    assert "Shape" not in {node.op_type for node in onnx.load(str(path)).graph.node}
    # The caller's model is left as it was, dynamic padding and all.
    assert any(isinstance(module, Conv2dSame) for module in model.modules())


# EfficientNet-B4 graphs take several seconds each to trace and export.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(s.name, marks=pytest.mark.slow) if "b4" in s.name else s.name
        for s in list_detectors()
    ],
)
def test_every_registered_detector_exports(name: str, tmp_path: Path):
    model, path = export_small(name, tmp_path)
    backend = OnnxBackend(path)
    for n in (1, 5):
        inputs = batch(n, SMALL_SIZE, seed=n)
        with torch.no_grad():
            reference = model(torch.from_numpy(inputs)).numpy()
        assert np.abs(backend.logits(inputs) - reference).max() < 1e-4


def test_lite_with_average_and_maximum_pooling_exports(tmp_path: Path):
    model, path = export_small("lite0", tmp_path, pooling="avgmax")
    assert read_onnx_metadata(path)["options"] == {"pooling": "avgmax"}
    inputs = batch(3, SMALL_SIZE, seed=7)
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs)).numpy()
    assert np.abs(OnnxBackend(path).logits(inputs) - reference).max() < 1e-4


def test_int8_stays_close_to_fp32(exported: dict):
    held_out = exported["inputs"]
    assert held_out["n"] == 32 and "toy" in held_out["source"]
    assert held_out["onnx"]["max_abs_diff_p_fake"] < 1e-4
    # Loose: a small model trained 3 epochs on toy faces (measured: mean 0.035, max 0.13).
    assert held_out["onnx_int8"]["mean_abs_diff_p_fake"] < 0.06
    assert held_out["onnx_int8"]["max_abs_diff_p_fake"] < 0.2
    labelled = exported["labelled"]
    assert labelled["n"] == 30 and labelled["split_source"].endswith("split_manifest.json")
    assert labelled["auc"]["torch_fp32"] > 0.9
    assert abs(labelled["auc_change"]["onnx_int8"]) <= 0.02
    assert abs(labelled["auc_change"]["onnx"]) < 1e-6
    assert exported["calibration"]["crops"] == 32


@pytest.mark.parametrize("saturates", [True, False])
def test_int8_runs_exact_kernels_where_int8_products_saturate(
    monkeypatch, exported: dict, saturates: bool
):
    # On x86 without VNNI, ONNX Runtime's fast u8 x s8 kernels saturate: the shipped INT8
    # default called a real photo fake at 0.99 (fp32: 0.06) on an AVX2-only CPU.
    monkeypatch.setattr(backends, "int8_products_saturate", lambda: saturates)
    options = OnnxBackend(exported["files"]["onnx_int8"]).session.get_session_options()
    if saturates:
        assert options.get_session_config_entry(backends.EXACT_INT8_OPTION) == "1"
    else:
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry(backends.EXACT_INT8_OPTION)


def test_int8_graph_is_quantised(exported: dict):
    ops = {node.op_type for node in onnx.load(exported["files"]["onnx_int8"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_input_keeps_the_grey_levels_apart(exported: dict, checkpoint: Path):
    """Calibrated min-max on [-1, 1] inputs would merge grey levels in pairs (128 codes)."""
    graph = onnx.load(exported["files"]["onnx_int8"]).graph
    quantiser = next(
        n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == graph.input[0].name
    )
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    scale, zero_point = (initializers[name] for name in quantiser.input[1:3])
    card = load_checkpoint(checkpoint)[1]
    grey = np.arange(256, dtype=np.float32) / 255
    for mean, std in zip(card.mean, card.std):
        # ONNX QuantizeLinear rounds half to even, as numpy does.
        codes = np.clip(np.round(((grey - mean) / std) / scale) + zero_point, 0, 255)
        assert len(np.unique(codes)) >= 255


def test_metadata_round_trip(exported: dict, checkpoint: Path, tmp_path: Path):
    original = read_metadata(checkpoint)
    for name, precision in (("onnx", "fp32"), ("onnx_int8", "int8")):
        metadata = read_onnx_metadata(exported["files"][name])
        assert metadata["precision"] == precision
        assert {k: metadata[k] for k in original} == original
        assert metadata == json.loads(
            Path(exported["files"][name]).with_suffix(".json").read_text()
        )
    # Without metadata_props the file beside the model is read; without both, a clear error.
    proto = onnx.load(exported["files"]["onnx"])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(CheckpointError, match="bare.onnx: no fakescope metadata"):
        read_onnx_metadata(bare)
    bare.with_suffix(".json").write_text(json.dumps(original))
    assert read_onnx_metadata(bare) == original
    assert METADATA_KEY == "fakescope"


def test_loaded_onnx_detector_gives_the_checkpoint_verdict(
    exported: dict, checkpoint: Path, toy_data: Path
):
    onnx_detector = fakescope.load(exported["files"]["onnx"])
    torch_detector = fakescope.load(str(checkpoint))
    assert (
        onnx_detector.backend.name == "onnxruntime-fp32"
        and torch_detector.backend.name.startswith("torch")
    )
    images = sorted((toy_data / "real").iterdir())[:3] + sorted((toy_data / "fake").iterdir())[:3]
    for a, b in zip(onnx_detector.predict_batch(images), torch_detector.predict_batch(images)):
        assert a["prediction"] == b["prediction"]
        # The torch backend may run bf16 autocast on this CPU: close, not equal.
        assert a["probabilities"]["fake"] == pytest.approx(b["probabilities"]["fake"], abs=0.03)
    assert onnx_detector.card == torch_detector.card


def test_the_default_runs_its_int8_export_and_explains_with_its_weights(
    exported: dict, checkpoint: Path, toy_data: Path, monkeypatch
):
    int8 = Path(exported["files"]["onnx_int8"])
    monkeypatch.setattr(loading, "DEFAULT_WEIGHTS", checkpoint)
    monkeypatch.setattr(loading, "DEFAULT_INT8", int8)
    detector = fakescope.load("default")
    assert (
        detector.backend.name == "onnxruntime-int8"
        and detector.describe()["backend"] == "onnxruntime-int8"
    )
    assert detector.card == loading.onnx_model(int8)[1]  # INT8's own temperature and threshold
    image = next((toy_data / "fake").iterdir())
    assert "data:image/png" in json.dumps(detector.predict(image, explain=True))
    assert fakescope.load("default", backend="torch").backend.name.startswith("torch")
    monkeypatch.setattr(loading, "DEFAULT_INT8", int8.with_name("not-installed.onnx"))
    assert fakescope.load("default").backend.name.startswith("torch")


def test_explaining_with_an_onnx_detector_is_a_clear_error(exported: dict, toy_data: Path):
    detector = fakescope.load(exported["files"]["onnx"])
    image = next((toy_data / "fake").iterdir())
    with pytest.raises(TorchModelRequiredError, match="need the PyTorch model.*ONNX"):
        detector.predict(image, explain=True)


def test_backend_that_does_not_fit_the_file_is_a_clear_error(exported: dict, checkpoint: Path):
    with pytest.raises(CheckpointError, match="onnx backend only"):
        fakescope.load(exported["files"]["onnx"], backend="torch")
    with pytest.raises(CheckpointError, match="fakescope export"):
        fakescope.load(str(checkpoint), backend="onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        fakescope.load(str(checkpoint), backend="tensorrt")


def test_unknown_format_is_an_export_error(checkpoint: Path, tmp_path: Path):
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        export_command(checkpoint, fmt="tflite", out_dir=tmp_path)


def test_unsupported_operator_is_an_export_error(tmp_path: Path):
    # ONNX's pooling has no output size that does not divide the input (5 into 8).
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(5), nn.Flatten(), nn.Linear(100, 1)
    )
    metadata = {"detector": "odd-pool", "options": {}, "card": {"input_size": 10}}
    with pytest.raises(ExportError, match="odd.onnx: cannot export detector 'odd-pool'"):
        export_onnx(model, metadata, tmp_path / "odd.onnx")


def test_calibration_folder_is_split_and_cropped_whole(
    checkpoint: Path, toy_data: Path, tmp_path: Path
):
    from fakescope.export.quantize import crop_sets

    _, card = load_checkpoint(checkpoint)
    sets = crop_sets(card, [toy_data / "real"], count=4)
    assert sets.calibration.shape == sets.held_out.shape == (4, 3, card.input_size, card.input_size)
    assert not np.allclose(sets.calibration, sets.held_out)
    # An fp32-only export quantises nothing, so it cuts no calibration crops.
    held_out_only = crop_sets(card, [toy_data / "real"], count=4, calibrate=False)
    assert len(held_out_only.calibration) == 0
    assert np.array_equal(held_out_only.held_out, sets.held_out)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.jpg").write_bytes(next((toy_data / "real").iterdir()).read_bytes())
    with pytest.raises(ExportError, match="at least two readable images"):
        crop_sets(card, [tmp_path / "one"], count=4)


def test_labelled_calibration_folder_keeps_its_test_split_out(checkpoint: Path, toy_data: Path):
    from fakescope.config import DataConfig
    from fakescope.data.discovery import discover, run_manifest_for
    from fakescope.export.quantize import calibration_files

    calibration, held_out = calibration_files(toy_data, checkpoint)
    # The run's own split, as `fakescope evaluate` reads it.
    test = {
        s.path
        for s in discover(
            DataConfig(root=toy_data), manifest_path=run_manifest_for(checkpoint, toy_data)
        ).test
    }
    assert test and not test & (set(calibration) | set(held_out))
    assert len(calibration) > len(held_out) > 0 and not set(calibration) & set(held_out)


def test_a_malformed_labelled_calibration_folder_is_reported_not_halved(tmp_path: Path):
    from fakescope.data.discovery import DataError
    from fakescope.data.toy import make_toy_dataset
    from fakescope.export.quantize import calibration_files

    data = make_toy_dataset(tmp_path / "data", n_per_class=4, size=32, seed=3)
    (data / "pairs.csv").write_text("original,swapped\na.png,b.png\n")
    with pytest.raises(DataError, match="expected columns 'real' and 'fake'"):
        calibration_files(data)


def test_calibration_draws_evenly_from_several_folders():
    from fakescope.export.quantize import interleave

    assert interleave([["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]) == [
        "a1",
        "b1",
        "c1",
        "a2",
        "c2",
        "a3",
    ]
    assert interleave([[], ["b1"]]) == ["b1"]


@pytest.mark.slow
def test_multibranch_exports_at_its_default_size(tmp_path):
    import onnxruntime as ort
    import torch

    from fakescope.export.onnx import export_onnx
    from fakescope.models.registry import create_detector

    model = create_detector("multibranch-b4", pretrained=False).eval()
    size = model.card.input_size
    path = export_onnx(
        model,
        {"detector": "multibranch-b4", "options": {}, "card": model.card.model_dump(mode="json")},
        tmp_path / "mb.onnx",
    )
    batch = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        expected = model(batch).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]
    assert abs(got - expected).max() < 1e-3


def test_the_export_command_calibrates_on_as_many_crops_as_asked(
    checkpoint: Path, toy_data: Path, tmp_path: Path
):
    from typer.testing import CliRunner

    from fakescope.cli import app

    args = ["export", str(checkpoint), "--int8", "--calibration-data", str(toy_data)]
    result = CliRunner().invoke(app, [*args, "--calibration-crops", "6", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["calibration"]["crops"] == report["inputs"]["n"] == 6
    assert "onnx_int8" in result.output and Path(report["files"]["onnx_int8"]).is_file()
    refused = CliRunner().invoke(
        app, [*args, "--calibration-crops", "0", "-o", str(tmp_path / "b")]
    )
    assert refused.exit_code == 2 and not (tmp_path / "b").exists()
