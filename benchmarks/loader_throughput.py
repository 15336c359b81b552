"""DataLoader throughput per augmentation preset: is the loader fast enough to feed training?

    python benchmarks/loader_throughput.py --data crops/faceswap-lfw --size 192 --out loader.json

Decodes and augments real images exactly as training does (ImageDataset + the preset's
transform, optionally with the file-history equalisation and online self-blends), in a
DataLoader with --workers processes, and reports images/s per preset. Compare with the training
step's own rate (benchmarks/train_throughput.py): the loader is not the bottleneck when its rate
is well above the step's. Prints JSON (and writes it with --out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fakescope.data.augment import PRESETS, build_transform
from fakescope.data.dataset import ImageDataset, collate_skip_broken
from fakescope.data.discovery import Sample, find_images
from fakescope.data.sbi import SbiConfig, SelfBlendedDataset
from fakescope.utils import atomic_write_json

MEAN = STD = (0.5, 0.5, 0.5)


def rate(dataset, batch: int, workers: int, batches: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_skip_broken,
    )
    iterator = iter(loader)
    next(iterator)  # workers started, first batch in flight: not what a long run pays per batch
    count, started = 0, time.perf_counter()
    for _ in range(batches):
        images, _labels = next(iterator)
        count += len(images)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("crops/faceswap-lfw"))
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=15)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    reals = [Sample(path, 0) for path in find_images(args.data / "real")]
    needed = args.batch * (args.batches + 1)
    reals = (reals * (needed // max(len(reals), 1) + 1))[:needed]
    results = {}
    for preset in PRESETS:
        for equalize in (False, True):
            transform = build_transform(
                preset, args.size, MEAN, STD, train=True, seed=0, equalize_history=equalize
            )
            name = f"{preset}{' + equalize_history' if equalize else ''}"
            results[name] = round(
                rate(ImageDataset(reals, transform), args.batch, args.workers, args.batches), 1
            )
    # The default recipe's fakes: self-blends (with generator traces) made in the workers.
    transform = build_transform(
        "degrade", args.size, MEAN, STD, train=True, seed=0, equalize_history=True
    )
    blends = SelfBlendedDataset(
        reals,
        transform,
        {},
        fake_ratio=1.0,
        config=SbiConfig(generator_trace_prob=0.3, generated_prob=0.1),
    )
    results["degrade + equalize_history, all self-blended"] = round(
        rate(blends, args.batch, args.workers, args.batches), 1
    )
    result = {
        "benchmark": "loader_throughput",
        "data": str(args.data),
        "input_size": args.size,
        "batch_size": args.batch,
        "workers": args.workers,
        "torch_threads": torch.get_num_threads(),
        "images_per_s": results,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
