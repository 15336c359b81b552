"""Generator traces from trained decoders: AutoGAN's idea (Zhang, Karaman & Chang, WIFS 2019).

A small autoencoder learns to reproduce real faces; its decoder up-samples the way
generators do (a transposed convolution, nearest-neighbour up-sampling then a convolution,
or a sub-pixel convolution). A real face passed through it keeps its content and gains
what a learnt decoder leaves: spectral replicas of its up-sampling, a slightly lost fine
texture, a small colour drift. Unlike the random kernels of `fakescope.data.traces`, these
traces come from decoders trained by gradient descent, as every generator's are. Each
up-sampler gets its own autoencoder (`fakescope synth train-tracer`), and each trace is drawn
from one of them at random.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from fakescope.data.dataset import decode_or_warn
from fakescope.io.images import DEFAULT_MAX_PIXELS
from fakescope.utils import atomic_write_bytes

logger = logging.getLogger(__name__)

UPSAMPLERS = ("transposed", "nearest", "shuffle")
# Two stride-2 stages: the decoder up-samples twice, as the last layers of a generator do.
_STRIDE = 4


def _upsample(upsampler: str, channels_in: int, channels_out: int) -> nn.Module:
    if upsampler == "transposed":
        return nn.ConvTranspose2d(channels_in, channels_out, 4, stride=2, padding=1)
    if upsampler == "nearest":
        return nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels_in, channels_out, 3, padding=1),
        )
    if upsampler == "shuffle":
        return nn.Sequential(
            nn.Conv2d(channels_in, 4 * channels_out, 3, padding=1), nn.PixelShuffle(2)
        )
    raise ValueError(f"unknown up-sampler {upsampler!r}: one of {', '.join(UPSAMPLERS)}")


def trace_autoencoder(upsampler: str, width: int = 16) -> nn.Sequential:
    """Encoder to a quarter of the resolution (4x the channels), decoder by `upsampler`.

    Narrow on purpose: run on every traced training face, it must cost little next to the
    detector's own step (about 30 ms for a 256-pixel face on one core).
    """
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4 * width, 4 * width, 3, padding=1),
        nn.LeakyReLU(0.2),
        _upsample(upsampler, 4 * width, 2 * width),
        nn.LeakyReLU(0.2),
        _upsample(upsampler, 2 * width, width),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 3, 3, padding=1),
    )


def _reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # L1 on pixels and on their differences: the differences keep edges and texture, which a
    # pixel loss alone lets an autoencoder smooth away (a blurry copy teaches "soft = fake").
    pixels = (output - target).abs().mean()
    dy = (output.diff(dim=2) - target.diff(dim=2)).abs().mean()
    dx = (output.diff(dim=3) - target.diff(dim=3)).abs().mean()
    return pixels + dx + dy


def _load_faces(paths: Sequence[Path], count: int, rng: np.random.Generator) -> list[np.ndarray]:
    warned: set[str] = set()
    chosen = (
        decode_or_warn(paths[i], DEFAULT_MAX_PIXELS, warned)
        for i in rng.permutation(len(paths))[:count]
    )
    return [face for face in chosen if face is not None]


def _patch_batch(
    faces: list[np.ndarray], batch: int, patch: int, rng: np.random.Generator
) -> torch.Tensor:
    patches = []
    for index in rng.integers(len(faces), size=batch):
        face = faces[index]
        top = rng.integers(face.shape[0] - patch + 1)
        left = rng.integers(face.shape[1] - patch + 1)
        crop = face[top : top + patch, left : left + patch]
        patches.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    pixels = np.stack(patches).astype(np.float32) / 255.0
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def train_tracer(
    images: Sequence[Path],
    upsampler: str,
    steps: int = 1500,
    seed: int = 0,
    batch: int = 16,
    patch: int = 96,
    max_images: int = 2000,
    lr: float = 2e-3,
) -> tuple[nn.Sequential, dict]:
    """Train one tracer on random patches of up to `max_images` of `images` (real faces)."""
    if not images:
        raise ValueError("no real images to train a tracer on")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    faces = [f for f in _load_faces(images, max_images, rng) if min(f.shape[:2]) >= patch]
    if not faces:
        raise ValueError(f"no readable image of at least {patch} x {patch} pixels")
    model = trace_autoencoder(upsampler)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    started = time.monotonic()
    recent: deque[float] = deque(maxlen=100)
    for step in range(steps):
        pixels = _patch_batch(faces, batch, patch, rng)
        loss = _reconstruction_loss(model(pixels), pixels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        recent.append(loss.item())
        if (step + 1) % 250 == 0:
            logger.info("%s step %d: loss %.4f", upsampler, step + 1, np.mean(recent))
    model.eval()
    summary = {
        "upsampler": upsampler,
        "images": len(faces),
        "steps": steps,
        "seed": seed,
        "final_loss": round(float(np.mean(recent)), 5),
        "seconds": round(time.monotonic() - started, 1),
    }
    return model, summary


def save_tracer(model: nn.Sequential, upsampler: str, path: str | Path) -> None:
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    atomic_write_bytes(path, save(state, metadata={"upsampler": upsampler}))


def load_tracer(path: str | Path) -> nn.Sequential:
    """A tracer saved by `save_tracer` (safetensors: loading runs no code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tracer {path} not found (fakescope synth train-tracer makes one)")
    with safe_open(str(path), framework="pt") as handle:
        upsampler = (handle.metadata() or {}).get("upsampler")
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"{path}: not a fakescope tracer (no known up-sampler in its metadata)")
    model = trace_autoencoder(upsampler, width=state["0.weight"].shape[0])
    model.load_state_dict(state)
    return model.eval()


@functools.cache
def _tracers(paths: tuple[str, ...]) -> tuple[nn.Sequential, ...]:
    # Loaded once per process (each data-loader worker loads its own copy).
    return tuple(load_tracer(path) for path in paths)


def learned_trace(image: np.ndarray, rng: np.random.Generator, paths: Sequence[str]) -> np.ndarray:
    """`image` (H x W x 3, uint8 or float 0..255) re-rendered by one of the tracers at `paths`.

    Returns float32 H x W x 3 in 0..255, like `fakescope.data.traces.upsampling_trace`.
    """
    tracers = _tracers(tuple(str(path) for path in paths))
    tracer = tracers[rng.integers(len(tracers))]
    height, width = image.shape[:2]
    # Reflect-pad to a multiple of the decoder's stride, so every size comes back whole.
    pad_y, pad_x = -height % _STRIDE, -width % _STRIDE
    pixels = np.pad(image.astype(np.float32) / 255.0, ((0, pad_y), (0, pad_x), (0, 0)), "reflect")
    with torch.inference_mode():
        output = tracer(torch.from_numpy(pixels).permute(2, 0, 1)[None])
    traced = output[0].permute(1, 2, 0).numpy()[:height, :width]
    return np.clip(traced * 255.0, 0.0, 255.0).astype(np.float32)
