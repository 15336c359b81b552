"""Tests for the data-set audit: confounds, duplicates, unreadable files, layouts."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import shared_dataset
from fakescope.data.audit import (
    AuditError,
    _inspect,
    _near_duplicate_pairs,
    audit_dataset,
    format_audit,
)

SIZE = 64


def _face(rng: np.random.Generator, fake: bool) -> Image.Image:
    """A smooth random background with a drawn face; a fake differs only in its eyes."""
    grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    image = Image.fromarray(grid).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    skin = tuple(int(v) for v in rng.integers(90, 230, size=3))
    cx, cy = (int(v) for v in rng.integers(26, 38, size=2))
    draw.ellipse((cx - 16, cy - 20, cx + 16, cy + 20), fill=skin)
    eye = (40, 40, 160) if fake else (40, 30, 20)  # the "manipulation": swapped eye colour
    for dx in (-7, 7):
        draw.ellipse((cx + dx - 3, cy - 8, cx + dx + 3, cy - 4), fill=eye)
    draw.line((cx - 6, cy + 9, cx + 6, cy + 9), fill=(120, 40, 40), width=2)
    return image


def _write_class(
    folder: Path, count: int, *, fake: bool, seed: int, quality: int = 90
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{'fake' if fake else 'real'}_{i:03d}.jpg"
        _face(rng, fake).save(path, quality=quality)
        paths.append(path)
    return paths


def _flat_dataset(root: Path, per_class: int, *, real_quality: int = 90, fake_quality: int = 90):
    _write_class(root / "real", per_class, fake=False, seed=1, quality=real_quality)
    _write_class(root / "fake", per_class, fake=True, seed=2, quality=fake_quality)
    return root


def test_classes_saved_alike_give_no_warnings(tmp_path):
    report = audit_dataset(_flat_dataset(tmp_path, 24))

    assert report["warnings"] == []
    assert report["counts"] == {"found": 48, "audited": 48, "unreadable": 0}
    assert report["features"]["jpeg_quality"]["scopes"]["all"]["auc"] == 0.5
    json.dumps(report)  # JSON-ready as promised
    assert "No warnings." in format_audit(report)


def test_jpeg_quality_confound_is_flagged(tmp_path):
    report = audit_dataset(_flat_dataset(tmp_path, 16, real_quality=75, fake_quality=95))

    quality = report["features"]["jpeg_quality"]["scopes"]["all"]
    assert quality["auc"] == 1.0
    assert quality["direction"] == "fake higher"
    assert (quality["real"]["median"], quality["fake"]["median"]) == (75, 95)
    step = report["features"]["luma_quant_mean"]["scopes"]["all"]
    assert step["auc"] == 1.0 and step["direction"] == "fake lower"
    first = report["warnings"][0]
    assert first.startswith("JPEG quality separates real from fake on its own (AUC 1.00")
    assert "re-encode both classes alike" in first
    assert format_audit(report).index("WARNINGS") < format_audit(report).index("Features")


@pytest.mark.parametrize("quality", [5, 30, 50, 75, 90, 95, 100])
def test_jpeg_quality_is_read_back_from_the_tables(quality):
    buffer = io.BytesIO()
    _face(np.random.default_rng(0), fake=False).save(buffer, format="JPEG", quality=quality)

    features = _inspect(buffer.getvalue())

    assert features["jpeg_quality"] == quality
    assert features["jpeg_tables"] == "ijg"


@pytest.mark.parametrize(("subsampling", "expected"), [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
def test_chroma_subsampling_is_read_from_the_sampling_factors(subsampling, expected):
    buffer = io.BytesIO()
    _face(np.random.default_rng(0), fake=True).save(buffer, format="JPEG", subsampling=subsampling)

    assert _inspect(buffer.getvalue())["chroma_subsampling"] == expected


def test_png_has_no_jpeg_features_and_format_confound_is_flagged(tmp_path):
    _write_class(tmp_path / "real", 12, fake=False, seed=1)
    fake_dir = tmp_path / "fake"
    fake_dir.mkdir()
    rng = np.random.default_rng(2)
    for i in range(12):
        _face(rng, fake=True).save(fake_dir / f"fake_{i}.png")

    report = audit_dataset(tmp_path)

    fmt = report["features"]["format"]["scopes"]["all"]
    assert fmt["auc"] == 1.0 and fmt["real"] == {"JPEG": 12, "PNG": 0}
    assert report["features"]["jpeg_quality"]["scopes"]["all"]["auc"] is None  # reals only
    assert any(w.startswith("Image format separates real from fake") for w in report["warnings"])


def _split_dataset(root: Path) -> Path:
    for k, split in enumerate(("train", "val", "test")):
        _write_class(root / split / "real", 8, fake=False, seed=10 + k)
        _write_class(root / split / "fake", 8, fake=True, seed=20 + k)
    return root


def test_duplicates_across_splits_and_classes_are_found(tmp_path):
    root = _split_dataset(tmp_path)
    # Exact copy leaking from train into test.
    shutil.copy(root / "train/real/real_000.jpg", root / "test/real/copy_of_train.jpg")
    # Near copy (re-saved at another quality) leaking from train into val.
    with Image.open(root / "train/fake/fake_001.jpg") as im:
        im.save(root / "val/fake/resaved_from_train.jpg", quality=60)
    # The same image labelled both ways, within one split.
    shutil.copy(root / "val/real/real_002.jpg", root / "val/fake/mislabelled.jpg")

    report = audit_dataset(root)

    exact = report["duplicates"]["exact"]
    exact_sets = [{f["path"] for f in g["files"]} for g in exact["groups"]]
    assert {"train/real/real_000.jpg", "test/real/copy_of_train.jpg"} in exact_sets
    assert {"val/real/real_002.jpg", "val/fake/mislabelled.jpg"} in exact_sets
    assert (exact["across_splits"], exact["across_classes"], exact["within_class"]) == (1, 1, 0)
    near = report["duplicates"]["near"]
    assert [{f["path"] for f in g["files"]} for g in near["groups"]] == [
        {"train/fake/fake_001.jpg", "val/fake/resaved_from_train.jpg"}
    ]
    assert near["groups"][0]["across_splits"] and near["groups"][0]["pairs"][0]["distance"] <= 4
    assert sum("span more than one split" in w for w in report["warnings"]) == 2
    assert any("hold both real and fake" in w for w in report["warnings"])
    assert set(report["features"]["jpeg_quality"]["scopes"]) == {"all", "train", "val", "test"}


def test_a_confound_in_one_split_is_reported_for_that_split(tmp_path):
    for k, split in enumerate(("train", "val", "test")):
        _write_class(tmp_path / split / "real", 10, fake=False, seed=10 + k)
        fake_quality = 95 if split == "test" else 90
        _write_class(tmp_path / split / "fake", 10, fake=True, seed=20 + k, quality=fake_quality)

    report = audit_dataset(tmp_path, warn_auc=0.9)

    quality = report["features"]["jpeg_quality"]["scopes"]
    assert quality["test"]["auc"] == 1.0 and quality["train"]["auc"] == 0.5
    assert quality["all"]["auc"] < 0.9
    flagged = [w for w in report["warnings"] if "JPEG quality" in w]
    assert len(flagged) == 1 and flagged[0].startswith("[test] JPEG quality separates")


def test_unreadable_files_are_listed_with_a_reason(tmp_path):
    root = _flat_dataset(tmp_path, 6)
    (root / "real" / "not_an_image.jpg").write_bytes(b"plain text, not a JPEG")
    whole = (root / "fake" / "fake_000.jpg").read_bytes()
    (root / "fake" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])

    report = audit_dataset(root)

    reasons = {u["path"]: u["reason"] for u in report["unreadable"]}
    assert set(reasons) == {"real/not_an_image.jpg", "fake/truncated.jpg"}
    assert "identify" in reasons["real/not_an_image.jpg"]
    assert "truncated" in reasons["fake/truncated.jpg"]
    assert report["counts"] == {"found": 14, "audited": 12, "unreadable": 2}
    assert "2 file(s) could not be read" in report["warnings"][-1]
    assert "fake/truncated.jpg" in format_audit(report)


def test_near_duplicate_buckets_find_the_same_pairs_as_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=300, dtype=np.uint64) * np.uint64(2)
    # Plant neighbours at distances 1..6 by flipping random bits.
    for k, flips in enumerate(range(1, 7)):
        bits = rng.choice(64, size=flips, replace=False)
        hashes[k + 100] = hashes[k] ^ np.uint64(sum(1 << int(b) for b in bits))
    as_ints = [int(h) for h in hashes]
    for max_distance in (0, 3, 4, 8):
        brute = {
            (i, j): bin(as_ints[i] ^ as_ints[j]).count("1")
            for i in range(len(as_ints))
            for j in range(i + 1, len(as_ints))
            if bin(as_ints[i] ^ as_ints[j]).count("1") <= max_distance
        }
        assert _near_duplicate_pairs(hashes, max_distance) == brute


def test_layout_is_found_case_insensitively_and_recursively(tmp_path):
    _write_class(tmp_path / "Real" / "batch1", 5, fake=False, seed=1)
    _write_class(tmp_path / "FAKE", 5, fake=True, seed=2)
    (tmp_path / "FAKE" / "notes.txt").write_text("ignored: not an image extension")

    report = audit_dataset(tmp_path)

    assert report["layout"] == "flat"
    assert report["balance"]["all"] == {"real": 5, "fake": 5, "ratio": 1.0}
    assert "Real/batch1/real_000.jpg" in {f["path"] for f in report["files"]}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "not a directory"),
        (lambda root: (root / "images").mkdir(parents=True), "expected real/ and fake/"),
        (lambda root: (root / "real").mkdir(parents=True), "no images"),
    ],
)
def test_folders_that_cannot_be_audited_say_why(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(AuditError, match=message) as error:
        audit_dataset(root)
    assert error.value.path == root


def test_max_files_audits_a_subset_but_balance_counts_everything(tmp_path):
    _write_class(tmp_path / "real", 20, fake=False, seed=1)
    _write_class(tmp_path / "fake", 8, fake=True, seed=2)

    report = audit_dataset(tmp_path, max_files=5)

    assert report["counts"]["audited"] == 10
    assert report["balance"]["all"]["ratio"] == 2.5
    assert report["warnings"][0].startswith("classes are unbalanced: 20 real vs 8 fake")
    same_again = audit_dataset(tmp_path, max_files=5)
    assert [f["path"] for f in same_again["files"]] == [f["path"] for f in report["files"]]


@pytest.mark.shared_data
def test_faceswap_lfw_jpeg_quality_shortcut_is_flagged():
    root = shared_dataset("faceswap-lfw")

    report = audit_dataset(root, max_files=300)

    step = report["features"]["luma_quant_mean"]["scopes"]["all"]
    assert step["auc"] > 0.99 and step["direction"] == "fake lower"
    # The data README: mean luma step about 5.8 for fakes against 11.5 for reals.
    assert step["fake"]["median"] == pytest.approx(5.8, abs=0.1)
    assert step["real"]["median"] == pytest.approx(11.5, abs=0.1)
    assert report["warnings"][0].startswith("JPEG quality separates real from fake on its own")
