"""What a detector's extra face cuts cost a scan: the same files scanned with the card as it is
and with its `extra_margins` switched off (mirror averaging kept), alternately, in one run.

    python benchmarks/scan_views.py --model default --files 500 --rounds 3

Each round times `fakescope scan`'s own loop (`run_scan`, producer pool included) once per card;
the JSON gives the files/s of every round, their medians, and the median of the per-round
ratios (with views over without), which is what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from scan_throughput import add_scan_arguments, make_detector, sample_files

from fakescope.inference.inputs import ScanInput
from fakescope.inference.scan import run_scan
from fakescope.utils import atomic_write_json

VIEW_FIELDS = {"face_margin", "extra_margins", "mirror_average"}


def files_per_s(detector, paths: list[Path], batch: int, workers: int) -> float:
    started = time.perf_counter()
    inputs = [ScanInput(p, "image") for p in paths]
    run_scan(inputs, detector, lambda _: None, batch_size=batch, workers=workers)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scan_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.set_defaults(model="default")
    args = parser.parse_args()

    paths = sample_files(args)
    with_views = make_detector(args.model, args.backend)
    if not with_views.card.extra_margins:
        parser.error(f"{args.model}: its card has no extra_margins to compare")
    without = make_detector(args.model, args.backend)
    without.card = without.card.with_updates(extra_margins=())
    for detector in (with_views, without):
        detector.predict(paths[0])  # warm-up: MTCNN and model weights loaded, kernels chosen
    load_before = os.getloadavg()[0]
    rounds: dict[str, list[float]] = {"with_extra_margins": [], "without": []}
    for _ in range(args.rounds):
        for name, detector in (("with_extra_margins", with_views), ("without", without)):
            rounds[name].append(round(files_per_s(detector, paths, args.batch, args.workers), 2))
    ratios = [a / b for a, b in zip(rounds["with_extra_margins"], rounds["without"])]
    result = {
        "benchmark": "scan_extra_margins",
        "data": str(args.data),
        "files": len(paths),
        "detector": with_views.source,
        "backend": with_views.backend.name,
        "card": with_views.card.model_dump(include=VIEW_FIELDS),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "files_per_s_per_round": rounds,
        "files_per_s": {name: statistics.median(values) for name, values in rounds.items()},
        "ratio_with_over_without": round(statistics.median(ratios), 3),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
