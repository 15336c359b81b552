"""Face crops of a data set: the largest face, landmarks in crop pixels, pairs kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from fakescope.data.discovery import DataError, discover_folder, groups_from_pairs_csv
from fakescope.data.facecrops import (
    LANDMARKS_FILE,
    extract_face_crops,
    load_crop_landmarks,
    load_other_faces,
)
from fakescope.data.pairmasks import load_crop_masks, read_mask


def make_source(root: Path) -> Path:
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    photo = skdata.astronaut()
    Image.fromarray(photo).save(root / "real" / "person.jpg", quality=95)
    Image.fromarray(photo[:, ::-1].copy()).save(root / "fake" / "mirror.jpg", quality=95)
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "fake" / "noise.png")
    (root / "fake" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "pairs.csv").write_text("real,fake\nperson.jpg,mirror.jpg\n")
    return root


def test_crops_landmarks_and_pairs(tmp_path: Path):
    src = make_source(tmp_path / "src")
    summary = extract_face_crops(src, tmp_path / "crops", size=128)
    out = tmp_path / "crops"
    assert summary["images"] == 4 and summary["crops"] == 3
    assert summary["no_face_whole_image"] == ["fake/noise.png"]
    assert [u["file"] for u in summary["unreadable"]] == ["fake/broken.jpg"]
    crop = np.asarray(Image.open(out / "real" / "person.png"))
    assert crop.shape == (128, 128, 3)
    landmarks = load_crop_landmarks(out)
    points = landmarks[(out / "real" / "person.png").resolve()]
    assert points.shape == (5, 2)
    # The face fills the middle of its crop: every landmark well inside it.
    assert (points > 20).all() and (points < 108).all()
    assert "fake/noise.png" not in json.loads((out / LANDMARKS_FILE).read_text())
    groups = groups_from_pairs_csv(out / "pairs.csv")
    assert (
        groups[(out / "real" / "person.png").resolve()]
        == groups[(out / "fake" / "mirror.png").resolve()]
    )


def test_crops_refuse_to_write_into_their_source(tmp_path: Path):
    src = make_source(tmp_path / "src")
    with pytest.raises(DataError, match="must not lie inside"):
        extract_face_crops(src, src / "crops")


def test_crops_split_as_their_source(tmp_path: Path):
    # A run trained on crops holds out the same test images that `fakescope evaluate` picks from
    # the raw folder, so the raw images can be scored through the face stage once, as `scan` does.
    src = tmp_path / "src"
    rng = np.random.default_rng(1)
    pairs = ["real,fake"]
    for label in ("real", "fake"):
        (src / label).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 256, (48 + i, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(src / label / f"{label}_{i}.{'png' if i % 3 else 'jpg'}")
    pairs += [
        f"real_{i}.{'png' if i % 3 else 'jpg'},fake_{i}.{'png' if i % 3 else 'jpg'}"
        for i in range(12)
    ]
    (src / "pairs.csv").write_text("\n".join(pairs) + "\n")
    extract_face_crops(src, tmp_path / "crops", size=64)

    raw, crops = discover_folder(src), discover_folder(tmp_path / "crops")
    for split in ("train", "val", "test"):
        assert getattr(raw, split), split
        names = [
            {(s.path.parent.name, s.path.stem) for s in getattr(found, split)}
            for found in (raw, crops)
        ]
        assert names[0] == names[1], split


def test_paired_fakes_that_line_up_get_a_mask_cut_as_their_crop(tmp_path: Path):
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "fake").mkdir()
    photo = skdata.astronaut()
    swapped = photo.copy()
    # The nose and mouth (the face's box is about x 180-266, y 65-173) made brighter.
    swapped[115:150, 200:250] = np.clip(swapped[115:150, 200:250].astype(int) + 60, 0, 255)
    Image.fromarray(photo).save(src / "real" / "person.jpg", quality=95)
    Image.fromarray(swapped).save(src / "fake" / "swapped.jpg", quality=95)
    Image.fromarray(photo[:, ::-1].copy()).save(src / "fake" / "mirror.jpg", quality=95)
    (src / "pairs.csv").write_text("real,fake\nperson.jpg,swapped.jpg\nperson.jpg,mirror.jpg\n")
    out = tmp_path / "crops"
    summary = extract_face_crops(src, out, size=128)
    # The mirror image differs from its real everywhere: no mask; the swap gets one.
    assert (summary["difference_masks"], summary["pairs_without_mask"]) == (1, 1)
    masks = load_crop_masks(out)
    assert list(masks) == [(out / "fake" / "swapped.png").resolve()]
    mask = read_mask(masks[(out / "fake" / "swapped.png").resolve()])
    assert mask.shape == (128, 128)
    # The crop is the square x 153-293, y 49-189 at 128/140 px a pixel: the patch lands on
    # rows 60-92 and columns 43-89 of it (a few pixels more after smoothing).
    assert mask[66:86, 50:82].mean() > 0.9
    rows, cols = np.nonzero(mask > 0.5)
    assert 52 <= rows.min() and rows.max() <= 100 and 35 <= cols.min() and cols.max() <= 97


def test_the_other_faces_of_an_image_are_cut_apart_from_the_crops(tmp_path: Path):
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    photo = skdata.astronaut()
    # Two people side by side, the same size (one darker): the scan scores both faces.
    darker = (photo * 0.6).astype(np.uint8)
    Image.fromarray(np.hstack([photo, darker])).save(src / "real" / "two.jpg", quality=95)
    Image.fromarray(photo).save(src / "real" / "one.jpg", quality=95)
    out = tmp_path / "crops"
    summary = extract_face_crops(src, out, size=128)
    assert summary["other_faces"] == 1
    others = load_other_faces(out)
    other = out / "other_faces" / "real" / "two.1.png"
    assert others == {(out / "real" / "two.png").resolve(): [other.resolve()]}
    # The data set's own crops are untouched (so are its splits): one per image, in its folder.
    assert sorted(p.name for p in (out / "real").iterdir()) == ["one.png", "two.png"]
    # The two crops are the two astronauts, each centred on its own face, with its landmarks.
    first, second = (
        np.asarray(Image.open(path).convert("L").resize((16, 16)), dtype=float).ravel()
        for path in (out / "real" / "two.png", other)
    )
    assert np.corrcoef(first, second)[0, 1] > 0.9
    assert abs(first.mean() - second.mean()) > 0.25 * max(first.mean(), second.mean())
    points = load_crop_landmarks(out)[other.resolve()]
    assert (points > 20).all() and (points < 108).all()
    assert load_other_faces(tmp_path / "no-crops-here") == {}
