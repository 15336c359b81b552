"""Read the files of a multipart request into memory, enforcing the limits while they stream.

Starlette's own form parser spools files above 1 MB to temporary files on disk; uploads here
are held in memory only, and a request over a limit is refused as soon as the limit is
crossed, without reading the rest. The type of each file is sniffed from its first bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from fakescope.serve.settings import MB, ServeSettings
from fakescope.serve.sniff import SNIFF_BYTES, FileType, sniff

# Room for the multipart boundaries and part headers around the files.
_ENVELOPE_BYTES = 1 * MB
_MAX_NAME_CHARS = 255


class UploadRejected(Exception):
    """A request refused with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")


@dataclass
class Upload:
    name: str  # the client's file name, for the response only: never used as a path
    data: bytes
    file_type: FileType


def request_limit(settings: ServeSettings) -> int:
    """The most bytes a request body may hold: one video, or `max_files` images."""
    return (
        max(settings.max_video_bytes, settings.max_image_bytes * settings.max_files)
        + _ENVELOPE_BYTES
    )


def file_limit(settings: ServeSettings, file_type: FileType | None) -> int:
    if file_type is None:  # not sniffed yet: the larger limit applies until it is
        return max(settings.max_image_bytes, settings.max_video_bytes)
    return settings.max_video_bytes if file_type.kind == "video" else settings.max_image_bytes


def client_name(raw: bytes) -> str:
    """The last component of a client's file name, printable and bounded, for responses and logs."""
    text = raw.decode("utf-8", "replace")
    base = PureWindowsPath(PurePosixPath(text).name).name
    printable = "".join(c if c.isprintable() else "?" for c in base)
    return printable[:_MAX_NAME_CHARS] or "upload"


class _PartCollector:
    """python-multipart callbacks: file parts become `Upload`s; other fields are dropped."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.uploads: list[Upload] = []
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None  # None: the current part is not a file
        self._data = bytearray()
        self._type: FileType | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._disposition, self._name, self._type = b"", None, None
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"filename" not in options:
            return
        if len(self.uploads) >= self.settings.max_files:
            raise UploadRejected(
                413, f"too many files: at most {self.settings.max_files} per request"
            )
        self._name = client_name(options[b"filename"])

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name is None:
            return
        self._data += data[start:end]
        if self._type is None and len(self._data) >= SNIFF_BYTES:
            self._type = self._sniffed()
        limit = file_limit(self.settings, self._type)
        if len(self._data) > limit:
            raise UploadRejected(
                413,
                f"{self._name}: larger than the limit of {_megabytes(limit)} for this kind of file",
            )

    def _part_end(self) -> None:
        if self._name is None:
            return
        if not self._data:
            raise UploadRejected(422, f"{self._name}: the file is empty")
        file_type = self._type or self._sniffed()
        self.uploads.append(Upload(self._name, bytes(self._data), file_type))
        self._data = bytearray()

    def _sniffed(self) -> FileType:
        file_type = sniff(bytes(self._data[:SNIFF_BYTES]))
        if file_type is None:
            raise UploadRejected(
                415,
                f"{self._name}: not an image (JPEG, PNG, GIF, BMP, TIFF, WebP) "
                "or a video (MP4, MOV, AVI, MKV, WebM)",
            )
        return file_type


async def read_uploads(request: Request, settings: ServeSettings) -> list[Upload]:
    """The files of a multipart/form-data request, in order; UploadRejected when over a limit."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadRejected(415, "send the files as multipart/form-data")
    limit = request_limit(settings)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadRejected(413, f"the request is larger than the limit of {_megabytes(limit)}")
    collector = _PartCollector(settings)
    parser = MultipartParser(params[b"boundary"], collector.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise UploadRejected(
                    413, f"the request is larger than the limit of {_megabytes(limit)}"
                )
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as error:
        raise UploadRejected(400, f"malformed multipart body ({error})") from None
    return _checked(collector.uploads)


def _checked(uploads: list[Upload]) -> list[Upload]:
    if not uploads:
        raise UploadRejected(
            400, "no file in the request: send one or more images, or one video, as form files"
        )
    if len(uploads) > 1 and any(u.file_type.kind == "video" for u in uploads):
        raise UploadRejected(400, "send one video per request, or images only")
    return uploads


def _megabytes(size: int) -> str:
    return f"{size / MB:.4g} MB"
