"""Frame sampling on small videos written here with PyAV; each frame shows its own index."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fakescope.io import video
from fakescope.io.video import (
    VIDEO_EXTENSIONS,
    VideoDecodeError,
    VideoFrame,
    read_video_frames,
    sample_frame_indices,
    video_info,
)

WIDTH, HEIGHT, FPS = 64, 48, 25


def index_image(index: int) -> np.ndarray:
    """Left half: the index's high base-16 digit as a gray level; right half: the low digit.

    Levels 16 apart survive lossy coding of flat areas, for up to 256 frames.
    """
    image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    image[:, : WIDTH // 2] = 16 * (index // 16) + 8
    image[:, WIDTH // 2 :] = 16 * (index % 16) + 8
    return image


def read_index(image: np.ndarray) -> int:
    # Stay clear of the edge between the halves, which coding blurs.
    high = image[:, : WIDTH // 2 - 8].mean()
    low = image[:, WIDTH // 2 + 8 :].mean()
    return 16 * round((high - 8) / 16) + round((low - 8) / 16)


def write_video(
    path: Path,
    codec: str,
    n_frames: int = 60,
    gop_size: int | None = None,
    pts: list[int] | None = None,
    images: list[np.ndarray] | None = None,
    rotation: int | None = None,
) -> Path:
    """A WIDTHxHEIGHT video at FPS; `pts` (in 1/FPS) makes the frame rate variable."""
    images = images or [index_image(i) for i in range(n_frames)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if gop_size is not None:
            stream.gop_size = gop_size
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, FPS)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


# --- sample_frame_indices ----------------------------------------------------------------


@pytest.mark.parametrize(
    "n_total, n, expected",
    [
        (10, 2, [2, 7]),
        (60, 4, [7, 22, 37, 52]),
        (10, 3, [1, 5, 8]),
        (100, 1, [50]),
        (7, 7, [0, 1, 2, 3, 4, 5, 6]),
        (5, 32, [0, 1, 2, 3, 4]),
        (0, 4, []),
    ],
)
def test_sample_frame_indices(n_total, n, expected):
    assert sample_frame_indices(n_total, n) == expected


def test_sample_frame_indices_are_increasing_and_in_range():
    for n_total in range(1, 60):
        for n in range(1, n_total):
            indices = sample_frame_indices(n_total, n)
            assert len(indices) == n
            assert all(a < b for a, b in zip(indices, indices[1:]))
            assert 0 <= indices[0] and indices[-1] < n_total


@pytest.mark.parametrize("n_total, n", [(-1, 2), (10, 0)])
def test_sample_frame_indices_rejects_bad_counts(n_total, n):
    with pytest.raises(ValueError):
        sample_frame_indices(n_total, n)


# --- read_video_frames ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, codec",
    [
        ("clip.mp4", "mpeg4"),  # frame count in the header
        ("clip.mov", "libx264"),  # B-frames: decode order differs from presentation order
        ("clip.avi", "mpeg4"),
        ("clip.mkv", "libx264"),  # no count in the header: packets are counted
        ("clip.webm", "libvpx-vp9"),
    ],
)
def test_reads_the_evenly_spaced_frames(tmp_path, name, codec):
    path = write_video(tmp_path / name, codec)
    frames = read_video_frames(path, n_frames=4)
    assert [f.index for f in frames] == [7, 22, 37, 52]
    assert [read_index(f.image) for f in frames] == [7, 22, 37, 52]
    assert [f.time_s for f in frames] == pytest.approx([7 / FPS, 22 / FPS, 37 / FPS, 52 / FPS])
    for frame in frames:
        assert isinstance(frame, VideoFrame)
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.dtype == np.uint8


def test_asking_for_more_frames_than_exist_gives_all(tmp_path):
    path = write_video(tmp_path / "short.mp4", "libx264", n_frames=6)
    frames = read_video_frames(path, n_frames=32)
    assert [read_index(f.image) for f in frames] == list(range(6))


def test_long_video_seeks_and_matches_the_full_pass(tmp_path, monkeypatch):
    path = write_video(tmp_path / "long.mp4", "libx264", n_frames=200, gop_size=12)
    expected = sample_frame_indices(200, 5)
    full_pass = read_video_frames(path, n_frames=5)

    # A gap of 40 frames now counts as long; the full pass must not run at all.
    monkeypatch.setattr(video, "_SEEK_MIN_GAP", 10)
    monkeypatch.setattr(video, "_read_sequentially", pytest.fail)
    seeked = read_video_frames(path, n_frames=5)

    assert [f.index for f in seeked] == [f.index for f in full_pass] == expected
    assert [read_index(f.image) for f in seeked] == expected
    for a, b in zip(seeked, full_pass):
        assert a.time_s == pytest.approx(b.time_s)
        assert np.array_equal(a.image, b.image)


def test_variable_frame_rate_is_not_seeked(tmp_path, monkeypatch):
    # 30 frames at FPS, then 30 frames at half that rate.
    pts = list(range(30)) + [30 + 2 * i for i in range(30)]
    path = write_video(tmp_path / "vfr.mp4", "libx264", n_frames=60, pts=pts)
    monkeypatch.setattr(video, "_SEEK_MIN_GAP", 5)
    frames = read_video_frames(path, n_frames=4)
    assert [read_index(f.image) for f in frames] == [7, 22, 37, 52]
    assert [f.time_s for f in frames] == pytest.approx([pts[i] / FPS for i in (7, 22, 37, 52)])


def test_rotation_stored_beside_the_video_is_applied(tmp_path):
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    image[:16, :16] = 255  # a white block in the top-left corner
    path = write_video(tmp_path / "phone.mp4", "libx264", images=[image] * 3, rotation=90)

    upright = read_video_frames(path, n_frames=1)[0].image
    # A quarter turn counter-clockwise: the frame stands up and the block goes bottom-left.
    assert upright.shape == (WIDTH, HEIGHT, 3)
    assert upright[-12:, :12].min() > 200 and upright[:12, :12].max() < 50
    info = video_info(path)
    assert (info["width"], info["height"], info["rotation"]) == (HEIGHT, WIDTH, 90)


def test_video_info(tmp_path):
    for name, codec in [("clip.mp4", "mpeg4"), ("clip.mkv", "libx264")]:
        info = video_info(write_video(tmp_path / name, codec))
        assert info["frames"] == 60
        assert info["fps"] == pytest.approx(FPS)
        assert info["duration"] == pytest.approx(60 / FPS, abs=0.05)
        assert (info["width"], info["height"], info["rotation"]) == (WIDTH, HEIGHT, 0)


def test_file_cut_short_gives_the_frames_before_the_cut(tmp_path):
    full = write_video(tmp_path / "full.webm", "libvpx-vp9")
    cut = tmp_path / "cut.webm"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])
    frames = read_video_frames(cut, n_frames=4)
    indices = [read_index(f.image) for f in frames]
    assert len(frames) == 4 and indices == [f.index for f in frames]
    assert indices[-1] < 52  # the last quarter of the file is gone


@pytest.mark.parametrize("kind", ["garbage", "text", "truncated mp4", "missing", "directory"])
def test_unreadable_files_raise_with_path_and_reason(tmp_path, kind):
    path = tmp_path / "bad.mp4"
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    elif kind == "text":
        path.write_text("not a video\n" * 50)
    elif kind == "truncated mp4":
        # PyAV writes the MP4 index at the end, so the first half alone cannot be opened.
        data = write_video(tmp_path / "full.mp4", "mpeg4").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "directory":
        path.mkdir()
    for read in (read_video_frames, video_info):
        with pytest.raises(VideoDecodeError) as caught:
            read(path)
        assert caught.value.path == path
        assert str(path) in str(caught.value) and "cannot open as a video" in str(caught.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        silence = np.zeros((1, 800), np.int16)
        frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(VideoDecodeError, match="no video stream"):
        read_video_frames(path)


def test_rejects_a_non_positive_frame_count(tmp_path):
    with pytest.raises(ValueError, match="n_frames"):
        read_video_frames(tmp_path / "any.mp4", n_frames=0)


def test_video_extensions():
    assert VIDEO_EXTENSIONS == {".mp4", ".mov", ".avi", ".mkv", ".webm"}
