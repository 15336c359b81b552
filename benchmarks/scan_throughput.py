"""End-to-end scan throughput (decode + faces + model) with the time split between the stages.

    python benchmarks/scan_throughput.py --data ../shared/data/faceswap-lfw --files 500
    python benchmarks/scan_throughput.py --model runs/x/checkpoints/best.ckpt ...

Without --model it times a lite0 at 224 px with ImageNet weights and an untrained head: the
verdicts mean nothing, the cost is that of a trained lite0. Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

from fakescope.data.discovery import find_images
from fakescope.inference.detector import Detector
from fakescope.inference.loading import load_detector
from fakescope.models.registry import create_detector
from fakescope.utils import atomic_write_json


def make_detector(model: str | None) -> Detector:
    if model:
        return load_detector(model, use_faces=True)
    network = create_detector("lite0", pretrained=True).eval()
    return Detector(network, network.card, source="lite0 (ImageNet backbone, untrained head)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/faceswap-lfw"))
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    paths = find_images(args.data)
    random.Random(args.seed).shuffle(paths)
    paths = paths[: args.files]
    detector = make_detector(args.model)
    detector.predict(paths[0])  # warm-up: MTCNN and model weights loaded, kernels chosen

    started = time.perf_counter()
    results = detector.predict_batch(paths, batch_size=args.batch)
    elapsed = time.perf_counter() - started
    scored = [r for r in results if "error" not in r]
    # timing_ms is per file, averaged within each batch; weight batches equally by file.
    split = {stage: sum(r["timing_ms"][stage] for r in scored) / 1000 for stage in ("decode", "faces", "model")}
    result = {
        "benchmark": "scan_end_to_end",
        "data": str(args.data),
        "files": len(paths),
        "unreadable": len(paths) - len(scored),
        "batch_size": args.batch,
        "detector": detector.source,
        "input_size": detector.card.input_size,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "seconds": round(elapsed, 2),
        "files_per_s": round(len(paths) / elapsed, 2),
        "seconds_by_stage": {k: round(v, 2) for k, v in split.items()},
        "share_by_stage": {k: round(v / sum(split.values()), 3) for k, v in split.items()},
        "images_with_faces": sum(1 for r in scored if r["faces"]),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
