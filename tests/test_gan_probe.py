"""scripts/gan_probe.py: a DCGAN checkpoint loads as published, and the probe folder holds the
shrunk reals of the split and the generated fakes, in the layout `evaluate` reads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from fakescope.data.dataset import laplacian_variance
from fakescope.data.discovery import discover_folder
from fakescope.io.images import decode_image, encode_png

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gan_probe.py"
_spec = importlib.util.spec_from_file_location("gan_probe", SCRIPT)
gan_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gan_probe)


def test_a_published_checkpoint_loads_into_the_generator(tmp_path):
    torch.manual_seed(0)
    source = gan_probe.dcgan_generator().eval()
    published = {f"main.{key}": value for key, value in source.state_dict().items()}
    torch.save({"netG_state_dict": published}, tmp_path / "weights.tar")
    loaded = gan_probe.load_generator(tmp_path / "weights.tar")
    faces = gan_probe.generate_faces(loaded, 3, seed=1)
    assert faces.shape == (3, 64, 64, 3) and faces.dtype == np.uint8
    assert np.array_equal(faces, gan_probe.generate_faces(source, 3, seed=1))
    assert not np.array_equal(faces, gan_probe.generate_faces(source, 3, seed=2))


def test_the_probe_holds_the_shrunk_reals_and_the_generated_fakes(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "faces"
    for label, count in (("real", 12), ("fake", 5)):
        for i in range(count):
            pixels = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
            (data / label).mkdir(parents=True, exist_ok=True)
            (data / label / f"{label}_{i}.png").write_bytes(encode_png(pixels))
    out = tmp_path / "probe"
    generator = gan_probe.dcgan_generator(width=4).eval()
    summary = gan_probe.write_probe(generator, [data], "all", out, fakes=7, seed=0)
    assert summary["real"] == {"faces": 12} and summary["fake"] == {"dcgan": 7}
    probe = discover_folder(out)
    samples = probe.train + probe.val + probe.test
    assert sorted(s.label for s in samples) == [0] * 12 + [1] * 7
    assert {decode_image(s.path).shape for s in samples} == {(64, 64, 3)}
    assert (out / "probe.json").is_file()


def test_blurring_to_a_sharpness_reaches_it_and_leaves_soft_images_alone():
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    target = laplacian_variance(sharp) / 20
    blurred = gan_probe.blur_to(sharp, target)
    assert laplacian_variance(blurred) <= target < laplacian_variance(sharp)
    soft = np.full((64, 64, 3), 128, dtype=np.uint8)
    assert gan_probe.blur_to(soft, target) is soft


def test_matched_reals_are_blurred_and_the_fakes_unchanged(tmp_path):
    rng = np.random.default_rng(2)
    data = tmp_path / "faces"
    for label in ("real", "fake"):
        (data / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
            (data / label / f"{label}_{i}.png").write_bytes(encode_png(pixels))
    generator = gan_probe.dcgan_generator(width=4).eval()
    plain, matched = tmp_path / "plain", tmp_path / "matched"
    gan_probe.write_probe(generator, [data], "all", plain, fakes=3, seed=0)
    gan_probe.write_probe(generator, [data], "all", matched, fakes=3, seed=0, match_sharpness=True)
    for name in ("real_0.png", "real_5.png"):
        assert laplacian_variance(decode_image(matched / "real" / f"faces_{name}")) < (
            laplacian_variance(decode_image(plain / "real" / f"faces_{name}"))
        )
    for index in range(3):
        fake = f"fake/dcgan_{index:05d}.png"
        assert (matched / fake).read_bytes() == (plain / fake).read_bytes()
