"""Scan reports: JSON, JSON Lines, CSV and a self-contained HTML page, written as results arrive.

Each writer takes one result at a time (a dict of `Detector.predict*`, or {"file", "kind",
"error"} for an input that could not be read) and keeps no list of them, so a scan of 100k
files holds one result at a time whatever the outputs.

- JSON Lines and CSV are logs: written in place, one complete line per result, flushed, so they
  can be followed while they grow and a scan that stops keeps every line it finished.
- JSON and HTML are documents: built under a temporary name beside the target and renamed over
  it on `close()`, so a reader sees the old report or the whole new one. `abort()` (what leaving
  the `with` block on an exception does) drops the new document and leaves the old file alone.

The HTML summary (counts, times) is only known at the end but belongs at the top of the page:
cards are spooled to an anonymous temporary file, and `close()` writes the summary and then
copies the cards after it. The page stays in reading order (screen readers, printing, text
search), needs no script and no CSS reordering, and memory stays flat.
"""

from __future__ import annotations

import base64
import csv as csv_module
import html
import io
import json as json_module
import math
import os
import re
import secrets
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import IO, Any, Iterable, Protocol, Self

import numpy as np
from PIL import Image

from fakescope.io.images import decode_image
from fakescope.io.video import read_video_frames

CSV_COLUMNS = (
    "file",
    "kind",
    "prediction",
    "p_fake",
    "confidence",
    "threshold",
    "faces",  # images: faces scored; videos: the most faces scored in one sampled frame
    "fallback",
    "error",
    "detector",
    "detector_version",
)

THUMBNAIL_PX = 320
_THUMBNAIL_JPEG_QUALITY = 82
# Heat maps arrive as data URIs from the explainer; anything else (an external URL) would make
# the page load from elsewhere, so it is left out.
_INLINE_IMAGE = re.compile(r"data:image/(?:png|jpeg);base64,[A-Za-z0-9+/]+={0,2}")
_TEMPLATE = "report_template.html"
_CARDS_SLOT = "$cards"


class ReportInputError(ValueError):
    """A result dict that a report cannot be written from; the message says which and why."""


class ReportWriter(Protocol):
    def write(self, result: dict) -> None:
        """Add one result to the report."""

    def close(self) -> None:
        """Finish the report (documents: put it in place)."""

    def abort(self) -> None:
        """Stop without finishing (documents: leave the old file as it was)."""


class _StreamWriter(ABC):
    """Context-manager plumbing shared by the writers: close on success, abort on error, once."""

    _done = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._finish()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abandon()

    @abstractmethod
    def write(self, result: dict) -> None: ...

    @abstractmethod
    def _finish(self) -> None: ...

    def _abandon(self) -> None:
        self._finish()  # logs keep what they wrote


# -- shared pieces ------------------------------------------------------------------------------


def check_result(result: Any) -> dict:
    """`result` if a report can be written from it, else ReportInputError saying what is missing."""
    if not isinstance(result, dict) or "file" not in result:
        got = repr(result)[:200]
        raise ReportInputError(f"a scan result must be a dict with a 'file' key, got {got}")
    if "error" in result:
        return result
    missing = [key for key in ("kind", "prediction", "probabilities") if key not in result]
    if missing:
        raise ReportInputError(
            f"the result for {result['file']} has no {', '.join(missing)} and no 'error'"
        )
    return result


def to_json_value(value: Any) -> Any:
    """`value` with numpy scalars and arrays made plain and NaN/inf made null (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, np.generic):
        return to_json_value(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# ASCII output: file names that are not valid UTF-8 survive as \udcXX escapes.
_JSON = json_module.JSONEncoder(allow_nan=False)


def _dumps(value: Any) -> str:
    try:
        return _JSON.encode(value)
    except (TypeError, ValueError):  # numpy values or NaN: the slower walk makes them plain
        return _JSON.encode(to_json_value(value))


def _now() -> datetime:
    return datetime.now().astimezone()


@dataclass
class _Tally:
    """Counts for the summary: the only state that grows with a scan is these numbers."""

    started: datetime = field(default_factory=_now)
    fake: int = 0
    real: int = 0
    unreadable: int = 0

    def add(self, result: dict) -> None:
        if "error" in result:
            self.unreadable += 1
        elif result["prediction"] == "Fake":
            self.fake += 1
        else:
            self.real += 1

    @property
    def files(self) -> int:
        return self.fake + self.real + self.unreadable

    def as_dict(self, finished: datetime) -> dict:
        return {
            "files": self.files,
            "fake": self.fake,
            "real": self.real,
            "unreadable": self.unreadable,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
        }


class _AtomicTextFile:
    """A UTF-8 text file written under a temporary name beside `path`, renamed over it on commit."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Exclusive create under a random name rather than mkstemp: the file gets the usual
        # permissions (0666 less the umask), not mkstemp's 0600.
        self._tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        self.handle: IO[str] = open(self._tmp, "x", encoding="utf-8", newline="")

    def commit(self) -> None:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self.handle.close()
        Path(self._tmp).unlink(missing_ok=True)


# -- logs ---------------------------------------------------------------------------------------


class JsonlWriter(_StreamWriter):
    """One JSON object per line, flushed after each result."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "w", encoding="utf-8")

    def write(self, result: dict) -> None:
        self._handle.write(_dumps(check_result(result)) + "\n")
        self._handle.flush()

    def _finish(self) -> None:
        self._handle.close()


class CsvWriter(_StreamWriter):
    """One row per result with the columns of `CSV_COLUMNS`, flushed after each result.

    Error rows leave the score columns empty. The detector columns come from the result, or
    from `meta` (the scan's `Detector.describe()`) for results that lack them. Values are
    written as they are: a file name that starts with '=' stays one (no spreadsheet escaping).
    """

    def __init__(self, path: str | Path, meta: dict):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._meta = dict(meta)
        # Undecodable bytes in file names become \udcXX text: the file stays valid UTF-8.
        self._handle = open(self.path, "w", encoding="utf-8", errors="backslashreplace", newline="")
        self._csv = csv_module.DictWriter(self._handle, fieldnames=CSV_COLUMNS)
        self._csv.writeheader()
        self._handle.flush()

    def write(self, result: dict) -> None:
        self._csv.writerow(csv_row(check_result(result), self._meta))
        self._handle.flush()

    def _finish(self) -> None:
        self._handle.close()


def csv_row(result: dict, meta: dict) -> dict:
    """The CSV columns of one result."""
    described = {
        key: result.get(key, meta.get(key, ""))
        for key in ("threshold", "detector", "detector_version")
    }
    row = {"file": result["file"], "kind": result.get("kind", ""), **described}
    if "error" in result:
        return {**row, "error": result["error"]}
    return {
        **row,
        "prediction": result["prediction"],
        "p_fake": result["probabilities"]["fake"],
        "confidence": result.get("confidence", ""),
        "faces": _face_count(result),
        "fallback": result.get("fallback") or "",
    }


def _face_count(result: dict) -> int:
    if result["kind"] == "video":
        timeline = result.get("timeline") or []
        return max((len(t.get("faces") or []) for t in timeline), default=0)
    return len(result.get("faces") or [])


# -- documents ----------------------------------------------------------------------------------


class JsonWriter(_StreamWriter):
    """{"detector": meta, "results": [...], "summary": counts and times}, one result per line.

    The array is written as results arrive; the document appears at `path` on `close()`.
    """

    def __init__(self, path: str | Path, meta: dict):
        self.path = Path(path)
        self._file = _AtomicTextFile(self.path)
        self._tally = _Tally()
        self._file.handle.write('{\n  "detector": ' + _dumps(meta) + ',\n  "results": [')

    def write(self, result: dict) -> None:
        check_result(result)
        separator = ",\n    " if self._tally.files else "\n    "
        self._file.handle.write(separator + _dumps(result))
        self._tally.add(result)

    def _finish(self) -> None:
        end = "\n  ]" if self._tally.files else "]"
        summary = _dumps(self._tally.as_dict(_now()))
        self._file.handle.write(end + ',\n  "summary": ' + summary + "\n}\n")
        self._file.commit()

    def _abandon(self) -> None:
        self._file.discard()


class HtmlWriter(_StreamWriter):
    """A self-contained page: a summary, then one card per result with a thumbnail and face boxes.

    Everything is inline (CSS, images as data: URIs, plots as SVG), so the file can be mailed or
    archived alone. Thumbnails are read again from the files named in the results (images with
    `decode_image`, videos at the frame that drove the verdict); a file that is gone by then
    gets a note instead of a picture.
    """

    def __init__(self, path: str | Path, meta: dict, *, thumbnail_px: int = THUMBNAIL_PX):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._meta = dict(meta)
        self._thumbnail_px = thumbnail_px
        self._tally = _Tally()
        # Beside the target rather than in /tmp: a big report should not fill a small tmpfs.
        self._cards = tempfile.TemporaryFile(
            "w+", encoding="utf-8", dir=self.path.parent, prefix=f".{self.path.name}."
        )

    def write(self, result: dict) -> None:
        check_result(result)
        threshold = float(result.get("threshold", self._meta.get("threshold", 0.5)))
        try:
            card = render_card(result, threshold, self._thumbnail_px)
        except (KeyError, TypeError, ValueError) as error:  # a face or frame missing its keys
            reason = f"cannot draw the result for {result['file']}: {error!r}"
            raise ReportInputError(reason) from error
        self._cards.write(card)
        self._tally.add(result)

    def _finish(self) -> None:
        head, tail = _template_parts()
        finished = _now()
        title = f"fakescope scan: {self._tally.files} files, {self._tally.fake} fake"
        summary = render_summary(
            self._meta, self._tally.as_dict(finished), self._tally.started, finished
        )
        out = _AtomicTextFile(self.path)
        try:
            out.handle.write(head.substitute(title=_text(title), summary=summary))
            self._cards.seek(0)
            shutil.copyfileobj(self._cards, out.handle)
            out.handle.write(tail)
        except BaseException:
            out.discard()
            raise
        finally:
            self._cards.close()
        out.commit()

    def _abandon(self) -> None:
        self._cards.close()


def _template_parts() -> tuple[Template, str]:
    """The page before the cards (with $title and $summary to fill in) and after them."""
    page = resources.files("fakescope.inference").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    head, tail = page.split(_CARDS_SLOT)
    return Template(head), tail


# -- several outputs at once ------------------------------------------------------------------


class ReportSet(_StreamWriter):
    """Several writers fed the same results; closing or aborting reaches every one of them."""

    def __init__(self, writers: Iterable[ReportWriter]):
        self.writers = list(writers)

    def write(self, result: dict) -> None:
        for writer in self.writers:
            writer.write(result)

    def _finish(self) -> None:
        _call_all(self.writers, "close")

    def _abandon(self) -> None:
        _call_all(self.writers, "abort")


def _call_all(writers: list[ReportWriter], method: str) -> None:
    # ExitStack runs every callback even when one raises, then re-raises the first error.
    with ExitStack() as stack:
        for writer in reversed(writers):
            stack.callback(getattr(writer, method))


def open_writers(
    *,
    meta: dict,
    json: str | Path | None = None,
    jsonl: str | Path | None = None,
    csv: str | Path | None = None,
    html: str | Path | None = None,
) -> ReportSet:
    """The writers for the outputs asked for (None: not written), as one context manager.

    `meta` describes the scan (`Detector.describe()`): it heads the JSON and the HTML page and
    fills the detector columns of CSV rows for unreadable files.
    """
    factories = [
        (jsonl, JsonlWriter),
        (csv, lambda path: CsvWriter(path, meta)),
        (json, lambda path: JsonWriter(path, meta)),
        (html, lambda path: HtmlWriter(path, meta)),
    ]
    writers: list[ReportWriter] = []
    try:
        for path, make in factories:
            if path is not None:
                writers.append(make(path))
    except BaseException:
        _call_all(writers, "abort")
        raise
    return ReportSet(writers)


# -- HTML: the summary --------------------------------------------------------------------------


def _text(value: Any) -> str:
    """`value` as escaped HTML; what UTF-8 cannot hold (bytes of odd file names) shows as '?'."""
    return html.escape(str(value).encode("utf-8", "replace").decode("utf-8"), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else _text(value)


def render_summary(meta: dict, counts: dict, started: datetime, finished: datetime) -> str:
    """The page header: detector, threshold, counts and the time of the scan."""
    detector = f"<b>{_text(meta.get('detector', 'unknown detector'))}</b>"
    if meta.get("detector_version") is not None:
        detector += f" v{_text(meta['detector_version'])}"
    facts = [f"Detector {detector}"]
    if meta.get("threshold") is not None:
        source = f" ({_text(meta['threshold_source'])})" if meta.get("threshold_source") else ""
        facts.append(f"threshold {_number(meta['threshold'])}{source}")
    if meta.get("temperature") is not None:
        facts.append(f"temperature {_number(meta['temperature'], 2)}")
    if meta.get("face_stage"):
        facts.append(f"face stage: {_text(meta['face_stage'])}")
    if meta.get("backend"):
        facts.append(f"run by {_text(meta['backend'])}")
    tiles = "".join(
        f'<div class="count {key}"><b>{counts[key]}</b><span>{key}</span></div>'
        for key in ("files", "fake", "real", "unreadable")
    )
    took = (finished - started).total_seconds()
    when = f"Scan started {started:%Y-%m-%d %H:%M:%S %Z}, took {took:.1f} s."
    return (
        '<header class="summary"><h1>fakescope scan report</h1>'
        f'<p class="facts">{" · ".join(facts)}</p>'
        f'<div class="counts">{tiles}</div>'
        f'<p class="muted">{_text(when)} Scores are P(fake), the probability that a face is '
        "fake; a file is called fake when its score reaches the threshold.</p></header>"
    )


# -- HTML: one card per result ------------------------------------------------------------------


def render_card(result: dict, threshold: float, thumbnail_px: int = THUMBNAIL_PX) -> str:
    """One result as an <article>: thumbnail with face boxes, verdict, faces, notes."""
    if "error" in result:
        return _card("unreadable", _placeholder("unreadable"), result, [], [str(result["error"])])
    verdict = "fake" if result["prediction"] == "Fake" else "real"
    if result["kind"] == "video":
        figure, sections, notes = _video_parts(result, threshold, thumbnail_px)
    else:
        figure, sections, notes = _image_parts(result, threshold, thumbnail_px)
    return _card(verdict, figure, result, [_verdict(result, threshold), *sections], notes)


def _card(verdict: str, figure: str, result: dict, sections: list[str], notes: list[str]) -> str:
    path = str(result["file"])
    name = os.path.basename(path) or path
    items = "".join(f"<li>{_text(note)}</li>" for note in notes)
    notes_html = f'<ul class="notes">{items}</ul>' if notes else ""
    return (
        f'<article class="card {verdict}">{figure}<div class="details">'
        f'<div class="title"><span class="badge {verdict}">{verdict.capitalize()}</span>'
        f'<h2 title="{_text(path)}">{_text(name)}</h2>'
        f'<span class="kind">{_text(result.get("kind", ""))}</span></div>'
        f'<p class="path">{_text(path)}</p>{"".join(sections)}{notes_html}'
        "</div></article>\n"
    )


def _verdict(result: dict, threshold: float) -> str:
    """P(fake) in figures and as a bar, with the threshold marked on it."""
    p_fake = float(result["probabilities"]["fake"])
    css = "fake" if result["prediction"] == "Fake" else "real"
    confidence = result.get("confidence")
    sure = f" · confidence {float(confidence):.1%}" if confidence is not None else ""
    label = f"P(fake) {p_fake:.3f} against threshold {threshold:.3f}"
    return (
        f'<div class="score"><span>P(fake) <b>{p_fake:.3f}</b>{sure}</span>'
        f'<span class="muted">threshold {threshold:.3f}</span></div>'
        f'<div class="bar" role="img" aria-label="{label}">'
        f'<span class="fill {css}" style="width:{_percent(p_fake)}"></span>'
        f'<span class="mark" style="left:{_percent(threshold)}"></span></div>'
    )


def _percent(value: float) -> str:
    return f"{min(max(value, 0.0), 1.0):.1%}"


def _image_parts(
    result: dict, threshold: float, thumbnail_px: int
) -> tuple[str, list[str], list[str]]:
    notes: list[str] = []
    faces = result.get("faces") or []
    skipped = result.get("skipped_faces") or []
    image = _load_image(str(result["file"]), notes)
    caption = _size_caption(result, image)
    figure = _figure(image, faces, skipped, threshold, thumbnail_px, caption)
    sections = [_faces_table(faces, result.get("face"), threshold)] if faces else []
    if result.get("fallback"):
        notes.append(_fallback_note(result, "No face found: the whole image was scored."))
        sections.append(_whole_image_heatmap(result))
    notes.extend(_skipped_notes(skipped))
    return figure, sections, notes


def _video_parts(
    result: dict, threshold: float, thumbnail_px: int
) -> tuple[str, list[str], list[str]]:
    notes: list[str] = []
    timeline = result.get("timeline") or []
    driving = result.get("driving_frames") or []
    entry = next((t for t in timeline if driving and t["frame"] == driving[0]), None)
    frame, faces, caption = None, [], ""
    if entry is not None:
        frame = _load_video_frame(str(result["file"]), len(timeline), entry["frame"], notes)
        faces = entry["faces"] or []
        caption = f"frame {entry['frame']}{_at_time(entry)}, the sampled frame most likely fake"
    figure = _figure(frame, faces, [], threshold, thumbnail_px, caption)
    counted = f"{result.get('frames_sampled', len(timeline))} frames sampled"
    if result.get("frames_with_faces") is not None:
        counted += f", {result['frames_with_faces']} with faces"
    over = "all sampled frames" if result.get("fallback") else "the frames with faces"
    explained = f"{counted}; the video's score is the mean P(fake) over {over}."
    sections = [
        f'<p class="muted">{_text(explained)}</p>',
        _timeline_svg(timeline, threshold, set(driving)),
    ]
    if faces:
        sections.append(_faces_table(faces, None, threshold, f"Faces in frame {entry['frame']}"))
    if result.get("fallback"):
        no_face = "No face in any sampled frame: whole frames were scored."
        notes.append(_fallback_note(result, no_face))
    return figure, sections, notes


def _fallback_note(result: dict, no_face: str) -> str:
    if result.get("face_stage") == "none":
        return "Whole picture scored: this detector looks at whole images, not faces."
    return no_face


def _at_time(entry: dict) -> str:
    time_s = entry.get("time_s")
    if isinstance(time_s, (int, float)) and math.isfinite(time_s):
        return f" at {time_s:.2f} s"
    return ""


def _size_caption(result: dict, image: np.ndarray | None) -> str:
    size = result.get("image_size")
    if size:
        return f"{size[0]} × {size[1]} px"
    return f"{image.shape[1]} × {image.shape[0]} px" if image is not None else ""


def _skipped_notes(skipped: list[dict]) -> list[str]:
    if not skipped:
        return []
    reasons = Counter(str(s.get("reason", "skipped")) for s in skipped)
    listed = ", ".join(f"{reason} ({n})" if n > 1 else reason for reason, n in reasons.items())
    were = "face was" if len(skipped) == 1 else "faces were"
    return [f"{len(skipped)} {were} not scored (grey dashed boxes): {listed}."]


def _load_image(path: str, notes: list[str]) -> np.ndarray | None:
    try:
        return decode_image(path)
    except (ValueError, OSError) as error:
        notes.append(f"No preview: {error}")
        return None


def _load_video_frame(
    path: str, frames_sampled: int, index: int, notes: list[str]
) -> np.ndarray | None:
    """The sampled frame `index`, read the way the scan sampled it (same count, same frames)."""
    try:
        frames = read_video_frames(path, n_frames=max(frames_sampled, 1))
    except (ValueError, OSError) as error:
        notes.append(f"No preview: {error}")
        return None
    found = next((f.image for f in frames if f.index == index), None)
    if found is None:
        notes.append(f"No preview: frame {index} is no longer among the sampled frames.")
    return found


# -- HTML: thumbnail with face boxes ------------------------------------------------------------


def _placeholder(label: str) -> str:
    return f'<figure class="thumb empty"><div class="placeholder">{_text(label)}</div></figure>'


def _figure(
    image: np.ndarray | None,
    faces: list[dict],
    skipped: list[dict],
    threshold: float,
    max_px: int,
    caption: str,
) -> str:
    """The picture as an inline SVG with the face boxes over it: red over the threshold, green
    under it, grey dashed for faces that were found but not scored."""
    if image is None:
        return _placeholder("no preview")
    uri = thumbnail_data_uri(image, max_px)
    # Drawn `max_px` wide or high even when the picture is smaller, so small ones stay legible.
    scale = max_px / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    shapes = [_box(s["box"], scale, size, "skipped") for s in skipped]
    for number, face in enumerate(faces, start=1):
        css = "fake" if float(face["p_fake"]) >= threshold else "real"
        shapes.append(_box(face["box"], scale, size, css, label=str(number)))
    width, height = size
    return (
        f'<figure class="thumb"><svg viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="preview with {len(faces)} face boxes">'
        f'<image href="{uri}" x="0" y="0" width="{width}" height="{height}" '
        f'preserveAspectRatio="none"/>{"".join(shapes)}</svg>'
        f"<figcaption>{_text(caption)}</figcaption></figure>"
    )


def thumbnail_data_uri(image: np.ndarray, max_px: int = THUMBNAIL_PX) -> str:
    """An RGB array shrunk to fit `max_px` (never enlarged) as a JPEG data URI."""
    picture = Image.fromarray(image)
    picture.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=_THUMBNAIL_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _box(
    box: list[float], scale: float, size: tuple[int, int], css: str, label: str | None = None
) -> str:
    # Detector boxes may reach past the image edge; clip them so the outline stays visible.
    width, height = size
    x1, y1 = max(box[0] * scale, 1.0), max(box[1] * scale, 1.0)
    x2, y2 = min(box[2] * scale, width - 1.0), min(box[3] * scale, height - 1.0)
    if x2 <= x1 or y2 <= y1:
        return ""
    shape = (
        f'<rect class="box {css}" x="{x1:.1f}" y="{y1:.1f}" '
        f'width="{x2 - x1:.1f}" height="{y2 - y1:.1f}"/>'
    )
    if label is None:
        return shape
    # The face's number in the table, on a tag in the box's top-left corner.
    return (
        f'{shape}<rect class="tag {css}" x="{x1:.1f}" y="{y1:.1f}" width="18" height="18"/>'
        f'<text class="tag-label" x="{x1 + 9:.1f}" y="{y1 + 13.5:.1f}">{_text(label)}</text>'
    )


# -- HTML: faces and heat maps ------------------------------------------------------------------


def _faces_table(
    faces: list[dict], driver: dict | None, threshold: float, caption: str = ""
) -> str:
    with_heat = any(face.get("heatmap") for face in faces)
    rows = []
    for number, face in enumerate(faces, start=1):
        p_fake = float(face["p_fake"])
        css = "fake" if p_fake >= threshold else "real"
        drove = driver is not None and face.get("box") == driver.get("box")
        star = ' <span title="this face decided the verdict">★</span>' if drove else ""
        detection = face.get("detection_score")
        box = ", ".join(f"{v:.0f}" for v in face["box"])
        heat = _heatmap_img(face.get("heatmap"), f"face {number}") if with_heat else None
        rows.append(
            f'<tr><td>{number}{star}</td><td class="p {css}">{p_fake:.3f}</td>'
            f"<td>{_number(detection) if detection is not None else '–'}</td>"
            f'<td class="box-coords">{box}</td>{f"<td>{heat}</td>" if heat else ""}</tr>'
        )
    caption_html = f"<caption>{_text(caption)}</caption>" if caption else ""
    heat_header = "<th>heat map</th>" if with_heat else ""
    return (
        f'<table class="faces">{caption_html}<thead><tr><th>face</th><th>P(fake)</th>'
        f"<th>detector score</th><th>box x1, y1, x2, y2</th>{heat_header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _whole_image_heatmap(result: dict) -> str:
    if not result.get("heatmap"):
        return ""
    image = _heatmap_img(result["heatmap"], "the whole image")
    return f'<div class="whole-heat"><span class="muted">heat map, whole image</span>{image}</div>'


def _heatmap_img(uri: Any, what: str) -> str:
    if not isinstance(uri, str) or not _INLINE_IMAGE.fullmatch(uri):
        return '<span class="muted">–</span>'
    return f'<img class="heat" src="{uri}" alt="heat map of {_text(what)}" width="96" height="96">'


# -- HTML: the video timeline -------------------------------------------------------------------

_PLOT_W, _PLOT_H = 560, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 100, 10, 26  # the right margin holds the threshold's label


def _timeline_svg(timeline: list[dict], threshold: float, driving: set[int]) -> str:
    """P(fake) per sampled frame as an SVG line plot: the threshold dashed, the frames that drove
    the verdict larger, frames without a face hollow. Time in seconds, or frame numbers when
    the video has no usable time stamps."""
    if not timeline:
        return ""
    times = [t.get("time_s") for t in timeline]
    use_time = all(isinstance(v, (int, float)) and math.isfinite(v) for v in times)
    xs = [float(v) for v in times] if use_time else [float(t["frame"]) for t in timeline]
    low, high = min(xs), max(xs)
    right = _PLOT_W - _RIGHT
    inner_w, inner_h = right - _LEFT, _PLOT_H - _TOP - _BOTTOM

    def x_of(value: float) -> float:
        return _LEFT + (value - low) / (high - low) * inner_w if high > low else _LEFT + inner_w / 2

    def y_of(p: float) -> float:
        return _TOP + (1.0 - min(max(p, 0.0), 1.0)) * inner_h

    parts = [
        f'<line class="grid" x1="{_LEFT}" x2="{right}" y1="{y_of(p):.1f}" y2="{y_of(p):.1f}"/>'
        f'<text class="axis" x="{_LEFT - 6}" y="{y_of(p) + 4:.1f}" text-anchor="end">{p:g}</text>'
        for p in (0.0, 0.5, 1.0)
    ]
    bottom = _PLOT_H - 6
    parts.append(f'<text class="axis" x="{_LEFT}" y="{bottom}">{_x_label(low, use_time)}</text>')
    parts.append(
        f'<text class="axis" x="{right}" y="{bottom}" text-anchor="end">'
        f"{_x_label(high, use_time)}</text>"
    )
    y_limit = y_of(threshold)
    parts.append(
        f'<line class="threshold" x1="{_LEFT}" x2="{right}" y1="{y_limit:.1f}" y2="{y_limit:.1f}"/>'
        f'<text class="axis threshold-label" x="{right + 6}" y="{y_limit + 4:.1f}">'
        f"threshold {threshold:.2f}</text>"
    )
    points = [(x_of(x), y_of(float(t["p_fake"]))) for x, t in zip(xs, timeline)]
    parts.append(
        f'<polyline class="line" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"/>'
    )
    for (x, y), entry in zip(points, timeline):
        p_fake = float(entry["p_fake"])
        css = "noface" if entry.get("fallback") else ("fake" if p_fake >= threshold else "real")
        tip = f"frame {entry['frame']}{_at_time(entry)}: P(fake) {p_fake:.3f}"
        if entry.get("fallback"):
            tip += " (no face: whole frame)"
        radius = 5 if entry["frame"] in driving else 3
        parts.append(
            f'<circle class="dot {css}" cx="{x:.1f}" cy="{y:.1f}" r="{radius}">'
            f"<title>{_text(tip)}</title></circle>"
        )
    return (
        '<p class="plot-title">P(fake) of each sampled frame</p>'
        f'<svg class="timeline" viewBox="0 0 {_PLOT_W} {_PLOT_H}" role="img" '
        f'aria-label="P(fake) of {len(timeline)} sampled frames">{"".join(parts)}</svg>'
    )


def _x_label(value: float, in_seconds: bool) -> str:
    return f"{value:.1f} s" if in_seconds else f"frame {value:.0f}"
