"""Backends that run a detector's forward pass on a normalised batch: PyTorch or ONNX Runtime.

Both take a (B, 3, S, S) float batch (numpy or torch) and return the raw logits as a float32
numpy array, so the Detector scores crops the same way whichever backend it holds.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from fakescope.hardware import cpu_has_bf16, int8_products_saturate, physical_cores

Precision = Literal["auto", "fp32", "bf16"]
# ONNX Runtime's session option for u8 x u8 int8 kernels in place of u8 x s8 on x86.
EXACT_INT8_OPTION = "session.x64quantprecision"


class Backend(Protocol):
    name: str

    def logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """(B, 3, S, S) normalised float batch -> (B, K) float32 logits."""


class TorchBackend:
    """Eager PyTorch in inference mode; channels-last and bf16 autocast where they help the CPU.

    precision: "auto" uses bf16 autocast on a CPU with native bf16 (see `cpu_has_bf16`), fp32
    elsewhere and on GPUs. bf16 moves P(fake) by about 1e-2 at most; use "fp32" for scores that
    must match training-time evaluation bit for bit. "bf16" asked for on a CPU that emulates it
    runs, with a warning: 12x slower than fp32 on an AVX2-only CPU (docs/performance.md).
    The model is converted in place.
    """

    def __init__(self, model: nn.Module, precision: Precision = "auto", channels_last: bool = True):
        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        self.device = next(model.parameters()).device
        on_cpu = self.device.type == "cpu"
        native_cpu_bf16 = on_cpu and cpu_has_bf16()
        self.bf16 = precision == "bf16" or (precision == "auto" and native_cpu_bf16)
        if precision == "bf16" and on_cpu and not native_cpu_bf16:
            warnings.warn(
                "bf16 on a CPU without native bf16 is emulated and runs several times slower "
                "than fp32; use precision 'auto' or 'fp32'",
                stacklevel=2,
            )
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(memory_format=self.memory_format)
        self.name = (
            f"torch-{'bf16' if self.bf16 else 'fp32'}{'-channels-last' if channels_last else ''}"
        )

    @torch.inference_mode()
    def logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        inputs = torch.as_tensor(batch).to(self.device).contiguous(memory_format=self.memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = self.model(inputs)
        return output.float().cpu().numpy()


class OnnxBackend:
    """An ONNX Runtime CPU session: all graph optimisations, one intra-op thread per physical core.

    Sequential execution: a CNN is a chain of ops, so parallel branches would only add overhead.
    """

    def __init__(
        self, model: str | Path | bytes, threads: int | None = None, precision: str = "fp32"
    ):
        """precision: what the model computes in, for the backend's name; the loader reads it
        from the export's metadata (`fakescope.inference.loading.onnx_model`)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or physical_cores()
        # No spin-waiting between runs: MTCNN and the producer pool run torch in this process,
        # and spinning ORT workers starved them (measured: a torch + ORT loop ran 20x slower).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if int8_products_saturate():
            # INT8 models then run ONNX Runtime's exact u8 x u8 kernels: on an AVX2-only CPU the
            # default U8S8 ones moved the shipped INT8 default's P(fake) by 0.22 on average, and
            # these by 0.03, as VNNI does (docs/performance.md). Left off with VNNI, where it
            # would only cost speed; fp32 models are not affected.
            options.add_session_config_entry(EXACT_INT8_OPTION, "1")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = f"onnxruntime-{precision}"

    def logits(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        inputs = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.session.run(None, {self.input_name: inputs})[0], dtype=np.float32)
