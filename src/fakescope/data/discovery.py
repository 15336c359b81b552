"""Find the labelled images of a data set and split them into train / val / test.

Layouts recognised under `DataConfig.root` (folder names compared case-insensitively):

- "splits":   ROOT/{train,val,test}/{real,fake}  (also Train/Validation/Test, valid,
              validation; classes also 0_real/1_fake); missing val/test are split from train;
- "numbered": ROOT/{0_real,1_fake};
- "flat":     ROOT/{real,fake};
- "explicit": the `real_train_dir`, `fake_train_dir`, ... fields of DataConfig.

Splits made here are seeded and stratified by label; given a `groups` mapping (e.g. from
`groups_from_pairs_csv`), the images of a group (a real and the fakes made from it) stay on
the same side. With a `manifest_path`, the split is saved as JSON the first time and read
back afterwards, so a rerun or a resumed run trains on exactly the same split.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

from fakescope.config import DataConfig
from fakescope.io.images import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    check_image,
    has_image_extension,
)
from fakescope.io.video import VIDEO_EXTENSIONS
from fakescope.utils import atomic_write_json

logger = logging.getLogger(__name__)

LAYOUT_SPLITS = "splits"
LAYOUT_NUMBERED = "numbered"
LAYOUT_FLAT = "flat"
LAYOUT_EXPLICIT = "explicit"

SPLITS = ("train", "val", "test")
# A data dir's list of which fakes were made from which real (`groups_from_pairs_csv`).
PAIRS_FILE = "pairs.csv"
CLASS_NAMES = {0: "real", 1: "fake"}

_SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
_CLASS_FOLDERS_IN_SPLIT = {0: ("real", "0_real"), 1: ("fake", "1_fake")}
_NUMBERED_FOLDERS = {0: ("0_real",), 1: ("1_fake",)}
_FLAT_FOLDERS = {0: ("real",), 1: ("fake",)}
_EXPECTED_LAYOUTS = (
    "ROOT/{train,val,test}/{real,fake} (splits also named valid/validation, "
    "classes also 0_real/1_fake), ROOT/{0_real,1_fake}, or ROOT/{real,fake}"
)

_MANIFEST_FORMAT = "fakescope-split-manifest"
_MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class DataSplits:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    layout: str
    # Files left out because they are not readable images: (path, reason).
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    # The saved split this one was read from or written to, if any.
    manifest: Path | None = None

    @property
    def source(self) -> str:
        """Where the split came from: its manifest, else the layout it was derived from."""
        return str(self.manifest) if self.manifest else f"layout {self.layout}"


class DataError(ValueError):
    """The data cannot be used for training as given; the message says why and where."""


@dataclass
class _Found:
    """What a layout provides before any split is made; None marks a split to derive."""

    layout: str
    root: Path
    source: dict[str, str]
    splits: dict[str, list[Sample] | None]


def find_images(root: str | Path, videos: bool = False) -> list[Path]:
    """All image files (and video files, with `videos`) under `root` (recursive, by
    extension), sorted; hidden ones skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    found: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(
            Path(folder, name)
            for name in files
            if not name.startswith(".")
            and (
                has_image_extension(name)
                or (videos and Path(name).suffix.lower() in VIDEO_EXTENSIONS)
            )
        )
    return sorted(found)


def count_labels(samples: Iterable[Sample]) -> dict[int, int]:
    counts = Counter(sample.label for sample in samples)
    return {label: counts.get(label, 0) for label in CLASS_NAMES}


def discover(
    config: DataConfig,
    manifest_path: Path | None = None,
    groups: Mapping[Path, str] | None = None,
    validate: bool = True,
    videos: bool = False,
) -> DataSplits:
    """Find the images `config` points at and return the train / val / test samples.

    manifest_path: where the split is saved; when the file exists, its split is used as
        saved (after checking that it was made for the same data; a warning when the split
        settings differ).
    groups: resolved image path -> group id (see `groups_from_pairs_csv`); a group is never
        divided between splits.
    validate: leave out files that are not complete images (listed in `skipped`).
    videos: find video files too (for evaluation; validation checks images only).
    """
    source = _source_of(config)
    if manifest_path is not None and Path(manifest_path).is_file():
        splits = _read_manifest(Path(manifest_path), config, source, grouped=groups is not None)
    else:
        found = _find_layout(source, videos)
        splits = _complete_splits(found, config, groups)
        if manifest_path is not None:
            _write_manifest(Path(manifest_path), splits, found, config, grouped=groups is not None)
    if validate:
        splits = _without_broken_files(splits)
    if manifest_path is not None:
        splits = replace(splits, manifest=Path(manifest_path))
    _check_classes(splits, config)
    for name in SPLITS:
        counts = count_labels(getattr(splits, name))
        logger.info("%s split: %d real, %d fake", name, counts[0], counts[1])
    return splits


def discover_folder(
    data_dir: Path, checkpoint: Path | None = None, validate: bool = True, videos: bool = False
) -> DataSplits:
    """One data dir given on its own (evaluate, calibrate, export): the split of the run that
    made `checkpoint` when that run trained on `data_dir`, else the default split, with its
    `pairs.csv` groups kept together when it has one.

    The run's own split keeps its training images out of the test. Training splits a source
    with `pairs_csv` by its groups; without them here, the default split of the same folder
    would differ from the training run's, and its "test" images would include training ones.
    With the same groups the split comes out the same.
    """
    manifest = run_manifest_for(checkpoint, data_dir) if checkpoint is not None else None
    pairs = Path(data_dir) / PAIRS_FILE
    groups = groups_from_pairs_csv(pairs) if pairs.is_file() else None
    return discover(
        DataConfig(root=data_dir),
        manifest_path=manifest,
        groups=groups,
        validate=validate,
        videos=videos,
    )


def run_manifest_for(checkpoint: Path, data_dir: Path) -> Path | None:
    """The split manifest of the run that made `checkpoint`, when that run used `data_dir`.

    The run dir is looked for up to three levels above the file, nearest first, so that
    `<run>/checkpoints/best.ckpt`, `<run>/calibrated/detector.safetensors` and an export
    beside either (`<run>/checkpoints/export/lite0.int8.onnx`) all find it.
    """
    for run_dir in Path(checkpoint).resolve().parents[:3]:
        for manifest in sorted(run_dir.glob("split_manifest*.json")):
            root = json.loads(manifest.read_text()).get("root")
            if root and Path(root).resolve() == Path(data_dir).resolve():
                return manifest
    return None


def split_samples(
    samples: list[Sample],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    groups: Mapping[Path, str] | None = None,
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Seeded split into (train, val, test), stratified by label, keeping groups together.

    Units are groups (or single images without a group); units are stratified by the set of
    labels they hold, so paired real+fake groups and lone images are each divided in the
    given fractions. The result depends only on the paths, labels, groups and seed.
    """
    units: dict[str, list[Sample]] = {}
    for sample in samples:
        group = groups.get(sample.path) if groups else None
        key = f"group:{group}" if group is not None else f"file:{sample.path.as_posix()}"
        units.setdefault(key, []).append(sample)
    strata: dict[tuple[int, ...], list[str]] = {}
    for key, members in units.items():
        strata.setdefault(tuple(sorted({m.label for m in members})), []).append(key)

    parts: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for stratum, keys in sorted(strata.items()):
        keys.sort()
        # One generator per stratum: adding a class never reshuffles another.
        random.Random(f"{seed}:{stratum}").shuffle(keys)
        n_test, n_val = _split_sizes(len(keys), val_fraction, test_fraction)
        for index, key in enumerate(keys):
            name = "test" if index < n_test else "val" if index < n_test + n_val else "train"
            parts[name].extend(units[key])
    train, val, test = (sorted(parts[name], key=_sample_order) for name in SPLITS)
    return train, val, test


def pairs_from_csv(path: str | Path) -> list[tuple[Path, Path]]:
    """(real, fake) paths from a CSV with `real` and `fake` columns of file names.

    File names are relative to the CSV's folder's `real/` and `fake/` subfolders
    (dfdc-faces/pairs.csv); paths come back resolved.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise DataError(f"pairs file not found: {path}")
    base = path.parent
    pairs: list[tuple[Path, Path]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower(): name for name in reader.fieldnames or []}
        if "real" not in columns or "fake" not in columns:
            raise DataError(
                f"{path}: expected columns 'real' and 'fake', found {list(reader.fieldnames or [])}"
            )
        for line, row in enumerate(reader, start=2):
            real_name = (row[columns["real"]] or "").strip()
            fake_name = (row[columns["fake"]] or "").strip()
            if not real_name or not fake_name:
                raise DataError(
                    f"{path}, line {line}: a pair needs both a real and a fake file name"
                )
            pairs.append((base / "real" / real_name, base / "fake" / fake_name))
    return pairs


def groups_from_pairs_csv(path: str | Path) -> dict[Path, str]:
    """Groups from a pairs CSV (`pairs_from_csv`): a real and every fake made from it.

    Chains of shared files are merged; each group is named by its first file, relative to
    the CSV's folder.
    """
    base = Path(path).resolve().parent
    parent: dict[Path, Path] = {}

    def find(item: Path) -> Path:
        while parent.setdefault(item, item) != item:
            item = parent[item]
        return item

    for real_path, fake_path in pairs_from_csv(path):
        real, fake = find(real_path), find(fake_path)
        if real != fake:
            first, second = sorted((real, fake))
            parent[second] = first
    return {item: find(item).relative_to(base).as_posix() for item in parent}


def validate_samples(
    samples: list[Sample], max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[list[Sample], list[tuple[Path, str]]]:
    """Split `samples` into readable images and (path, reason) for the broken ones.

    Cheap (`check_image`: header and file structure, full decode only when a file looks
    odd), about 10,000 JPEG files/s on one core once the files are in the page cache.
    """
    good: list[Sample] = []
    skipped: list[tuple[Path, str]] = []
    for sample in samples:
        if sample.path.suffix.lower() in VIDEO_EXTENSIONS:  # checked when decoded
            good.append(sample)
            continue
        try:
            check_image(sample.path, max_pixels)
        except ImageDecodeError as exc:
            skipped.append((sample.path, exc.reason))
        else:
            good.append(sample)
    if skipped:
        shown = "; ".join(f"{path}: {reason}" for path, reason in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        logger.warning("skipping %d unreadable image file(s): %s%s", len(skipped), shown, more)
    return good, skipped


# --- layouts -------------------------------------------------------------------------------


def _source_of(config: DataConfig) -> dict[str, str]:
    """Identify the data a config points at (checked against a manifest before reuse)."""
    # DataConfig itself refuses a root together with explicit dirs.
    explicit = {name: getattr(config, name) for name in _explicit_fields() if getattr(config, name)}
    if config.root is not None:
        return {"root": str(_existing_folder(config.root, "data root"))}
    return {name: str(_existing_folder(folder, name)) for name, folder in explicit.items()}


def _explicit_fields() -> list[str]:
    return [f"{cls}_{split}_dir" for split in SPLITS for cls in ("real", "fake")]


def _existing_folder(folder: Path, what: str) -> Path:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{what} not found: {folder}" + (" (not a folder)" if folder.exists() else "")
        )
    return folder.resolve()


def _find_layout(source: dict[str, str], videos: bool) -> _Found:
    if "root" not in source:
        return _explicit_layout(source, videos)
    root = Path(source["root"])
    children = _subfolders_by_name(root)
    present = _layouts_present(root, children)
    if not present:
        found = sorted(path.name for path in children.values())
        raise DataError(
            f"no recognised data layout in {root}: found subfolders {found[:20]}"
            f"{' ...' if len(found) > 20 else ''}; expected {_EXPECTED_LAYOUTS}"
        )
    if len(present) > 1:
        raise DataError(f"ambiguous data layout in {root}: it looks like {' and '.join(present)}")
    if present[0] == LAYOUT_SPLITS:
        return _split_layout(root, children, source, videos)
    class_folders = _NUMBERED_FOLDERS if present[0] == LAYOUT_NUMBERED else _FLAT_FOLDERS
    samples = _class_samples(root, children, class_folders, required=True, videos=videos)
    return _Found(present[0], root, source, {"train": samples, "val": None, "test": None})


def _layouts_present(root: Path, children: dict[str, Path]) -> list[str]:
    kinds = {
        LAYOUT_SPLITS: _SPLIT_FOLDERS,
        LAYOUT_NUMBERED: _NUMBERED_FOLDERS,
        LAYOUT_FLAT: _FLAT_FOLDERS,
    }
    return [
        kind
        for kind, folders in kinds.items()
        if any(_pick(children, names, root) for names in folders.values())
    ]


def has_layout(folder: str | Path) -> bool:
    """True when `folder` has the split or class subfolders of a data dir (labelled images).

    It may still be malformed (an ambiguous layout, a bad pairs.csv): discovery says how.
    """
    folder = Path(folder)
    return folder.is_dir() and bool(_layouts_present(folder, _subfolders_by_name(folder)))


def _split_layout(
    root: Path, children: dict[str, Path], source: dict[str, str], videos: bool
) -> _Found:
    splits: dict[str, list[Sample] | None] = {}
    for name, folder_names in _SPLIT_FOLDERS.items():
        folder = _pick(children, folder_names, root)
        if folder is None:
            splits[name] = None
            continue
        splits[name] = _class_samples(
            folder,
            _subfolders_by_name(folder),
            _CLASS_FOLDERS_IN_SPLIT,
            required=name == "train",
            videos=videos,
        )
    if splits["train"] is None:
        raise DataError(
            f"{root} has split folders but no train folder; expected {_EXPECTED_LAYOUTS}"
        )
    return _Found(LAYOUT_SPLITS, root, source, splits)


def _explicit_layout(source: dict[str, str], videos: bool) -> _Found:
    splits: dict[str, list[Sample] | None] = {}
    for split in SPLITS:
        dirs = {label: source.get(f"{name}_{split}_dir") for label, name in CLASS_NAMES.items()}
        given = [label for label, folder in dirs.items() if folder]
        if len(given) == 1 or (split == "train" and not given):
            missing = [
                f"{CLASS_NAMES[label]}_{split}_dir" for label in CLASS_NAMES if label not in given
            ]
            raise DataError(f"explicit data dirs: {' and '.join(missing)} missing")
        if not given:
            splits[split] = None
            continue
        splits[split] = [
            Sample(path, label)
            for label, folder in dirs.items()
            for path in find_images(folder, videos)
        ]
    root = Path(os.path.commonpath(list(source.values())))
    return _Found(LAYOUT_EXPLICIT, root, source, splits)


def _subfolders_by_name(folder: Path) -> dict[str, Path]:
    """Visible subfolders keyed by lower-cased name; two names differing only by case clash."""
    children: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        key = entry.name.lower()
        if key in children:
            raise DataError(f"{folder} has both {children[key].name}/ and {entry.name}/")
        children[key] = entry
    return children


def _pick(children: dict[str, Path], names: tuple[str, ...], parent: Path) -> Path | None:
    matches = [children[name] for name in names if name in children]
    if len(matches) > 1:
        raise DataError(
            f"{parent} has {' and '.join(m.name + '/' for m in matches)}: use one of them"
        )
    return matches[0] if matches else None


def _class_samples(
    folder: Path,
    children: dict[str, Path],
    class_folders: dict[int, tuple[str, ...]],
    required: bool,
    videos: bool = False,
) -> list[Sample]:
    """Samples of the class folders in `folder`; `required`: both classes must be there."""
    picked = {label: _pick(children, names, folder) for label, names in class_folders.items()}
    missing = [label for label, class_folder in picked.items() if class_folder is None]
    if missing and (required or len(missing) == len(picked)):
        expected = " and ".join("/".join(class_folders[label]) + "/" for label in missing)
        raise DataError(
            f"{folder} has no {expected} folder; found subfolders "
            f"{sorted(p.name for p in children.values())}; expected {_EXPECTED_LAYOUTS}"
        )
    for label in missing:
        logger.warning(
            "%s has no %s folder: no %s images there",
            folder,
            "/".join(class_folders[label]) + "/",
            CLASS_NAMES[label],
        )
    return [
        Sample(path, label)
        for label, class_folder in picked.items()
        if class_folder is not None
        for path in find_images(class_folder, videos)
    ]


# --- splits, checks ------------------------------------------------------------------------


def _complete_splits(
    found: _Found, config: DataConfig, groups: Mapping[Path, str] | None
) -> DataSplits:
    """Derive the missing val/test splits from train with the config's seed and fractions."""
    val_fraction = config.val_fraction if found.splits["val"] is None else 0.0
    test_fraction = config.test_fraction if found.splits["test"] is None else 0.0
    train, val, test = split_samples(
        found.splits["train"] or [], val_fraction, test_fraction, config.split_seed, groups
    )
    return DataSplits(
        train=train,
        val=found.splits["val"] if found.splits["val"] is not None else val,
        test=found.splits["test"] if found.splits["test"] is not None else test,
        layout=found.layout,
    )


def _split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    n_test, n_val = round(count * test_fraction), round(count * val_fraction)
    # Keep at least one unit for training.
    excess = n_test + n_val - max(count - 1, 0)
    if excess > 0:
        cut = min(excess, n_val)
        n_val -= cut
        n_test -= excess - cut
    return n_test, n_val


def _sample_order(sample: Sample) -> tuple[str, int]:
    return sample.path.as_posix(), sample.label


def _without_broken_files(splits: DataSplits) -> DataSplits:
    _, skipped = validate_samples(splits.train + splits.val + splits.test)
    broken = {path for path, _ in skipped}
    kept = {name: [s for s in getattr(splits, name) if s.path not in broken] for name in SPLITS}
    return DataSplits(**kept, layout=splits.layout, skipped=skipped)


def _check_classes(splits: DataSplits, config: DataConfig) -> None:
    where = config.root if config.root is not None else "the explicit data dirs"
    counts = count_labels(splits.train)
    for label, count in counts.items():
        if count == 0:
            raise DataError(
                f"the train split has no {CLASS_NAMES[label]} images (layout {splits.layout!r} "
                f"in {where}; {len(splits.skipped)} file(s) skipped as unreadable): "
                "training needs both classes"
            )
    for name in ("val", "test"):
        empty = [
            CLASS_NAMES[label] for label, n in count_labels(getattr(splits, name)).items() if n == 0
        ]
        if getattr(splits, name) and empty:
            logger.warning("the %s split has no %s images", name, " or ".join(empty))


# --- manifest ------------------------------------------------------------------------------


def _write_manifest(
    path: Path, splits: DataSplits, found: _Found, config: DataConfig, grouped: bool
) -> None:
    payload = {
        "format": _MANIFEST_FORMAT,
        "version": _MANIFEST_VERSION,
        "layout": found.layout,
        "root": str(found.root),
        "source": found.source,
        "derived_splits": [name for name in SPLITS if found.splits[name] is None],
        "seed": config.split_seed,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "grouped": grouped,
        "splits": {
            name: [
                [s.path.relative_to(found.root).as_posix(), s.label] for s in getattr(splits, name)
            ]
            for name in SPLITS
        },
    }
    atomic_write_json(path, payload)
    logger.info("split manifest written to %s", path)


def _read_manifest(
    path: Path, config: DataConfig, source: dict[str, str], grouped: bool
) -> DataSplits:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"split manifest {path} cannot be read: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _MANIFEST_FORMAT:
        raise DataError(f"{path} is not a fakescope split manifest")
    if payload.get("version") != _MANIFEST_VERSION:
        raise DataError(f"split manifest {path} has version {payload.get('version')}, expected 1")
    if payload.get("source") != source:
        raise DataError(
            f"split manifest {path} belongs to other data ({payload.get('source')}), not to "
            f"{source}; delete it or point data at the folder it was made for"
        )
    if payload.get("derived_splits"):
        _check_split_settings(path, payload, config, grouped)
    try:
        root = Path(payload["root"])
        lists = {
            name: [
                Sample(root / relative, int(label)) for relative, label in payload["splits"][name]
            ]
            for name in SPLITS
        }
        layout = str(payload["layout"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"split manifest {path} is malformed: {exc!r}") from exc
    bad = [s for samples in lists.values() for s in samples if s.label not in CLASS_NAMES]
    if bad:
        raise DataError(
            f"split manifest {path}: label {bad[0].label} of {bad[0].path} is not 0 or 1"
        )
    logger.info("using the split saved in %s", path)
    return DataSplits(**lists, layout=layout)


def _check_split_settings(path: Path, payload: dict, config: DataConfig, grouped: bool) -> None:
    """The saved split wins (a resumed run must see the same data); say so when settings differ."""
    wanted = {
        "seed": config.split_seed,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "grouped": grouped,
    }
    changed = [
        f"{key} {payload.get(key)} -> {value}"
        for key, value in wanted.items()
        if payload.get(key) != value
    ]
    if changed:
        logger.warning(
            "split manifest %s was made with other split settings (%s); using its split as saved. "
            "Delete the manifest to split again with the new settings.",
            path,
            ", ".join(changed),
        )
