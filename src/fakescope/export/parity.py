"""Does an exported detector say what the PyTorch one says? P(fake) differences and AUC.

The reference is eager PyTorch in fp32 (the path `fakescope evaluate` takes); every exported
variant runs on the same inputs through ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fakescope.data.augment import build_transform
from fakescope.data.dataset import ImageDataset, collate_skip_broken
from fakescope.data.discovery import discover_folder
from fakescope.evaluation.evaluate import select_split
from fakescope.evaluation.metrics import auc_and_average_precision
from fakescope.inference.backends import Backend, TorchBackend
from fakescope.inference.loading import onnx_model
from fakescope.models.card import DetectorCard
from fakescope.models.scoring import fake_probability

REFERENCE = "torch_fp32"


def score_batches(
    backends: dict[str, Backend], card: DetectorCard, batches: Iterable[np.ndarray]
) -> dict[str, np.ndarray]:
    """P(fake) of every backend on the same batches."""
    scores: dict[str, list[np.ndarray]] = {name: [] for name in backends}
    for batch in batches:
        for name, backend in backends.items():
            logits = torch.from_numpy(backend.logits(batch))
            scores[name].append(fake_probability(logits, card).numpy())
    return {
        name: np.concatenate(parts) if parts else np.zeros(0, np.float32)
        for name, parts in scores.items()
    }


def differences(scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Max and mean |P(fake) - reference P(fake)| of every variant but the reference."""
    reference = scores[REFERENCE]
    out = {}
    for name, values in scores.items():
        if name != REFERENCE:
            diff = np.abs(values.astype(np.float64) - reference)
            out[name] = {
                "max_abs_diff_p_fake": float(diff.max()),
                "mean_abs_diff_p_fake": float(diff.mean()),
            }
    return out


def parity_report(
    model: nn.Module,
    card: DetectorCard,
    onnx_files: dict[str, Path],
    inputs: np.ndarray,
    inputs_source: str,
    labelled_dir: Path | None = None,
    checkpoint: Path | None = None,
    split: str = "all",
    batch_size: int = 32,
) -> dict:
    """The parity report: differences on `inputs`, and AUC on `labelled_dir` when given.

    onnx_files: variant name (e.g. "onnx", "onnx_int8") -> model path.
    checkpoint: lets a labelled dir that the checkpoint's run trained on use the run's split.
    """
    backends: dict[str, Backend] = {
        REFERENCE: TorchBackend(model, precision="fp32", channels_last=False)
    }
    backends.update({name: onnx_model(path)[0] for name, path in onnx_files.items()})
    batches = (inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size))
    report = {
        "reference": REFERENCE,
        "inputs": {
            "source": inputs_source,
            "n": len(inputs),
            **differences(score_batches(backends, card, batches)),
        },
        "labelled": None,
    }
    if labelled_dir is not None:
        report["labelled"] = _labelled_report(
            backends, card, labelled_dir, checkpoint, split, batch_size
        )
    return report


def _labelled_report(
    backends: dict[str, Backend],
    card: DetectorCard,
    data_dir: Path,
    checkpoint: Path | None,
    split: str,
    batch_size: int,
) -> dict:
    splits = discover_folder(data_dir, checkpoint)
    transform = build_transform("none", card.input_size, card.mean, card.std, train=False)
    loader = DataLoader(
        ImageDataset(select_split(splits, split), transform),
        batch_size=batch_size,
        collate_fn=collate_skip_broken,
    )
    labels: list[np.ndarray] = []

    def batches() -> Iterable[np.ndarray]:
        for batch in loader:
            if batch is not None:
                labels.append(batch[1].numpy())
                yield batch[0].numpy()

    scores = score_batches(backends, card, batches())
    truth = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    auc = {name: auc_and_average_precision(truth, values)[0] for name, values in scores.items()}
    return {
        "data": str(data_dir),
        "split": split,
        "split_source": splits.source,
        "n": len(truth),
        "auc": auc,
        "auc_change": {
            name: value - auc[REFERENCE] for name, value in auc.items() if name != REFERENCE
        },
        **differences(scores),
    }
