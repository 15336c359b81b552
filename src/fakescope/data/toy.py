"""A generated real/fake data set with a known, learnable difference (demo and tests).

Every image is a smooth random background with a soft, face-like ellipse (eyes, mouth,
shading) and mild sensor noise. A fake is such an image with a rectangular patch of
high-frequency checker texture added inside the face: a small CNN learns it in seconds, and
the patch box of every fake is saved in `toy_patches.json` (see `read_patch_boxes`) so a
heat map can be checked against it. Both classes are encoded alike (same format, same JPEG
quality and chroma subsampling): the file format carries no label.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator, Literal

import cv2
import numpy as np
from PIL import Image

from fakescope.utils import atomic_write_bytes, atomic_write_json

TOY_PATCHES_FILE = "toy_patches.json"
_FORMAT = "fakescope-toy-dataset"
_FOLDERS = {
    "flat": {"": {0: "real", 1: "fake"}},
    "split": {split: {0: "Real", 1: "Fake"} for split in ("Train", "Validation", "Test")},
}
_SPLIT_SHARES = (0.7, 0.15, 0.15)

# (x0, y0, x1, y1) in pixels; x1 and y1 are exclusive.
Box = tuple[int, int, int, int]


def make_toy_dataset(
    root: str | Path,
    n_per_class: int = 100,
    size: int = 64,
    seed: int = 0,
    layout: Literal["flat", "split"] = "flat",
    image_format: Literal["jpeg", "png"] = "jpeg",
    jpeg_quality: int = 95,
) -> Path:
    """Write `n_per_class` real and fake images under `root` and return `root`.

    layout "flat": root/{real,fake}; "split": root/{Train,Validation,Test}/{Real,Fake}
    (70/15/15 per class). Deterministic: the same arguments give the same bytes. Calling it
    again on a folder it made with the same arguments returns at once.
    """
    root = Path(root)
    settings = {
        "n_per_class": n_per_class,
        "size": size,
        "seed": seed,
        "layout": layout,
        "image_format": image_format,
        "jpeg_quality": jpeg_quality,
    }
    _check_settings(settings)
    if _already_made(root, settings):
        return root
    boxes: dict[str, list[int]] = {}
    for relative, label, index in _planned_files(n_per_class, layout, image_format):
        rng = np.random.default_rng([seed, label, index])
        image = _face_like_image(rng, size)
        if label == 1:
            box = _add_texture_patch(image, rng)
            boxes[relative] = list(box)
        atomic_write_bytes(root / relative, _encode(image, image_format, jpeg_quality))
    atomic_write_json(
        root / TOY_PATCHES_FILE,
        {
            "format": _FORMAT,
            "settings": settings,
            "box": "x0, y0, x1, y1 (x1, y1 exclusive)",
            "boxes": boxes,
        },
    )
    return root


def read_patch_boxes(root: str | Path) -> dict[Path, Box]:
    """Absolute (resolved) path of each fake image -> its texture patch box."""
    root = Path(root).resolve()
    payload = json.loads((root / TOY_PATCHES_FILE).read_text(encoding="utf-8"))
    return {root / relative: tuple(box) for relative, box in payload["boxes"].items()}


def _check_settings(settings: dict) -> None:
    if settings["layout"] not in _FOLDERS:
        raise ValueError(f"layout must be 'flat' or 'split', got {settings['layout']!r}")
    if settings["image_format"] not in ("jpeg", "png"):
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {settings['image_format']!r}")
    minimum = 3 if settings["layout"] == "split" else 1
    if settings["n_per_class"] < minimum:
        raise ValueError(
            f"n_per_class must be at least {minimum} for layout {settings['layout']!r}"
        )
    if settings["size"] < 16:
        raise ValueError(f"size must be at least 16 pixels, got {settings['size']}")
    if not 1 <= settings["jpeg_quality"] <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {settings['jpeg_quality']}")


def _already_made(root: Path, settings: dict) -> bool:
    """True when `root` holds a toy set made with `settings`; an error for other content."""
    if not root.exists() or not any(root.iterdir()):
        return False
    sidecar = root / TOY_PATCHES_FILE
    if sidecar.is_file():
        payload = json.loads(sidecar.read_text(encoding="utf-8"))
        if payload.get("format") == _FORMAT and payload.get("settings") == settings:
            return True
    raise FileExistsError(f"{root} is not empty and holds no toy data set made with these settings")


def _planned_files(
    n_per_class: int, layout: str, image_format: str
) -> Iterator[tuple[str, int, int]]:
    """(relative path, label, index) of every image to write."""
    extension = "jpg" if image_format == "jpeg" else "png"
    split_of = _split_names(n_per_class, layout)
    for label in (0, 1):
        for index in range(n_per_class):
            split = split_of[index]
            folder = _FOLDERS[layout][split][label]
            name = f"{('real', 'fake')[label]}_{index:04d}.{extension}"
            yield (f"{split}/{folder}/{name}" if split else f"{folder}/{name}"), label, index


def _split_names(n_per_class: int, layout: str) -> list[str]:
    if layout == "flat":
        return [""] * n_per_class
    n_val = max(1, round(n_per_class * _SPLIT_SHARES[1]))
    n_test = max(1, round(n_per_class * _SPLIT_SHARES[2]))
    n_train = n_per_class - n_val - n_test
    return ["Train"] * n_train + ["Validation"] * n_val + ["Test"] * n_test


def _smooth_field(
    rng: np.random.Generator, size: int, channels: int, low: float, high: float
) -> np.ndarray:
    coarse = rng.uniform(low, high, (4, 4, channels)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return field.reshape(size, size, channels)


def _face_like_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth background and a soft skin-toned ellipse with eyes and a mouth, as float RGB."""
    image = _smooth_field(rng, size, 3, 30, 220)
    center = (
        size / 2 + rng.uniform(-0.06, 0.06) * size,
        size / 2 + rng.uniform(-0.06, 0.06) * size,
    )
    axes = (rng.uniform(0.24, 0.3) * size, rng.uniform(0.32, 0.38) * size)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, _point(center), _point(axes), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), size / 64)[:, :, None]
    skin = np.array([200, 150, 120], np.float32) + rng.uniform(-35, 35, 3).astype(np.float32)
    image = image * (1 - mask) + skin * mask
    for side in (-1, 1):  # eyes
        eye = (center[0] + side * 0.4 * axes[0], center[1] - 0.25 * axes[1])
        cv2.ellipse(
            image,
            _point(eye),
            _point((0.18 * axes[0], 0.08 * axes[1])),
            0,
            0,
            360,
            (50, 40, 40),
            -1,
            cv2.LINE_AA,
        )
    mouth = (center[0], center[1] + 0.45 * axes[1])
    cv2.ellipse(
        image,
        _point(mouth),
        _point((0.35 * axes[0], 0.07 * axes[1])),
        0,
        0,
        360,
        (140, 60, 60),
        -1,
        cv2.LINE_AA,
    )
    image *= _smooth_field(rng, size, 1, 0.75, 1.15)  # uneven lighting
    image += rng.normal(0.0, 3.0, image.shape).astype(np.float32)  # sensor noise
    return image


def _add_texture_patch(image: np.ndarray, rng: np.random.Generator) -> Box:
    """Add a checker texture (1- or 2-pixel cells) to a rectangle in the face; return the box."""
    size = image.shape[0]
    width, height = (
        int(rng.integers(round(0.22 * size), round(0.34 * size) + 1)) for _ in range(2)
    )
    x0 = int(rng.integers(round(0.2 * size), size - round(0.2 * size) - width + 1))
    y0 = int(rng.integers(round(0.2 * size), size - round(0.2 * size) - height + 1))
    cell = int(rng.integers(1, 3))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = np.where((yy // cell + xx // cell) % 2 == 0, 1.0, -1.0).astype(np.float32)
    image[y0 : y0 + height, x0 : x0 + width] += rng.uniform(25, 40) * checker[:, :, None]
    return x0, y0, x0 + width, y0 + height


def _point(xy: tuple[float, float]) -> tuple[int, int]:
    return round(xy[0]), round(xy[1])


def _encode(image: np.ndarray, image_format: str, jpeg_quality: int) -> bytes:
    pixels = Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    if image_format == "jpeg":
        pixels.save(buffer, format="JPEG", quality=jpeg_quality, subsampling="4:2:0")
    else:
        pixels.save(buffer, format="PNG")
    return buffer.getvalue()
