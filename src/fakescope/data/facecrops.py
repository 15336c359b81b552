"""Face crops of a whole data set, cut once, the way `scan` cuts them.

Training on the crops that scanning will feed the detector keeps one preprocessing for both.
`extract_face_crops(SRC, OUT)` mirrors SRC's folders: each image becomes the crop of its
largest face (square, the card's margin, resized), saved as PNG so the crop adds no
compression history of its own. The five MTCNN landmarks of that face, in crop pixels, go to
`face_landmarks.json` (self-blending needs them). An image with no face is kept whole (resized),
as `scan` would score it, and listed. The image's other faces that `scan` also scores (often
people in the background, out of focus) are cut the same way under `other_faces/`, apart from
the crops so that the data set's files and splits stay as they were (see `load_other_faces`).
A `pairs.csv` at SRC's root is rewritten for the new names, and each paired fake that lines
up with its real gets a mask of where the two differ, cut as its crop was, under `face_masks/`
(the blend-mask loss reads them; see `pairmasks`).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from fakescope.data.discovery import PAIRS_FILE, DataError, find_images, pairs_from_csv
from fakescope.data.pairmasks import difference_mask, mask_name
from fakescope.faces import FaceDetector, crop_face, crop_square
from fakescope.io.images import ImageDecodeError, decode_image, encode_png
from fakescope.utils import atomic_write_bytes, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

LANDMARKS_FILE = "face_landmarks.json"
SUMMARY_FILE = "face_crops.json"
OTHER_FACES_DIR = "other_faces"


def crop_name(relative: Path) -> Path:
    """`real/abc.jpg` -> `real/abc.png`."""
    return relative.with_suffix(".png")


def other_face_name(crop: str, index: int) -> str:
    """Where the `index`-th other face (1: the second largest) of a crop's image is saved:
    `other_faces/real/abc.1.png`."""
    return f"{OTHER_FACES_DIR}/{crop.removesuffix('.png')}.{index}.png"


def _crop_landmarks(landmarks: np.ndarray, box, margin: float, size: int) -> list[list[float]]:
    left, top, side = crop_square(box, margin)
    scale = size / side
    return [
        [round(float(x - left) * scale, 2), round(float(y - top) * scale, 2)] for x, y in landmarks
    ]


Box = tuple[float, float, float, float]


def _cut(image: np.ndarray, box: Box | None, margin: float, size: int) -> np.ndarray:
    """The crop of `box`, or the whole image resized where no face was found."""
    if box is None:
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return crop_face(image, box, margin=margin, out_size=size)


def _write_difference_masks(
    src_root: Path, out_root: Path, boxes: dict[str, Box | None], margin: float, size: int
) -> dict[str, int]:
    """Masks of the paired fakes that line up with their reals, cut as the fakes were."""
    written = not_aligned = 0
    for real, fake in pairs_from_csv(src_root / PAIRS_FILE):
        name = crop_name(fake.relative_to(src_root)).as_posix()
        if name not in boxes:  # unreadable
            continue
        try:
            mask = difference_mask(decode_image(real), decode_image(fake))
        except (ImageDecodeError, FileNotFoundError):
            mask = None
        if mask is None:
            not_aligned += 1
            continue
        crop = _cut(mask, boxes[name], margin, size)
        atomic_write_bytes(
            out_root / mask_name(name), encode_png(np.round(crop * 255).astype(np.uint8))
        )
        written += 1
    return {"difference_masks": written, "pairs_without_mask": not_aligned}


def _rewrite_pairs(src_root: Path, out_root: Path) -> bool:
    pairs = src_root / PAIRS_FILE
    if not pairs.is_file():
        return False
    with pairs.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(
        [crop_name(Path(cell)).as_posix() if cell else cell for cell in row] for row in body
    )
    atomic_write_text(out_root / PAIRS_FILE, lines.getvalue())
    return True


def extract_face_crops(
    src_root: str | Path,
    out_root: str | Path,
    *,
    margin: float = 0.3,
    size: int = 256,
    detector: FaceDetector | None = None,
    batch_size: int = 16,
) -> dict:
    """Crop every image under `src_root` into `out_root`; returns (and writes) a summary."""
    src_root, out_root = Path(src_root).resolve(), Path(out_root).resolve()
    if out_root == src_root or src_root in out_root.parents:
        raise DataError(f"the crops folder {out_root} must not lie inside the source {src_root}")
    paths = find_images(src_root)
    if not paths:
        raise DataError(f"no images found under {src_root}")
    detector = detector or FaceDetector()
    started = time.perf_counter()
    landmarks: dict[str, list[list[float]]] = {}
    boxes: dict[str, Box | None] = {}  # how each crop was cut: its face's box, None if whole
    whole_images: list[str] = []
    unreadable: list[dict[str, str]] = []
    other_faces = 0

    def save(name: str, image: np.ndarray, box: Box | None, points: np.ndarray | None) -> None:
        """Write crop `name` of `image` (cut around `box`, whole if None) and note its landmarks."""
        if points is not None:
            landmarks[name] = _crop_landmarks(points, box, margin, size)
        atomic_write_bytes(out_root / name, encode_png(_cut(image, box, margin, size)))

    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = []
        for path in chunk:
            try:
                images.append(decode_image(path))
            except ImageDecodeError as error:
                unreadable.append({"file": str(path.relative_to(src_root)), "reason": error.reason})
                images.append(None)
        readable = [(p, i) for p, i in zip(chunk, images) if i is not None]
        detections = detector.detect_batch([i for _, i in readable])
        for (path, image), detection in zip(readable, detections):
            name = crop_name(path.relative_to(src_root)).as_posix()
            face = detection.faces[0] if detection.faces else None  # the largest
            boxes[name] = face.box if face else None
            if face is None:
                whole_images.append(name)
            save(name, image, boxes[name], face.landmarks if face else None)
            for index, other in enumerate(detection.faces[1:], start=1):
                save(other_face_name(name, index), image, other.box, other.landmarks)
                other_faces += 1
        logger.info("face crops: %d / %d", min(start + batch_size, len(paths)), len(paths))
    atomic_write_json(out_root / LANDMARKS_FILE, landmarks)
    pairs_rewritten = _rewrite_pairs(src_root, out_root)
    masks = {}
    if pairs_rewritten:
        masks = _write_difference_masks(src_root, out_root, boxes, margin, size)
    summary = {
        "source": str(src_root),
        "images": len(paths),
        "crops": len(paths) - len(unreadable),
        "margin": margin,
        "size": size,
        "no_face_whole_image": whole_images,
        "other_faces": other_faces,
        "unreadable": unreadable,
        "pairs_rewritten": pairs_rewritten,
        **masks,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(out_root / SUMMARY_FILE, summary)
    return summary


def load_crop_landmarks(out_root: str | Path) -> dict[Path, np.ndarray]:
    """The landmarks file of a crops folder as {resolved crop path: (5, 2) array}."""
    out_root = Path(out_root).resolve()
    raw = json.loads((out_root / LANDMARKS_FILE).read_text())
    return {out_root / name: np.asarray(points, dtype=np.float32) for name, points in raw.items()}


def load_other_faces(out_root: str | Path) -> dict[Path, list[Path]]:
    """{resolved crop path: the crops of its image's other faces} for a crops folder."""
    out_root = Path(out_root).resolve()
    summary = out_root / SUMMARY_FILE
    if summary.is_file() and "other_faces" not in json.loads(summary.read_text()):
        logger.warning(
            "%s was cut before other faces were kept: run fakescope faces again", out_root
        )
    others_root = out_root / OTHER_FACES_DIR
    found: dict[Path, list[Path]] = {}
    for path in sorted(others_root.rglob("*.png")):
        stem, _, _index = (
            path.relative_to(others_root).as_posix().removesuffix(".png").rpartition(".")
        )
        found.setdefault(out_root / f"{stem}.png", []).append(path)
    return found
