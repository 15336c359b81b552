"""What `scan` was asked to look at: files, folders, globs and `-` (paths on stdin), as a stream.

Each input becomes a `ScanInput` (a file to score, image or video) or an `InputProblem`
(something that names no readable file); neither stops the others.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, TextIO

from fakescope.io.images import IMAGE_EXTENSIONS
from fakescope.io.video import VIDEO_EXTENSIONS

GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ScanInput:
    path: Path
    kind: Literal["image", "video"]


@dataclass(frozen=True)
class InputProblem:
    text: str
    reason: str


def kind_of(path: Path) -> Literal["image", "video"]:
    # Unknown extensions are tried as images: the decoder reads the content, not the name.
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def _is_media(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS


def _walk(folder: Path) -> Iterator[Path]:
    """Images and videos under `folder`, recursively, in a stable order, hidden entries skipped."""
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and _is_media(name):
                yield Path(current, name)


def _expand_one(text: str) -> Iterator[ScanInput | InputProblem]:
    path = Path(text)
    if path.is_dir():
        found = False
        for item in _walk(path):
            found = True
            yield ScanInput(item, kind_of(item))
        if not found:
            yield InputProblem(text, "folder holds no images or videos")
    elif path.exists():
        yield (
            ScanInput(path, kind_of(path))
            if path.is_file()
            else InputProblem(text, "not a regular file")
        )
    elif GLOB_CHARACTERS & set(text):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        files = [m for m in matches if m.is_file() and _is_media(m.name)]
        if not files:
            yield InputProblem(text, "pattern matches no images or videos")
        for item in files:
            yield ScanInput(item, kind_of(item))
    else:
        yield InputProblem(text, "no such file or folder")


def expand_inputs(
    items: Iterable[str], stdin: TextIO | None = None
) -> Iterator[ScanInput | InputProblem]:
    """Stream the inputs in the order given; `-` reads one path per line from `stdin`."""
    for text in items:
        if text == "-":
            if stdin is None:
                yield InputProblem(text, "no standard input to read paths from")
                continue
            for line in stdin:
                line = line.strip()
                if line:
                    yield from _expand_one(line)
        else:
            yield from _expand_one(text)
