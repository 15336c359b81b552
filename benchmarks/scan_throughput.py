"""End-to-end scan throughput (decode + faces + model) with the time split between the stages.

    python benchmarks/scan_throughput.py --model default --files 500
    python benchmarks/scan_throughput.py --model default --files 100 --side 1024

Runs `fakescope scan`'s own loop (`run_scan`, producer pool included). --side rescales copies of
the images (JPEG quality 90, in a temporary folder) so their longer side has that many pixels:
the 1024-px case of issue 5. Without --model it times a lite0 at 224 px with ImageNet weights
and an untrained head: the verdicts mean nothing, the cost is that of a trained lite0.
Stage times are summed per file inside each stage; with workers > 0 the stages overlap, so
they add up to more than the wall time. Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import cv2
import torch

from fakescope.batching import BATCH_SIZE
from fakescope.data.discovery import find_images
from fakescope.inference.detector import Detector
from fakescope.inference.inputs import ScanInput
from fakescope.inference.loading import load_detector
from fakescope.inference.scan import run_scan
from fakescope.io.images import decode_image
from fakescope.models.registry import create_detector
from fakescope.utils import atomic_write_json


def make_detector(model: str | None, backend: str) -> Detector:
    if model:
        return load_detector(model, backend=backend, use_faces=True)
    network = create_detector("lite0", pretrained=True).eval()
    return Detector(network, network.card, source="lite0 (ImageNet backbone, untrained head)")


def rescaled_copies(paths: list[Path], side: int, folder: Path) -> list[Path]:
    copies = []
    for i, path in enumerate(paths):
        image = decode_image(path)
        scale = side / max(image.shape[:2])
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        resized = cv2.resize(
            image, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        )
        copy = folder / f"{i:05d}.jpg"
        cv2.imwrite(
            str(copy), cv2.cvtColor(resized, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        copies.append(copy)
    return copies


def add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every scan benchmark shares: which files, how to scan them, where to write."""
    parser.add_argument("--data", type=Path, default=Path("../shared/data/faceswap-lfw"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--batch", type=int, default=BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)


def sample_files(args: argparse.Namespace) -> list[Path]:
    """`--files` images of `--data`, drawn with `--seed`."""
    paths = find_images(args.data)
    random.Random(args.seed).shuffle(paths)
    return paths[: args.files]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_scan_arguments(parser)
    parser.add_argument("--side", type=int, help="rescale copies to this longer side first")
    args = parser.parse_args()

    paths = sample_files(args)
    detector = make_detector(args.model, args.backend)
    with tempfile.TemporaryDirectory(prefix="fakescope-scan-bench-") as folder:
        if args.side:
            paths = rescaled_copies(paths, args.side, Path(folder))
        detector.predict(paths[0])  # warm-up: MTCNN and model weights loaded, kernels chosen
        results: list[dict] = []
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        run_scan(
            [ScanInput(p, "image") for p in paths],
            detector,
            results.append,
            batch_size=args.batch,
            workers=args.workers,
        )
        elapsed = time.perf_counter() - started
    scored = [r for r in results if "error" not in r]
    # timing_ms is per file, averaged within each batch; weight batches equally by file.
    split = {
        stage: sum(r["timing_ms"][stage] for r in scored) / 1000
        for stage in ("decode", "faces", "model")
    }
    result = {
        "benchmark": "scan_end_to_end",
        "data": str(args.data),
        "longer_side": args.side or "as stored",
        "files": len(paths),
        "unreadable": len(paths) - len(scored),
        "batch_size": args.batch,
        "workers": args.workers,
        "detector": detector.source,
        "backend": detector.backend.name,
        "input_size": detector.card.input_size,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(elapsed, 2),
        "files_per_s": round(len(paths) / elapsed, 2),
        "stage_seconds": {k: round(v, 2) for k, v in split.items()},
        "stage_share": {k: round(v / sum(split.values()), 3) for k, v in split.items()},
        "images_with_faces": sum(1 for r in scored if r["faces"]),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
