"""The Detector: decoded image -> faces -> one batched forward -> P(fake) per face, image, video.

Aggregation: a face gets P(fake) from the mean logit of its cuts (one per margin of the card,
each with its mirror image when the card says so); an image gets the maximum over its faces
(one faked face makes the image fake); a video gets the mean over the sampled frames with faces.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from fakescope.batching import BATCH_SIZE, bucket_size, pad_batch
from fakescope.data.augment import build_transform
from fakescope.faces import FaceDetection, FaceDetector, crop_face
from fakescope.inference.backends import Backend, TorchBackend
from fakescope.inference.explain import explain_crops, overlay_png_data_uri
from fakescope.inference.pipeline import ordered_prefetch
from fakescope.io.images import DEFAULT_MAX_PIXELS, decode_image
from fakescope.io.video import VideoFrame, read_video_frames
from fakescope.models.card import DetectorCard
from fakescope.models.scoring import fake_logit, probabilities

WHOLE_IMAGE = "whole-image"


class TorchModelRequiredError(RuntimeError):
    """Grad-CAM needs the PyTorch model, and this detector holds an exported (ONNX) model only."""


@dataclass
class PreparedImage:
    """One image ready for the model: its crops and what the face stage found."""

    size: tuple[int, int]  # (width, height)
    views: list[list[np.ndarray]]  # per face, its cuts: the card's face_margin, then extra_margins
    faces: list[dict]
    skipped_faces: list[dict]
    fallback: str | None

    @property
    def crops(self) -> list[np.ndarray]:
        """One crop per face, cut with the card's face_margin: what heat maps and overlays show."""
        return [cuts[0] for cuts in self.views]


@dataclass
class PreparedChunk:
    """A chunk of images after decoding and the face stage, waiting for the model."""

    names: list[str]
    images: dict[int, PreparedImage]  # by position in the chunk; unreadable ones are in errors
    errors: dict[int, str]
    timing: dict[str, float]  # ms per file: decode, faces


@dataclass
class PreparedVideo:
    """A video's sampled frames after the face stage, waiting for the model."""

    path: str
    sampled: list[VideoFrame]
    frames: list[PreparedImage]
    prepare_ms: float


class Detector:
    """A trained detector with its card: the object behind `fakescope.load()` and `scan`."""

    def __init__(
        self,
        model: nn.Module | None,
        card: DetectorCard,
        *,
        backend: Backend | None = None,
        source: str = "",
        use_faces: bool | None = None,
        face_detector: FaceDetector | None = None,
        threshold: float | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        if model is None and backend is None:
            raise ValueError("a Detector needs a PyTorch model, a backend, or both")
        self._model = model.eval() if model is not None else None
        # The backend runs every forward; the torch model, when present, also serves Grad-CAM.
        # fp32 by default: the scores then equal those `evaluate` and `calibrate` measured, so
        # the card's threshold means what it says. bf16 is a backend choice (TorchBackend).
        self.backend = backend if backend is not None else TorchBackend(model, precision="fp32")
        self.card = card
        self.source = source
        self.use_faces = card.face_crop == "mtcnn" if use_faces is None else use_faces
        self._face_detector = face_detector
        self._face_detector_lock = threading.Lock()
        self.threshold = card.threshold if threshold is None else threshold
        self.threshold_source = card.threshold_source if threshold is None else "override"
        self.max_pixels = max_pixels
        self.transform = build_transform("none", card.input_size, card.mean, card.std, train=False)

    @property
    def model(self) -> nn.Module:
        """The PyTorch model (for Grad-CAM); an ONNX-only detector has none."""
        if self._model is None:
            raise TorchModelRequiredError(
                f"{self.source or 'this detector'}: explanations (Grad-CAM) need the PyTorch "
                "model, and this detector runs an exported ONNX model only; load its .ckpt or "
                ".safetensors checkpoint to explain"
            )
        return self._model

    @property
    def face_detector(self) -> FaceDetector:
        with self._face_detector_lock:  # producer threads share one MTCNN
            if self._face_detector is None:  # MTCNN loads only when a scan needs faces
                self._face_detector = FaceDetector()
            return self._face_detector

    def describe(self) -> dict:
        return {
            "detector": self.card.name,
            "detector_version": self.card.version,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "temperature": self.card.temperature,
            "face_stage": "mtcnn" if self.use_faces else "none",
            "backend": self.backend.name,
        }

    # -- the model ---------------------------------------------------------------------------

    @torch.inference_mode()
    def crop_logits(self, crops: Sequence[np.ndarray], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Logit of P(fake) for each crop (RGB uint8), before temperature; with the card's
        `mirror_average`, the mean of the crop's and its mirror image's."""
        mirror = self.card.mirror_average
        # With mirrors, a forward holds half as many crops, each beside its mirror, so a chunk's
        # few crops and their mirrors still share one forward.
        step = max(1, batch_size // 2) if mirror else batch_size
        logits = []
        for start in range(0, len(crops), step):
            batch = torch.stack([self.transform(c) for c in crops[start : start + step]])
            if mirror:  # the transformed crop mirrored, as the heat maps do (explain_crops)
                batch = torch.cat([batch, batch.flip(-1)])
            # A chunk's last, smaller batch is padded to a few sizes (fakescope.batching).
            padded = pad_batch(batch, bucket_size(len(batch), batch_size))
            outputs = torch.from_numpy(self.backend.logits(padded)[: len(batch)])
            batch_logits = fake_logit(outputs, self.card).float().numpy()
            if mirror:
                half = len(batch_logits) // 2
                batch_logits = (batch_logits[:half] + batch_logits[half:]) / 2
            logits.append(batch_logits)
        return np.concatenate(logits) if logits else np.zeros(0, dtype=np.float32)

    def face_logits(
        self, views: Sequence[Sequence[np.ndarray]], batch_size: int = BATCH_SIZE
    ) -> np.ndarray:
        """Logit of P(fake) for each face, given its cuts (`PreparedImage.views`): the mean of
        the cuts' logits, before temperature. All the faces' cuts share forwards."""
        if not views:
            return np.zeros(0, dtype=np.float32)
        logits = self.crop_logits([cut for cuts in views for cut in cuts], batch_size)
        bounds = np.cumsum([len(cuts) for cuts in views])[:-1]
        return np.array([chunk.mean() for chunk in np.split(logits, bounds)], dtype=np.float32)

    def score_faces(
        self, views: Sequence[Sequence[np.ndarray]], batch_size: int = BATCH_SIZE
    ) -> np.ndarray:
        """P(fake) for each face, given its cuts, with the card's temperature."""
        return probabilities(self.face_logits(views, batch_size), self.card.temperature)

    def image_logits(self, images: list[np.ndarray], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Per image, the logit that `predict` thresholds (after temperature): the largest over
        its faces, or the whole image's when it has none. What evaluation and calibration score."""
        prepared = [self.prepare(image, d) for image, d in zip(images, self.detect_faces(images))]
        logits = self.face_logits([cuts for p in prepared for cuts in p.views], batch_size)
        bounds = np.cumsum([len(p.views) for p in prepared])[:-1]
        return np.array([chunk.max() for chunk in np.split(logits, bounds)], dtype=np.float32)

    # -- the face stage ----------------------------------------------------------------------

    def prepare(self, image: np.ndarray, detection: FaceDetection | None) -> PreparedImage:
        height, width = image.shape[:2]
        size = self.card.input_size
        if detection is None or not detection.faces:
            # The whole image goes through the same resize as whole-image training.
            return PreparedImage(
                size=(width, height),
                views=[[image]],
                faces=[],
                skipped_faces=_skipped(detection),
                fallback=WHOLE_IMAGE,
            )
        margins = (self.card.face_margin, *self.card.extra_margins)
        views, faces = [], []
        for face in detection.faces:
            views.append([crop_face(image, face.box, margin=m, out_size=size) for m in margins])
            faces.append(
                {"box": [round(v, 1) for v in face.box], "detection_score": round(face.score, 4)}
            )
        return PreparedImage((width, height), views, faces, _skipped(detection), fallback=None)

    def detect_faces(self, images: list[np.ndarray]) -> list[FaceDetection | None]:
        if not self.use_faces:
            return [None] * len(images)
        return self.face_detector.detect_batch(images)

    # -- images --------------------------------------------------------------------------------

    def predict(self, source: str | Path | np.ndarray, explain: bool = False) -> dict:
        """One image (a path or an RGB array) -> the result dict."""
        return self.predict_batch([source], explain=explain)[0]

    def predict_batch(
        self,
        sources: Iterable[str | Path | np.ndarray],
        batch_size: int = BATCH_SIZE,
        explain: bool = False,
    ) -> list[dict]:
        """Many images; faces from all of them share forwards of `batch_size` crops.

        A file that cannot be read gives {"file", "kind", "error"} in its place; the others go on.
        explain: add a Grad-CAM overlay (PNG data URI) per scored crop.
        """
        return list(self.iter_predict(sources, batch_size, explain))

    def iter_predict(
        self,
        sources: Iterable[str | Path | np.ndarray],
        batch_size: int = BATCH_SIZE,
        explain: bool = False,
        workers: int = 0,
    ) -> Iterator[dict]:
        """`predict_batch` as a stream: results come out chunk by chunk, in input order.

        workers: threads that decode and find the faces of the next chunks while the model
        scores this one (0: all in this thread). At most 2 x workers chunks wait in memory.
        """
        chunks = (partial(self.prepare_chunk, chunk) for chunk in _chunked(sources, batch_size))
        for prepared in ordered_prefetch(chunks, workers):
            yield from self.score_chunk(prepared, batch_size, explain)

    def _heatmaps(self, crops: list[np.ndarray], explain: bool) -> list[str | None]:
        if not explain:
            return [None] * len(crops)
        maps = explain_crops(self.model, self.card, crops, self.transform)
        return [overlay_png_data_uri(crop, heatmap) for crop, heatmap in zip(crops, maps)]

    def prepare_chunk(self, sources: list) -> PreparedChunk:
        """Decode a chunk of images and cut their faces: everything before the model."""
        started = time.perf_counter()
        images: list[np.ndarray | None] = []
        errors: dict[int, str] = {}
        for i, source in enumerate(sources):
            try:
                images.append(
                    source
                    if isinstance(source, np.ndarray)
                    else decode_image(source, self.max_pixels)
                )
            except (ValueError, OSError) as error:
                images.append(None)
                errors[i] = str(error)
        decoded = time.perf_counter()
        readable = [i for i, image in enumerate(images) if image is not None]
        detections = self.detect_faces([images[i] for i in readable])
        prepared = {i: self.prepare(images[i], d) for i, d in zip(readable, detections)}
        detected = time.perf_counter()
        timing = {
            "decode": (decoded - started) * 1000 / len(sources),
            "faces": (detected - decoded) * 1000 / max(len(readable), 1),
        }
        return PreparedChunk([_name(source) for source in sources], prepared, errors, timing)

    def score_chunk(
        self, chunk: PreparedChunk, batch_size: int = BATCH_SIZE, explain: bool = False
    ) -> list[dict]:
        """The model's half of `predict_batch`: one result per source of a prepared chunk."""
        started = time.perf_counter()
        scored = dict(
            zip(chunk.images, self._score_images(list(chunk.images.values()), batch_size, explain))
        )
        timing = {
            **chunk.timing,
            "model": (time.perf_counter() - started) * 1000 / max(len(chunk.images), 1),
        }
        results = []
        for i, name in enumerate(chunk.names):
            if i in chunk.errors:
                results.append({"file": name, "kind": "image", "error": chunk.errors[i]})
                continue
            crop_scores, crop_maps = scored[i]
            results.append(
                self._image_result(name, chunk.images[i], crop_scores, crop_maps, timing)
            )
        return results

    def _score_images(
        self, items: list[PreparedImage], batch_size: int, explain: bool
    ) -> list[tuple[list[float], list[str | None]]]:
        """Every face of `items` in shared forwards; per item its crop scores and heat maps,
        also written into its face dicts."""
        views = [cuts for item in items for cuts in item.views]
        scores = iter(self.score_faces(views, batch_size).tolist())
        heatmaps = iter(self._heatmaps([crop for item in items for crop in item.crops], explain))
        scored = []
        for item in items:
            crop_scores = [next(scores) for _ in item.views]
            crop_maps = [next(heatmaps) for _ in item.views]
            for face, score, heatmap in zip(item.faces, crop_scores, crop_maps):
                face["p_fake"] = round(score, 6)
                if heatmap:
                    face["heatmap"] = heatmap
            scored.append((crop_scores, crop_maps))
        return scored

    def _image_result(
        self,
        name: str,
        item: PreparedImage,
        crop_scores: list[float],
        crop_maps: list[str | None],
        timing: dict,
    ) -> dict:
        top = int(np.argmax(crop_scores))
        extra = {"heatmap": crop_maps[0]} if item.fallback and crop_maps[0] else {}
        return {
            **self.verdict(crop_scores[top]),
            "file": name,
            "kind": "image",
            "image_size": list(item.size),
            "faces": item.faces,
            "face": item.faces[top] if item.faces else None,
            "fallback": item.fallback,
            "skipped_faces": item.skipped_faces,
            **extra,
            **self.describe(),
            "timing_ms": {k: round(v, 2) for k, v in timing.items()},
        }

    def verdict(self, p_fake: float) -> dict:
        """The seed system's three keys: prediction, confidence, probabilities."""
        is_fake = p_fake >= self.threshold
        return {
            "prediction": "Fake" if is_fake else "Real",
            "confidence": round(p_fake if is_fake else 1.0 - p_fake, 6),
            "probabilities": {"real": round(1.0 - p_fake, 6), "fake": round(p_fake, 6)},
        }

    # -- videos --------------------------------------------------------------------------------

    def predict_video(
        self,
        path: str | Path,
        frames: int = 32,
        batch_size: int = BATCH_SIZE,
        explain: bool = False,
    ) -> dict:
        """Sample `frames` evenly; score faces per frame (max).

        The video is the mean over frames with faces.
        """
        return self.score_video(self.prepare_video(path, frames), batch_size, explain)

    def prepare_video(self, path: str | Path, frames: int = 32) -> PreparedVideo:
        """Decode the sampled frames and cut their faces (raises VideoDecodeError, OSError)."""
        started = time.perf_counter()
        sampled = read_video_frames(path, n_frames=frames)
        images = [f.image for f in sampled]
        prepared = [self.prepare(image, d) for image, d in zip(images, self.detect_faces(images))]
        return PreparedVideo(str(path), sampled, prepared, (time.perf_counter() - started) * 1000)

    def score_video(
        self, video: PreparedVideo, batch_size: int = BATCH_SIZE, explain: bool = False
    ) -> dict:
        started = time.perf_counter()
        timeline = []
        scored = self._score_images(video.frames, batch_size, explain)
        for frame, item, (crop_scores, _maps) in zip(video.sampled, video.frames, scored):
            timeline.append(
                {
                    "frame": frame.index,
                    "time_s": round(frame.time_s, 3),
                    "p_fake": round(max(crop_scores), 6),
                    "faces": item.faces,
                    "fallback": item.fallback,
                }
            )
        with_faces = [t for t in timeline if t["fallback"] is None]
        used = with_faces or timeline
        p_fake = float(np.mean([t["p_fake"] for t in used])) if used else 0.0
        drivers = sorted(used, key=lambda t: t["p_fake"], reverse=True)[:3]
        total_ms = video.prepare_ms + (time.perf_counter() - started) * 1000
        return {
            **self.verdict(p_fake),
            "file": video.path,
            "kind": "video",
            "frames_sampled": len(timeline),
            "frames_with_faces": len(with_faces),
            "fallback": None if with_faces else WHOLE_IMAGE,
            "timeline": timeline,
            "driving_frames": [t["frame"] for t in drivers],
            **self.describe(),
            "timing_ms": {"total": round(total_ms, 2)},
        }


def _skipped(detection: FaceDetection | None) -> list[dict]:
    if detection is None:
        return []
    return [
        {"box": [round(v, 1) for v in face.box], "reason": reason}
        for face, reason in detection.skipped
    ]


def _chunked(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _name(source) -> str:
    return "<array>" if isinstance(source, np.ndarray) else str(source)
