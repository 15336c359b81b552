"""Request counts, latencies and model batches in the Prometheus text format.

Written by hand rather than with prometheus-client: the format is a few lines of text, the
app needs three kinds of series, and per-app state (not the client's process-wide default
registry) lets tests build many apps in one process.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Callable

# Seconds: from a cached health check to a video on a busy CPU.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


class Metrics:
    """Thread-safe counters; `render` adds gauges read at scrape time from `gauges`."""

    def __init__(self, gauges: Callable[[], dict[str, tuple[str, str, float]]]):
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = defaultdict(float)
        self._gauges = gauges

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, method, status)] += 1
            buckets = self._buckets.setdefault(route, [0] * (len(LATENCY_BUCKETS) + 1))
            index = next(
                (i for i, edge in enumerate(LATENCY_BUCKETS) if seconds <= edge),
                len(LATENCY_BUCKETS),
            )
            buckets[index] += 1
            self._sums[route] += seconds

    def render(self) -> str:
        lines = [
            "# HELP fakescope_requests_total HTTP requests by route, method and status code.",
            "# TYPE fakescope_requests_total counter",
        ]
        with self._lock:
            for (route, method, status), count in sorted(self._requests.items()):
                lines.append(
                    "fakescope_requests_total"
                    f"{_labels(route=route, method=method, status=str(status))} {count}"
                )
            lines += [
                "# HELP fakescope_request_duration_seconds Time from request to response.",
                "# TYPE fakescope_request_duration_seconds histogram",
            ]
            for route, buckets in sorted(self._buckets.items()):
                cumulative = 0
                for edge, count in zip((*LATENCY_BUCKETS, "+Inf"), buckets):
                    cumulative += count
                    lines.append(
                        "fakescope_request_duration_seconds_bucket"
                        f"{_labels(route=route, le=str(edge))} {cumulative}"
                    )
                lines.append(
                    "fakescope_request_duration_seconds_sum"
                    f"{_labels(route=route)} {self._sums[route]:.6f}"
                )
                lines.append(
                    f"fakescope_request_duration_seconds_count{_labels(route=route)} {cumulative}"
                )
        for name, (kind, help_text, value) in self._gauges().items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
