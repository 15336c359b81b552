"""What the processors can do: native bf16 for training, exact int8 products for ONNX Runtime."""

from __future__ import annotations

import pytest

from fakescope import hardware


@pytest.mark.parametrize(
    "machine, flags, saturates",
    [
        ("x86_64", {"avx2", "fma"}, True),  # AVX2 only (Zen 2/3, Intel before Ice Lake)
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, False),
        ("x86_64", {"avx2", "avx_vnni"}, False),  # Alder Lake and later
        ("AMD64", {"avx2", "amx_int8"}, False),
        ("x86_64", None, True),  # flags unknown: the safe side
        ("aarch64", {"asimd", "asimddp"}, False),  # ARM's dot products sum in 32 bits
        ("arm64", None, False),
    ],
)
def test_int8_products_saturate_on_x86_without_vnni_only(monkeypatch, machine, flags, saturates):
    monkeypatch.setattr(hardware.platform, "machine", lambda: machine)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.int8_products_saturate() is saturates


@pytest.mark.parametrize(
    "flags, native",
    [({"avx2"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16"}, True), (None, False)],
)
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(hardware.torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.cpu_has_bf16() is native


def test_this_machine_answers_without_error():
    assert hardware.physical_cores() >= 1
    assert isinstance(hardware.int8_products_saturate(), bool)
    assert isinstance(hardware.cpu_has_bf16(), bool)
