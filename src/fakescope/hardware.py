"""What this machine's processors do well: physical cores, native bf16, exact int8 dot products.

Inference (backends) and training (the trainer's "auto" precision) ask the same questions here.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

# CPU flags that mean oneDNN has native bf16 kernels (Cooper Lake / Zen 4 and later, AMX).
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# CPU flags of int8 dot products that sum in 32 bits (VNNI, AMX). Without one, an x86 CPU's
# u8 x s8 instruction (vpmaddubsw) adds pairs of products in 16 bits, which saturate.
_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_X86 = ("x86_64", "amd64", "i386", "i686")


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share one core's FMA units)."""
    if hasattr(os, "sched_getaffinity"):
        allowed = os.sched_getaffinity(0)
    else:
        allowed = set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            cores.add((package, (topology / "core_id").read_text().strip()))
        except OSError:  # no sysfs topology (not Linux, or a sandbox): count logical CPUs
            return max(1, len(allowed))
    return max(1, len(cores))


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where there is no such file."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 natively and PyTorch's oneDNN can use it."""
    if not torch.backends.mkldnn.is_available():
        return False
    flags = cpu_flags() or set()
    return any(flag in flags for flag in _BF16_FLAGS)


def int8_products_saturate() -> bool:
    """True on an x86 CPU without VNNI or AMX, where ONNX Runtime's fast u8 x s8 kernels can
    saturate; an x86 CPU whose flags cannot be read counts as one (the safe side)."""
    if platform.machine().lower() not in _X86:
        return False
    flags = cpu_flags()
    return flags is None or not any(flag in flags for flag in _INT8_DOT_FLAGS)
