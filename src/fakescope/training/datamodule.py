"""The DataModule: discovered splits -> datasets -> loaders that keep every core busy."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fakescope.config import DataConfig
from fakescope.data.augment import build_transform
from fakescope.data.balance import class_weights, undersample, weighted_sampler
from fakescope.data.dataset import ImageDataset, collate_skip_broken
from fakescope.data.discovery import DataSplits, Sample, groups_from_pairs_csv
from fakescope.data.facecrops import LANDMARKS_FILE, load_crop_landmarks, load_other_faces
from fakescope.data.pairmasks import load_crop_masks
from fakescope.data.sbi import EpochKeySampler, SbiConfig, SelfBlendedDataset, WithSelfBlends
from fakescope.models.card import DetectorCard
from fakescope.training.pairing import EpochShuffle, blend_partners, listed_partners, merged

log = logging.getLogger(__name__)


def source_groups(config: DataConfig) -> dict[Path, tuple[int, str]]:
    """Image path -> (source, group) of every source's `pairs.csv`."""
    return {
        path: (number, group)
        for number, source in enumerate(config.sources)
        if source.pairs_csv
        for path, group in groups_from_pairs_csv(source.pairs_csv).items()
    }


def _roots(config: DataConfig) -> list[Path]:
    return [config.root] if config.root else [s.root for s in config.sources]


def crop_masks(config: DataConfig) -> dict[Path, Path]:
    """Masks of the paired fakes of every data root that `fakescope faces` made."""
    masks: dict[Path, Path] = {}
    for root in _roots(config):
        masks.update(load_crop_masks(root))
    log.info("blend-mask loss: %d data set fakes with a known mask", len(masks))
    return masks


def crop_landmarks(config: DataConfig) -> dict[Path, np.ndarray]:
    """Landmarks of every data root that `fakescope faces` made (empty for other roots)."""
    landmarks: dict[Path, np.ndarray] = {}
    for root in _roots(config):
        if (Path(root) / LANDMARKS_FILE).is_file():
            landmarks.update(load_crop_landmarks(root))
        else:
            log.warning(
                "%s has no %s: self-blends there use a central ellipse", root, LANDMARKS_FILE
            )
    return landmarks


def other_real_faces(config: DataConfig, train: list[Sample]) -> list[Sample]:
    """The other faces of the real training images, as real samples (once per repeat)."""
    others: dict[Path, list[Path]] = {}
    for root in _roots(config):
        others.update(load_other_faces(root))
    extra = [
        Sample(path, 0)
        for sample in train
        if sample.label == 0
        for path in others.get(sample.path.resolve(), [])
    ]
    log.info("other faces of real training images: %d more real samples", len(extra))
    return extra


class FolderDataModule(L.LightningDataModule):
    def __init__(self, config: DataConfig, card: DetectorCard, splits: DataSplits, seed: int):
        super().__init__()
        self.config = config
        self.card = card
        self.seed = seed
        train = splits.train
        if config.balance == "undersample" or config.max_samples_per_class:
            train = undersample(train, config.max_samples_per_class, seed)
        if config.other_real_faces:
            train = train + other_real_faces(config, train)
        self.train_samples: list[Sample] = train
        self.val_samples: list[Sample] = splits.val
        self.test_samples: list[Sample] = splits.test
        for option in ("self_blend", "paired_batches"):
            if getattr(config, option) and config.balance == "weighted-sampler":
                raise ValueError(f"data.{option} and balance: weighted-sampler cannot be combined")
        self.landmarks = crop_landmarks(config) if config.self_blend else {}
        with_masks = bool(config.self_blend and config.self_blend.mask_loss_weight > 0)
        self.masks = crop_masks(config) if with_masks else None

    def loss_class_weights(self) -> list[float] | None:
        """Inverse-frequency weights for the loss, when the config asks for them."""
        if self.config.balance != "class-weights":
            return None
        return class_weights(self.train_samples).tolist()

    def _dataset(self, samples: list[Sample], train: bool) -> Dataset:
        card = self.card
        preset = self.config.augmentation if train else "none"
        reframe = self.config.reframe
        transform = build_transform(
            preset,
            card.input_size,
            card.mean,
            card.std,
            train=train,
            equalize_history=self.config.equalize_history,
            reframe=(reframe.p, reframe.min_scale) if reframe else None,
        )
        dataset = ImageDataset(
            samples,
            transform,
            sharpen_blurry=self.config.sharpen_blurry,
            blur_threshold=self.config.blur_threshold,
            masks=self.masks if train else None,
        )
        if not (train and self.config.self_blend):
            return dataset
        reals = [s for s in samples if s.label == 0]
        options = self.config.self_blend
        # Every option but these two is the blender's own (SbiConfig validates them again).
        sbi = SbiConfig(**options.model_dump(exclude={"fake_ratio", "mask_loss_weight"}))
        blends = SelfBlendedDataset(
            reals,
            transform,
            self.landmarks,
            fake_ratio=options.fake_ratio,
            seed=self.seed,
            config=sbi,
            with_masks=self.masks is not None,
        )
        return WithSelfBlends(dataset, blends)

    def _loader(self, samples: list[Sample], train: bool) -> DataLoader:
        workers = (
            self.config.num_workers if self.config.num_workers is not None else os.cpu_count() or 1
        )
        dataset = self._dataset(samples, train)
        if train and self.config.self_blend:
            # Keys carry the epoch to persistent workers, so each epoch blends new fakes.
            sampler = EpochKeySampler(self._train_order(samples, dataset))
            batch_size = self.config.batch_size
        elif train:
            sampler = (
                weighted_sampler(samples, self.seed)
                if self.config.balance == "weighted-sampler"
                else self._train_order(samples, dataset)
            )
            batch_size = self.config.batch_size
        else:
            sampler = None
            batch_size = self.config.eval_batch_size or self.config.batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate_skip_broken,
            drop_last=False,
        )

    def _train_order(self, samples: list[Sample], dataset: Dataset) -> Sampler[int]:
        """The epoch's shuffle of the training items; with `paired_batches`, each fake beside
        the real it was made from."""
        if not self.config.paired_batches:
            return EpochShuffle(len(dataset), self.seed)
        listed = listed_partners(samples, source_groups(self.config))
        sources = [lambda epoch: listed]
        if isinstance(dataset, WithSelfBlends):
            owners = [index for index, sample in enumerate(samples) if sample.label == 0]
            sources.append(blend_partners(dataset.blends, owners, offset=len(samples)))
        return EpochShuffle(len(dataset), self.seed, merged(*sources))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_samples, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_samples, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_samples, train=False)

    def eval_dataloader(self, samples: list[Sample]) -> DataLoader:
        """Any samples through the evaluation transform (e.g. one source's test split)."""
        return self._loader(samples, train=False)
