r"""Faces a detector flags at its own threshold in one split of a folder data set: each photo's
largest face apart from its other faces (mostly bystanders), real photos apart from fake ones.

The scan scores every face and reports the most suspicious, so a real photo is called fake
when anyone in it, in focus or not, is flagged; the model card counts these (how the sixth
default was chosen). The split is the one `fakescope evaluate --split` scores.

    .venv/bin/python scripts/other_faces_flagged.py src/fakescope/weights/default.safetensors \
        --data ../shared/data/faceswap-lfw --split val [--out flagged.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fakescope
from fakescope.data.discovery import discover_folder
from fakescope.evaluation.evaluate import SPLITS, select_split
from fakescope.utils import atomic_write_json


def box_area(face: dict) -> float:
    left, top, right, bottom = face["box"]
    return (right - left) * (bottom - top)


def count_flagged(results: list[dict], labels: list[int], threshold: float) -> dict[str, dict]:
    """{"real photos, main face": {"faces": n, "flagged": k}, ...} from `predict_batch` results
    (each face with its `p_fake`) and the photos' labels (1: fake)."""
    counts: dict[str, dict] = {}
    for result, label in zip(results, labels):
        faces = sorted(result.get("faces") or [], key=box_area, reverse=True)
        photo = "fake photos" if label == 1 else "real photos"
        for rank, face in enumerate(faces):
            group = counts.setdefault(
                f"{photo}, {'main face' if rank == 0 else 'other faces'}",
                {"faces": 0, "flagged": 0},
            )
            group["faces"] += 1
            group["flagged"] += int(face["p_fake"] >= threshold)
    return dict(sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="weights, an export or a checkpoint, as `fakescope.load`")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out and args.out.exists():
        parser.error(f"{args.out} already exists; choose another name")
    detector = fakescope.load(args.model)
    # A checkpoint of a run that trained on the folder brings the run's own split, as in evaluate.
    checkpoint = Path(args.model) if Path(args.model).is_file() else None
    samples = select_split(discover_folder(args.data, checkpoint), args.split)
    results = detector.predict_batch([sample.path for sample in samples])
    counts = count_flagged(results, [sample.label for sample in samples], detector.threshold)
    for group, numbers in counts.items():
        print(f"{group:28s} {numbers['flagged']:4d} of {numbers['faces']:4d} flagged")
    if args.out:
        run = {"model": args.model, "data": str(args.data), "split": args.split}
        atomic_write_json(args.out, {**run, "threshold": detector.threshold, "groups": counts})


if __name__ == "__main__":
    main()
