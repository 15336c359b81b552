"""How a detector's AUC moves when each face is scored as several framings (cuts with other
margins, or shifted, each with its mirror image) instead of the card's one: the experiment that
chose the default's `extra_margins` (docs/model-history.md).

The images are those of an `evaluate` run (its predictions.csv per data set, e.g. of
`--split val`). Each image's faces are found once; every view is scored by the weights with the
card's own views switched off; each set of views is then compared with the card's mirrored
margin-0.3 crop, image by image, with a paired 95 % bootstrap interval.

    .venv/bin/python scripts/framing_views.py src/fakescope/weights/default.safetensors \
        EVAL_DIR [--out views.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

import fakescope
from fakescope.evaluation.bootstrap import paired_auc_change
from fakescope.faces import crop_face
from fakescope.io.images import decode_image
from fakescope.models.scoring import probabilities

# A view: (margin, shift right, shift down), the shifts in shares of the face box.
VIEWS = {
    "m0.2": (0.2, 0.0, 0.0),
    "m0.25": (0.25, 0.0, 0.0),
    "m0.3": (0.3, 0.0, 0.0),
    "m0.35": (0.35, 0.0, 0.0),
    "m0.4": (0.4, 0.0, 0.0),
    "m0.3 right": (0.3, 0.05, 0.0),
    "m0.3 left": (0.3, -0.05, 0.0),
    "m0.3 down": (0.3, 0.0, 0.05),
    "m0.3 up": (0.3, 0.0, -0.05),
}
SETS = {
    "margin 0.3 alone (1)": ["m0.3"],
    "margins 0.2/0.3/0.4 (3)": ["m0.2", "m0.3", "m0.4"],
    "margins 0.2/0.3, mirrored (4)": ["m0.2", "m0.3", "+mirror"],
    "margins 0.2/0.3/0.4, mirrored (6)": ["m0.2", "m0.3", "m0.4", "+mirror"],
    "margins 0.2-0.4 by 0.05, mirrored (10)": ["m0.2", "m0.25", "m0.3", "m0.35", "m0.4", "+mirror"],
    "margin 0.3 shifted 5 %, mirrored (10)": [
        "m0.3",
        "m0.3 right",
        "m0.3 left",
        "m0.3 down",
        "m0.3 up",
        "+mirror",
    ],
    "margin 0.4 alone, mirrored (2)": ["m0.4", "+mirror"],
}
BASELINE = ["m0.3", "+mirror"]


def read_images(evaluation: Path) -> list[tuple[str, str, int]]:
    """(data set, file, label) for every image an `evaluate` run scored."""
    rows = []
    for predictions in sorted(evaluation.glob("*/predictions.csv")):
        with predictions.open(newline="") as f:
            dataset = predictions.parent.name
            rows += [(dataset, r["file"], int(r["label"] == "fake")) for r in csv.DictReader(f)]
    return rows


def view(image: np.ndarray, box, margin: float, dx: float, dy: float, size: int) -> np.ndarray:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    shifted = (x1 + dx * w, y1 + dy * h, x2 + dx * w, y2 + dy * h)
    return crop_face(image, shifted, margin=margin, out_size=size)


def score_views(detector, files: list[str], chunk: int = 32) -> tuple[dict, np.ndarray]:
    """Per view and its mirror ("<view> mirror"), one logit per face; and faces per image."""
    logits: dict[str, list] = {}
    faces_per_image = []
    size = detector.card.input_size
    for start in range(0, len(files), chunk):
        images = [decode_image(f) for f in files[start : start + chunk]]
        detections = detector.detect_faces(images)
        boxes = [[face.box for face in d.faces] if d and d.faces else [None] for d in detections]
        faces_per_image += [len(b) for b in boxes]
        for name, (margin, dx, dy) in VIEWS.items():
            crops = [
                image if box is None else view(image, box, margin, dx, dy, size)
                for image, image_boxes in zip(images, boxes)
                for box in image_boxes
            ]
            logits.setdefault(name, []).append(detector.crop_logits(crops))
            mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
            logits.setdefault(f"{name} mirror", []).append(detector.crop_logits(mirrored))
        print(f"{start + len(images)} / {len(files)} images", flush=True)
    return {k: np.concatenate(v) for k, v in logits.items()}, np.array(faces_per_image)


def image_scores(logits: dict, faces_per_image: np.ndarray, views: list[str]) -> np.ndarray:
    """P(fake) per image: the mean logit over a face's views, the image's most suspicious face."""
    names = [v for v in views if v != "+mirror"]
    if "+mirror" in views:
        names += [f"{v} mirror" for v in names]
    per_face = np.mean([logits[n] for n in names], axis=0)
    per_image = [chunk.max() for chunk in np.split(per_face, np.cumsum(faces_per_image)[:-1])]
    return probabilities(np.array(per_image), 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("evaluation", type=Path, help="an `evaluate` output dir")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    detector = fakescope.load(args.model, use_faces=True)
    detector.card = detector.card.with_updates(mirror_average=False, extra_margins=())
    rows = read_images(args.evaluation)
    logits, faces_per_image = score_views(detector, [file for _, file, _ in rows])
    datasets = np.array([d for d, _, _ in rows])
    labels = np.array([label for _, _, label in rows])
    baseline = image_scores(logits, faces_per_image, BASELINE)
    report = {}
    for dataset in sorted(set(datasets)):
        selected = datasets == dataset
        truth, before = labels[selected], baseline[selected]
        report[dataset] = {}
        for name, views in SETS.items():
            after = image_scores(logits, faces_per_image, views)[selected]
            report[dataset][name] = paired_auc_change(truth, before, after)
        print(dataset)
        for name, change in report[dataset].items():
            low, high = change["interval"]
            print(f"  {name:42s} {change['after']:.4f}  {change['value']:+.4f}", end=" ")
            print(f"({low:+.4f} to {high:+.4f})")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
