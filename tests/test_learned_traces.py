"""Learned generator traces: trained autoencoders that re-render a real face, and their wiring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from fakescope.cli import app
from fakescope.data.learned_traces import (
    UPSAMPLERS,
    learned_trace,
    load_tracer,
    save_tracer,
    trace_autoencoder,
    train_tracer,
)
from fakescope.data.sbi import SbiConfig, self_blend_details
from fakescope.io.images import encode_png
from test_traces import textured


def write_faces(folder: Path, count: int = 6, size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"face_{seed}.png"
        path.write_bytes(encode_png(textured(size, seed)))
        paths.append(path)
    return paths


def reconstruction_error(model: torch.nn.Module, image: np.ndarray) -> float:
    pixels = torch.from_numpy(image.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        return float((model(pixels) - pixels).abs().mean())


@pytest.mark.parametrize("upsampler", UPSAMPLERS)
def test_every_upsampler_gives_back_the_input_size(upsampler):
    model = trace_autoencoder(upsampler)
    assert model(torch.zeros(2, 3, 32, 48)).shape == (2, 3, 32, 48)


def test_an_unknown_upsampler_is_refused():
    with pytest.raises(ValueError, match="unknown up-sampler 'bicubic'"):
        trace_autoencoder("bicubic")


def test_training_learns_to_reproduce_faces(tmp_path):
    paths = write_faces(tmp_path)
    held_out = textured(64, seed=99)
    torch.manual_seed(0)
    untrained = reconstruction_error(trace_autoencoder("nearest"), held_out)
    model, summary = train_tracer(paths, "nearest", steps=60, batch=4, patch=32)
    assert summary["images"] == len(paths)
    assert reconstruction_error(model, held_out) < 0.5 * untrained


def test_a_saved_tracer_loads_back_and_traces_any_size(tmp_path):
    model, _ = train_tracer(write_faces(tmp_path / "faces"), "shuffle", steps=3, patch=32)
    path = tmp_path / "shuffle.safetensors"
    save_tracer(model, "shuffle", path)
    loaded = load_tracer(path)
    probe = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(model(probe), loaded(probe))
    image = textured(37)[:, :29]  # neither side a multiple of the decoder's stride
    traced = learned_trace(image, np.random.default_rng(0), [path])
    assert traced.shape == image.shape and traced.dtype == np.float32
    assert 0.0 <= traced.min() and traced.max() <= 255.0
    again = learned_trace(image, np.random.default_rng(0), [path])
    np.testing.assert_array_equal(traced, again)


def test_files_that_are_not_tracers_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-tracer"):
        load_tracer(tmp_path / "absent.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a fakescope tracer"):
        load_tracer(other)


def test_self_blends_take_their_traces_from_the_tracers(tmp_path):
    model, _ = train_tracer(write_faces(tmp_path / "faces"), "transposed", steps=3, patch=32)
    path = tmp_path / "transposed.safetensors"
    save_tracer(model, "transposed", path)
    image = textured(64)
    config = SbiConfig(generated_prob=1.0, tracers=(path,))
    blend = self_blend_details(image, None, np.random.default_rng(1), config)
    rng = np.random.default_rng(1)
    rng.random()  # the draw that chose a generated fake
    expected = np.rint(learned_trace(image, rng, [path])).astype(np.uint8)
    assert blend.kind == "generated"
    np.testing.assert_array_equal(blend.fake, expected)


def test_a_missing_tracer_fails_when_the_config_is_made(tmp_path):
    with pytest.raises(ValueError, match="tracer\\(s\\) not found"):
        SbiConfig(generator_trace_prob=0.3, tracers=(tmp_path / "absent.safetensors",))


def test_the_command_trains_a_tracer_on_the_train_split(toy_data, tmp_path):
    out = tmp_path / "tracer.safetensors"
    runner = CliRunner()
    args = ["synth", "train-tracer", str(out), "--data", str(toy_data), "--steps", "4"]
    result = runner.invoke(app, args + ["--upsampler", "nearest"])
    assert result.exit_code == 0, result.output
    assert '"upsampler": "nearest"' in result.output
    load_tracer(out)
    refused = runner.invoke(app, args + ["--upsampler", "bilinear"])
    assert refused.exit_code == 1 and "--upsampler must be one of" in refused.output
