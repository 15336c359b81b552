"""What an upload is, judged from its first bytes (never from its name or declared type).

A polyglot is what it starts as: a JPEG with a ZIP appended is a JPEG (the decoder stops at
the image's end and nothing after it is read); HTML behind a GIF header is a GIF, and fails
to decode as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Enough bytes for every signature below.
SNIFF_BYTES = 16


@dataclass(frozen=True)
class FileType:
    kind: Literal["image", "video"]
    extension: str  # for uploads kept on disk


JPEG, PNG, GIF, BMP, TIFF, WEBP = (
    FileType("image", e) for e in (".jpg", ".png", ".gif", ".bmp", ".tif", ".webp")
)
MP4, AVI, MKV = (FileType("video", e) for e in (".mp4", ".avi", ".mkv"))

_PREFIXES = (
    (b"\xff\xd8\xff", JPEG),
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"BM", BMP),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"\x1a\x45\xdf\xa3", MKV),  # EBML header: Matroska and WebM
)
# ISO base media (MP4, MOV, M4V, 3GP): a box size, then one of these box types at offset 4.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def sniff(head: bytes) -> FileType | None:
    """The type of a file from its leading bytes, or None when it is no image or video we read."""
    for prefix, file_type in _PREFIXES:
        if head.startswith(prefix):
            return file_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return AVI
    if head[4:8] in _ISO_BOXES:
        return MP4
    return None
