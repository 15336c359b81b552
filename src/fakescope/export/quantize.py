"""Static INT8 quantisation of an exported detector (ONNX Runtime, QDQ, per-channel weights).

Activation ranges come from calibration crops preprocessed exactly as the Detector does it:
faces cut with the card's margin when the card crops faces (the whole image when none is
found), whole images otherwise, then the card's resize and normalisation.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from fakescope.data.augment import build_transform
from fakescope.data.discovery import discover_folder, find_images, has_layout
from fakescope.data.toy import make_toy_dataset
from fakescope.export.onnx import ExportError, write_onnx
from fakescope.faces import FaceDetector, crop_face
from fakescope.io.images import ImageDecodeError, decode_image
from fakescope.models.card import DetectorCard

log = logging.getLogger(__name__)

# Crops per calibration forward: bounds the memory of the collected activations per step.
_CALIBRATION_BATCH = 8
# Faces are detected a few images at a time, like the Detector does.
_FACE_BATCH = 8


@dataclass(frozen=True)
class CropSets:
    """Normalised (N, 3, S, S) batches: one to calibrate with, one held out for the parity check."""

    calibration: np.ndarray
    held_out: np.ndarray
    source: str


class CropReader(CalibrationDataReader):
    """Feeds normalised crops to the calibrator, `batch_size` at a time."""

    def __init__(self, input_name: str, crops: np.ndarray, batch_size: int = _CALIBRATION_BATCH):
        self._batches = iter(
            [{input_name: crops[i : i + batch_size]} for i in range(0, len(crops), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def crop_sets(
    card: DetectorCard,
    calibration_dirs: Sequence[Path],
    count: int,
    seed: int = 0,
    checkpoint: Path | None = None,
    calibrate: bool = True,
) -> CropSets:
    """Calibration and held-out crops from folders of images, or from generated toy faces.

    Several folders are drawn from evenly (their shuffled files interleaved): activation ranges
    fitted to one data set's faces clip another's. Which files of a folder serve which end:
    `calibration_files` (checkpoint: the detector's, to find its run's split). `calibrate`
    False: no calibration crops (an fp32-only export checks parity and quantises nothing).
    """
    if count < 1:
        raise ValueError(f"the calibration set needs at least one crop, got count={count}")
    none = _no_crops(card)
    if not calibration_dirs:
        return CropSets(
            _toy_crops(card, count, seed) if calibrate else none,
            _toy_crops(card, count, seed + 1),
            f"generated toy faces (fakescope.data.toy, seeds {seed} and {seed + 1})",
        )
    pools = [calibration_files(folder, checkpoint) for folder in calibration_dirs]
    for calibration_pool, held_out_pool in pools:
        random.Random(seed).shuffle(calibration_pool)
        random.Random(seed).shuffle(held_out_pool)
    calibration = (
        _folder_crops(card, interleave([pool for pool, _ in pools]), count) if calibrate else none
    )
    held_out = _folder_crops(card, interleave([pool for _, pool in pools]), count)
    folders = ", ".join(str(folder) for folder in calibration_dirs)
    if (calibrate and len(calibration) == 0) or len(held_out) == 0:
        raise ExportError(
            f"{folders}: needs at least two readable images (one to calibrate, one to check)"
        )
    drawn = sum(len(a) + len(b) for a, b in pools)
    return CropSets(calibration, held_out, f"{folders} ({drawn} images, seed {seed})")


def calibration_files(
    folder: Path, checkpoint: Path | None = None
) -> tuple[list[Path], list[Path]]:
    """Files of one folder to calibrate with, and others to check parity on.

    A labelled data dir gives its train and its val split (the split of the checkpoint's run
    when it trained on the folder): its test split stays unseen until `fakescope evaluate`
    scores the INT8 model on it; a malformed one (say, a bad pairs.csv) is a DataError, not a
    plain folder. Any other folder of images is halved, file by file.
    """
    if not has_layout(folder):
        files = find_images(folder)
        return files[0::2], files[1::2]
    splits = discover_folder(folder, checkpoint, validate=False)
    return [sample.path for sample in splits.train], [sample.path for sample in splits.val]


def interleave(lists: Sequence[list]) -> list:
    """[a1, b1, a2, b2, a3, ...]: every prefix draws evenly from the lists still running."""
    longest = max((len(items) for items in lists), default=0)
    return [items[i] for i in range(longest) for items in lists if i < len(items)]


def _toy_crops(card: DetectorCard, count: int, seed: int) -> np.ndarray:
    transform = build_transform("none", card.input_size, card.mean, card.std, train=False)
    with tempfile.TemporaryDirectory(prefix="fakescope-calibration-") as folder:
        root = make_toy_dataset(
            Path(folder) / "toy",
            n_per_class=max(1, (count + 1) // 2),
            size=card.input_size,
            seed=seed,
        )
        images = [decode_image(path) for path in find_images(root)][:count]
    return np.stack([transform(image).numpy() for image in images])


def _folder_crops(card: DetectorCard, files: list[Path], count: int) -> np.ndarray:
    transform = build_transform("none", card.input_size, card.mean, card.std, train=False)
    faces = FaceDetector() if card.face_crop == "mtcnn" else None
    crops: list[np.ndarray] = []
    for start in range(0, len(files), _FACE_BATCH):
        images = []
        for path in files[start : start + _FACE_BATCH]:
            try:
                images.append(decode_image(path))
            except (ImageDecodeError, OSError) as error:
                log.warning("calibration: skipped %s (%s)", path, error)
        for image in _crop_images(images, card, faces):
            crops.append(transform(image).numpy())
            if len(crops) == count:
                return np.stack(crops)
    return np.stack(crops) if crops else _no_crops(card)


def _no_crops(card: DetectorCard) -> np.ndarray:
    return np.zeros((0, 3, card.input_size, card.input_size), np.float32)


def _crop_images(
    images: list[np.ndarray], card: DetectorCard, faces: FaceDetector | None
) -> list[np.ndarray]:
    """Each image's kept faces (the whole image when none is found), as the Detector cuts them."""
    if faces is None:
        return images
    crops = []
    for image, detection in zip(images, faces.detect_batch(images)):
        if not detection.faces:
            crops.append(image)
        crops.extend(
            crop_face(image, f.box, margin=card.face_margin, out_size=card.input_size)
            for f in detection.faces
        )
    return crops


def input_grid(card: DetectorCard) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of the input's quantiser: every 8-bit grey level stays (nearly) its own.

    A normalised input takes 256 values per channel, (p / 255 - mean) / std. Calibrated min-max
    spans them with 255 steps; for a range symmetric about 0 (mean 0.5, std 0.5) that puts the
    zero point half-way between two integers, every value lands on a rounding tie, and rounding
    half to even merges the grey levels in pairs: the INT8 model would see a 7-bit image, and
    lose the faint blending edges it is meant to find. Spanning the range with 254 steps puts
    the zero point on an integer; only one pair of levels then shares a code. (With per-channel
    means and stds, as ImageNet's, one per-tensor grid cannot fit every channel exactly.)
    """
    low = min(-m / s for m, s in zip(card.mean, card.std))
    high = max((1 - m) / s for m, s in zip(card.mean, card.std))
    scale = (high - low) / 254
    return np.array(scale, np.float32), np.array(round(-low / scale), np.uint8)


def quantize_int8(
    fp32_path: Path, out_path: Path, calibration: np.ndarray, card: DetectorCard, metadata: dict
) -> Path:
    """Write `out_path`: static INT8 (QDQ, per-channel weights) of the fp32 ONNX at `fp32_path`.

    Activations are unsigned and weights signed (U8S8): the fast path of ONNX Runtime's x86
    kernels, exact on CPUs with VNNI; on x86 CPUs without it those kernels saturate, so
    `OnnxBackend` runs the file with the runtime's exact u8 x u8 kernels there. The input's
    quantiser is set from the card (`input_grid`), not calibrated.
    """
    if len(calibration) == 0:
        raise ExportError(f"{fp32_path}: no calibration crops to quantise with")
    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    scale, zero_point = input_grid(card)
    with tempfile.TemporaryDirectory(prefix="fakescope-int8-") as folder:
        prepared = Path(folder) / "prepared.onnx"
        quantized = Path(folder) / "int8.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime recommends before quantising.
        quant_pre_process(str(fp32_path), str(prepared))
        quantize_static(
            str(prepared),
            str(quantized),
            CropReader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            extra_options={
                "TensorQuantOverrides": {input_name: [{"scale": scale, "zero_point": zero_point}]}
            },
        )
        return write_onnx(onnx.load(str(quantized)), {**metadata, "precision": "int8"}, out_path)
