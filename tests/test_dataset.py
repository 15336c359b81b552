"""ImageDataset, skipping broken files, blur sharpening, class balance and the toy data set."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from fakescope.config import DataConfig
from fakescope.data.augment import build_transform
from fakescope.data.balance import class_weights, undersample, weighted_sampler
from fakescope.data.dataset import (
    SHARPEN_KERNEL,
    ImageDataset,
    collate_skip_broken,
    laplacian_variance,
    sharpen,
)
from fakescope.data.discovery import Sample, count_labels, discover, find_images
from fakescope.data.toy import TOY_PATCHES_FILE, make_toy_dataset, read_patch_boxes
from fakescope.io.images import decode_image


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float()


# --- ImageDataset --------------------------------------------------------------------------


def test_items_are_transformed_tensors_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [
        Sample(
            _write_png(tmp_path / f"{i}.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
            i % 2,
        )
        for i in range(4)
    ]
    transform = build_transform("none", 16, (0.5,) * 3, (0.5,) * 3, train=False)
    dataset = ImageDataset(samples, transform)
    assert len(dataset) == 4
    image, label = dataset[1]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert label == 1
    images, labels = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_skip_broken)))
    assert images.shape == (4, 3, 16, 16)
    assert labels.tolist() == [0, 1, 0, 1]


def test_a_file_broken_after_discovery_is_skipped_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = _write_png(tmp_path / "good.png", np.zeros((8, 8, 3), dtype=np.uint8))
    broken = tmp_path / "broken.png"
    broken.write_bytes(good.read_bytes()[:30])
    dataset = ImageDataset([Sample(good, 0), Sample(broken, 1), Sample(good, 1)], _to_tensor)
    with caplog.at_level(logging.WARNING, logger="fakescope.data.dataset"):
        assert dataset[1] is None
        assert dataset[1] is None
    warnings = [r for r in caplog.records if "broken.png" in r.getMessage()]
    assert len(warnings) == 1
    images, labels = collate_skip_broken([dataset[i] for i in range(3)])
    assert images.shape == (2, 3, 8, 8)
    assert labels.tolist() == [0, 1]


def test_a_batch_of_only_broken_files_collates_to_none() -> None:
    assert collate_skip_broken([None, None]) is None


def test_sharpening_of_blurry_images_follows_the_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    blurry = cv2.GaussianBlur(sharp, (0, 0), 3)
    assert laplacian_variance(blurry) < 100.0 < laplacian_variance(sharp)
    np.testing.assert_array_equal(sharpen(blurry), cv2.filter2D(blurry, -1, SHARPEN_KERNEL))
    np.testing.assert_array_equal(SHARPEN_KERNEL, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    samples = [
        Sample(_write_png(tmp_path / "blurry.png", blurry), 0),
        Sample(_write_png(tmp_path / "sharp.png", sharp), 1),
    ]
    plain = ImageDataset(samples, _to_tensor)
    sharpened = ImageDataset(samples, _to_tensor, sharpen_blurry=True, blur_threshold=100.0)
    torch.testing.assert_close(sharpened[0][0], _to_tensor(sharpen(blurry)))
    assert not torch.equal(sharpened[0][0], plain[0][0])
    assert torch.equal(sharpened[1][0], plain[1][0])  # sharp enough: untouched


# --- balance -------------------------------------------------------------------------------


def _samples(n_real: int, n_fake: int) -> list[Sample]:
    return [Sample(Path(f"r{i}.png"), 0) for i in range(n_real)] + [
        Sample(Path(f"f{i}.png"), 1) for i in range(n_fake)
    ]


def test_undersample_to_the_smaller_class_and_to_a_cap() -> None:
    samples = _samples(30, 10)
    balanced = undersample(samples, None, seed=0)
    assert count_labels(balanced) == {0: 10, 1: 10}
    assert balanced == [s for s in samples if s in set(balanced)]  # input order kept
    assert undersample(samples, None, seed=0) == balanced
    assert undersample(samples, None, seed=1) != balanced
    assert count_labels(undersample(samples, 5, seed=0)) == {0: 5, 1: 5}
    assert count_labels(undersample(samples, 20, seed=0)) == {0: 20, 1: 10}
    with pytest.raises(ValueError, match="positive"):
        undersample(samples, 0, seed=0)


def test_class_weights_are_total_over_count() -> None:
    weights = class_weights(_samples(30, 10))
    torch.testing.assert_close(weights, torch.tensor([40 / 30, 40 / 10]))
    with pytest.raises(ValueError, match="no fake samples"):
        class_weights(_samples(3, 0))


def test_weighted_sampler_balances_the_classes_and_is_seeded() -> None:
    samples = _samples(90, 10)
    sampler = weighted_sampler(samples, seed=0)
    assert len(sampler) == 100
    drawn = list(sampler)
    assert drawn == list(weighted_sampler(samples, seed=0))
    fakes = sum(samples[i].label for i in drawn)
    assert 35 <= fakes <= 65  # about half, against 10 % in the data


# --- toy data set --------------------------------------------------------------------------


def test_toy_flat_dataset_is_discoverable_and_deterministic(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "a", n_per_class=6, size=32, seed=3)
    again = make_toy_dataset(tmp_path / "b", n_per_class=6, size=32, seed=3)
    files = find_images(root)
    assert [p.relative_to(root) for p in files] == [
        p.relative_to(again) for p in find_images(again)
    ]
    assert all(p.read_bytes() == (again / p.relative_to(root)).read_bytes() for p in files)
    other = make_toy_dataset(tmp_path / "c", n_per_class=6, size=32, seed=4)
    assert (root / "real" / "real_0000.jpg").read_bytes() != (
        other / "real" / "real_0000.jpg"
    ).read_bytes()
    splits = discover(DataConfig(root=root, val_fraction=0.0, test_fraction=0.0))
    assert splits.layout == "flat" and count_labels(splits.train) == {0: 6, 1: 6}
    assert decode_image(files[0]).shape == (32, 32, 3)


def test_toy_split_layout(tmp_path: Path) -> None:
    root = make_toy_dataset(
        tmp_path / "toy", n_per_class=10, size=24, layout="split", image_format="png"
    )
    splits = discover(DataConfig(root=root))
    assert splits.layout == "splits"
    assert [count_labels(s) for s in (splits.train, splits.val, splits.test)] == [
        {0: 6, 1: 6},
        {0: 2, 1: 2},
        {0: 2, 1: 2},
    ]
    assert all(p.suffix == ".png" for p in find_images(root))


def test_both_toy_classes_are_encoded_alike(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "toy", n_per_class=4, size=32)
    tables = {}
    for label in ("real", "fake"):
        with Image.open(root / label / f"{label}_0000.jpg") as image:
            tables[label] = (image.format, image.quantization, image.layer)
    assert tables["real"] == tables["fake"]


def test_toy_patch_boxes_mark_a_high_frequency_patch(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "toy", n_per_class=8, size=64, seed=0)
    boxes = read_patch_boxes(root)
    fakes = find_images(root / "fake")
    assert set(boxes) == {p.resolve() for p in fakes}
    for path, (x0, y0, x1, y1) in boxes.items():
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        assert x1 - x0 >= 10 and y1 - y0 >= 10
        gray = cv2.cvtColor(decode_image(path), cv2.COLOR_RGB2GRAY).astype(np.float64)
        energy = np.abs(cv2.Laplacian(gray, cv2.CV_64F))
        inside = energy[y0:y1, x0:x1].mean()
        outside = np.delete(energy, np.s_[max(y0 - 2, 0) : y1 + 2], axis=0).mean()
        assert inside > 3 * outside
    for real in find_images(root / "real"):
        gray = cv2.cvtColor(decode_image(real), cv2.COLOR_RGB2GRAY).astype(np.float64)
        assert np.abs(cv2.Laplacian(gray, cv2.CV_64F)).mean() < 30


def test_toy_dataset_is_not_rewritten_and_never_overwrites_other_data(tmp_path: Path) -> None:
    root = make_toy_dataset(tmp_path / "toy", n_per_class=3, size=16)
    stamp = (root / TOY_PATCHES_FILE).stat().st_mtime_ns
    assert make_toy_dataset(root, n_per_class=3, size=16) == root
    assert (root / TOY_PATCHES_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        make_toy_dataset(root, n_per_class=4, size=16)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        make_toy_dataset(tmp_path / "mine")


def test_toy_dataset_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layout"):
        make_toy_dataset(tmp_path / "x", layout="nested")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 3"):
        make_toy_dataset(tmp_path / "x", n_per_class=2, layout="split")
    with pytest.raises(ValueError, match="size"):
        make_toy_dataset(tmp_path / "x", size=8)


def test_with_masks_items_say_where_a_fake_was_altered_when_it_is_known(tmp_path: Path) -> None:
    # (image, label, mask, known): a real face is altered nowhere; a fake with a mask file
    # carries it through the image's geometry; a fake without one is left out (known 0).
    rng = np.random.default_rng(3)
    paths = [
        _write_png(tmp_path / f"{name}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        for name in ("real", "fake_masked", "fake_unknown")
    ]
    mask_file = tmp_path / "mask.png"
    left_half = np.zeros((32, 32), np.uint8)
    left_half[:, :16] = 255
    cv2.imwrite(str(mask_file), left_half)
    samples = [Sample(paths[0], 0), Sample(paths[1], 1), Sample(paths[2], 1)]
    transform = build_transform("none", 16, (0.5,) * 3, (0.5,) * 3, train=False)
    dataset = ImageDataset(samples, transform, masks={paths[1].resolve(): mask_file})
    real, masked, unknown = (dataset[i] for i in range(3))
    assert (real[1], real[3]) == (0, 1.0) and not real[2].any()
    assert (masked[1], masked[3]) == (1, 1.0)
    assert masked[2].shape == (16, 16)
    assert masked[2][:, :7].min() > 0.99 and masked[2][:, 9:].max() < 0.01
    assert (unknown[1], unknown[3]) == (1, 0.0) and not unknown[2].any()
    batch = collate_skip_broken([real, masked, unknown])
    assert [part.shape for part in batch] == [(3, 3, 16, 16), (3,), (3, 16, 16), (3,)]
    assert ImageDataset(samples, transform)[1][1] == 1  # without masks: (image, label)
