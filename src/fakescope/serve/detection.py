"""One request's files -> results, on a request thread: decode, faces, batched forward, assemble.

The results are the Python API's dicts (`Detector.predict_batch` / `predict_video`), with the
client's file names in "file". Forwards go through the shared `MicroBatcher`; Grad-CAM
(`explain`) needs gradients and hooks on the model, so it runs on the plain detector while
holding the batcher's model lock.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from fakescope.inference.detector import Detector
from fakescope.io.images import ImageDecodeError, ImageTooLargeError, decode_image
from fakescope.io.video import VideoDecodeError
from fakescope.serve.batching import MicroBatcher
from fakescope.serve.settings import ServeSettings
from fakescope.serve.uploads import Upload, UploadRejected
from fakescope.utils import atomic_write_bytes


class _BatchedDetector(Detector):
    """The loaded detector (same model, card, face detector) whose forward is the batcher's."""

    def __init__(self, detector: Detector, batcher: MicroBatcher, timeout_s: float):
        vars(self).update(vars(detector))
        self._batcher = batcher
        self._timeout_s = timeout_s

    def crop_logits(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        return self._batcher.score(crops, self._timeout_s)


class DetectionService:
    """The model and its batcher, loaded once; `detect` is called from many threads at once."""

    def __init__(self, detector: Detector, settings: ServeSettings):
        if detector.use_faces:
            detector.face_detector  # MTCNN loads now, once, rather than on the first request
        self.detector = detector
        self.settings = settings
        self.batcher = MicroBatcher(
            detector.crop_logits,
            max_batch_crops=settings.max_batch_crops,
            max_wait_ms=settings.max_wait_ms,
        )
        self._batched = _BatchedDetector(detector, self.batcher, settings.request_timeout_s)

    def start(self) -> None:
        self.batcher.start()

    def stop(self) -> None:
        self.batcher.stop()

    def detect(self, uploads: list[Upload], explain: bool, request_id: str) -> dict:
        started = time.perf_counter()
        if self.settings.keep_uploads is not None:
            self._keep(uploads, request_id)
        if uploads[0].file_type.kind == "video":
            results = [self._video(uploads[0], explain)]
        else:
            results = self._images(uploads, explain)
        return {
            "results": results,
            "processing_ms": round((time.perf_counter() - started) * 1000, 2),
        }

    def _images(self, uploads: list[Upload], explain: bool) -> list[dict]:
        images = [self._decode(upload) for upload in uploads]
        if explain:
            with self.batcher.model_lock:
                results = self.detector.predict_batch(
                    images, self.settings.max_batch_crops, explain=True
                )
        else:
            results = self._batched.predict_batch(images, self.settings.max_batch_crops)
        for result, upload in zip(results, uploads):
            result["file"] = upload.name
        return results

    def _decode(self, upload: Upload) -> np.ndarray:
        try:
            return decode_image(upload.data, self.settings.max_pixels)
        except ImageTooLargeError as error:
            raise UploadRejected(413, f"{upload.name}: {error.reason}") from None
        except ImageDecodeError as error:
            raise UploadRejected(422, f"{upload.name}: {error.reason}") from None

    def _video(self, upload: Upload, explain: bool) -> dict:
        frames, batch = self.settings.video_frames, self.settings.max_batch_crops
        with in_memory_path(upload.data) as path:
            try:
                self._check_frame_size(path, upload.name)
                if explain:
                    with self.batcher.model_lock:
                        result = self.detector.predict_video(path, frames, batch, explain=True)
                else:
                    result = self._batched.predict_video(path, frames, batch)
            except VideoDecodeError as error:
                raise UploadRejected(422, f"{upload.name}: {error.reason}") from None
        result["file"] = upload.name
        return result

    def _check_frame_size(self, path: Path, name: str) -> None:
        """Refuse frames above the pixel limit from the stream header, before any is decoded."""
        try:
            with av.open(str(path)) as container:
                streams = container.streams.video
                size = (
                    (streams[0].codec_context.width, streams[0].codec_context.height)
                    if streams
                    else (0, 0)
                )
        except av.FFmpegError as error:
            raise UploadRejected(
                422, f"{name}: cannot open as a video ({error.strerror or error})"
            ) from None
        if size[0] * size[1] > self.settings.max_pixels:
            raise UploadRejected(
                413,
                f"{name}: {size[0]}x{size[1]} frames exceed the limit of "
                f"{self.settings.max_pixels} pixels",
            )

    def _keep(self, uploads: list[Upload], request_id: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        for index, upload in enumerate(uploads):
            # The client's name is never part of the path.
            target = (
                self.settings.keep_uploads
                / f"{stamp}-{request_id}-{index}{upload.file_type.extension}"
            )
            atomic_write_bytes(target, upload.data)


@contextmanager
def in_memory_path(data: bytes) -> Iterator[Path]:
    """A path that reads `data`, for PyAV (which opens paths), without writing it to disk.

    Linux: an anonymous memory file (memfd), opened through /proc/self/fd. Elsewhere a
    temporary file, deleted when the request ends.
    """
    if not hasattr(os, "memfd_create"):
        with tempfile.TemporaryDirectory(prefix="fakescope-upload-") as folder:
            path = Path(folder, "upload")
            path.write_bytes(data)
            yield path
        return
    fd = os.memfd_create("fakescope-upload", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        yield Path(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
