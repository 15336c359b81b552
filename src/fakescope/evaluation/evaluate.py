"""`fakescope evaluate`: score a detector on labelled folders, as `scan` would score them.

Images go through the detector's own face stage (its card says whether and how to crop faces;
an image's score is its most suspicious face), so the numbers are those of the product, not
of a training-time shortcut. Videos are scored as `scan` scores them (sampled frames, each
frame its most suspicious face, the video the mean over frames with faces) and reported at two
levels: per frame (every sampled frame, labelled as its video) and per video. With
`robustness`, the images of every split are scored again under each degradation of
`perturb.SWEEP`, and each change in AUC gets a paired-bootstrap interval (`bootstrap`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from fakescope.batching import BATCH_SIZE
from fakescope.data.dataset import decode_or_warn
from fakescope.data.discovery import DataSplits, Sample, discover_folder
from fakescope.data.facecrops import SUMMARY_FILE
from fakescope.evaluation.bootstrap import paired_auc_change
from fakescope.evaluation.metrics import binary_metrics
from fakescope.evaluation.perturb import SWEEP, Perturbation
from fakescope.evaluation.plots import plot_robustness
from fakescope.evaluation.report import evaluate_scores
from fakescope.inference.detector import Detector
from fakescope.inference.loading import load_detector
from fakescope.io.images import DEFAULT_MAX_PIXELS
from fakescope.io.video import VIDEO_EXTENSIONS, VideoDecodeError
from fakescope.models.scoring import probabilities
from fakescope.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def select_split(splits: DataSplits, split: str) -> list[Sample]:
    if split == "all":
        return splits.train + splits.val + splits.test
    return getattr(splits, split)


@dataclass(frozen=True)
class ScoredVideos:
    """The videos of one split, scored as `scan` scores them (probabilities after temperature)."""

    paths: list[Path]  # per video
    labels: np.ndarray  # per video
    p_fake: np.ndarray  # per video
    frame_labels: np.ndarray  # per sampled frame, its video's label
    frame_p_fake: np.ndarray  # per sampled frame


@dataclass(frozen=True)
class ScoredSplit:
    """One split of one data dir, scored: image paths, labels and logits of P(fake) before
    temperature, and the videos (None when the split has none)."""

    paths: list[Path]
    labels: np.ndarray
    logits: np.ndarray
    split_source: str  # the run's split manifest, or the layout the split was derived from
    skipped: list[tuple[Path, str]]  # unreadable files left out: (path, reason)
    videos: ScoredVideos | None = None


class DecodedImages(Dataset):
    """(RGB image, label, path) per sample, optionally degraded; None for a file that broke."""

    def __init__(self, samples: list[Sample], perturbation: Perturbation | None = None):
        self.samples = samples
        self.perturbation = perturbation
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, Path] | None:
        sample = self.samples[index]
        image = decode_or_warn(sample.path, DEFAULT_MAX_PIXELS, self._warned)
        if image is None:
            return None
        return (self.perturbation(image) if self.perturbation else image), sample.label, sample.path


def _keep_decoded(batch: list) -> list:
    return [item for item in batch if item is not None]


def check_crop_margin(detector: Detector, data_dir: Path) -> None:
    """Refuse face crops (`fakescope faces` output) cut tighter than the detector's widest cut:
    its extra margins would see black padding where the face's surroundings were."""
    summary = Path(data_dir) / SUMMARY_FILE
    if not (detector.use_faces and detector.card.extra_margins and summary.is_file()):
        return
    cut = json.loads(summary.read_text()).get("margin")
    widest = max(detector.card.face_margin, *detector.card.extra_margins)
    if cut is not None and widest > cut:
        raise ValueError(
            f"{data_dir} holds face crops cut with margin {cut}, and this detector also cuts each "
            f"face with margin {widest} (its card's extra_margins), which those crops cannot give: "
            "score the raw images they were cut from"
        )


def score_split(
    detector: Detector,
    checkpoint: Path,
    data_dir: Path,
    split: str,
    perturbation: Perturbation | None = None,
    batch_size: int = BATCH_SIZE,
    num_workers: int = 2,
) -> ScoredSplit:
    """Image-level logits of P(fake) for one split of `data_dir` (decoding in worker processes),
    and its videos scored (not under a perturbation)."""
    check_crop_margin(detector, data_dir)
    splits = discover_folder(data_dir, checkpoint, videos=True)
    samples = select_split(splits, split)
    images = [s for s in samples if s.path.suffix.lower() not in VIDEO_EXTENSIONS]
    videos = [s for s in samples if s.path.suffix.lower() in VIDEO_EXTENSIONS]
    skipped = list(splits.skipped)
    scored_videos = (
        score_videos(detector, videos, batch_size, skipped)
        if videos and perturbation is None
        else None
    )
    loader = DataLoader(
        DecodedImages(images, perturbation),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_keep_decoded,
    )
    paths, labels, logits = [], [], []
    for batch in loader:
        if batch:
            logits.append(detector.image_logits([image for image, _, _ in batch], batch_size))
            labels.append(np.array([label for _, label, _ in batch], dtype=np.int64))
            paths.extend(path for _, _, path in batch)
    if not labels:
        return ScoredSplit(
            [],
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            splits.source,
            skipped,
            scored_videos,
        )
    return ScoredSplit(
        paths, np.concatenate(labels), np.concatenate(logits), splits.source, skipped, scored_videos
    )


def score_videos(
    detector: Detector, samples: list[Sample], batch_size: int, skipped: list[tuple[Path, str]]
) -> ScoredVideos | None:
    """Each video through `Detector.predict_video`; unreadable ones are appended to `skipped`."""
    paths, labels, p_fake, frame_labels, frame_p_fake = [], [], [], [], []
    for sample in samples:
        try:
            result = detector.predict_video(sample.path, batch_size=batch_size)
        except (VideoDecodeError, OSError) as error:
            log.warning("skipped %s (%s)", sample.path, error)
            skipped.append((sample.path, str(error)))
            continue
        paths.append(sample.path)
        labels.append(sample.label)
        p_fake.append(result["probabilities"]["fake"])
        frame_labels.extend([sample.label] * len(result["timeline"]))
        frame_p_fake.extend(frame["p_fake"] for frame in result["timeline"])
    if not labels:
        return None
    return ScoredVideos(
        paths, np.array(labels), np.array(p_fake), np.array(frame_labels), np.array(frame_p_fake)
    )


def robustness_sweep(
    detector: Detector,
    checkpoint: Path,
    data_dir: Path,
    split: str,
    clean: ScoredSplit,
    batch_size: int,
    num_workers: int,
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """AUC and accuracy at the detector's threshold, clean and under each degradation of the
    sweep, each degradation with its change in AUC from the clean images and a paired-bootstrap
    interval of that change; and each image's P(fake) under each, in `clean`'s order (NaN
    where an image could not be scored)."""
    temperature = detector.card.temperature
    clean_p_fake = probabilities(clean.logits, temperature)
    row_of = {path: row for row, path in enumerate(clean.paths)}
    results = {"none": sweep_entry(clean.labels, clean_p_fake, detector.threshold)}
    p_fake = {"none": clean_p_fake}
    for name, perturbation in SWEEP.items():
        scored = score_split(
            detector, checkpoint, data_dir, split, perturbation, batch_size, num_workers
        )
        degraded = probabilities(scored.logits, temperature)
        results[name] = sweep_entry(scored.labels, degraded, detector.threshold)
        p_fake[name] = np.full(len(clean.paths), np.nan)  # an image that broke stays NaN
        p_fake[name][[row_of[path] for path in scored.paths]] = degraded
        both = ~np.isnan(p_fake[name])
        if len(np.unique(clean.labels[both])) == 2:
            results[name]["auc_change"] = paired_auc_change(
                clean.labels[both], clean_p_fake[both], p_fake[name][both]
            )
        log.info(
            "robustness %s: AUC %s, accuracy %.4f",
            name,
            results[name]["auc_roc"],
            results[name]["accuracy"],
        )
    return results, p_fake


def sweep_entry(labels: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict:
    """One row of a robustness sweep. The mean P(fake) of each class says which way a
    degradation fails: fakes losing their traces, or reals starting to look edited."""
    metrics = binary_metrics(labels, p_fake, threshold)
    mean_p_fake = {
        label: float(p_fake[labels == value].mean()) if (labels == value).any() else None
        for value, label in ((0, "real"), (1, "fake"))
    }
    return {
        "auc_roc": metrics["auc_roc"],
        "accuracy": metrics["accuracy"],
        "n": metrics["n"],
        "mean_p_fake": mean_p_fake,
    }


PREDICTION_COLUMNS = ("file", "kind", "label", "p_fake", "prediction")
ROBUSTNESS_PREDICTIONS = "robustness_predictions.csv"


def write_predictions(
    path: Path, scored: ScoredSplit, p_fake: np.ndarray, threshold: float
) -> None:
    """One row per image and per video (P(fake) after temperature, the verdict at `threshold`):
    what error analysis by file name, difficulty or source needs beyond the summary metrics."""
    rows = [
        (file, "image", label, p) for file, label, p in zip(scored.paths, scored.labels, p_fake)
    ]
    if scored.videos is not None:
        videos = scored.videos
        rows += [
            (file, "video", label, p)
            for file, label, p in zip(videos.paths, videos.labels, videos.p_fake)
        ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTION_COLUMNS)
    for file, kind, label, p in rows:
        verdict = "fake" if p >= threshold else "real"
        writer.writerow([file, kind, "fake" if label else "real", f"{p:.6f}", verdict])
    atomic_write_text(path, buffer.getvalue())


def write_robustness_predictions(
    path: Path, clean: ScoredSplit, p_fake: dict[str, np.ndarray]
) -> None:
    """One row per image, its P(fake) clean and under each degradation (empty where it could
    not be scored): what a paired comparison of two sweeps, or of two images, needs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "label", *p_fake])
    for row, (file, label) in enumerate(zip(clean.paths, clean.labels)):
        scores = ["" if np.isnan(p[row]) else f"{p[row]:.6f}" for p in p_fake.values()]
        writer.writerow([file, "fake" if label else "real", *scores])
    atomic_write_text(path, buffer.getvalue())


def video_metrics(videos: ScoredVideos, detector: Detector, out_dir: Path, title: str) -> dict:
    """Frame-level and video-level metrics (with their plots) at the detector's threshold."""
    levels = {
        "frame_level": (videos.frame_labels, videos.frame_p_fake),
        "video_level": (videos.labels, videos.p_fake),
    }
    return {
        level: evaluate_scores(
            labels,
            p_fake,
            detector.threshold,
            detector.threshold_source,
            out_dir,
            prefix=f"{level}_",
            title=f"{title}, {level}",
        )
        for level, (labels, p_fake) in levels.items()
    }


def evaluate_checkpoint(
    checkpoint: Path,
    data_dirs: list[Path],
    out_dir: Path,
    split: str = "test",
    threshold: float | None = None,
    batch_size: int = BATCH_SIZE,
    num_workers: int = 2,
    robustness: bool = False,
) -> dict:
    """Metrics, plots and one JSON for each data dir; the threshold used and where it came from."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    detector = load_detector(checkpoint, threshold=threshold)
    card = detector.card
    report: dict = {
        "evaluated_at": datetime.now(timezone.utc).isoformat(),
        "checkpoint": str(checkpoint),
        "detector": card.name,
        "detector_version": card.version,
        "split": split,
        "level": "image (the most suspicious face of each image)"
        if detector.use_faces
        else "image (whole)",
        "video_levels": {
            "frame_level": "every sampled frame (its most suspicious face), labelled as its video",
            "video_level": "the mean P(fake) over a video's sampled frames with faces",
        },
        "face_stage": detector.describe()["face_stage"],
        "threshold": detector.threshold,
        "threshold_source": detector.threshold_source,
        "datasets": {},
    }
    for data_dir in data_dirs:
        scored = score_split(detector, checkpoint, data_dir, split, None, batch_size, num_workers)
        name = data_dir.resolve().name
        metrics: dict = {}
        probs = probabilities(scored.logits, card.temperature)
        if len(scored.labels):
            metrics = evaluate_scores(
                scored.labels,
                probs,
                detector.threshold,
                detector.threshold_source,
                out_dir / name,
                title=f"{card.name} on {name} ({split})",
            )
            if robustness:
                sweep, sweep_p_fake = robustness_sweep(
                    detector, checkpoint, data_dir, split, scored, batch_size, num_workers
                )
                metrics["robustness"] = sweep
                plot_robustness(sweep, out_dir / name / "robustness.png")
                sweep_csv = out_dir / name / ROBUSTNESS_PREDICTIONS
                write_robustness_predictions(sweep_csv, scored, sweep_p_fake)
                metrics["robustness_predictions"] = ROBUSTNESS_PREDICTIONS
        if scored.videos is not None:
            metrics["videos"] = video_metrics(
                scored.videos, detector, out_dir / name, f"{card.name} on {name} ({split})"
            )
        write_predictions(out_dir / name / "predictions.csv", scored, probs, detector.threshold)
        metrics["predictions"] = "predictions.csv"
        metrics["split_source"] = scored.split_source
        metrics["skipped"] = [{"path": str(p), "reason": r} for p, r in scored.skipped]
        report["datasets"][name] = metrics
    atomic_write_json(out_dir / "evaluation.json", report)
    return report
