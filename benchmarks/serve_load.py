r"""A bounded load test of `fakescope serve` on loopback: latency percentiles, throughput, memory.

    python benchmarks/serve_load.py                       # untrained lite0 (ImageNet backbone)
    python benchmarks/serve_load.py --model runs/x/checkpoints/best.ckpt \
        --requests 500 --concurrency 16

Starts the server as a subprocess on 127.0.0.1 (a free port), sends `--warmup` requests, reads
the server's resident memory, sends `--requests` POST /v1/detect with `--concurrency` clients,
reads the memory again, stops the server with SIGTERM. Prints JSON (and writes it to --out).
Exit status 1 when any response was a 5xx or memory grew by more than 10% over the run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from fakescope.checkpoint import save_detector
from fakescope.models.registry import create_detector
from fakescope.utils import atomic_write_json

MAX_RSS_GROWTH = 0.10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_image(size: int, seed: int) -> bytes:
    """A JPEG with smooth structure and noise: costs what a photo costs to decode and score."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200
    pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


def post(url: str, body: bytes, content_type: str) -> tuple[int, float]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0  # no response at all: counted with the server errors
    return status, (time.perf_counter() - started) * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def metric(text: str, name: str) -> float:
    return next(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")
    )


def start_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fakescope",
        "serve",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start; see {log}")
        time.sleep(0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        help="'default' or a checkpoint; without it: lite0, ImageNet backbone, untrained head",
    )
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fakescope-serve-load-") as scratch:
        model = args.model
        if model is None:
            network = create_detector("lite0", pretrained=True)
            model = save_detector(
                network, network.card, "lite0", {}, Path(scratch, "lite0.safetensors")
            )
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = start_server(model, port, Path(scratch, "server.log"))
        try:
            bodies = [multipart(f"{i}.jpg", test_image(args.image_size, i)) for i in range(16)]
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(
                    pool.map(
                        lambda i: post(url + "/v1/detect", *bodies[i % 16]), range(args.warmup)
                    )
                )
                rss_warm = rss_mb(process.pid)
                started = time.perf_counter()
                outcomes = list(
                    pool.map(
                        lambda i: post(url + "/v1/detect", *bodies[i % 16]), range(args.requests)
                    )
                )
                elapsed = time.perf_counter() - started
            rss_after = rss_mb(process.pid)
            with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
                metrics = response.read().decode()
        finally:
            process.send_signal(signal.SIGTERM)
            exit_status = process.wait(timeout=60)

    statuses = [status for status, _ in outcomes]
    latencies = np.array([ms for _, ms in outcomes])
    batches, crops = (
        metric(metrics, "fakescope_model_batches_total"),
        metric(metrics, "fakescope_model_crops_total"),
    )
    result = {
        "benchmark": "serve_load",
        "model": str(args.model or "lite0 (ImageNet backbone, untrained head)"),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "image": f"{args.image_size}x{args.image_size} JPEG",
        "status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "server_errors": sum(1 for s in statuses if s == 0 or s >= 500),
        "latency_ms": {
            q: round(float(np.percentile(latencies, p)), 1)
            for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        "requests_per_s": round(args.requests / elapsed, 2),
        "mean_crops_per_forward": round(crops / batches, 2) if batches else None,
        "rss_mb_after_warmup": round(rss_warm, 1),
        "rss_mb_after_run": round(rss_after, 1),
        "rss_growth": round(rss_after / rss_warm - 1, 4),
        "server_exit_status": exit_status,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return 1 if result["server_errors"] or result["rss_growth"] > MAX_RSS_GROWTH else 0


if __name__ == "__main__":
    sys.exit(main())
