r"""Model-only inference throughput on this CPU: eager and bf16 PyTorch, ONNX Runtime fp32 and INT8.

    python benchmarks/model_throughput.py --model default \
        --calibration crops/faceswap-lfw crops/photoshop-ciplab crops/dfdc-faces --out model.json
    python benchmarks/model_throughput.py --detector lite0 --batches 1 16 64 --out model.json

--model times a trained detector ('default' or a checkpoint) at its card's input size. Without
it, --detector is built with ImageNet backbone weights and an untrained head (costs are those
of a trained one). The INT8 model is calibrated on --calibration's faces, else on generated toy
faces.
Variants alternate within each round so every ratio is measured under the same machine load;
the ratios at batch 16 are medians of the per-round ratios.
FLOPs are counted with torch.utils.flop_counter (a multiply-add counts 2). Prints JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fakescope.checkpoint import load_checkpoint
from fakescope.export.onnx import export_onnx
from fakescope.export.quantize import crop_sets, quantize_int8
from fakescope.hardware import cpu_has_bf16, int8_products_saturate, physical_cores
from fakescope.inference.backends import Backend, OnnxBackend, TorchBackend
from fakescope.inference.loading import resolve
from fakescope.models.registry import create_detector
from fakescope.utils import atomic_write_json

# fp32 FLOPs per cycle per core with two 256-bit FMA pipes (Zen 4 runs AVX-512 as 2 x 256 bit):
# 2 pipes x 8 lanes x 2 (multiply + add). An estimate of the ceiling, not a measured one.
FP32_FLOPS_PER_CYCLE = 32


def flops_per_image(model: torch.nn.Module, size: int) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def cpu_mhz() -> float | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            return next(float(line.split(":")[1]) for line in handle if line.startswith("cpu MHz"))
    except (OSError, StopIteration, ValueError):
        return None


def images_per_s(backend: Backend, batch: np.ndarray, min_seconds: float) -> float:
    """Forwards of `batch` repeated for at least `min_seconds` (at least once)."""
    count, started = 0, time.perf_counter()
    while True:
        backend.logits(batch)
        count += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return count * len(batch) / elapsed


def build_model(args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    if args.model:
        model, _ = load_checkpoint(resolve(args.model))
        return model.eval(), args.model
    return create_detector(args.detector, pretrained=not args.no_pretrained).eval(), args.detector


def build_variants(
    model: torch.nn.Module,
    name: str,
    folder: Path,
    calibration_dirs: list[Path],
    calibration_crops: int,
) -> dict[str, Backend]:
    metadata = {"detector": name, "options": {}, "card": model.card.model_dump(mode="json")}
    fp32_path = export_onnx(copy.deepcopy(model), metadata, folder / "model.onnx")
    calibration = crop_sets(model.card, calibration_dirs, count=calibration_crops).calibration
    int8_path = quantize_int8(
        fp32_path, folder / "model.int8.onnx", calibration, model.card, metadata
    )
    variants: dict[str, Backend] = {
        "torch_eager_fp32": TorchBackend(
            copy.deepcopy(model), precision="fp32", channels_last=False
        ),
        "torch_channels_last_bf16": TorchBackend(
            copy.deepcopy(model), precision="bf16", channels_last=True
        ),
        "ort_fp32": OnnxBackend(fp32_path),
        "ort_int8": OnnxBackend(int8_path),
    }
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="'default' or a trained checkpoint (overrides --detector)")
    parser.add_argument("--detector", default="lite0")
    parser.add_argument(
        "--calibration",
        type=Path,
        nargs="*",
        default=[],
        help="folders of faces to calibrate INT8 with",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--min-seconds", type=float, default=1.0, help="per variant, batch size and round"
    )
    parser.add_argument("--calibration-crops", type=int, default=32)
    parser.add_argument(
        "--no-pretrained",
        action="store_true",
        help="random backbone (detectors without offline weights)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fakescope-bench-") as folder:
        model, name = build_model(args)
        variants = build_variants(
            model, name, Path(folder), args.calibration, args.calibration_crops
        )
        size = model.card.input_size
        flops = flops_per_image(model, size)
        rng = np.random.default_rng(0)
        rates: dict[int, dict[str, list[float]]] = {}
        for batch_size in args.batches:
            batch = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
            for backend in variants.values():  # warm-up: allocator, kernel choice, ORT arenas
                backend.logits(batch)
            rates[batch_size] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, backend in variants.items():
                    rates[batch_size][name].append(images_per_s(backend, batch, args.min_seconds))
    medians = {
        b: {name: statistics.median(v) for name, v in per.items()} for b, per in rates.items()
    }
    mhz = cpu_mhz()
    cores = physical_cores()
    peak = cores * mhz * FP32_FLOPS_PER_CYCLE / 1000 if mhz else None
    table = {
        str(b): {
            name: {
                "images_per_s": round(rate, 2),
                "ms_per_image": round(1000 / rate, 2),
                "gflop_per_s": round(rate * flops / 1e9, 2),
                "share_of_fp32_peak": round(rate * flops / 1e9 / peak, 4) if peak else None,
            }
            for name, rate in per.items()
        }
        for b, per in medians.items()
    }
    result = {
        "benchmark": "model_throughput",
        "detector": name,
        "input_size": size,
        "weights": "trained checkpoint"
        if args.model
        else ("ImageNet backbone" if not args.no_pretrained else "random"),
        "calibration": [str(folder) for folder in args.calibration] or "generated toy faces",
        "gflop_per_image": round(flops / 1e9, 4),
        "cpu": platform.processor() or platform.machine(),
        "physical_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "cpu_has_bf16": cpu_has_bf16(),
        # True: INT8 runs ONNX Runtime's exact u8 x u8 kernels (no VNNI), slower than u8 x s8.
        "int8_products_saturate": int8_products_saturate(),
        "cpu_mhz": mhz,
        "fp32_peak_gflop_per_s_estimate": round(peak, 1) if peak else None,
        "peak_assumption": f"{cores} cores x cpu MHz x {FP32_FLOPS_PER_CYCLE} fp32 FLOP/cycle",
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "torch": torch.__version__,
        "results": table,
        "images_per_s_per_round": {
            str(b): {k: [round(x, 2) for x in v] for k, v in per.items()}
            for b, per in rates.items()
        },
    }
    if 16 in rates:
        # Each round times every variant back to back, so a round's ratio is one measurement
        # under one load; the median of those is steadier than a ratio of medians.
        per_round = {
            name: [rate / base for rate, base in zip(runs, rates[16]["torch_eager_fp32"])]
            for name, runs in rates[16].items()
            if name != "torch_eager_fp32"
        }
        result["ratios_at_batch_16"] = {
            name: round(statistics.median(r), 2) for name, r in per_round.items()
        }
        result["ratios_at_batch_16_per_round"] = {
            name: [round(x, 2) for x in r] for name, r in per_round.items()
        }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
