"""Load a trained detector and its card from disk without running any code from the file.

Two formats:
- a Lightning checkpoint (`.ckpt`) written by `fakescope train`, read with weights_only=True;
- a weights file `NAME.safetensors` with `NAME.json` beside it (the shipped default).
Both carry the same metadata: {"detector", "options", "card", "fakescope_version"}.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from fakescope import __version__
from fakescope.models.card import DetectorCard
from fakescope.models.registry import create_detector
from fakescope.utils import atomic_write_json

CHECKPOINT_KEY = "fakescope"
DETECTOR_PREFIX = "detector."


class CheckpointError(ValueError):
    """A file that is not a fakescope checkpoint, or one this version cannot read."""


def _build(
    meta: dict, state_dict: dict[str, torch.Tensor], source: Path
) -> tuple[nn.Module, DetectorCard]:
    try:
        card = DetectorCard.model_validate(meta["card"])
        model = create_detector(
            meta["detector"],
            pretrained=False,
            card_overrides=card.model_dump(),
            **meta.get("options", {}),
        )
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{source}: bad detector metadata ({error})") from error
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit detector {meta['detector']!r} "
            f"(missing {len(missing)} keys, e.g. {missing[:3]}; "
            f"unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    model.card = card
    model.eval()
    return model, card


def _load_lightning(path: Path) -> tuple[nn.Module, DetectorCard]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__}: {error})"
        ) from error
    if (
        not isinstance(payload, dict)
        or CHECKPOINT_KEY not in payload
        or "state_dict" not in payload
    ):
        raise CheckpointError(
            f"{path}: not a fakescope checkpoint (no {CHECKPOINT_KEY!r} metadata)"
        )
    state = {
        key[len(DETECTOR_PREFIX) :]: value
        for key, value in payload["state_dict"].items()
        if key.startswith(DETECTOR_PREFIX)
    }
    return _build(payload[CHECKPOINT_KEY], state, path)


def _load_safetensors(path: Path) -> tuple[nn.Module, DetectorCard]:
    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors raises its own types for damaged files
        raise CheckpointError(f"{path}: cannot read weights ({error})") from error
    return _build(meta, state, path)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, DetectorCard]:
    """A detector in eval mode and its card, from a `.ckpt` or a `.safetensors` + `.json` pair."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    return _load_lightning(path)


def read_metadata(path: str | Path) -> dict:
    """The {"detector", "options", "card", "fakescope_version"} of a checkpoint, no model built."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise CheckpointError(f"{path}: its metadata file {meta_path.name} is missing")
        try:
            return json.loads(meta_path.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{meta_path}: cannot read metadata ({error})") from error
    try:
        # mmap: only the small metadata entry is read, not every tensor.
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(payload, dict) or CHECKPOINT_KEY not in payload:
        raise CheckpointError(
            f"{path}: not a fakescope checkpoint (no {CHECKPOINT_KEY!r} metadata)"
        )
    return payload[CHECKPOINT_KEY]


def save_detector(
    model: nn.Module, card: DetectorCard, detector: str, options: dict, path: str | Path
) -> Path:
    """Write the pair `load_checkpoint` reads: `NAME.safetensors` weights, `NAME.json` metadata.

    Each file is written atomically (temporary name, then os.replace), weights first.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: a detector is saved as NAME.safetensors (with NAME.json beside it)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # contiguous(): a model trained channels_last has strided conv weights;
    # safetensors refuses them.
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    metadata = {
        "detector": detector,
        "options": options,
        "card": card.model_dump(mode="json"),
        "fakescope_version": __version__,
    }
    atomic_write_json(path.with_suffix(".json"), metadata)
    return path
