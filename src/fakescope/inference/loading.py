"""Resolve a detector name or path to a ready Detector."""

from __future__ import annotations

from pathlib import Path

from fakescope.checkpoint import load_checkpoint
from fakescope.inference.detector import Detector

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"


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
        raise FileNotFoundError(f"detector not found: {path} (give 'default' or a .ckpt / .safetensors file)")
    return path


def load_detector(name_or_path: str | Path = "default", **options) -> Detector:
    path = resolve(name_or_path)
    model, card = load_checkpoint(path)
    return Detector(model, card, source=str(path), **options)
