"""Discovery of data layouts, seeded splits, the split manifest and broken files."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_dataset
from fakescope.config import DataConfig
from fakescope.data.discovery import (
    DataError,
    Sample,
    count_labels,
    discover,
    discover_folder,
    find_images,
    groups_from_pairs_csv,
    has_layout,
    split_samples,
    validate_samples,
)


def _image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _write_images(
    folder: Path, count: int, prefix: str = "img", suffix: str = ".png"
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if suffix.lower() in (".jpg", ".jpeg") else "PNG"
    paths = []
    for index in range(count):
        path = folder / f"{prefix}_{index:03d}{suffix}"
        path.write_bytes(_image_bytes(index, fmt))
        paths.append(path)
    return paths


def _flat_dataset(root: Path, n_real: int = 20, n_fake: int = 20) -> Path:
    _write_images(root / "real", n_real, "r")
    _write_images(root / "fake", n_fake, "f")
    return root


def _paths(samples: list[Sample]) -> set[Path]:
    return {sample.path for sample in samples}


# --- find_images ---------------------------------------------------------------------------


def test_find_images_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / ".cache").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.Jpeg", "sub/deeper/d.webp", "sub/e.TIFF", "f.bmp"):
        (tmp_path / name).write_bytes(b"x")
    for name in (".hidden.jpg", "._b.JPG", ".cache/g.png", "notes.txt", "clip.mp4", "noext"):
        (tmp_path / name).write_bytes(b"x")
    found = find_images(tmp_path)
    assert found == sorted(found)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.png",
        "b.JPG",
        "f.bmp",
        "sub/c.Jpeg",
        "sub/deeper/d.webp",
        "sub/e.TIFF",
    ]


def test_find_images_on_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        find_images(tmp_path / "nope")


# --- layouts -------------------------------------------------------------------------------


def test_split_layout_with_case_insensitive_names(tmp_path: Path) -> None:
    _write_images(tmp_path / "Train" / "Real", 6, "r")
    _write_images(tmp_path / "Train" / "Fake", 5, "f")
    _write_images(tmp_path / "Validation" / "REAL", 2, "r")
    _write_images(tmp_path / "Validation" / "fake", 2, "f")
    _write_images(tmp_path / "test" / "0_real", 3, "r")
    _write_images(tmp_path / "test" / "1_fake", 1, "f")
    splits = discover(DataConfig(root=tmp_path))
    assert splits.layout == "splits"
    assert count_labels(splits.train) == {0: 6, 1: 5}
    assert count_labels(splits.val) == {0: 2, 1: 2}
    assert count_labels(splits.test) == {0: 3, 1: 1}
    assert all(("Real" in s.path.parts) == (s.label == 0) for s in splits.train)
    assert splits.skipped == []


def test_split_layout_without_val_takes_val_from_train(tmp_path: Path) -> None:
    _write_images(tmp_path / "train" / "real", 20, "r")
    _write_images(tmp_path / "train" / "fake", 20, "f")
    _write_images(tmp_path / "test" / "real", 4, "r")
    _write_images(tmp_path / "test" / "fake", 4, "f")
    splits = discover(DataConfig(root=tmp_path, val_fraction=0.25))
    assert count_labels(splits.val) == {0: 5, 1: 5}
    assert count_labels(splits.train) == {0: 15, 1: 15}
    assert count_labels(splits.test) == {0: 4, 1: 4}
    assert all("train" in s.path.parts for s in splits.val)


def test_numbered_layout(tmp_path: Path) -> None:
    _write_images(tmp_path / "0_real", 10, "r")
    _write_images(tmp_path / "1_fake", 10, "f")
    splits = discover(DataConfig(root=tmp_path, val_fraction=0.2, test_fraction=0.2))
    assert splits.layout == "numbered"
    assert [count_labels(s) for s in (splits.train, splits.val, splits.test)] == [
        {0: 6, 1: 6},
        {0: 2, 1: 2},
        {0: 2, 1: 2},
    ]
    assert all(("0_real" in s.path.parts) == (s.label == 0) for s in splits.train + splits.val)


def test_flat_layout_gives_a_seeded_stratified_split_without_overlap(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "data", n_real=40, n_fake=20)
    config = DataConfig(root=root, val_fraction=0.1, test_fraction=0.2, split_seed=7)
    splits = discover(config)
    assert splits.layout == "flat"
    assert count_labels(splits.train) == {0: 28, 1: 14}
    assert count_labels(splits.val) == {0: 4, 1: 2}
    assert count_labels(splits.test) == {0: 8, 1: 4}
    parts = [_paths(splits.train), _paths(splits.val), _paths(splits.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(find_images(root))
    again = discover(config)
    assert (again.train, again.val, again.test) == (splits.train, splits.val, splits.test)
    other_seed = discover(config.model_copy(update={"split_seed": 8}))
    assert _paths(other_seed.test) != parts[2]


def test_relative_root_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _flat_dataset(tmp_path / "data", 4, 4)
    monkeypatch.chdir(tmp_path)
    splits = discover(DataConfig(root=Path("data")))
    assert all(s.path.is_absolute() and s.path.is_file() for s in splits.train)


def test_explicit_dirs_with_and_without_val(tmp_path: Path) -> None:
    real, fake = tmp_path / "somewhere" / "r", tmp_path / "elsewhere" / "f"
    _write_images(real, 10, "r")
    _write_images(fake, 10, "f")
    splits = discover(
        DataConfig(real_train_dir=real, fake_train_dir=fake, val_fraction=0.2, test_fraction=0.0)
    )
    assert splits.layout == "explicit"
    assert count_labels(splits.train) == {0: 8, 1: 8}
    assert count_labels(splits.val) == {0: 2, 1: 2}
    assert splits.test == []
    _write_images(tmp_path / "vr", 3, "r")
    _write_images(tmp_path / "vf", 2, "f")
    with_val = discover(
        DataConfig(
            real_train_dir=real,
            fake_train_dir=fake,
            real_val_dir=tmp_path / "vr",
            fake_val_dir=tmp_path / "vf",
            test_fraction=0.2,
        )
    )
    assert count_labels(with_val.val) == {0: 3, 1: 2}
    assert count_labels(with_val.test) == {0: 2, 1: 2}


def test_explicit_dirs_must_come_in_pairs(tmp_path: Path) -> None:
    _write_images(tmp_path / "r", 2)
    _write_images(tmp_path / "f", 2)
    _write_images(tmp_path / "vr", 2)
    config = DataConfig(
        real_train_dir=tmp_path / "r", fake_train_dir=tmp_path / "f", real_val_dir=tmp_path / "vr"
    )
    with pytest.raises(DataError, match="fake_val_dir missing"):
        discover(config)
    with pytest.raises(DataError, match="fake_train_dir missing"):
        discover(DataConfig(real_train_dir=tmp_path / "r"))


def test_root_and_explicit_dirs_together_are_refused(tmp_path: Path) -> None:
    _flat_dataset(tmp_path, 2, 2)
    with pytest.raises(ValueError, match="exactly one of"):
        DataConfig(
            root=tmp_path, real_train_dir=tmp_path / "real", fake_train_dir=tmp_path / "fake"
        )


# --- errors before training ----------------------------------------------------------------


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data root not found: .*nowhere"):
        discover(DataConfig(root=tmp_path / "nowhere"))


def test_unrecognised_layout_lists_what_was_found_and_expected(tmp_path: Path) -> None:
    _write_images(tmp_path / "images", 2)
    _write_images(tmp_path / "labels", 2)
    with pytest.raises(DataError) as caught:
        discover(DataConfig(root=tmp_path))
    message = str(caught.value)
    assert "no recognised data layout" in message
    assert "'images'" in message and "'labels'" in message
    assert "ROOT/{real,fake}" in message and "ROOT/{0_real,1_fake}" in message


def test_has_layout_tells_data_dirs_from_folders_of_images(tmp_path: Path) -> None:
    assert has_layout(_flat_dataset(tmp_path / "flat"))
    _write_images(tmp_path / "numbered" / "0_real", 2)
    assert has_layout(
        tmp_path / "numbered"
    )  # a class folder missing is discovery's error to report
    _write_images(tmp_path / "split" / "Train" / "real", 2)
    assert has_layout(tmp_path / "split")
    _write_images(tmp_path / "photos" / "holiday", 2)
    assert not has_layout(tmp_path / "photos")
    assert not has_layout(tmp_path / "missing")


def test_flat_layout_with_one_class_folder_missing(tmp_path: Path) -> None:
    _write_images(tmp_path / "real", 3)
    with pytest.raises(DataError, match="no fake/ folder"):
        discover(DataConfig(root=tmp_path))


def test_a_class_without_images_in_train(tmp_path: Path) -> None:
    _write_images(tmp_path / "real", 3)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="train split has no fake images"):
        discover(DataConfig(root=tmp_path))


def test_split_folders_without_train(tmp_path: Path) -> None:
    _write_images(tmp_path / "val" / "real", 2)
    _write_images(tmp_path / "val" / "fake", 2)
    with pytest.raises(DataError, match="no train folder"):
        discover(DataConfig(root=tmp_path))


def test_two_names_for_one_split_are_ambiguous(tmp_path: Path) -> None:
    for split in ("train", "val", "validation"):
        _write_images(tmp_path / split / "real", 1)
        _write_images(tmp_path / split / "fake", 1)
    with pytest.raises(DataError, match="val/ and validation/"):
        discover(DataConfig(root=tmp_path))


def test_split_folder_without_class_folders(tmp_path: Path) -> None:
    _write_images(tmp_path / "train" / "real", 2)
    _write_images(tmp_path / "train" / "fake", 2)
    _write_images(tmp_path / "test" / "misc", 2)
    with pytest.raises(DataError, match="test has no real/0_real/ and fake/1_fake/ folder"):
        discover(DataConfig(root=tmp_path))


# --- broken files --------------------------------------------------------------------------


def test_broken_files_are_skipped_and_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _flat_dataset(tmp_path, 10, 10)
    truncated = root / "fake" / "cut.jpg"
    truncated.write_bytes(_image_bytes(99, "JPEG")[:200])
    text = root / "real" / "notes.jpg"
    text.write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="fakescope.data.discovery"):
        splits = discover(DataConfig(root=root))
    reasons = dict(splits.skipped)
    assert set(reasons) == {truncated.resolve(), text.resolve()}
    assert "truncated" in reasons[truncated.resolve()].lower()
    assert "not an image" in reasons[text.resolve()]
    kept = _paths(splits.train) | _paths(splits.val) | _paths(splits.test)
    assert len(kept) == 20 and not kept & set(reasons)
    assert "skipping 2 unreadable image file(s)" in caplog.text


def test_all_images_of_a_class_broken_is_an_error(tmp_path: Path) -> None:
    _write_images(tmp_path / "real", 3)
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"no fake images .*1 file\(s\) skipped"):
        discover(DataConfig(root=tmp_path))


def test_validate_samples(tmp_path: Path) -> None:
    good = _write_images(tmp_path, 2, suffix=".jpg")
    trailing = tmp_path / "trailing.jpg"  # bytes after the end marker: decoded, and fine
    trailing.write_bytes(_image_bytes(5, "JPEG") + b"\x00junk")
    missing = tmp_path / "gone.png"
    samples = [Sample(p, 0) for p in (*good, trailing, missing)]
    kept, skipped = validate_samples(samples)
    assert kept == samples[:3]
    assert skipped == [(missing, "file not found")]


# --- manifest ------------------------------------------------------------------------------


def test_manifest_is_written_and_reused(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "data", 10, 10)
    manifest = tmp_path / "run" / "split.json"
    config = DataConfig(root=root)
    first = discover(config, manifest)
    payload = json.loads(manifest.read_text())
    assert payload["layout"] == "flat"
    assert payload["root"] == str(root.resolve())
    assert (
        payload["seed"] == 42
        and payload["val_fraction"] == 0.15
        and payload["test_fraction"] == 0.15
    )
    assert ["real/r_000.png", 0] in sum(payload["splits"].values(), [])
    assert [p.name for p in manifest.parent.iterdir()] == ["split.json"]  # no temp file left
    # New images do not change a saved split: a resumed run sees the same data.
    _write_images(root / "fake", 30, "late")
    again = discover(config, manifest)
    assert (again.train, again.val, again.test) == (first.train, first.val, first.test)


def test_manifest_skips_files_that_broke_since(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "data", 6, 6)
    manifest = tmp_path / "split.json"
    first = discover(DataConfig(root=root, val_fraction=0.0, test_fraction=0.0), manifest)
    broken = first.train[0].path
    broken.write_bytes(b"")
    again = discover(DataConfig(root=root, val_fraction=0.0, test_fraction=0.0), manifest)
    assert again.skipped == [(broken, "the file is empty")]
    assert len(again.train) == len(first.train) - 1


def test_manifest_of_other_data_is_refused(tmp_path: Path) -> None:
    manifest = tmp_path / "split.json"
    discover(DataConfig(root=_flat_dataset(tmp_path / "a", 4, 4)), manifest)
    with pytest.raises(DataError, match="belongs to other data"):
        discover(DataConfig(root=_flat_dataset(tmp_path / "b", 4, 4)), manifest)


def test_manifest_wins_over_changed_split_settings_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _flat_dataset(tmp_path / "a", 10, 10)
    manifest = tmp_path / "split.json"
    first = discover(DataConfig(root=root), manifest)
    saved = manifest.read_bytes()
    with caplog.at_level(logging.WARNING, logger="fakescope.data.discovery"):
        again = discover(DataConfig(root=root, split_seed=1, val_fraction=0.3), manifest)
    assert (again.train, again.val, again.test) == (first.train, first.val, first.test)
    assert manifest.read_bytes() == saved
    assert "seed 42 -> 1" in caplog.text and "val_fraction 0.15 -> 0.3" in caplog.text


def test_unreadable_manifest(tmp_path: Path) -> None:
    root = _flat_dataset(tmp_path / "a", 4, 4)
    manifest = tmp_path / "split.json"
    manifest.write_text("{not json")
    with pytest.raises(DataError, match="cannot be read"):
        discover(DataConfig(root=root), manifest)
    manifest.write_text('{"some": "other file"}')
    with pytest.raises(DataError, match="not a fakescope split manifest"):
        discover(DataConfig(root=root), manifest)


# --- split_samples and groups --------------------------------------------------------------


def _samples(n_real: int, n_fake: int) -> list[Sample]:
    return [Sample(Path(f"/d/real/{i:03d}.jpg"), 0) for i in range(n_real)] + [
        Sample(Path(f"/d/fake/{i:03d}.jpg"), 1) for i in range(n_fake)
    ]


def test_split_samples_does_not_depend_on_input_order() -> None:
    samples = _samples(30, 30)
    forward = split_samples(samples, 0.2, 0.1, seed=3)
    backward = split_samples(samples[::-1], 0.2, 0.1, seed=3)
    assert forward == backward
    assert [len(part) for part in forward] == [42, 12, 6]


def test_split_samples_keeps_one_image_per_class_for_training() -> None:
    train, val, test = split_samples(_samples(1, 2), 0.5, 0.5, seed=0)
    assert count_labels(train) == {0: 1, 1: 1}
    assert len(val) + len(test) == 1


def test_split_samples_keeps_groups_together() -> None:
    samples = _samples(40, 40)
    # real i and fake i form a pair; the last 10 reals have no fake partner in a group.
    groups = {Path(f"/d/real/{i:03d}.jpg"): f"pair{i}" for i in range(40)}
    groups |= {Path(f"/d/fake/{i:03d}.jpg"): f"pair{i}" for i in range(30)}
    train, val, test = split_samples(samples, 0.2, 0.2, seed=0, groups=groups)
    side = {
        s.path: name
        for name, part in (("train", train), ("val", val), ("test", test))
        for s in part
    }
    for i in range(30):
        assert side[Path(f"/d/real/{i:03d}.jpg")] == side[Path(f"/d/fake/{i:03d}.jpg")]
    assert len(train) + len(val) + len(test) == 80
    # 30 pairs, 10 lone reals, 10 lone fakes: each stratum split 60/20/20.
    assert [count_labels(part) for part in (val, test)] == [{0: 8, 1: 8}, {0: 8, 1: 8}]


def test_groups_from_pairs_csv(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("Real,Fake\na.jpg,x.jpg\na.jpg,y.jpg\nb.jpg,z.jpg\nc.jpg,z.jpg\n")
    groups = groups_from_pairs_csv(pairs)
    base = tmp_path.resolve()
    assert (
        groups[base / "real" / "a.jpg"]
        == groups[base / "fake" / "x.jpg"]
        == groups[base / "fake" / "y.jpg"]
    )
    # b and c share the fake z: one group of three.
    assert (
        groups[base / "real" / "b.jpg"]
        == groups[base / "real" / "c.jpg"]
        == groups[base / "fake" / "z.jpg"]
    )
    assert groups[base / "real" / "a.jpg"] != groups[base / "real" / "b.jpg"]
    assert len(groups) == 6


def test_groups_from_pairs_csv_errors(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("original,swapped\na.jpg,b.jpg\n")
    with pytest.raises(DataError, match="expected columns 'real' and 'fake'"):
        groups_from_pairs_csv(pairs)
    pairs.write_text("real,fake\na.jpg,\n")
    with pytest.raises(DataError, match="line 2"):
        groups_from_pairs_csv(pairs)
    with pytest.raises(DataError, match="pairs file not found"):
        groups_from_pairs_csv(tmp_path / "none.csv")


def test_discover_with_groups_records_it_in_the_manifest(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write_images(root / "real", 10, "p")
    _write_images(root / "fake", 10, "p")
    (root / "pairs.csv").write_text(
        "real,fake\n" + "".join(f"p_{i:03d}.png,p_{i:03d}.png\n" for i in range(10))
    )
    groups = groups_from_pairs_csv(root / "pairs.csv")
    manifest = tmp_path / "split.json"
    splits = discover(
        DataConfig(root=root, val_fraction=0.2, test_fraction=0.2), manifest, groups=groups
    )
    for part in (splits.train, splits.val, splits.test):
        assert {s.path.name for s in part if s.label == 0} == {
            s.path.name for s in part if s.label == 1
        }
    assert json.loads(manifest.read_text())["grouped"] is True


def test_a_folder_on_its_own_is_split_as_training_split_it(tmp_path: Path) -> None:
    """Evaluating a data dir with a pairs.csv and no run manifest gives the training run's test
    split (the default split of its groups), not a different one full of training images."""
    root = tmp_path / "data"
    _write_images(root / "real", 20, "p")
    _write_images(root / "fake", 20, "p")
    (root / "pairs.csv").write_text(
        "real,fake\n" + "".join(f"p_{i:03d}.png,p_{i:03d}.png\n" for i in range(20))
    )
    training = discover(DataConfig(root=root), groups=groups_from_pairs_csv(root / "pairs.csv"))
    alone = discover_folder(root)
    assert _paths(alone.test) == _paths(training.test)
    assert _paths(alone.test) != _paths(discover(DataConfig(root=root)).test)


# --- shared data ---------------------------------------------------------------------------


@pytest.mark.shared_data
def test_photoshop_ciplab_flat_split_and_manifest_reuse(tmp_path: Path) -> None:
    root = shared_dataset("photoshop-ciplab")
    manifest = tmp_path / "split.json"
    config = DataConfig(root=root)
    splits = discover(config, manifest)
    assert splits.layout == "flat"
    parts = [_paths(splits.train), _paths(splits.val), _paths(splits.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) + len(splits.skipped) == len(find_images(root))
    totals = count_labels(splits.train + splits.val + splits.test)
    for part, fraction in ((splits.val, 0.15), (splits.test, 0.15)):
        counts = count_labels(part)
        for label in (0, 1):
            assert abs(counts[label] - fraction * totals[label]) <= 1
    again = discover(config, manifest)
    assert (again.train, again.val, again.test) == (splits.train, splits.val, splits.test)
    payload = json.loads(manifest.read_text())
    payload["source"] = {"root": "/somewhere/else"}
    manifest.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="belongs to other data"):
        discover(config, manifest)


@pytest.mark.shared_data
def test_dfdc_pairs_keep_a_real_and_its_fake_together() -> None:
    root = shared_dataset("dfdc-faces")
    groups = groups_from_pairs_csv(root / "pairs.csv")
    splits = discover(DataConfig(root=root), groups=groups, validate=False)
    side = {s.path: name for name in ("train", "val", "test") for s in getattr(splits, name)}
    assert len(side) == len(groups)
    by_group: dict[str, set[str]] = {}
    for path, group in groups.items():
        by_group.setdefault(group, set()).add(side[path])
    assert all(len(sides) == 1 for sides in by_group.values())
    assert abs(len(splits.val) / len(side) - 0.15) < 0.01
