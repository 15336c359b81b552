"""What an operator can set for `fakescope serve`: limits, batching, auth, CORS, uploads kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fakescope.batching import BATCH_SIZE
from fakescope.io.images import DEFAULT_MAX_PIXELS

API_KEY_ENV = "FAKESCOPE_API_KEY"
MB = 1024 * 1024


class ApiKeyError(ValueError):
    """An API key file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class ServeSettings:
    max_image_bytes: int = 20 * MB
    max_video_bytes: int = 200 * MB
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_files: int = 16  # images per request; a video comes alone
    video_frames: int = 16
    # Micro-batching: the worker waits at most `max_wait_ms` for more requests to fill a batch.
    max_batch_crops: int = BATCH_SIZE
    max_wait_ms: float = 10.0
    # Requests admitted at once (reading, decoding, queued, on the model); more get 503.
    max_queue: int = 32
    request_timeout_s: float = 60.0
    request_threads: int = 4
    retry_after_s: int = 1
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    keep_uploads: Path | None = None

    def __post_init__(self) -> None:
        positive = (
            "max_image_bytes",
            "max_video_bytes",
            "max_pixels",
            "max_files",
            "video_frames",
            "max_batch_crops",
            "max_queue",
            "request_timeout_s",
            "request_threads",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (leave it unset to serve without a key)")


def resolve_api_key(api_key_file: Path | None) -> str | None:
    """The key from `api_key_file` (first line, stripped), else $FAKESCOPE_API_KEY, else None."""
    if api_key_file is not None:
        try:
            text = Path(api_key_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ApiKeyError(
                f"{api_key_file}: cannot read the API key file ({error.strerror or error})"
            ) from error
        key = text.splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise ApiKeyError(f"{api_key_file}: the API key file is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None
