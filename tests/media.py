"""Small media for tests: videos made from a list of frames, and a face stage that finds
faces where a test puts them."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from fakescope.faces import Face, FaceDetection


class FixedFaces:
    """A face stage that finds the same boxes in every image."""

    def __init__(self, *boxes):
        self.detection = FaceDetection([Face(box, 0.99, None) for box in boxes], [])

    def detect_batch(self, images):
        return [self.detection for _ in images]


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """An MPEG-4 video of `frames` (equal-sized RGB uint8 arrays)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
