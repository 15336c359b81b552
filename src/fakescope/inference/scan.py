"""A scan: a stream of inputs -> a stream of results, images batched, one bad file never fatal."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Iterator

from fakescope.batching import BATCH_SIZE
from fakescope.inference.detector import Detector, PreparedChunk, PreparedVideo
from fakescope.inference.inputs import InputProblem, ScanInput
from fakescope.inference.pipeline import ordered_prefetch
from fakescope.io.video import VideoDecodeError


@dataclass
class ScanSummary:
    fake: int = 0
    real: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return self.fake + self.real

    def add(self, result: dict) -> None:
        if "error" in result:
            self.problems.append((result["file"], result["error"]))
        elif result["prediction"] == "Fake":
            self.fake += 1
        else:
            self.real += 1


def run_scan(
    items: Iterable[ScanInput | InputProblem],
    detector: Detector,
    sink: Callable[[dict], None],
    *,
    batch_size: int = BATCH_SIZE,
    frames: int = 32,
    explain: bool = False,
    workers: int = 0,
) -> ScanSummary:
    """Score every input, in order; each result goes to `sink` as soon as it exists.

    workers: threads that decode and find faces ahead while the model scores (see
    `ordered_prefetch`); 0 does everything in this thread.
    """
    summary = ScanSummary()
    for prepared in ordered_prefetch(_preparations(items, detector, batch_size, frames), workers):
        if isinstance(prepared, PreparedChunk):
            results = detector.score_chunk(prepared, batch_size, explain)
        elif isinstance(prepared, PreparedVideo):
            results = [detector.score_video(prepared, batch_size, explain)]
        else:
            results = [prepared]
        for result in results:
            summary.add(result)
            sink(result)
    return summary


def _preparations(
    items: Iterable[ScanInput | InputProblem], detector: Detector, batch_size: int, frames: int
) -> Iterator[Callable[[], PreparedChunk | PreparedVideo | dict]]:
    """The work before the model, as tasks in input order: image chunks, videos, problems."""
    images: list[str] = []
    for item in items:
        if not isinstance(item, InputProblem) and item.kind != "video":
            images.append(str(item.path))
            if len(images) == batch_size:
                yield partial(detector.prepare_chunk, images)
                images = []
            continue
        if images:
            yield partial(detector.prepare_chunk, images)
            images = []
        if isinstance(item, InputProblem):
            yield partial(dict, file=item.text, kind="input", error=item.reason)
        else:
            yield partial(_prepare_video, detector, str(item.path), frames)
    if images:
        yield partial(detector.prepare_chunk, images)


def _prepare_video(detector: Detector, path: str, frames: int) -> PreparedVideo | dict:
    try:
        return detector.prepare_video(path, frames)
    except (VideoDecodeError, OSError) as error:
        return {"file": path, "kind": "video", "error": str(error)}
