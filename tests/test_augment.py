"""Augmentation presets: shapes, determinism of evaluation, seeding, worker re-seeding."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from fakescope.data.augment import PRESETS, build_transform

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _image(height: int = 90, width: int = 70, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("size", [33, 97])
@pytest.mark.parametrize("train", [True, False])
def test_every_preset_gives_a_normalised_chw_float_tensor(
    preset: str, size: int, train: bool
) -> None:
    transform = build_transform(preset, size, MEAN, STD, train=train, seed=0)
    for seed in range(3):
        out = transform(_image(seed=seed))
        assert isinstance(out, torch.Tensor)
        assert out.shape == (3, size, size)
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("preset", PRESETS)
def test_evaluation_is_deterministic_and_only_resizes_and_normalises(preset: str) -> None:
    image = _image()
    first = build_transform(preset, 64, MEAN, STD, train=False, seed=1)(image)
    second = build_transform(preset, 64, MEAN, STD, train=False, seed=2)(image)
    assert torch.equal(first, second)
    flat = np.full((40, 50, 3), 128, dtype=np.uint8)
    out = build_transform(preset, 32, MEAN, STD, train=False)(flat)
    expected = (128 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out[:, 5, 7], expected)


def test_none_preset_ignores_train() -> None:
    image = _image()
    train = build_transform("none", 48, MEAN, STD, train=True, seed=3)(image)
    evaluation = build_transform("none", 48, MEAN, STD, train=False)(image)
    assert torch.equal(train, evaluation)


@pytest.mark.parametrize("preset", ["light", "enhanced", "robust", "degrade"])
def test_training_presets_are_random_but_seeded(preset: str) -> None:
    image = _image()
    outputs = [build_transform(preset, 48, MEAN, STD, train=True, seed=5)(image) for _ in range(2)]
    assert torch.equal(outputs[0], outputs[1])
    transform = build_transform(preset, 48, MEAN, STD, train=True, seed=5)
    draws = [transform(image) for _ in range(8)]
    assert any(not torch.equal(draws[0], other) for other in draws[1:])


def test_unseeded_transform_follows_torch_seed() -> None:
    image = _image()
    torch.manual_seed(11)
    first = build_transform("robust", 40, MEAN, STD, train=True)(image)
    torch.manual_seed(11)
    second = build_transform("robust", 40, MEAN, STD, train=True)(image)
    assert torch.equal(first, second)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(
        ValueError, match="unknown augmentation preset 'heavy'.*none, light, enhanced, robust"
    ):
        build_transform("heavy", 64, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="input_size"):
        build_transform("none", 0, MEAN, STD, train=False)


class _SameImage(Dataset):
    def __init__(self, transform):
        self.transform = transform
        self.image = _image(64, 64)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.image)


def test_transform_pickles_and_workers_draw_different_augmentations() -> None:
    transform = build_transform("enhanced", 32, MEAN, STD, train=True, seed=0)
    pickle.loads(pickle.dumps(transform))
    loader = DataLoader(
        _SameImage(transform),
        batch_size=4,
        num_workers=2,
        generator=torch.Generator().manual_seed(0),
    )
    first_worker, second_worker = list(loader)
    # Without re-seeding, forked workers would repeat the same random draws.
    assert not torch.equal(first_worker, second_worker)


def test_equalized_history_changes_only_training_images():
    import albumentations as A
    import numpy as np

    from fakescope.data.augment import build_transform

    image = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    train = build_transform(
        "none", 32, (0.5,) * 3, (0.5,) * 3, train=True, seed=0, equalize_history=True
    )
    steps = [type(t) for t in train.pipeline.transforms]
    assert steps[:2] == [A.RandomScale, A.ImageCompression]
    assert train(image).shape == (3, 32, 32)
    plain = build_transform("none", 32, (0.5,) * 3, (0.5,) * 3, train=True, seed=0)
    evaluation = build_transform(
        "none", 32, (0.5,) * 3, (0.5,) * 3, train=False, equalize_history=True
    )
    assert not (train(image) == plain(image)).all()
    assert (
        evaluation(image) == build_transform("none", 32, (0.5,) * 3, (0.5,) * 3, train=False)(image)
    ).all()


def test_reframe_cuts_windows_of_the_asked_scales_from_inside_the_image():
    import numpy as np

    from fakescope.data.augment import RandomReframe

    height, width = 120, 80
    rows, cols = np.mgrid[0:height, 0:width]
    # Each pixel carries its own coordinates, so a cut shows where it came from.
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    reframe = RandomReframe(min_scale=0.6, p=1.0)
    reframe.set_random_seed(0)
    scales = []
    for _ in range(200):
        cut = reframe(image=image)["image"]
        top, left = int(cut[0, 0, 0]), int(cut[0, 0, 1])
        cut_h, cut_w = cut.shape[:2]
        assert (cut == image[top : top + cut_h, left : left + cut_w]).all()
        assert 0.6 * height - 1 <= cut_h <= height and 0.6 * width - 1 <= cut_w <= width
        assert abs(cut_h / height - cut_w / width) < 0.02  # one scale for both sides
        scales.append(cut_h / height)
    assert min(scales) < 0.65 and max(scales) > 0.95  # the whole range is drawn


def test_reframe_applies_to_training_only_and_comes_first():
    import numpy as np

    from fakescope.data.augment import RandomReframe, build_transform

    image = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    stats = (0.5,) * 3
    train = build_transform("light", 32, stats, stats, train=True, seed=0, reframe=(1.0, 0.8))
    first = train.pipeline.transforms[0]
    assert isinstance(first, RandomReframe) and first.p == 1.0 and first.min_scale == 0.8
    assert train(image).shape == (3, 32, 32)
    evaluation = build_transform("light", 32, stats, stats, train=False, reframe=(1.0, 0.8))
    assert not any(isinstance(t, RandomReframe) for t in evaluation.pipeline.transforms)


def test_a_mask_goes_through_the_same_cuts_flips_and_resizes_as_its_image():
    import numpy as np

    from fakescope.data.augment import build_transform

    size = 128
    ramp = np.tile(np.linspace(0.0, 1.0, size, dtype=np.float32), (size, 1))
    # Channel 0 carries the mask itself; "none" adds no photometric change to tell apart.
    image = np.stack([ramp * 255, ramp.T * 255, np.zeros_like(ramp)], axis=-1).astype(np.uint8)
    transform = build_transform(
        "none", 32, (0.0,) * 3, (1.0,) * 3, train=True, seed=0, reframe=(1.0, 0.6)
    )
    starts = set()
    for _ in range(20):
        pixels, mask = transform.with_mask(image, ramp)
        assert mask.shape == (32, 32)
        # Linear (image) against nearest (mask) resizing: about one source step apart.
        assert (pixels[0] - mask).abs().max() < 0.05
        starts.add(round(float(mask[0, 0]), 2))
    assert len(starts) > 5  # the window moved, and the mask with it
