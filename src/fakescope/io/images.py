"""Safe decoding of one image file (or its bytes) to an RGB uint8 array.

Every image that enters fakescope (training, evaluation, scanning, serving) goes through
`decode_image`, so the same file gives the same pixels everywhere and a bad file gives one
kind of error, `ImageDecodeError`, naming the file and the reason.

Choices made here:
- the content decides the format, not the extension (a PNG named `.jpg` decodes); only the
  formats in `_ALLOWED_FORMATS` are opened, so no Pillow plugin that runs external programs
  (EPS runs Ghostscript) is ever reached;
- the pixel count is read from the header and checked before any pixel is decoded;
- truncated files are errors (Pillow's LOAD_TRUNCATED_IMAGES is left off);
- EXIF orientation is applied; alpha is composited on white (what a viewer shows);
- 16-bit and float images are scaled to 8 bits; animated images give their first frame;
- ICC colour profiles are not applied (the raw RGB values are used, as training tools do).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# 100 megapixels: above any real photo of a face, far below what exhausts memory.
DEFAULT_MAX_PIXELS = 100_000_000

# Pillow openers decoded in-process by well-tested libraries. The JPEG opener also
# opens the multi-picture JPEGs (MPO) that many phone cameras write.
_ALLOWED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")

_JPEG_END_OF_IMAGE = b"\xff\xd9"
_SIXTEEN_BIT_MAX = 65535
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


class ImageDecodeError(ValueError):
    """A file or a byte string could not be decoded to an image."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"cannot decode image {source}: {reason}")


class ImageTooLargeError(ImageDecodeError):
    """The header announces more pixels than allowed (a decompression-bomb guard)."""


def has_image_extension(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `source` (a path or the encoded bytes) to an H x W x 3 uint8 RGB array."""
    name, data = _read_source(source)
    return _decode_bytes(data, name, max_pixels)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or single-channel (H, W) uint8 array; fast, lossless."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def check_image(source: str | Path | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Check cheaply that `source` is a complete image; raise ImageDecodeError if not.

    Reads the header (supported format, pixel limit) and the file structure: a PNG's chunk
    checksums, a JPEG's end-of-image marker. Other formats, and JPEGs that do not end with
    the marker (trailing data or truncation), are decoded in full. A file that passes can
    still hold corrupt compressed data; `decode_image` reports that when it meets it.
    """
    name, data = _read_source(source)
    with _open_checked(data, name, max_pixels) as image:
        if image.format == "PNG":
            try:
                image.verify()
            except Exception as exc:
                raise ImageDecodeError(name, _describe(exc)) from exc
            return
        if image.format in ("JPEG", "MPO") and data.endswith(_JPEG_END_OF_IMAGE):
            return
    _decode_bytes(data, name, max_pixels)


def _read_source(source: str | Path | bytes) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>", bytes(source)
    path = Path(source)
    try:
        return str(path), path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(str(path), "file not found") from None
    except OSError as exc:
        raise ImageDecodeError(str(path), f"cannot read the file ({exc.strerror or exc})") from exc


def _decode_bytes(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    with _open_checked(data, name, max_pixels) as image:
        try:
            image.load()
            return _to_rgb_array(ImageOps.exif_transpose(image))
        except Exception as exc:
            # Corrupt files surface from Pillow's decoders as many exception types
            # (OSError, SyntaxError, ValueError, struct.error, ...): all mean "not decodable".
            raise ImageDecodeError(name, _describe(exc)) from exc


def _open_checked(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse images with too many pixels before decoding them."""
    if not data:
        raise ImageDecodeError(name, "the file is empty")
    try:
        with warnings.catch_warnings():
            # Our own `max_pixels` replaces Pillow's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, str(exc)) from exc
    except Image.UnidentifiedImageError:
        allowed = ", ".join(_ALLOWED_FORMATS)
        raise ImageDecodeError(name, f"not an image in a supported format ({allowed})") from None
    except Exception as exc:
        raise ImageDecodeError(name, _describe(exc)) from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(
            name, f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}"
        )
    return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I") or image.mode == "F":
        gray = _scale_to_uint8(np.asarray(image))
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit integer or float pixels to 0..255.

    Integer modes (I;16*, I) hold 16-bit samples: 0..65535 maps to 0..255. Float images
    whose values lie in [0, 1] are treated as normalised; other float images as 16-bit.
    """
    is_float = values.dtype.kind == "f"
    values = np.nan_to_num(values.astype(np.float64), nan=0.0)
    scale = 1.0 if is_float and values.max(initial=0.0) <= 1.0 else float(_SIXTEEN_BIT_MAX)
    return np.round(np.clip(values / scale, 0.0, 1.0) * 255.0).astype(np.uint8)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
