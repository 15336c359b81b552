"""Resolve a detector name or path to a ready Detector."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fakescope.checkpoint import CheckpointError, load_checkpoint
from fakescope.inference.backends import OnnxBackend
from fakescope.inference.detector import Detector
from fakescope.models.card import DetectorCard

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
# The default's INT8 export (ONNX Runtime), calibrated on its own: what "auto" and "onnx" run.
DEFAULT_INT8 = WEIGHTS_DIR / "default.int8.onnx"
BACKENDS = ("auto", "torch", "onnx")


def resolve(name_or_path: str | Path) -> Path:
    if str(name_or_path) == "default":
        if not DEFAULT_WEIGHTS.is_file():
            raise FileNotFoundError(
                f"the shipped default detector is not installed ({DEFAULT_WEIGHTS} is missing); "
                "pass a checkpoint path from `fakescope train` instead"
            )
        return DEFAULT_WEIGHTS
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"detector not found: {path} (give 'default' or a .ckpt / .safetensors / .onnx file)"
        )
    return path


def load_detector(
    name_or_path: str | Path = "default",
    backend: Literal["auto", "torch", "onnx"] = "auto",
    **options,
) -> Detector:
    """backend "auto": ONNX Runtime for an exported `.onnx` model and for the shipped default
    (its INT8 export, where installed), PyTorch for a checkpoint."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    path = resolve(name_or_path)
    if str(name_or_path) == "default" and backend != "torch" and DEFAULT_INT8.is_file():
        # INT8 runs every forward, with its own temperature and threshold; the fp32 weights
        # it was quantised from stay loaded for Grad-CAM heat maps.
        model, _ = load_checkpoint(path)
        backend_int8, card = onnx_model(DEFAULT_INT8)
        return Detector(model, card, backend=backend_int8, source=str(DEFAULT_INT8), **options)
    if path.suffix == ".onnx":
        if backend == "torch":
            raise CheckpointError(
                f"{path}: an ONNX model runs on the onnx backend only; "
                "give its checkpoint for torch"
            )
        onnx_backend, card = onnx_model(path)
        return Detector(None, card, backend=onnx_backend, source=str(path), **options)
    if backend == "onnx":
        raise CheckpointError(
            f"{path}: the onnx backend needs an exported model; run `fakescope export {path}` first"
        )
    model, card = load_checkpoint(path)
    return Detector(model, card, source=str(path), **options)


def onnx_model(path: Path) -> tuple[OnnxBackend, DetectorCard]:
    """An exported detector's ONNX Runtime session and the card embedded in its metadata."""
    from fakescope.export.onnx import read_onnx_metadata

    metadata = read_onnx_metadata(path)
    try:
        card = DetectorCard.model_validate(metadata["card"])
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        raise CheckpointError(f"{path}: bad detector card in its metadata ({error})") from error
    return OnnxBackend(path, precision=metadata.get("precision", "fp32")), card
