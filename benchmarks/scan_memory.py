"""Peak memory of a long scan: RSS sampled as results stream out, and the process's peak.

    python benchmarks/scan_memory.py --model default --files 10000 --out scan_memory.json

Scans `--files` distinct images taken from the folders given (default: the three sets of
../shared/data) with `fakescope scan`'s own loop and writers (JSONL and CSV into a temporary
folder), and records the resident set size every `--every` files. Flat memory means the RSS
after the first thousand files does not climb with the file count: the JSON reports the
slope of a least-squares line through the samples after warm-up, in MB per 1,000 files.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from fakescope.data.discovery import find_images
from fakescope.inference.inputs import ScanInput
from fakescope.inference.loading import load_detector
from fakescope.inference.reports import open_writers
from fakescope.inference.scan import run_scan
from fakescope.utils import atomic_write_json

DEFAULT_DATA = [
    Path("../shared/data") / name for name in ("faceswap-lfw", "photoshop-ciplab", "dfdc-faces")
]


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--model", default="default")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    paths = [path for folder in args.data for path in find_images(folder)]
    random.Random(args.seed).shuffle(paths)
    if len(paths) < args.files:
        raise SystemExit(f"only {len(paths)} images under {args.data}; asked for {args.files}")
    paths = paths[: args.files]
    detector = load_detector(args.model, backend=args.backend)
    samples: list[tuple[int, float]] = [(0, rss_mb())]
    done = 0

    with tempfile.TemporaryDirectory(prefix="fakescope-mem-bench-") as folder:
        with open_writers(
            jsonl=Path(folder) / "scan.jsonl",
            csv=Path(folder) / "scan.csv",
            meta=detector.describe(),
        ) as writers:

            def sink(result: dict) -> None:
                nonlocal done
                writers.write(result)
                done += 1
                if done % args.every == 0:
                    samples.append((done, rss_mb()))

            started = time.perf_counter()
            summary = run_scan(
                [ScanInput(p, "image") for p in paths], detector, sink, workers=args.workers
            )
            elapsed = time.perf_counter() - started

    after_warm_up = [(n, mb) for n, mb in samples if n >= 1000]
    counts, values = np.array(after_warm_up, dtype=float).T
    slope = float(np.polyfit(counts / 1000, values, 1)[0])
    result = {
        "benchmark": "scan_memory",
        "files": len(paths),
        "scored": summary.scored,
        "unreadable": len(summary.problems),
        "detector": detector.source,
        "backend": detector.backend.name,
        "workers": args.workers,
        "seconds": round(elapsed, 1),
        "files_per_s": round(len(paths) / elapsed, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb_at_files": {str(n): round(mb, 1) for n, mb in samples},
        "rss_slope_mb_per_1000_files_after_1000": round(slope, 2),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
