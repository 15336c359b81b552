"""Safe image decoding: every odd file a data set or a user can hand us."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakescope.io.images import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    ImageTooLargeError,
    check_image,
    decode_image,
    has_image_extension,
)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _gradient_rgb(height: int = 24, width: int = 32) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 9 % 256, (x + y) * 3 % 256], axis=2).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with no pixel data: costs a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous


def test_rgb_png_round_trips_exactly(tmp_path: Path) -> None:
    pixels = _gradient_rgb()
    path = tmp_path / "a.png"
    path.write_bytes(_encode(Image.fromarray(pixels), "PNG"))
    np.testing.assert_array_equal(decode_image(path), pixels)
    np.testing.assert_array_equal(decode_image(str(path)), pixels)
    np.testing.assert_array_equal(decode_image(path.read_bytes()), pixels)


def test_jpeg_decodes_close_to_the_original() -> None:
    pixels = _gradient_rgb()
    decoded = decode_image(_encode(Image.fromarray(pixels), "JPEG", quality=95))
    _assert_rgb(decoded, 24, 32)
    assert np.abs(decoded.astype(int) - pixels).mean() < 6


def test_sixteen_bit_png_is_scaled_to_eight_bits() -> None:
    values = np.array([[0, 257, 65535], [32896, 1000, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    decoded = decode_image(_encode(image, "PNG"))
    _assert_rgb(decoded, 2, 3)
    np.testing.assert_array_equal(decoded[:, :, 0], [[0, 1, 255], [128, 4, 255]])
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])


def test_thirty_two_bit_and_float_tiffs_are_scaled() -> None:
    as_int = Image.fromarray(np.array([[0, 65535]], dtype=np.int32))
    assert as_int.mode == "I"
    np.testing.assert_array_equal(decode_image(_encode(as_int, "TIFF"))[0, :, 1], [0, 255])
    normalised = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert normalised.mode == "F"
    np.testing.assert_array_equal(decode_image(_encode(normalised, "TIFF"))[0, :, 0], [0, 128, 255])


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(_encode(cmyk, "JPEG", quality=95))
    _assert_rgb(decoded, 8, 16)
    red, green, blue = decoded.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_grayscale_and_palette_become_rgb() -> None:
    gray = decode_image(_encode(Image.new("L", (5, 4), 77), "PNG"))
    _assert_rgb(gray, 4, 5)
    assert (gray == 77).all()
    palette = Image.fromarray(_gradient_rgb()).convert(
        "P", palette=Image.Palette.ADAPTIVE, colors=8
    )
    _assert_rgb(decode_image(_encode(palette, "PNG")), 24, 32)


def test_alpha_is_composited_on_white() -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)  # transparent: white
    rgba[1, :] = (0, 0, 0, 128)  # half transparent black: mid grey
    decoded = decode_image(_encode(Image.fromarray(rgba, mode="RGBA"), "PNG"))
    _assert_rgb(decoded, 2, 2)
    np.testing.assert_array_equal(decoded[0, 0], (10, 20, 30))
    np.testing.assert_array_equal(decoded[0, 1], (255, 255, 255))
    assert 120 <= decoded[1, 0, 0] <= 130


def test_exif_orientation_is_applied() -> None:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = _encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data)
    _assert_rgb(decoded, 40, 20)  # portrait once rotated
    top, bottom = decoded[5, 10], decoded[35, 10]
    assert top[0] > 200 and top[2] < 60  # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode_image(data)
    _assert_rgb(decoded, 6, 8)
    assert decoded[..., 0].min() > 200 and decoded[..., 1].max() < 60


def test_animated_webp_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((0, 0, 255), (255, 255, 0))]
    data = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    decoded = decode_image(data)
    assert decoded[..., 2].min() > 200 and decoded[..., 0].max() < 60


def test_content_decides_not_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(_encode(Image.fromarray(_gradient_rgb()), "PNG"))
    np.testing.assert_array_equal(decode_image(path), _gradient_rgb())


def test_huge_header_is_refused_before_decoding() -> None:
    data = _png_header_only(12000, 12000)
    assert len(data) < 100
    with pytest.raises(ImageTooLargeError, match="12000x12000"):
        decode_image(data)
    # Pillow's own (much higher) bomb limit is reported the same way.
    with pytest.raises(ImageTooLargeError):
        decode_image(_png_header_only(60000, 60000), max_pixels=10**12)


def test_max_pixels_is_respected() -> None:
    data = _encode(Image.fromarray(_gradient_rgb()), "PNG")
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 500"):
        decode_image(data, max_pixels=500)
    assert decode_image(data, max_pixels=24 * 32).shape == (24, 32, 3)


def test_truncated_jpeg_is_an_error_naming_the_path(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noisy), "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageDecodeError, match="truncated") as caught:
        decode_image(path)
    assert str(path) in str(caught.value)
    assert caught.value.source == str(path)


def test_truncated_png_is_an_error() -> None:
    data = _encode(Image.fromarray(_gradient_rgb()), "PNG")
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty"),
        ("notes.jpg", b"this is a text file, not a photo\n", "not an image"),
        ("page.png", b"<html><body>404</body></html>", "not an image"),
        ("figure.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not an image"),
    ],
)
def test_files_that_are_not_images(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason) as caught:
        decode_image(path)
    assert name in str(caught.value)


def test_missing_file_is_a_decode_error(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(tmp_path / "gone.png")


def test_decode_errors_are_value_errors() -> None:
    assert issubclass(ImageTooLargeError, ImageDecodeError)
    assert issubclass(ImageDecodeError, ValueError)


def test_image_extensions_are_case_insensitive() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"} == IMAGE_EXTENSIONS
    assert has_image_extension("A/B/photo.JPG")
    assert has_image_extension("x.TiFf")
    assert not has_image_extension("clip.mp4")
    assert not has_image_extension("README")


# --- check_image: the cheap structural check used to validate whole data sets ---------------


def test_check_image_accepts_complete_files(tmp_path: Path) -> None:
    pixels = Image.fromarray(_gradient_rgb())
    for fmt, suffix in (("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("WEBP", ".webp")):
        path = tmp_path / f"ok{suffix}"
        path.write_bytes(_encode(pixels, fmt))
        check_image(path)


def test_check_image_decodes_jpegs_with_trailing_bytes() -> None:
    data = _encode(Image.fromarray(_gradient_rgb()), "JPEG") + b"\x00\x00appended"
    check_image(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_check_image_refuses_truncated_files(fmt: str) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noisy), fmt)
    with pytest.raises(ImageDecodeError):
        check_image(data[: len(data) * 3 // 4])


def test_check_image_refuses_a_png_with_a_bad_checksum() -> None:
    data = bytearray(_encode(Image.fromarray(_gradient_rgb()), "PNG"))
    data[-20] ^= 0xFF  # inside the last data chunk: its CRC no longer matches
    with pytest.raises(ImageDecodeError):
        check_image(bytes(data))


def test_check_image_refuses_empty_huge_and_non_images(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        check_image(b"")
    with pytest.raises(ImageTooLargeError):
        check_image(_png_header_only(12000, 12000))
    with pytest.raises(ImageDecodeError, match="not an image"):
        check_image(b"GIF? no, plain text")
    with pytest.raises(ImageDecodeError, match="file not found"):
        check_image(tmp_path / "missing.jpg")
