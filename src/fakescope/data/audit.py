"""Audit a real/fake data set for confounds: differences between the classes other than the
manipulation itself, which a detector can learn instead of the face.

Per file it reads what the header gives without a full decode (format, size, colour mode, JPEG
quantisation tables and chroma subsampling, EXIF/ICC presence, progressive flag), plus a
perceptual hash from a reduced-scale decode. Per feature it measures how well that feature
alone separates real from fake, as an AUC, and warns when a detector could lean on it. It also
finds exact and near duplicates (within a class, across classes, across splits), unreadable
files and class imbalance.

Warning rule: a feature is flagged when its AUC (max(AUC, 1 - AUC)) reaches `warn_auc` *and*
the difference is statistically significant (p < 0.001). The default 0.65 means one metadata
value alone already orders a random (real, fake) pair correctly two times in three: a head start
a detector will take; sets whose classes were saved alike stay near 0.5. The significance test
keeps small sets, where an AUC of 0.65 happens by chance, from raising false alarms.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import struct
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import fft, stats

from fakescope.data.discovery import find_images
from fakescope.io.images import IMAGE_EXTENSIONS

# The audit reads a data set as a whole (flat) or by its own splits: no seeded split here.
_CLASS_DIRS = {"real": 0, "fake": 1}
_SPLIT_DIRS = ("train", "val", "test")
_CLASS_NAMES = {0: "real", 1: "fake"}
_JPEG_ONLY_FEATURES = (
    "jpeg_quality", "jpeg_tables", "luma_quant_mean", "chroma_quant_mean", "chroma_subsampling",
    "progressive",
)  # fmt: skip

# A flagged feature must also be this unlikely under "no difference between the classes".
_SIGNIFICANCE = 1e-3
# What Pillow's decoders raise on damaged bytes (SyntaxError, struct.error: bad headers).
_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError,
)  # fmt: skip
_MAX_EXAMPLES = 10  # duplicate groups and unreadable files shown by format_audit

# The IJG (libjpeg) standard tables, ITU-T T.81 Annex K, in natural (row-major) order, which is
# the order Pillow's `im.quantization` uses.
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip
_IJG_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
])  # fmt: skip

_FORMAT_ADVICE = (
    "a detector can learn the file format instead of the face; re-encode both classes alike"
)
_SIZE_ADVICE = (
    "a detector can learn the image size instead of the face; crop and resize both classes alike"
)
_BYTES_ADVICE = (
    "file size follows the compression and resizing history (and the amount of detail); if the "
    "classes were saved differently a detector can learn that instead of the face; re-encode both "
    "classes alike and audit again"
)
_METADATA_ADVICE = (
    "the classes have a different file history; strip metadata and re-encode both classes alike"
)
_MODE_ADVICE = (
    "a detector can learn the colour mode instead of the face; convert both classes to RGB alike"
)

# name -> (what the terminal calls it, what to do when it separates the classes)
_NUMERIC_FEATURES = {
    "jpeg_quality": ("JPEG quality", _FORMAT_ADVICE),
    "luma_quant_mean": ("Mean luma quantisation step", _FORMAT_ADVICE),
    "chroma_quant_mean": ("Mean chroma quantisation step", _FORMAT_ADVICE),
    "width": ("Width", _SIZE_ADVICE),
    "height": ("Height", _SIZE_ADVICE),
    "aspect_ratio": ("Aspect ratio", _SIZE_ADVICE),
    "file_bytes": ("File size", _BYTES_ADVICE),
    "bytes_per_pixel": ("Bytes per pixel", _BYTES_ADVICE),
}
_CATEGORICAL_FEATURES = {
    "format": ("Image format", _FORMAT_ADVICE),
    "mode": ("Colour mode", _MODE_ADVICE),
    "chroma_subsampling": ("Chroma subsampling", _FORMAT_ADVICE),
    "jpeg_tables": ("JPEG table family (IJG standard or other)", _FORMAT_ADVICE),
    "progressive": ("Progressive JPEG", _FORMAT_ADVICE),
    "exif": ("EXIF metadata", _METADATA_ADVICE),
    "icc_profile": ("ICC profile", _METADATA_ADVICE),
}


class AuditError(Exception):
    """The folder cannot be audited; says which path and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class _Audited:
    """One readable file: where it sits, its label, and what the audit read from it."""

    path: str  # relative to the audited root, POSIX style
    label: int
    split: str | None
    sha256: str
    features: dict[str, Any]


# --------------------------------------------------------------------------- folder walk


def _subdirs_by_lower_name(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = defaultdict(list)
    for child in sorted(folder.iterdir()):
        if child.is_dir():
            found[child.name.lower()].append(child)
    return found


def _class_files(folder: Path, split: str | None) -> list[tuple[Path, int, str | None]]:
    dirs = _subdirs_by_lower_name(folder)
    return [
        (path, label, split)
        for name, label in _CLASS_DIRS.items()
        for class_dir in dirs.get(name, [])
        for path in find_images(class_dir)
    ]


def _labelled_files(root: Path) -> list[tuple[Path, int, str | None]]:
    """(path, label, split) for `root/{real,fake}` or `root/{train,val,test}/{real,fake}`.

    Folder names match case-insensitively and images are found recursively. `split` is None for
    the flat layout.
    """
    if not root.is_dir():
        raise AuditError(root, "not a directory")
    top = _subdirs_by_lower_name(root)
    has_classes = any(name in top for name in _CLASS_DIRS)
    split_dirs = [(split, d) for split in _SPLIT_DIRS for d in top.get(split, [])]
    if has_classes and split_dirs:
        raise AuditError(root, "has both real/fake and train/val/test folders; keep one layout")
    if split_dirs:
        files = [f for split, d in split_dirs for f in _class_files(d, split)]
    elif has_classes:
        files = _class_files(root, None)
    else:
        raise AuditError(root, "expected real/ and fake/ folders, or train|val|test/{real,fake}")
    if not files:
        raise AuditError(root, f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found")
    return files


def _subsample(
    files: list[tuple[Path, int, str | None]], max_files: int | None, seed: int
) -> list[tuple[Path, int, str | None]]:
    """At most `max_files` per (split, class), a seeded random choice."""
    if max_files is None:
        return files
    groups: dict[tuple[str | None, int], list] = defaultdict(list)
    for item in files:
        groups[(item[2], item[1])].append(item)
    rng = random.Random(seed)
    chosen = []
    for key in sorted(groups, key=lambda k: (k[0] or "", k[1])):
        group = groups[key]
        chosen.extend(group if len(group) <= max_files else rng.sample(group, max_files))
    return chosen


# --------------------------------------------------------------------------- per-file features


def _ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's `jpeg_quality_scaling` applied to a base table (baseline: values 1..255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


_QUALITIES = np.arange(1, 101)
_LUMA_BY_QUALITY = np.stack([_ijg_table(_IJG_LUMA, q) for q in _QUALITIES])
_CHROMA_BY_QUALITY = np.stack([_ijg_table(_IJG_CHROMA, q) for q in _QUALITIES])


def _jpeg_features(im: Image.Image) -> dict[str, Any]:
    """Quality estimate, table family and mean steps from the quantisation tables."""
    tables = {k: np.asarray(v, dtype=np.int64) for k, v in im.quantization.items()}
    # Each component names its table in the frame header; Pillow gives it as layer[i][3].
    layer = getattr(im, "layer", None) or []
    luma = tables.get(layer[0][3]) if layer else tables.get(0)
    chroma = tables.get(layer[1][3]) if len(layer) > 1 else None
    if luma is None:
        raise ValueError("JPEG without a luma quantisation table")
    error = np.abs(_LUMA_BY_QUALITY - luma).sum(axis=1)
    if chroma is not None:
        error = error + np.abs(_CHROMA_BY_QUALITY - chroma).sum(axis=1)
    best = int(np.argmin(error))
    return {
        "jpeg_quality": int(_QUALITIES[best]),
        "jpeg_tables": "ijg" if error[best] == 0 else "other",
        "luma_quant_mean": float(luma.mean()),
        "chroma_quant_mean": float(chroma.mean()) if chroma is not None else None,
        "chroma_subsampling": _chroma_subsampling(layer),
        "progressive": "yes" if im.info.get("progressive") or im.info.get("progression") else "no",
    }


def _chroma_subsampling(layer: list[tuple]) -> str:
    """J:a:b name from the luma sampling factors relative to the chroma ones."""
    if len(layer) < 3:
        return "gray"
    (_, h, v, _), chroma = layer[0], layer[1:3]
    if any(c[1:3] != chroma[0][1:3] for c in chroma):
        return "other"
    ratios = (h // chroma[0][1], v // chroma[0][2])
    names = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}
    return names.get(ratios, "other")


def _perceptual_hash(im: Image.Image) -> int:
    """64-bit DCT hash: which of the 8x8 lowest frequencies of a 32x32 grey copy top their median.

    `draft` lets libjpeg decode at 1/2..1/8 scale, so JPEGs are never decoded in full.
    """
    im.draft("L", (64, 64))
    grey = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64)
    low = fft.dctn(grey, norm="ortho")[:8, :8].ravel()
    # The DC term is the mean brightness, far above the rest: leave it out of the median.
    bits = low > np.median(low[1:])
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def _inspect(data: bytes) -> dict[str, Any]:
    """Header features and perceptual hash of one encoded image; raises if it does not decode."""
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        features: dict[str, Any] = {
            "format": im.format or "unknown",
            "mode": im.mode,
            "width": width,
            "height": height,
            "aspect_ratio": width / height,
            "file_bytes": len(data),
            "bytes_per_pixel": len(data) / (width * height),
            "exif": "yes" if im.info.get("exif") else "no",
            "icc_profile": "yes" if im.info.get("icc_profile") else "no",
        }
        # JPEG (and MPO, its multi-picture variant) carry quantisation tables; others don't.
        is_jpeg = bool(getattr(im, "quantization", None))
        features.update(_jpeg_features(im) if is_jpeg else dict.fromkeys(_JPEG_ONLY_FEATURES))
        # Hashing decodes the pixels, so it also proves the file is readable.
        features["phash"] = f"{_perceptual_hash(im):016x}"
    return features


# --------------------------------------------------------------------------- separability


def _auc_fake_higher(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """P(fake value > real value) (ties count half) and the Mann-Whitney two-sided p-value."""
    if np.unique(np.concatenate([real, fake])).size == 1:
        return 0.5, 1.0
    result = stats.mannwhitneyu(fake, real, alternative="two-sided", method="asymptotic")
    return float(result.statistic) / (real.size * fake.size), float(result.pvalue)


def _numeric_summary(values: np.ndarray) -> dict[str, float | int]:
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _numeric_separability(real: list[float], fake: list[float]) -> dict[str, Any]:
    r, f = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    result: dict[str, Any] = {
        "real": _numeric_summary(r) if r.size else None,
        "fake": _numeric_summary(f) if f.size else None,
        "auc": None,
        "direction": None,
        "p_value": None,
    }
    if r.size and f.size:
        auc, p = _auc_fake_higher(r, f)
        result.update(
            auc=max(auc, 1.0 - auc),
            direction="fake higher" if auc > 0.5 else "fake lower" if auc < 0.5 else None,
            p_value=p,
        )
    return result


def _categorical_separability(real: list[str], fake: list[str]) -> dict[str, Any]:
    """Score each file by the fake share of its category and take the AUC of that score.

    This is the best AUC any rule using only this feature reaches on these files, on the same
    scale as the numeric features, so one threshold serves both (Cramér's V would need its own).
    Significance comes from the chi-square test of independence.
    """
    real_counts, fake_counts = Counter(real), Counter(fake)
    categories = sorted(set(real_counts) | set(fake_counts))
    fake_share = {c: fake_counts[c] / (fake_counts[c] + real_counts[c]) for c in categories}
    result: dict[str, Any] = {
        "real": {c: real_counts[c] for c in categories},
        "fake": {c: fake_counts[c] for c in categories},
        "fake_share": fake_share,
        "auc": None,
        "p_value": None,
    }
    if real and fake:
        if len(categories) == 1:
            auc, p = 0.5, 1.0
        else:
            scores_real = np.array([fake_share[c] for c in real])
            scores_fake = np.array([fake_share[c] for c in fake])
            auc, _ = _auc_fake_higher(scores_real, scores_fake)
            table = np.array([[real_counts[c], fake_counts[c]] for c in categories])
            p = float(stats.chi2_contingency(table).pvalue)
        result.update(auc=auc, p_value=p)
    return result


# --------------------------------------------------------------------------- duplicates

_POPCOUNT_8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    xor = np.ascontiguousarray(a ^ b)
    return _POPCOUNT_8[xor.view(np.uint8)].reshape(*xor.shape, 8).sum(axis=-1)


def _near_duplicate_pairs(hashes: np.ndarray, max_distance: int) -> dict[tuple[int, int], int]:
    """Pairs (i, j) with Hamming distance <= max_distance, without comparing all pairs.

    Pigeonhole: cut the 64 bits into max_distance + 1 chunks; two hashes that differ in at most
    max_distance bits agree exactly on at least one chunk, so only files sharing a chunk value
    are compared.
    """
    bounds = np.linspace(0, 64, max_distance + 2).astype(int)
    pairs: dict[tuple[int, int], int] = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        keys = (hashes >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(keys, kind="stable")
        starts = np.flatnonzero(np.diff(keys[order])) + 1
        for bucket in np.split(order, starts):
            if bucket.size < 2:
                continue
            members = np.sort(bucket)
            distance = _hamming(hashes[members][:, None], hashes[members][None, :])
            for i, j in zip(*np.nonzero(np.triu(distance <= max_distance, k=1))):
                pairs[(int(members[i]), int(members[j]))] = int(distance[i, j])
    return pairs


def _groups_from_pairs(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in sorted({k for pair in pairs for k in pair}):
        members[root(i)].append(i)
    return sorted(members.values())


def _describe_group(group: list[int], files: list[_Audited]) -> dict[str, Any]:
    return {
        "files": [
            {"path": files[i].path, "label": files[i].label, "split": files[i].split} for i in group
        ],
        "across_classes": len({files[i].label for i in group}) > 1,
        "across_splits": len({files[i].split for i in group}) > 1,
    }


def _count_groups(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "groups": groups,
        "within_class": sum(not g["across_classes"] and not g["across_splits"] for g in groups),
        "across_classes": sum(g["across_classes"] for g in groups),
        "across_splits": sum(g["across_splits"] for g in groups),
    }


def _duplicates(files: list[_Audited], max_distance: int) -> dict[str, Any]:
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(files):
        by_digest[f.sha256].append(i)
    exact = [_describe_group(g, files) for g in sorted(by_digest.values()) if len(g) > 1]

    hashes = np.array([int(f.features["phash"], 16) for f in files], dtype=np.uint64)
    near_pairs = {
        pair: d
        for pair, d in _near_duplicate_pairs(hashes, max_distance).items()
        if files[pair[0]].sha256 != files[pair[1]].sha256  # byte-identical: reported as exact
    }
    groups = _groups_from_pairs(len(files), list(near_pairs))
    near = [_describe_group(g, files) | {"pairs": []} for g in groups]
    group_of = {i: k for k, g in enumerate(groups) for i in g}
    # Groups chain pairs, so each keeps its matched pairs and their distances.
    for (i, j), d in sorted(near_pairs.items()):
        near[group_of[i]]["pairs"].append({"a": files[i].path, "b": files[j].path, "distance": d})
    near_report = {**_count_groups(near), "pairs": len(near_pairs)}
    return {"exact": _count_groups(exact), "near": near_report}


# --------------------------------------------------------------------------- the report


def _scopes(files: list[_Audited]) -> dict[str, list[_Audited]]:
    scopes = {"all": files}
    for split in _SPLIT_DIRS:
        in_split = [f for f in files if f.split == split]
        if in_split:
            scopes[split] = in_split
    return scopes


def _feature_report(files: list[_Audited]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for kinds, measure in (
        (_NUMERIC_FEATURES, _numeric_separability),
        (_CATEGORICAL_FEATURES, _categorical_separability),
    ):
        for name in kinds:
            per_scope = {}
            for scope, members in _scopes(files).items():
                values = {label: [] for label in _CLASS_NAMES}
                for f in members:
                    if f.features[name] is not None:
                        values[f.label].append(f.features[name])
                per_scope[scope] = measure(values[0], values[1])
            kind = "numeric" if kinds is _NUMERIC_FEATURES else "categorical"
            report[name] = {"kind": kind, "scopes": per_scope}
    return report


def _balance(found: list[tuple[Path, int, str | None]]) -> dict[str, dict[str, Any]]:
    balance = {}
    splits = [None] + [s for s in _SPLIT_DIRS if any(f[2] == s for f in found)]
    for split in splits:
        counts = Counter(f[1] for f in found if split is None or f[2] == split)
        real, fake = counts[0], counts[1]
        ratio = max(real, fake) / min(real, fake) if min(real, fake) else None
        balance[split or "all"] = {"real": real, "fake": fake, "ratio": ratio}
    return balance


def _format_value(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _flagged(result: dict[str, Any], warn_auc: float) -> bool:
    if result["auc"] is None:
        return False
    return result["auc"] >= warn_auc and result["p_value"] < _SIGNIFICANCE


def _feature_warning(name: str, kind: str, scope: str, result: dict[str, Any]) -> str:
    display, advice = {**_NUMERIC_FEATURES, **_CATEGORICAL_FEATURES}[name]
    if kind == "numeric":
        side = "higher" if result["direction"] == "fake higher" else "lower"
        detail = (
            f"fakes {side}: median {_format_value(result['fake']['median'])} vs "
            f"{_format_value(result['real']['median'])} for reals"
        )
    else:
        shares = ", ".join(f"{c} {share:.0%}" for c, share in result["fake_share"].items())
        detail = f"share of fakes per value: {shares}"
    prefix = "" if scope == "all" else f"[{scope}] "
    return (
        f"{prefix}{display} separates real from fake on its own "
        f"(AUC {result['auc']:.2f}; {detail}): {advice}"
    )


def _warnings(report: dict[str, Any], warn_auc: float, warn_class_ratio: float) -> list[str]:
    warnings = []
    for scope, counts in report["balance"].items():
        prefix = "" if scope == "all" else f"[{scope}] "
        if counts["ratio"] is None:
            missing = "real" if counts["real"] == 0 else "fake"
            warnings.append(f"{prefix}no {missing} images")
        elif counts["ratio"] > warn_class_ratio:
            warnings.append(
                f"{prefix}classes are unbalanced: {counts['real']} real vs {counts['fake']} fake "
                f"(ratio {counts['ratio']:.2f}); balance them or weight the loss"
            )
    for name, feature in report["features"].items():
        scopes = feature["scopes"]
        # A confound in one split only is diluted overall, so splits are checked on their own;
        # when the whole set is flagged, that one line covers every split.
        flagged = ["all"] if _flagged(scopes["all"], warn_auc) else [
            scope for scope, result in scopes.items() if _flagged(result, warn_auc)
        ]  # fmt: skip
        warnings.extend(
            _feature_warning(name, feature["kind"], scope, scopes[scope]) for scope in flagged
        )
    for kind, what in (("exact", "exact duplicate"), ("near", "near-duplicate")):
        dup = report["duplicates"][kind]
        if dup["across_splits"]:
            warnings.append(
                f"{dup['across_splits']} {what} group(s) span more than one split: test images "
                "leak into training; keep each group in one split"
            )
        if dup["across_classes"]:
            warnings.append(
                f"{dup['across_classes']} {what} group(s) hold both real and fake images: "
                "conflicting labels, or matched real/fake pairs (keep each pair in one split)"
            )
        if dup["within_class"]:
            warnings.append(
                f"{dup['within_class']} {what} group(s) within one class: copies count twice and "
                "a random split can put them on both sides; drop the extra copies"
            )
    if report["unreadable"]:
        warnings.append(f"{len(report['unreadable'])} file(s) could not be read; see the list")
    return warnings


def audit_dataset(
    root: Path,
    *,
    near_duplicate_distance: int = 4,
    warn_auc: float = 0.65,
    max_files: int | None = None,
    warn_class_ratio: float = 1.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit `root` ({real,fake} or {train,val,test}/{real,fake}) and return a JSON-ready report.

    near_duplicate_distance: largest Hamming distance (of 64 bits) between perceptual hashes
        that counts as a near duplicate.
    warn_auc: a single feature with at least this AUC (and p < 0.001) gets a warning.
    max_files: audit at most this many files per class and split (a seeded random subset);
        class balance is always counted over all files.
    warn_class_ratio: warn when the larger class has more than this many times the smaller.
    """
    root = Path(root)
    if not 0 <= near_duplicate_distance < 64:
        raise ValueError(f"near_duplicate_distance must be in 0..63, got {near_duplicate_distance}")
    if not 0.5 <= warn_auc <= 1.0:
        raise ValueError(f"warn_auc must be in 0.5..1, got {warn_auc}")
    if max_files is not None and max_files < 1:
        raise ValueError(f"max_files must be positive, got {max_files}")
    started = time.perf_counter()
    found = _labelled_files(root)
    audited: list[_Audited] = []
    unreadable = []
    for path, label, split in _subsample(found, max_files, seed):
        relative = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
            features = _inspect(data)
        except UnidentifiedImageError:
            reason = "not an image Pillow can identify (unknown format or damaged header)"
        except _DECODE_ERRORS as error:
            reason = f"{type(error).__name__}: {error}"
        else:
            audited.append(
                _Audited(relative, label, split, hashlib.sha256(data).hexdigest(), features)
            )
            continue
        unreadable.append({"path": relative, "label": label, "split": split, "reason": reason})
    inspected = time.perf_counter()

    report: dict[str, Any] = {
        "root": str(root),
        "layout": "splits" if any(f[2] for f in found) else "flat",
        "settings": {
            "near_duplicate_distance": near_duplicate_distance,
            "warn_auc": warn_auc,
            "significance": _SIGNIFICANCE,
            "max_files": max_files,
            "warn_class_ratio": warn_class_ratio,
            "seed": seed,
        },
        "counts": {"found": len(found), "audited": len(audited), "unreadable": len(unreadable)},
        "balance": _balance(found),
        "features": _feature_report(audited),
        "duplicates": _duplicates(audited, near_duplicate_distance),
        "unreadable": unreadable,
        "files": [
            {"path": f.path, "label": f.label, "split": f.split, "sha256": f.sha256, **f.features}
            for f in audited
        ],
    }
    report["warnings"] = _warnings(report, warn_auc, warn_class_ratio)
    seconds = time.perf_counter() - started
    report["timing"] = {
        "seconds": seconds,
        "inspect_seconds": inspected - started,
        "files_per_second": (len(audited) + len(unreadable)) / seconds if seconds > 0 else math.inf,
    }
    return report


def _class_summary(result: dict[str, Any], class_name: str, kind: str) -> str:
    summary = result[class_name]
    if not summary:
        return "-"
    if kind == "numeric":
        low, mid, high = (_format_value(summary[k]) for k in ("min", "median", "max"))
        return f"median {mid} [{low}..{high}]"
    return ", ".join(f"{value} {n}" for value, n in summary.items() if n)


def _listing(title: str, items: list[str]) -> list[str]:
    lines = [title] + [f"  {item}" for item in items[:_MAX_EXAMPLES]]
    if len(items) > _MAX_EXAMPLES:
        lines.append(f"  ... and {len(items) - _MAX_EXAMPLES} more")
    return lines


def format_audit(report: dict[str, Any]) -> str:
    """Plain-text summary for the terminal: warnings first, then the numbers behind them."""
    warnings = report["warnings"]
    lines = [f"Audit of {report['root']} ({report['layout']} layout)", ""]
    lines.append(f"WARNINGS ({len(warnings)})" if warnings else "No warnings.")
    lines.extend(f"  ! {w}" for w in warnings)

    counts = report["counts"]
    lines += ["", f"Files: {counts['found']} found, {counts['audited']} audited, "
              f"{counts['unreadable']} unreadable"]  # fmt: skip
    for scope, b in report["balance"].items():
        ratio = f"{b['ratio']:.2f}" if b["ratio"] is not None else "-"
        lines.append(f"  {scope:<5}  real {b['real']:>6}  fake {b['fake']:>6}  ratio {ratio}")

    lines += ["", "Features (AUC of one feature alone for real vs fake; 0.5 = no information):"]
    for name, feature in report["features"].items():
        for scope, result in feature["scopes"].items():
            if result["auc"] is None:
                continue
            direction = result.get("direction") or ""
            lines.append(
                f"  {name:<18} {scope:<5}  AUC {result['auc']:.2f} {direction:<11}  "
                f"real: {_class_summary(result, 'real', feature['kind'])}  |  "
                f"fake: {_class_summary(result, 'fake', feature['kind'])}"
            )

    for kind in ("exact", "near"):
        dup = report["duplicates"][kind]
        title = (
            f"{kind.capitalize()} duplicates: {len(dup['groups'])} group(s): "
            f"{dup['within_class']} within a class, {dup['across_classes']} across classes, "
            f"{dup['across_splits']} across splits"
        )
        groups = [", ".join(f["path"] for f in g["files"]) for g in dup["groups"]]
        lines += [""] + _listing(title, groups)

    if report["unreadable"]:
        items = [f"{u['path']}: {u['reason']}" for u in report["unreadable"]]
        lines += [""] + _listing("Unreadable files:", items)

    timing = report["timing"]
    lines += ["", f"Time: {timing['seconds']:.1f} s ({timing['files_per_second']:.0f} files/s)"]
    return "\n".join(lines)
