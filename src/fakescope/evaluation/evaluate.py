"""`fakescope evaluate`: score a checkpoint on one or more labelled folders."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from fakescope.checkpoint import load_checkpoint
from fakescope.config import DataConfig
from fakescope.data.augment import build_transform
from fakescope.data.dataset import ImageDataset, collate_skip_broken
from fakescope.data.discovery import DataSplits, Sample, discover
from fakescope.evaluation.predict import predict_loader
from fakescope.evaluation.report import evaluate_scores
from fakescope.models.card import DetectorCard
from fakescope.utils import atomic_write_json

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def run_manifest_for(checkpoint: Path, data_dir: Path) -> Path | None:
    """The split manifest of the run that made `checkpoint`, when that run used `data_dir`.

    Evaluating a flat folder with the run's own split keeps its training images out of the test.
    """
    run_dir = checkpoint.resolve().parent.parent
    for manifest in sorted(run_dir.glob("split_manifest*.json")):
        root = json.loads(manifest.read_text()).get("root")
        if root and Path(root).resolve() == data_dir.resolve():
            return manifest
    return None


def select_split(splits: DataSplits, split: str) -> list[Sample]:
    if split == "all":
        return splits.train + splits.val + splits.test
    return getattr(splits, split)


@dataclass(frozen=True)
class ScoredSplit:
    """One split of one data dir, scored: labels and logits of P(fake) before temperature."""

    labels: np.ndarray
    logits: np.ndarray
    split_source: str  # the run's split manifest, or the layout the split was derived from
    skipped: list[tuple[Path, str]]  # unreadable files left out: (path, reason)


def score_split(
    model: nn.Module,
    card: DetectorCard,
    checkpoint: Path,
    data_dir: Path,
    split: str,
    batch_size: int = 64,
    num_workers: int = 2,
) -> ScoredSplit:
    """Score one split of `data_dir` with the card's evaluation transform (no augmentation)."""
    manifest = run_manifest_for(checkpoint, data_dir)
    splits = discover(DataConfig(root=data_dir), manifest_path=manifest)
    transform = build_transform("none", card.input_size, card.mean, card.std, train=False)
    loader = DataLoader(
        ImageDataset(select_split(splits, split), transform),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_skip_broken,
    )
    labels, logits = predict_loader(model, card, loader)
    split_source = str(manifest) if manifest else f"layout {splits.layout}"
    return ScoredSplit(labels, logits, split_source, splits.skipped)


def fake_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """P(fake) = sigmoid(logit / T) in float32, computed as `scoring.fake_probability` does it.

    Computing it the same way everywhere keeps a threshold chosen on these probabilities exact
    when the detector scores the same images later.
    """
    return torch.sigmoid(torch.from_numpy(logits) / temperature).numpy()


def evaluate_checkpoint(
    checkpoint: Path,
    data_dirs: list[Path],
    out_dir: Path,
    split: str = "test",
    threshold: float | None = None,
    batch_size: int = 64,
    num_workers: int = 2,
) -> dict:
    """Metrics, plots and one JSON for each data dir; the threshold used and where it came from."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    model, card = load_checkpoint(checkpoint)
    used_threshold = card.threshold if threshold is None else threshold
    threshold_source = card.threshold_source if threshold is None else "command line"
    report: dict = {
        "evaluated_at": datetime.now(timezone.utc).isoformat(),
        "checkpoint": str(checkpoint),
        "detector": card.name,
        "detector_version": card.version,
        "split": split,
        "threshold": used_threshold,
        "threshold_source": threshold_source,
        "datasets": {},
    }
    for data_dir in data_dirs:
        scored = score_split(model, card, checkpoint, data_dir, split, batch_size, num_workers)
        probs = fake_probabilities(scored.logits, card.temperature)
        name = data_dir.resolve().name
        metrics = evaluate_scores(
            scored.labels,
            probs,
            used_threshold,
            threshold_source,
            out_dir / name,
            title=f"{card.name} on {name} ({split})",
        )
        metrics["split_source"] = scored.split_source
        metrics["skipped"] = [{"path": str(p), "reason": r} for p, r in scored.skipped]
        report["datasets"][name] = metrics
    atomic_write_json(out_dir / "evaluation.json", report)
    return report
