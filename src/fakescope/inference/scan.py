"""A scan: a stream of inputs -> a stream of results, images batched, one bad file never fatal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from fakescope.inference.detector import Detector
from fakescope.inference.inputs import InputProblem, ScanInput
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
    batch_size: int = 32,
    frames: int = 32,
    explain: bool = False,
) -> ScanSummary:
    """Score every input, in order; each result goes to `sink` as soon as it exists."""
    summary = ScanSummary()

    def emit(result: dict) -> None:
        summary.add(result)
        sink(result)

    pending: list[ScanInput] = []

    def flush() -> None:
        for result in detector.predict_batch([p.path for p in pending], batch_size=batch_size, explain=explain):
            emit(result)
        pending.clear()

    for item in items:
        if isinstance(item, InputProblem):
            flush()
            emit({"file": item.text, "kind": "input", "error": item.reason})
        elif item.kind == "video":
            flush()
            try:
                emit(detector.predict_video(item.path, frames=frames, batch_size=batch_size, explain=explain))
            except (VideoDecodeError, OSError) as error:
                emit({"file": str(item.path), "kind": "video", "error": str(error)})
        else:
            pending.append(item)
            if len(pending) == batch_size:
                flush()
    flush()
    return summary
