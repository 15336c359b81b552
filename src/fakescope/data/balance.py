"""Class balance for training: undersampling, a weighted sampler, loss class weights."""

from __future__ import annotations

import random

import torch
from torch.utils.data import WeightedRandomSampler

from fakescope.data.discovery import CLASS_NAMES, Sample, count_labels


def undersample(samples: list[Sample], max_per_class: int | None, seed: int) -> list[Sample]:
    """Keep at most `max_per_class` samples of each class (None: the smaller class's count).

    The kept samples are a seeded random choice per class, returned in their input order.
    """
    if max_per_class is not None and max_per_class <= 0:
        raise ValueError(f"max_per_class must be positive, got {max_per_class}")
    counts = {label: n for label, n in count_labels(samples).items() if n}
    if not counts:
        return []
    cap = min(counts.values()) if max_per_class is None else max_per_class
    keep: set[int] = set()
    for label in sorted(counts):
        indices = [i for i, sample in enumerate(samples) if sample.label == label]
        if len(indices) > cap:
            indices = random.Random(f"{seed}:{label}").sample(indices, cap)
        keep.update(indices)
    return [sample for i, sample in enumerate(samples) if i in keep]


def class_weights(samples: list[Sample]) -> torch.Tensor:
    """Weights [real, fake] for the loss: total / count of the class."""
    counts = count_labels(samples)
    empty = [CLASS_NAMES[label] for label, n in counts.items() if n == 0]
    if empty:
        raise ValueError(f"class weights need both classes; no {' or '.join(empty)} samples")
    total = sum(counts.values())
    return torch.tensor([total / counts[label] for label in sorted(counts)], dtype=torch.float32)


def weighted_sampler(samples: list[Sample], seed: int) -> WeightedRandomSampler:
    """Draws len(samples) indices with replacement, each class equally likely per draw."""
    per_class = class_weights(samples)
    labels = torch.tensor([sample.label for sample in samples], dtype=torch.long)
    weights = per_class.double()[labels]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        weights, num_samples=len(samples), replacement=True, generator=generator
    )
