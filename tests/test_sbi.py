"""Self-blended images: masks, locality of the change, determinism, dataset and generator."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydantic
import pytest
import torch
from PIL import Image
from skimage import data
from torch.utils.data import DataLoader, SequentialSampler

from fakescope.data.dataset import collate_skip_broken
from fakescope.data.discovery import DataError, Sample
from fakescope.data.sbi import (
    MASK_KINDS,
    Donor,
    EpochKeySampler,
    SbiConfig,
    SelfBlendedDataset,
    WithSelfBlends,
    landmarks_for,
    pick_donor,
    self_blend,
    self_blend_details,
    synthesize_sbi,
)
from fakescope.faces import FaceDetector, crop_face
from fakescope.io.images import decode_image

SIZE = 128
# Five MTCNN-style points on the 128-px test image: eyes, nose tip, mouth corners.
EYES = np.array([[44.0, 54.0], [84.0, 54.0]])
NOSE = np.array([64.0, 74.0])
MOUTH = np.array([[48.0, 94.0], [80.0, 94.0]])
LANDMARKS = np.vstack([EYES, NOSE, MOUTH]).astype(np.float32)
EYE_DISTANCE = 40.0

FACE_ONLY = SbiConfig(part_mask_prob=0.0)


def textured_image(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Smooth colour variation plus fine texture: every alteration of the source shows."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 215, (5, 5, 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


def part_config(kind: str) -> SbiConfig:
    return SbiConfig(part_mask_prob=1.0, part_kinds=(kind,))


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    return np.array([(xs * mask).sum(), (ys * mask).sum()]) / mask.sum()


def value_at(mask: np.ndarray, point: np.ndarray) -> float:
    return float(mask[round(point[1]), round(point[0])])


def support_reach(mask: np.ndarray, centres: np.ndarray) -> float:
    """The largest distance from a pixel where mask > 0 to the nearest of `centres`."""
    ys, xs = np.nonzero(mask > 0)
    pixels = np.stack([xs, ys], axis=1)[:, None, :]
    return float(np.linalg.norm(pixels - centres[None], axis=2).min(axis=1).max())


def ibug_68(eyes: np.ndarray, nose: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """A plausible 68-point face around five points (jaw arc, brows, nose, eye rings, lips)."""
    centre = eyes.mean(axis=0)

    def arc(middle, rx, ry, start, stop, count):
        angles = np.linspace(start, stop, count)
        return np.stack([middle[0] + rx * np.cos(angles), middle[1] + ry * np.sin(angles)], 1)

    jaw = arc(centre + [0, 10], 42, 48, np.pi, 0, 17)[::-1]  # ear to ear through the chin
    jaw[:, 1] = centre[1] + 10 + np.abs(jaw[:, 1] - centre[1] - 10)
    brows = np.vstack([arc(eye - [0, 12], 12, 4, np.pi, 2 * np.pi, 5) for eye in eyes])
    bridge = np.stack([np.full(4, nose[0]), np.linspace(centre[1], nose[1], 4)], 1)
    nostrils = np.stack([nose[0] + np.linspace(-8, 8, 5), np.full(5, nose[1] + 2)], 1)
    eye_rings = np.vstack([arc(eye, 8, 4, 0, 2 * np.pi, 7)[:6] for eye in eyes])
    mouth_centre = mouth.mean(axis=0)
    half = (mouth[1, 0] - mouth[0, 0]) / 2
    outer = arc(mouth_centre, half, 6, np.pi, 3 * np.pi, 13)[:12]
    inner = arc(mouth_centre, half * 0.7, 3, np.pi, 3 * np.pi, 9)[:8]
    points = np.vstack([jaw, brows, bridge, nostrils, eye_rings, outer, inner])
    points[30] = nose  # nose tip
    return points


# --- self_blend ----------------------------------------------------------------------------


def test_same_seed_gives_the_same_fake_and_another_seed_another():
    image = textured_image()
    first = self_blend(image, LANDMARKS, np.random.default_rng(7))
    again = self_blend(image, LANDMARKS, np.random.default_rng(7))
    other = self_blend(image, LANDMARKS, np.random.default_rng(8))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_face_mask_is_soft_non_trivial_and_around_the_landmarks():
    image = textured_image()
    for seed in range(8):
        result = self_blend_details(image, LANDMARKS, np.random.default_rng(seed), FACE_ONLY)
        mask = result.mask
        assert result.kind == "face" and result.blend_ratio in FACE_ONLY.blend_ratios
        assert mask.shape == (SIZE, SIZE) and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        assert mask.max() == pytest.approx(result.blend_ratio, abs=0.02)
        covered = (mask > 0.5 * mask.max()).mean()
        assert 0.1 < covered < 0.6  # the face, not a speck and not the whole image
        # A soft edge: intermediate values exist beyond the blend ratio's plateau.
        assert ((mask > 0.05 * mask.max()) & (mask < 0.95 * mask.max())).mean() > 0.02
        assert mask[:8].max() == 0 and mask[:, :8].max() == 0 and mask[:, -8:].max() == 0
        distance = np.linalg.norm(centroid(mask) - LANDMARKS.mean(axis=0))
        assert distance < 0.35 * EYE_DISTANCE
        for point in LANDMARKS:
            assert value_at(mask, point) > 0.5 * mask.max()


def test_fake_differs_from_the_real_only_where_the_mask_is_positive():
    image = textured_image()
    for seed in range(12):
        fake, mask = self_blend(image, LANDMARKS, np.random.default_rng(seed))
        assert fake.shape == image.shape and fake.dtype == np.uint8
        outside = mask == 0
        assert outside.mean() > 0.2
        assert np.array_equal(fake[outside], image[outside])
        inside = mask > 0.2
        change = np.abs(fake.astype(int) - image.astype(int))[inside].mean()
        assert change > 1.0, f"seed {seed}: the blended region barely changed"


def test_the_change_follows_the_mask_strength():
    # Where the source counts fully, the change is larger than where it counts a little.
    image = textured_image()
    config = SbiConfig(part_mask_prob=0.0, blend_ratios=(1.0,))
    fake, mask = self_blend(image, LANDMARKS, np.random.default_rng(3), config)
    change = np.abs(fake.astype(int) - image.astype(int)).sum(axis=2)
    assert change[mask > 0.9].mean() > 2 * change[(mask > 0) & (mask < 0.1)].mean()


@pytest.mark.parametrize(
    "kind, centres, elsewhere, reach",
    [
        ("eyes", EYES, [NOSE, *MOUTH], 0.6 * EYE_DISTANCE),
        ("nose", np.array([(EYES.mean(axis=0) + NOSE) / 2]), [*EYES, *MOUTH], 0.65 * EYE_DISTANCE),
        ("mouth", np.array([MOUTH.mean(axis=0)]), [*EYES, NOSE], 0.8 * EYE_DISTANCE),
    ],
)
def test_part_masks_cover_only_their_region(kind, centres, elsewhere, reach):
    image = textured_image()
    face_area = np.mean(
        [
            (self_blend(image, LANDMARKS, np.random.default_rng(s), FACE_ONLY)[1] > 0).mean()
            for s in range(4)
        ]
    )
    for seed in range(8):
        result = self_blend_details(
            image, LANDMARKS, np.random.default_rng(seed), part_config(kind)
        )
        mask = result.mask
        assert result.kind == kind
        assert (mask > 0).any()
        assert support_reach(mask, centres) < reach
        for point in elsewhere:
            assert value_at(mask, point) == 0.0
        assert (mask > 0).mean() < 0.5 * face_area
        for centre in centres:
            assert value_at(mask, centre) > 0.5 * mask.max()


def test_part_masks_drawn_at_the_configured_rate():
    image = textured_image()
    config = SbiConfig(part_mask_prob=0.5)
    kinds = [
        self_blend_details(image, LANDMARKS, np.random.default_rng(s), config).kind
        for s in range(40)
    ]
    assert set(kinds) <= set(MASK_KINDS) - {"ellipse"}
    assert 10 <= kinds.count("face") <= 30
    assert {"eyes", "nose", "mouth"} <= set(kinds)


def test_part_outside_the_image_is_not_chosen():
    # The mouth lies below the bottom edge: a mouth-only mask would be empty.
    image = textured_image()
    shifted = LANDMARKS + np.array([0.0, 40.0], np.float32)
    result = self_blend_details(image, shifted, np.random.default_rng(0), part_config("mouth"))
    assert result.kind == "face" and (result.mask > 0).any()


def test_without_landmarks_a_central_ellipse_is_used():
    image = textured_image(size=160)
    for seed in range(4):
        result = self_blend_details(image, None, np.random.default_rng(seed), part_config("eyes"))
        mask = result.mask
        assert result.kind == "ellipse"
        assert np.allclose(centroid(mask), [0.5 * 160, 0.55 * 160], atol=0.06 * 160)
        assert 0.15 < (mask > 0.5 * mask.max()).mean() < 0.5
        outside = mask == 0
        assert mask[:6].max() == 0 and mask[:, :6].max() == 0
        assert np.array_equal(result.fake[outside], image[outside])


def test_68_landmarks_give_the_hull_of_the_points():
    image = textured_image()
    points = ibug_68(EYES, NOSE, MOUTH)
    assert points.shape == (68, 2)
    config = SbiConfig(part_mask_prob=0.0, blend_ratios=(1.0,), mask_threshold=(0.5, 0.5))
    mask = self_blend(image, points, np.random.default_rng(0), config)[1]
    # The jaw line bounds the mask: the chin is inside, well below the chin is not.
    chin = points[8]
    assert value_at(mask, chin - [0, 4]) > 0.5
    assert value_at(mask, chin + [0, 0.3 * EYE_DISTANCE]) < 0.1
    eyes = self_blend_details(image, points, np.random.default_rng(0), part_config("eyes"))
    assert support_reach(eyes.mask, EYES) < 0.6 * EYE_DISTANCE


@pytest.mark.parametrize(
    "image, landmarks, message",
    [
        (np.zeros((64, 64), np.uint8), LANDMARKS, "HxWx3"),
        (np.zeros((64, 64, 3), np.float32), LANDMARKS, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), None, "at least 16x16"),
        (np.zeros((128, 128, 3), np.uint8), LANDMARKS[:4], r"\(5, 2\) or \(68, 2\)"),
        (np.zeros((128, 128, 3), np.uint8), LANDMARKS * np.nan, "NaN"),
        (np.zeros((64, 64, 3), np.uint8), LANDMARKS + 100, "outside the 64x64 image"),
        (np.zeros((64, 64, 3), np.uint8), np.full((5, 2), 30.0), "degenerate"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(image, landmarks, message):
    with pytest.raises(ValueError, match=message):
        self_blend(image, landmarks, np.random.default_rng(0))


@pytest.mark.parametrize(
    "overrides",
    [
        {"scale_range": (1.05, 0.95)},
        {"mask_edge_sigma": (0.0, 0.1)},
        {"mask_threshold": (0.5, 1.0)},
        {"downscale_factor": (0.5, 1.5)},
        {"blend_ratios": ()},
        {"blend_ratios": (0.5, 1.5)},
        {"part_kinds": ()},
        {"part_kinds": ("ears",)},
        {"rgb_shift_prob": 1.5},
        {"splice_prob": 1.5},
        {"splice_colour_match": (0.8, 0.2)},
        {"splice_colour_match": (0.5, 1.5)},
        {"unknown_field": 1},
    ],
)
def test_config_rejects_bad_values(overrides):
    with pytest.raises(pydantic.ValidationError):
        SbiConfig(**overrides)


def test_config_accepts_parts_off_and_no_part_kinds():
    assert SbiConfig(part_mask_prob=0.0, part_kinds=()).part_kinds == ()


# --- splices ------------------------------------------------------------------------------

# Splices whose donor pixels arrive untouched: no colour matching, no appearance jitter (one
# step is always drawn: an RGB shift of 0), no misalignment, full blend.
PLAIN_SPLICE = SbiConfig(
    splice_prob=1.0,
    splice_colour_match=(0.0, 0.0),
    rgb_shift_prob=1.0,
    rgb_shift_limit=0.0,
    hsv_prob=0.0,
    brightness_contrast_prob=0.0,
    frequency_prob=0.0,
    scale_range=(1.0, 1.0),
    translate_limit=0.0,
    source_elastic=0.0,
    blend_ratios=(1.0,),
)
PART_CENTRES = np.array([*EYES, (EYES.mean(axis=0) + NOSE) / 2, MOUTH.mean(axis=0)])


def rotated_and_enlarged(image: np.ndarray, points: np.ndarray, angle: float, scale: float):
    """The image turned about its centre and scaled onto a larger canvas, and its points too."""
    side = round(image.shape[0] * scale)
    matrix = cv2.getRotationMatrix2D((image.shape[1] / 2, image.shape[0] / 2), angle, scale)
    matrix[:, 2] += (side - image.shape[0]) / 2
    moved = cv2.warpAffine(
        image, matrix, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101
    )
    return moved, (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def test_splice_pastes_the_donor_aligned_by_its_landmarks():
    target = textured_image(seed=0)
    donor_image = textured_image(seed=5)
    # The donor is seen turned and larger: its parts must still land on the target's.
    turned, turned_points = rotated_and_enlarged(donor_image, LANDMARKS, angle=25, scale=1.6)
    for seed in range(6):
        result = self_blend_details(
            target,
            LANDMARKS,
            np.random.default_rng(seed),
            PLAIN_SPLICE,
            Donor(turned, turned_points),
        )
        assert result.kind == "splice"
        full = result.mask > 0.99
        assert full.any()
        # Where the donor counts fully, the fake is the donor as it was before turning.
        assert np.abs(result.fake[full].astype(int) - donor_image[full].astype(int)).mean() < 4
        outside = result.mask == 0
        assert np.array_equal(result.fake[outside], target[outside])


def test_splice_masks_are_sets_of_the_four_parts():
    target = textured_image()
    donor = Donor(textured_image(seed=3), LANDMARKS)
    covered = []
    for seed in range(40):
        result = self_blend_details(
            target, LANDMARKS, np.random.default_rng(seed), PLAIN_SPLICE, donor
        )
        assert result.kind == "splice"
        assert support_reach(result.mask, PART_CENTRES) < 0.8 * EYE_DISTANCE
        covered.append(tuple(value_at(result.mask, centre) > 0.5 for centre in PART_CENTRES))
    assert all(any(parts) for parts in covered)
    assert [any(parts[i] for parts in covered) for i in range(4)] == [True] * 4
    assert len(set(covered)) >= 6  # single parts and combinations
    assert any(parts == (True, False, False, False) for parts in covered)  # one eye alone


def test_splice_colours_move_toward_the_target():
    target = textured_image(seed=0)
    donor = Donor(
        np.clip(textured_image(seed=0).astype(int) + 60, 0, 255).astype(np.uint8), LANDMARKS
    )
    config = {"update": {"splice_colour_match": (1.0, 1.0)}}
    matched = self_blend_details(
        target, LANDMARKS, np.random.default_rng(1), PLAIN_SPLICE.model_copy(**config), donor
    )
    raw = self_blend_details(target, LANDMARKS, np.random.default_rng(1), PLAIN_SPLICE, donor)
    inside = raw.mask > 0.99
    assert np.array_equal(inside, matched.mask > 0.99)
    gap = lambda result: np.abs(result.fake[inside].astype(int) - target[inside].astype(int)).mean()  # noqa: E731
    assert gap(raw) > 40 and gap(matched) < 10


def test_splice_takes_nothing_from_padding_and_falls_back_when_the_donor_has_no_picture():
    target = textured_image()
    padded = textured_image(seed=4)
    padded[:, 64:] = 0  # a crop that ran over its photo's right edge
    for seed in range(10):
        result = self_blend_details(
            target, LANDMARKS, np.random.default_rng(seed), PLAIN_SPLICE, Donor(padded, LANDMARKS)
        )
        if result.kind == "splice":
            assert result.mask[:, 66:].max() == 0.0
    black = Donor(np.zeros_like(target), LANDMARKS)
    result = self_blend_details(target, LANDMARKS, np.random.default_rng(0), PLAIN_SPLICE, black)
    assert result.kind in ("face", "eyes", "nose", "mouth")


def test_splice_needs_the_targets_landmarks():
    with pytest.raises(ValueError, match="target's landmarks"):
        self_blend(
            textured_image(),
            None,
            np.random.default_rng(0),
            PLAIN_SPLICE,
            Donor(textured_image(), LANDMARKS),
        )


def test_pick_donor_never_picks_the_target_and_draws_nothing_when_off():
    picks = [pick_donor(np.random.default_rng(s), PLAIN_SPLICE, 2, 5) for s in range(60)]
    assert set(picks) == {0, 1, 3, 4}
    assert pick_donor(np.random.default_rng(0), PLAIN_SPLICE, 0, 1) is None  # nobody else
    rng = np.random.default_rng(0)
    assert pick_donor(rng, SbiConfig(), 0, 5) is None
    assert rng.random() == np.random.default_rng(0).random()  # the stream was not touched
    half = SbiConfig(splice_prob=0.5)
    chosen = [pick_donor(np.random.default_rng(s), half, 0, 5) for s in range(100)]
    assert 30 <= sum(c is not None for c in chosen) <= 70


# --- SelfBlendedDataset --------------------------------------------------------------------


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy()).permute(2, 0, 1)


@pytest.fixture
def real_samples(tmp_path: Path) -> list[Sample]:
    samples = []
    for index in range(10):
        path = tmp_path / f"real_{index}.png"
        Image.fromarray(textured_image(seed=index, size=64)).save(path)
        samples.append(Sample(path, 0))
    return samples


def _landmarks_64(samples: list[Sample]) -> dict[Path, np.ndarray]:
    # The 128-px points scaled to 64 px; one image left out uses the fallback ellipse.
    return {sample.path: LANDMARKS / 2 for sample in samples[1:]}


def test_dataset_gives_both_labels_at_the_ratio_asked(real_samples):
    for ratio, expected in ((0.5, 5), (0.3, 3), (0.0, 0), (1.0, 10)):
        dataset = SelfBlendedDataset(
            real_samples, _to_tensor, _landmarks_64(real_samples), fake_ratio=ratio, seed=1
        )
        for epoch in (0, 1):
            dataset.set_epoch(epoch)
            labels = [dataset[i][1] for i in range(len(dataset))]
            assert sum(labels) == expected


def test_dataset_items_repeat_for_the_same_seed_epoch_and_index(real_samples):
    landmarks = _landmarks_64(real_samples)
    first = SelfBlendedDataset(real_samples, _to_tensor, landmarks, seed=3)
    second = SelfBlendedDataset(real_samples, _to_tensor, landmarks, seed=3)
    second.set_epoch(2)
    for index in range(len(first)):
        a_image, a_label = first[(2, index)]
        b_image, b_label = second[index]
        assert a_label == b_label and torch.equal(a_image, b_image)
        real = _to_tensor(decode_image(real_samples[index].path))
        assert torch.equal(a_image, real) == (a_label == 0)

    fakes_by_epoch = [[first.is_fake(i, epoch) for i in range(len(first))] for epoch in range(4)]
    assert len({tuple(f) for f in fakes_by_epoch}) > 1  # the fakes change between epochs
    index = next(i for i in range(len(first)) if first.is_fake(i, 0) and first.is_fake(i, 1))
    assert not torch.equal(first[(0, index)][0], first[(1, index)][0])
    other_seed = SelfBlendedDataset(real_samples, _to_tensor, landmarks, seed=4)
    assert [other_seed.is_fake(i, 0) for i in range(10)] != fakes_by_epoch[0]


def test_dataset_skips_broken_files_and_refuses_fake_samples(real_samples, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    samples = [*real_samples[:3], Sample(broken, 0)]
    dataset = SelfBlendedDataset(samples, _to_tensor, {}, fake_ratio=1.0)
    assert dataset[3] is None
    batch = collate_skip_broken([dataset[i] for i in range(4)])
    assert batch[0].shape == (3, 3, 64, 64) and batch[1].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="real images only"):
        SelfBlendedDataset([Sample(broken, 1)], _to_tensor, {})
    with pytest.raises(ValueError, match="fake_ratio"):
        SelfBlendedDataset(real_samples, _to_tensor, {}, fake_ratio=1.5)


def test_dataset_splices_parts_of_another_real_face(real_samples):
    landmarks = _landmarks_64(real_samples)
    dataset = SelfBlendedDataset(
        real_samples, _to_tensor, landmarks, fake_ratio=1.0, seed=2, config=PLAIN_SPLICE
    )
    reals = [_to_tensor(decode_image(sample.path)) for sample in real_samples]
    for index in range(1, len(real_samples)):  # sample 0 has no landmarks: no splice
        fake, label = dataset[(0, index)]
        assert label == 1 and torch.equal(fake, dataset[(0, index)][0])
        # All faces share their landmarks, so the donor's parts arrive pixel for pixel.
        changed = (fake != reals[index]).any(dim=0)
        from_donor = [
            ((fake == reals[j]).all(dim=0) & changed).float().mean().item()
            for j in range(len(reals))
            if j != index
        ]
        assert max(from_donor) > 0.02


def test_dataset_with_masks_gives_each_item_its_blend_mask(real_samples):
    from fakescope.data.augment import build_transform

    # Re-framed, flipped and resized: the mask must go where the blend went.
    transform = build_transform(
        "light", 32, (0.0,) * 3, (1.0,) * 3, train=True, seed=0, reframe=(1.0, 0.7)
    )
    dataset = SelfBlendedDataset(
        real_samples,
        transform,
        _landmarks_64(real_samples),
        fake_ratio=0.5,
        seed=1,
        with_masks=True,
    )
    items = [dataset[(0, index)] for index in range(len(dataset))]
    for image, label, mask, known in items:
        assert image.shape == (3, 32, 32) and mask.shape == (32, 32) and known == 1.0
        assert (mask.sum() > 0) == (label == 1)
    batch = collate_skip_broken(items)
    assert [part.shape for part in batch] == [(10, 3, 32, 32), (10,), (10, 32, 32), (10,)]
    assert batch[2].dtype == torch.float32


def test_with_self_blends_puts_the_blends_after_the_data_set(real_samples):
    base = [(torch.ones(3, 8, 8), 0), None, (torch.ones(3, 8, 8), 1)]
    blends = SelfBlendedDataset(real_samples, _to_tensor, {}, seed=2)
    joined = WithSelfBlends(base, blends)
    assert len(joined) == len(base) + len(blends)
    assert [joined[(0, index)] for index in range(3)] == base
    image, label = joined[(4, 3)]
    assert torch.equal(image, blends[(4, 0)][0]) and label == blends[(4, 0)][1]


def test_epoch_key_sampler_carries_the_epoch_through_a_loader(real_samples):
    dataset = SelfBlendedDataset(real_samples, _to_tensor, _landmarks_64(real_samples), seed=5)
    sampler = EpochKeySampler(SequentialSampler(range(len(dataset))))
    assert len(sampler) == len(dataset)
    sampler.set_epoch(3)
    assert list(sampler)[:2] == [(3, 0), (3, 1)]
    loader = DataLoader(dataset, batch_size=5, sampler=sampler, collate_fn=collate_skip_broken)
    images, labels = next(iter(loader))
    # The dataset's own epoch is still 0: the keys alone chose epoch 3.
    assert labels.tolist() == [int(dataset.is_fake(i, 3)) for i in range(5)]
    assert torch.equal(images[0], dataset[(3, 0)][0])


# --- landmarks_for and synthesize_sbi (MTCNN) ----------------------------------------------


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory, detector) -> Path:
    """Three astronaut faces (two crops and a mirror), a faceless image and a broken file."""
    root = tmp_path_factory.mktemp("reals")
    photo = data.astronaut()
    box = detector.detect(photo).faces[0].box
    (root / "sub").mkdir()
    faces = {
        "face_a.png": crop_face(photo, box, margin=0.3, out_size=160),
        "face_b.jpg": crop_face(photo, box, margin=0.6, out_size=200),
        "sub/face_c.png": np.ascontiguousarray(crop_face(photo, box, 0.3, 160)[:, ::-1]),
        "faceless.png": textured_image(size=120),
    }
    for name, pixels in faces.items():
        Image.fromarray(pixels).save(root / name, quality=95)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    return root


def test_landmarks_for_skips_faceless_and_unreadable_files(real_dir, detector):
    paths = sorted(real_dir.rglob("*.*"))
    found = landmarks_for(paths, detector)
    assert sorted(p.name for p in found) == ["face_a.png", "face_b.jpg", "face_c.png"]
    for points in found.values():
        assert points.shape == (5, 2)


def test_synthesize_sbi_writes_fakes_masks_and_manifest(real_dir, detector, tmp_path):
    out = tmp_path / "sbi"
    summary = synthesize_sbi(real_dir, out, n_per_image=2, seed=4, detector=detector)
    assert summary == {
        "images": 5,
        "fakes": 6,
        "skipped": 2,
        "out_dir": str(out.resolve()),
        "manifest": str(out.resolve() / "sbi_manifest.json"),
    }
    manifest = json.loads((out / "sbi_manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["n_per_image"] == 2
    assert SbiConfig(**manifest["config"]) == SbiConfig()
    skipped = {entry["source"]: entry["reason"] for entry in manifest["skipped"]}
    assert set(skipped) == {"faceless.png", "broken.jpg"}
    assert skipped["faceless.png"].startswith("no face found")
    assert sorted(p.relative_to(out).as_posix() for p in (out / "fake").rglob("*")) == [
        "fake/face_a_sbi0.png",
        "fake/face_a_sbi1.png",
        "fake/face_b_sbi0.png",
        "fake/face_b_sbi1.png",
        "fake/sub",
        "fake/sub/face_c_sbi0.png",
        "fake/sub/face_c_sbi1.png",
    ]
    for entry in manifest["fakes"]:
        fake = decode_image(out / entry["file"])
        mask = np.asarray(Image.open(out / entry["mask"]))
        real = decode_image(real_dir / entry["source"])
        assert entry["mask_kind"] in MASK_KINDS and entry["mask_kind"] != "ellipse"
        assert entry["blend_ratio"] in SbiConfig().blend_ratios
        assert mask.shape == real.shape[:2] and mask.dtype == np.uint8
        assert np.array_equal(fake[mask == 0], real[mask == 0])
        assert np.abs(fake.astype(int) - real.astype(int))[mask > mask.max() // 2].mean() > 0.5
        # The recorded seed and landmarks reproduce the fake.
        rng = np.random.default_rng(entry["seed"])
        assert np.array_equal(self_blend(real, np.array(entry["landmarks"]), rng)[0], fake)


def test_synthesize_sbi_splices_name_their_donor_and_reproduce(real_dir, detector, tmp_path):
    out = tmp_path / "spliced"
    config = SbiConfig(splice_prob=1.0)
    synthesize_sbi(real_dir, out, seed=1, detector=detector, config=config)
    manifest = json.loads((out / "sbi_manifest.json").read_text())
    entries = {entry["source"]: entry for entry in manifest["fakes"]}
    assert manifest["version"] == 2 and len(entries) == 3
    faces = sorted(entries)  # the order synthesize_sbi met them in
    for position, source in enumerate(faces):
        entry = entries[source]
        assert entry["mask_kind"] == "splice" and entry["donor"] in set(faces) - {source}
        rng = np.random.default_rng(entry["seed"])
        donor_position = pick_donor(rng, config, position, len(faces))
        donor_source = faces[donor_position]
        assert donor_source == entry["donor"]
        donor = Donor(
            decode_image(real_dir / donor_source), np.array(entries[donor_source]["landmarks"])
        )
        fake, _ = self_blend(
            decode_image(real_dir / source), np.array(entry["landmarks"]), rng, config, donor
        )
        assert np.array_equal(fake, decode_image(out / entry["file"]))


def test_synthesize_sbi_refuses_an_out_dir_inside_the_real_dir(real_dir, detector):
    with pytest.raises(DataError, match="inside real_dir"):
        synthesize_sbi(real_dir, real_dir / "sbi", detector=detector)
    with pytest.raises(ValueError, match="n_per_image"):
        synthesize_sbi(real_dir, real_dir.parent / "x", n_per_image=0, detector=detector)
