"""Training-step throughput of a detector on this CPU: eager fp32, fp32 + channels_last (what
`precision: auto` trains with on a CPU without native bf16) and bf16 + channels_last.

The variants run in the same process, alternating, so the ratios are measured under the same
machine load. `--compile` adds bf16 + channels_last with the model compiled by TorchInductor
(shapes fixed; the warm-up steps pay for the compile). Prints JSON (and writes it with --out).

    python benchmarks/train_throughput.py --detector lite0 --size 224 --batch 32 --steps 10
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from fakescope.hardware import cpu_has_bf16
from fakescope.models.losses import create_loss
from fakescope.models.registry import create_detector, get_spec
from fakescope.utils import atomic_write_json


def make_step(detector: str, size: int, bf16: bool, channels_last: bool, compiled: bool = False):
    spec = get_spec(detector)
    model = create_detector(detector, pretrained=False, card_overrides={"input_size": size}).train()
    loss_fn = create_loss(spec.loss, **spec.loss_args)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    forward = torch.compile(model, dynamic=False) if compiled else model

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.contiguous(memory_format=memory_format)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(forward(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time a compiled bf16 step")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    torch.manual_seed(0)
    images = torch.randn(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 2, (args.batch,))
    variants = {
        "eager_fp32": make_step(args.detector, args.size, bf16=False, channels_last=False),
        "fp32_channels_last": make_step(args.detector, args.size, bf16=False, channels_last=True),
        "bf16_channels_last": make_step(args.detector, args.size, bf16=True, channels_last=True),
    }
    if args.compile:
        variants["bf16_channels_last_compiled"] = make_step(
            args.detector, args.size, bf16=True, channels_last=True, compiled=True
        )
    for step in variants.values():  # warm-up: allocator, oneDNN kernel choice
        step(images, labels)
        step(images, labels)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step(images, labels)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - started))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    result = {
        "benchmark": "train_step_throughput",
        "detector": args.detector,
        "input_size": args.size,
        "batch_size": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_has_bf16": cpu_has_bf16(),
        "images_per_s": {name: round(v, 2) for name, v in medians.items()},
        "images_per_s_per_round": {
            name: [round(v, 2) for v in values] for name, values in rates.items()
        },
        "ratio_fp32_channels_last_over_fp32": round(
            medians["fp32_channels_last"] / medians["eager_fp32"], 3
        ),
        "ratio_bf16_channels_last_over_fp32": round(
            medians["bf16_channels_last"] / medians["eager_fp32"], 3
        ),
    }
    if args.compile:
        compiled, plain = medians["bf16_channels_last_compiled"], medians["bf16_channels_last"]
        result["ratio_compiled_over_bf16_channels_last"] = round(compiled / plain, 3)
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
