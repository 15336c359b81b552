"""Face detection (MTCNN from facenet-pytorch) and square face crops with a margin.

The MTCNN weights ship inside the facenet-pytorch wheel, so nothing downloads. Detection runs
on a downscaled copy, and every box and landmark is mapped back to the pixels of the original
image. The copy is no larger than `detect_max_side` (a 4000-px photo then costs about what a
1000-px one does), and no larger than needed to find the faces worth scoring: MTCNN's
smallest searched face is 20 px, so the copy is scaled until 3/4 of `min_face_size` is 20 px
(a 250-px photo is searched at 167 px for the default 40-px minimum). Most of MTCNN's cost is
its first network over an image pyramid, and the resampling of that pyramid, which grow with
the area searched. So a large photo is first searched coarsely (a 320-px copy); only when the
faces found there leave room for a face worth keeping that the coarse search could not see is
it searched again at the full detail (see `FaceDetector.detect_batch`). An image in which no
face was found on a smaller copy is searched once more at full size: a face that fills a tight
crop can escape MTCNN on the copy and not on the original.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as facenet_detect_face
from torch import nn

from fakescope.batching import bucket_size, pad_batch

# MTCNN's own default for the smallest face it searches for; below about 20 px (in the image
# it runs on) its first network sees too little of a face to be reliable.
_SMALLEST_SEARCHED_FACE = 20
# Faces down to this share of `min_face_size` are still found (and reported as skipped, too
# small), so a face just under the limit is named rather than silently missed.
_SEARCH_SHARE = 0.75
# Images per MTCNN call: bounds the memory of one batch of 1024-px images and their pyramid.
_MAX_BATCH = 8
# The coarse first search of a large photo runs on a copy this long (px, longer side).
_COARSE_SIDE = 320
# The coarse search settles a photo when faces of relative_min x the largest face's side are at
# least this many times its smallest searched face: MTCNN is less sure near its 20-px limit.
_COARSE_MARGIN = 1.5
# facenet-pytorch feeds its second and third networks at most this many candidate boxes at once.
_MAX_CANDIDATES = 512


def _nms_each_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_inds: torch.Tensor,
    threshold: float,
    method: str,
) -> torch.Tensor:
    """MTCNN's last non-maximum suppression, image by image; ties in score go to the earlier
    candidate. Indices of the boxes kept, each image's best first.

    facenet-pytorch's own ranks the candidates of every image in the batch together, with an
    unstable sort. Where a face fills the frame many boxes score exactly 1.0, and which of them
    survived then depended on the other images of the batch: one 224-px DFDC frame's face box
    moved by up to 69 px between a search alone and one among 15 other frames. An image's
    candidates arrive in the same order whatever the batch, so a stable ranking within each
    image makes its faces its own.
    """
    boxes_np, scores_np, inds = boxes.cpu().numpy(), scores.cpu().numpy(), image_inds.cpu().numpy()
    kept: list[int] = []
    for image in np.unique(inds):
        members = np.flatnonzero(inds == image)
        kept.extend(members[_nms(boxes_np[members], scores_np[members], threshold, method)])
    return torch.as_tensor(np.array(kept, dtype=np.int64), device=boxes.device)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Greedy NMS as MTCNN defines it (inclusive pixel sides; "Min": overlap over the smaller
    box, else over the union), in a stable order of descending score."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(
            0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1
        )
        inter = width * height
        union_or_min = (
            np.minimum(area[best], area[rest])
            if method == "Min"
            else area[best] + area[rest] - inter
        )
        order = rest[inter / union_or_min <= threshold]
    return np.array(kept, dtype=np.int64)


# Installed for the whole process: facenet-pytorch looks the function up in its module.
facenet_detect_face.batched_nms_numpy = _nms_each_image


@dataclass
class Face:
    """One detected face, in the pixels of the original image."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2; may reach a little past the edge
    score: float  # MTCNN's final-stage probability that this is a face
    landmarks: np.ndarray | None  # (5, 2) x, y: eyes, nose, mouth corners (subject's left first)

    @property
    def side(self) -> float:
        """The longer side of the box: the face's size for filtering and sorting."""
        x1, y1, x2, y2 = self.box
        return max(x2 - x1, y2 - y1)


@dataclass
class FaceDetection:
    """The faces worth scoring (largest first) and those left out, each with the reason."""

    faces: list[Face]
    skipped: list[tuple[Face, str]]


class FaceDetector:
    """MTCNN face detector with size and score filters.

    `score_threshold` defaults to 0.9: MTCNN's last stage already rejects below 0.7, and the
    band 0.7-0.9 holds mostly textures and half faces. A stricter threshold (0.98 or so) would
    start to drop the blurred or warped faces that deepfakes produce, so a fake video could
    look faceless; 0.9 is also facenet-pytorch's own threshold for choosing a face.

    Faces smaller than `min_face_size` pixels (original image) or than `relative_min` times the
    largest face's side go to `FaceDetection.skipped` (background people, faces on posters).
    Faces down to 3/4 of `min_face_size` are searched, so faces a little under it are reported
    as skipped rather than silently missed; smaller ones, and faces under 20 px of the
    detection image (78 px of a 4000-px photo), are not found at all. A large photo settled by
    the coarse search (see `detect_batch`) lists only the skipped faces that search could see.

    `detect` and `detect_batch` keep no state between calls and the networks are only read,
    so one detector may be shared by the threads of a producer pool; give each process its
    own detector.
    """

    def __init__(
        self,
        min_face_size: int = 40,
        relative_min: float = 0.5,
        detect_max_side: int = 1024,
        score_threshold: float = 0.9,
        device: str = "cpu",
    ) -> None:
        if min_face_size <= 0:
            raise ValueError(f"min_face_size must be positive, got {min_face_size}")
        if not 0.0 <= relative_min <= 1.0:
            raise ValueError(f"relative_min must be in [0, 1], got {relative_min}")
        if detect_max_side < _SMALLEST_SEARCHED_FACE:
            raise ValueError(
                f"detect_max_side must be at least {_SMALLEST_SEARCHED_FACE}, got {detect_max_side}"
            )
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.min_face_size = min_face_size
        self.relative_min = relative_min
        self.detect_max_side = detect_max_side
        self.score_threshold = score_threshold
        self.device = torch.device(device)
        # Channels-last: MTCNN's images arrive as NHWC views, and PyTorch's NCHW max-pooling on
        # the CPU was a third of its time; in NHWC the same boxes come out (to 1e-4 px) about
        # 2.4x faster (35 -> 15 ms per 250-px photo on one thread, measured here).
        self._mtcnn = (
            MTCNN(min_face_size=_SMALLEST_SEARCHED_FACE, keep_all=True, device=self.device)
            .eval()
            .to(memory_format=torch.channels_last)
        )
        # The refinement networks see as many boxes as the first network proposed: any count
        # up to 512, each a new shape for PyTorch's kernel caches (see fakescope.batching).
        self._mtcnn.rnet = _BucketedBatches(self._mtcnn.rnet, _MAX_CANDIDATES)
        self._mtcnn.onet = _BucketedBatches(self._mtcnn.onet, _MAX_CANDIDATES)

    def detect(self, image: np.ndarray) -> FaceDetection:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[FaceDetection]:
        """Detect faces in each image (HxWx3 uint8 RGB).

        A photo larger than the coarse copy (320 px) is searched there first. That search
        settles it when every face worth keeping, one of at least `relative_min` times the
        largest face found, is big enough for the coarse copy to show it (1.5 x MTCNN's 20 px);
        otherwise, and for smaller photos, the search runs on the copy scaled to the smallest
        face worth finding. A portrait photo then costs a search of 320 px, not of 683. Faces
        under `relative_min` times the largest are skipped either way, but after a settled
        coarse search only those the coarse copy shows are listed among the skipped. An image
        with no face to keep after a search on a smaller copy than `detect_max_side` allows is
        searched again at that largest scale (a face that overflows a tight crop, as in
        dfdc-faces' 224-px frames, can escape the 149-px copy; docs/model-card.md).
        """
        for position, image in enumerate(images):
            _check_image(image, position)
        # The largest scale searched is the image itself, or its copy of `detect_max_side`; the
        # finest needed puts MTCNN's smallest face (20 px) at 3/4 of `min_face_size`.
        full = [min(1.0, self.detect_max_side / max(image.shape[:2])) for image in images]
        needed = _SMALLEST_SEARCHED_FACE / (_SEARCH_SHARE * self.min_face_size)
        fine = [min(scale, needed) for scale in full]
        coarse = [
            min(scale, _COARSE_SIDE / max(image.shape[:2])) for image, scale in zip(images, fine)
        ]
        found: list[list[Face] | None] = [None] * len(images)
        large = [i for i in range(len(images)) if coarse[i] < fine[i]]
        for i, faces in zip(
            large, self._search([images[i] for i in large], [coarse[i] for i in large])
        ):
            if self._settles(faces, coarse[i]):
                found[i] = faces
        rest = [i for i in range(len(images)) if found[i] is None]
        for i, faces in zip(rest, self._search([images[i] for i in rest], [fine[i] for i in rest])):
            found[i] = faces
        detections = [self._filter(faces) for faces in found]
        faceless = [i for i, seen in enumerate(detections) if not seen.faces and fine[i] < full[i]]
        for i, faces in zip(
            faceless, self._search([images[i] for i in faceless], [full[i] for i in faceless])
        ):
            detections[i] = self._filter(faces)
        return detections

    def _settles(self, faces: list[Face], scale: float) -> bool:
        """Whether a search at `scale` could see every face `_filter` would keep beside these."""
        sides = [
            f.side
            for f in faces
            if f.score >= self.score_threshold and f.side >= self.min_face_size
        ]
        reach = _SMALLEST_SEARCHED_FACE / scale  # the smallest face found, in original pixels
        return bool(sides) and self.relative_min * max(sides) >= _COARSE_MARGIN * reach

    def _search(self, images: list[np.ndarray], scales: list[float]) -> list[list[Face]]:
        """MTCNN's faces in each image, searched on a copy resized by its scale.

        MTCNN batches only images of one shape, so the copies that share a shape (frames of
        one video, a data set of equal-sized photos) run together, `_MAX_BATCH` at a time.
        """
        copies = [_resized(image, scale) for image, scale in zip(images, scales)]
        groups: dict[tuple[int, int], list[int]] = {}
        for position, copy in enumerate(copies):
            groups.setdefault(copy.shape[:2], []).append(position)
        found: dict[int, list[Face]] = {}
        for shape, positions in groups.items():
            for start in range(0, len(positions), _MAX_BATCH):
                chunk = positions[start : start + _MAX_BATCH]
                raw = self._run_mtcnn(np.stack([copies[p] for p in chunk]))
                for position, (boxes, scores, points) in zip(chunk, raw):
                    found[position] = _to_original(
                        boxes, scores, points, shape, images[position].shape[:2]
                    )
        return [found[position] for position in range(len(images))]

    def _run_mtcnn(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Boxes (N, 4), scores (N,) and landmarks (N, 5, 2) per image of an equal-shape batch."""
        n, height, width = batch.shape[:3]
        empty = (np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        if min(height, width) < _SMALLEST_SEARCHED_FACE:
            # MTCNN builds an empty pyramid and fails on images smaller than a searched face.
            return [empty] * n
        boxes, scores, points = self._mtcnn.detect(batch, landmarks=True)
        out = []
        for image_boxes, image_scores, image_points in zip(boxes, scores, points):
            if image_boxes is None:
                out.append(empty)
            else:
                out.append(
                    (
                        np.asarray(image_boxes, dtype=np.float64),
                        np.asarray(image_scores, dtype=np.float64),
                        np.asarray(image_points, dtype=np.float64),
                    )
                )
        return out

    def _filter(self, faces: list[Face]) -> FaceDetection:
        skipped: list[tuple[Face, str]] = []
        kept: list[Face] = []
        for face in faces:
            if face.score < self.score_threshold:
                reason = f"score {face.score:.2f} below threshold {self.score_threshold:.2f}"
                skipped.append((face, reason))
            elif face.side < self.min_face_size:
                reason = f"{face.side:.0f} px, below minimum size {self.min_face_size} px"
                skipped.append((face, reason))
            else:
                kept.append(face)
        if kept:
            largest = max(face.side for face in kept)
            limit = self.relative_min * largest
            for face in [f for f in kept if f.side < limit]:
                reason = (
                    f"{face.side:.0f} px, smaller than {self.relative_min:g} x the largest "
                    f"face ({largest:.0f} px)"
                )
                skipped.append((face, reason))
            kept = [face for face in kept if face.side >= limit]
        kept.sort(key=lambda face: face.side, reverse=True)
        skipped.sort(key=lambda item: item[0].side, reverse=True)
        return FaceDetection(faces=kept, skipped=skipped)


class _BucketedBatches(nn.Module):
    """Runs `network` on its batch zero-padded to a bucketed size; returns the real rows only."""

    def __init__(self, network: nn.Module, largest: int):
        super().__init__()
        self.network = network
        self.largest = largest

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        count = len(batch)
        outputs = self.network(pad_batch(batch, bucket_size(count, self.largest)))
        return tuple(output[:count] for output in outputs)


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # OpenCV refuses views with negative strides (a flipped array).
    return cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)


def _check_image(image: np.ndarray, position: int) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"image {position}: expected an HxWx3 RGB array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image {position}: expected dtype uint8, got {image.dtype}")


def _to_original(
    boxes: np.ndarray,
    scores: np.ndarray,
    points: np.ndarray,
    detected_shape: tuple[int, int],
    original_shape: tuple[int, int],
) -> list[Face]:
    """Faces found on the downscaled copy, in the original image's pixels."""
    scale_y = original_shape[0] / detected_shape[0]
    scale_x = original_shape[1] / detected_shape[1]
    box_scale = np.array([scale_x, scale_y, scale_x, scale_y])
    faces = []
    for box, score, landmarks in zip(boxes, scores, points):
        x1, y1, x2, y2 = (float(v) for v in box * box_scale)
        faces.append(
            Face(
                box=(x1, y1, x2, y2),
                score=float(score),
                landmarks=(landmarks * [scale_x, scale_y]).astype(np.float32),
            )
        )
    return faces


def crop_square(box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int]:
    """(left, top, side) of the square that `crop_face` cuts for `box`, in image pixels."""
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"box {box} is empty (needs x2 > x1 and y2 > y1)")
    side = max(1, _round_half_up(max(x2 - x1, y2 - y1) * (1.0 + margin)))
    left = _round_half_up((x1 + x2) / 2 - side / 2)
    top = _round_half_up((y1 + y2) / 2 - side / 2)
    return left, top, side


def crop_face(
    image: np.ndarray,
    box: tuple[float, float, float, float],
    margin: float = 0.3,
    out_size: int | None = None,
) -> np.ndarray:
    """A square crop centred on `box`, of side max(w, h) * (1 + margin), resized to `out_size`.

    Where the square leaves the image it is padded with black, not reflected: mirrored skin
    would add seams a detector could read as blending artefacts, while a black border looks
    the same on real and fake faces.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if out_size is not None and out_size <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    height, width = image.shape[:2]
    left, top, side = crop_square(box, margin)

    crop = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    # The part of the square that lies inside the image, in image and in crop coordinates.
    src_x1, src_y1 = max(left, 0), max(top, 0)
    src_x2, src_y2 = min(left + side, width), min(top + side, height)
    if src_x2 > src_x1 and src_y2 > src_y1:
        crop[src_y1 - top : src_y2 - top, src_x1 - left : src_x2 - left] = image[
            src_y1:src_y2, src_x1:src_x2
        ]

    if out_size is None or out_size == side:
        return crop
    interpolation = cv2.INTER_AREA if side > out_size else cv2.INTER_CUBIC
    return cv2.resize(crop, (out_size, out_size), interpolation=interpolation)


def _round_half_up(value: float) -> int:
    # Python's round() goes to even, which would shift crops by a pixel depending on parity.
    return math.floor(value + 0.5)
