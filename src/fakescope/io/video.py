"""Evenly spaced frames from a video file, decoded with PyAV.

Frames are counted from the container's header when it has a count (MP4, MOV, AVI), else by
reading the packets without decoding them (MKV, WebM). Short videos are decoded from start to
end, keeping only the wanted frames; that pass also checks the count, and a wrong header is
corrected by sampling again from the frames that really decode. Long videos at a constant
frame rate seek to each wanted frame instead; any frame not found where the frame rate puts
it sends the read back to the full pass, so seeking only ever saves time.

Frames come back upright (the rotation that phones store beside the video is applied) as
HxWx3 uint8 RGB arrays. A file cut short gives the frames before the cut.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm"})

# Seek when wanted frames are at least this many frames apart. A seek decodes from the
# keyframe before its target, on average half a keyframe interval; 125 is half of x264's
# default interval of 250, the longest in common use, so seeking then decodes no more frames
# than the full pass would.
_SEEK_MIN_GAP = 125


class VideoDecodeError(ValueError):
    """A file that cannot be read as a video; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class VideoFrame:
    index: int  # position in presentation order, from 0
    time_s: float  # presentation time from the start of the stream
    image: np.ndarray  # HxWx3 uint8 RGB, upright


def sample_frame_indices(n_total: int, n: int) -> list[int]:
    """`n` indices spread evenly over `n_total` frames, each in the middle of its share.

    Frame i of n is floor((i + 0.5) * n_total / n): 10 frames, 2 wanted -> [2, 7]. All frames
    when n >= n_total.
    """
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if n >= n_total:
        return list(range(n_total))
    # Integer arithmetic: no float rounding at the edges of the shares.
    return [(2 * i + 1) * n_total // (2 * n) for i in range(n)]


def read_video_frames(path: str | Path, n_frames: int = 32) -> list[VideoFrame]:
    """`n_frames` evenly spaced frames (all of them in a shorter video), in order."""
    if n_frames <= 0:
        raise ValueError(f"n_frames must be positive, got {n_frames}")
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        count = stream.frames
        if count > 0 and count // n_frames >= _SEEK_MIN_GAP and _has_constant_rate(stream):
            wanted = sample_frame_indices(count, n_frames)
            frames = _read_by_seeking(container, stream, wanted, path)
            if frames is not None:
                return frames
    if count <= 0:
        count = _count_packets(path)

    frames, decoded = _read_sequentially(path, sample_frame_indices(count, n_frames))
    if decoded == 0:
        raise VideoDecodeError(path, "no frame could be decoded")
    if decoded != count:
        # The header or packet count was wrong: sample from the frames that really exist.
        frames, _ = _read_sequentially(path, sample_frame_indices(decoded, n_frames))
    return frames


def video_info(path: str | Path) -> dict:
    """frames, fps, duration (s), width, height (upright) and rotation (degrees, applied).

    `frames` is the header's count, or the number of packets where the header has none.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        first = _first_frame(container, stream, path)
        rate = stream.average_rate or stream.guessed_rate
        frames = stream.frames
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        else:
            duration = None
    if frames <= 0:
        frames = _count_packets(path)
    fps = float(rate) if rate else math.nan
    if duration is None:
        duration = frames / fps if rate else math.nan
    image = _upright_rgb(first)
    return {
        "frames": frames,
        "fps": fps,
        "duration": duration,
        "width": image.shape[1],
        "height": image.shape[0],
        "rotation": _quarter_turns(first) * 90,
    }


@contextmanager
def _open(path: Path) -> Iterator[av.container.InputContainer]:
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise VideoDecodeError(path, f"cannot open as a video ({_describe(error)})") from error
    with container:
        yield container


def _describe(error: av.FFmpegError) -> str:
    return error.strerror or str(error)


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise VideoDecodeError(path, "no video stream")
    return container.streams.video[0]


def _has_constant_rate(stream: av.VideoStream) -> bool:
    """Whether frame i is at time i / fps: the rates agree and the count fits the duration."""
    rate, time_base = stream.average_rate, stream.time_base
    if not (rate and time_base and stream.duration and rate == stream.base_rate):
        return False
    return abs(stream.duration * time_base * rate - stream.frames) <= 1


def _count_packets(path: Path) -> int:
    """Frames in the video stream, counted from its packets (one per frame) without decoding."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            # The demuxer ends with empty packets that only flush the decoder.
            return sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as error:
            raise VideoDecodeError(path, f"cannot read packets ({_describe(error)})") from error


def _read_sequentially(path: Path, wanted: list[int]) -> tuple[list[VideoFrame], int]:
    """Decode every frame, convert only the wanted ones; also return how many decoded."""
    wanted_set = set(wanted)
    frames: list[VideoFrame] = []
    decoded = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if index in wanted_set:
                    frames.append(_video_frame(frame, index, stream))
        except av.FFmpegError as error:
            reason = f"decoding failed after {decoded} frames ({_describe(error)})"
            raise VideoDecodeError(path, reason) from error
    return frames, decoded


def _read_by_seeking(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    wanted: list[int],
    path: Path,
) -> list[VideoFrame] | None:
    """Seek to each wanted frame by its time; None when a frame is not where it should be."""
    rate, time_base = stream.average_rate, stream.time_base
    start = stream.start_time or 0
    frames = []
    try:
        for index in wanted:
            # Seeking lands on the keyframe at or before the target; decode forward from it.
            container.seek(start + math.floor(index / (rate * time_base)), stream=stream)
            found = None
            for frame in container.decode(stream):
                if frame.pts is None:
                    return None
                position = round((frame.pts - start) * time_base * rate)
                if position >= index:
                    found = frame if position == index else None
                    break
            if found is None:
                return None
            frames.append(_video_frame(found, index, stream))
    except av.FFmpegError as error:
        raise VideoDecodeError(path, f"decoding failed ({_describe(error)})") from error
    return frames


def _first_frame(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> av.VideoFrame:
    try:
        frame = next(container.decode(stream), None)
    except av.FFmpegError as error:
        raise VideoDecodeError(path, f"decoding failed ({_describe(error)})") from error
    if frame is None:
        raise VideoDecodeError(path, "no frame could be decoded")
    return frame


def _video_frame(frame: av.VideoFrame, index: int, stream: av.VideoStream) -> VideoFrame:
    if frame.pts is not None and stream.time_base:
        time_s = float((frame.pts - (stream.start_time or 0)) * stream.time_base)
    elif stream.guessed_rate:
        time_s = index / float(stream.guessed_rate)
    else:
        time_s = math.nan
    return VideoFrame(index=index, time_s=time_s, image=_upright_rgb(frame))


def _quarter_turns(frame: av.VideoFrame) -> int:
    # FFmpeg gives the display rotation counter-clockwise in degrees, as np.rot90 turns.
    return round(frame.rotation / 90) % 4


def _upright_rgb(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
