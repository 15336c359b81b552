"""Draw docs/images/sbi_examples.png: synthetic fakes of skimage's astronaut, with masks.

Only the public-domain astronaut photo that ships with scikit-image is used (flipped and
cropped two ways), so no data-set image lands in the repository. Each row: the real crop,
the fake, its mask and the difference (amplified) between the two. The splice row takes its
parts from the mirrored photo, the only other face at hand. The last two rows show the
generator traces (fakescope.data.traces): a blended face whose source went through a
random up-sampling layer, and a whole face re-rendered by one. With `--tracers` (`make
tracers`), two more rows show the same with a trained decoder (fakescope.data.learned_traces).

    .venv/bin/python scripts/make_sbi_grid.py [--out docs/images/sbi_examples.png] [--seed 0]
        [--tracers tracers/*.safetensors]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from fakescope.data.sbi import Donor, SbiConfig, self_blend_details  # noqa: E402
from fakescope.faces import FaceDetector, crop_face  # noqa: E402
from fakescope.utils import atomic_write_bytes  # noqa: E402

CROP_SIDE = 192
DIFFERENCE_GAIN = 4

# (title, crop margin, mirrored, kind forced: "face", a part, None for no landmarks, "splice"
# (parts of the mirrored crop), or a generator trace: "traced" (face mask, source up-sampled)
# or "generated" (no blend))
EXAMPLES = (
    ("whole face", 0.3, False, "face"),
    ("whole face, mirrored", 0.3, True, "face"),
    ("whole face, tight crop", 0.15, False, "face"),
    ("eyes only", 0.3, False, "eyes"),
    ("nose only", 0.3, True, "nose"),
    ("mouth only", 0.3, False, "mouth"),
    ("no landmarks: ellipse", 0.3, False, None),
    ("splice from another face", 0.3, False, "splice"),
    ("face + generator trace", 0.3, False, "traced"),
    ("whole face re-rendered", 0.3, True, "generated"),
)
LEARNED_EXAMPLES = (
    ("face + trained decoder's trace", 0.3, False, "traced"),
    ("whole face, trained decoder", 0.3, True, "generated"),
)


def face_crops(detector: FaceDetector) -> dict[tuple[float, bool], tuple[np.ndarray, np.ndarray]]:
    """(margin, mirrored) -> (crop, its landmarks found on the crop itself)."""
    photo = data.astronaut()
    crops = {}
    for _, margin, mirrored, _ in EXAMPLES:
        image = np.ascontiguousarray(photo[:, ::-1]) if mirrored else photo
        face = detector.detect(image).faces[0]
        crop = crop_face(image, face.box, margin=margin, out_size=CROP_SIDE)
        crops[(margin, mirrored)] = (crop, detector.detect(crop).faces[0].landmarks)
    return crops


def config_for(kind: str | None, tracers: tuple[Path, ...] = ()) -> SbiConfig:
    if kind in (None, "face", "splice"):
        return SbiConfig(part_mask_prob=0.0)
    if kind == "traced":
        return SbiConfig(part_mask_prob=0.0, generator_trace_prob=1.0, tracers=tracers)
    if kind == "generated":
        return SbiConfig(generated_prob=1.0, tracers=tracers)
    return SbiConfig(part_mask_prob=1.0, part_kinds=(kind,))


def draw(out_png: Path, seed: int, tracers: tuple[Path, ...]) -> None:
    crops = face_crops(FaceDetector())
    columns = ("real", "synthetic fake", "mask", f"|fake - real| x {DIFFERENCE_GAIN}")
    rows = [(example, ()) for example in EXAMPLES]
    if tracers:
        rows += [(example, tracers) for example in LEARNED_EXAMPLES]
    figure, axes = plt.subplots(
        len(rows), len(columns), figsize=(2.0 * len(columns), 2.1 * len(rows))
    )
    for row, ((title, margin, mirrored, kind), row_tracers) in enumerate(rows):
        crop, landmarks = crops[(margin, mirrored)]
        donor = Donor(*crops[(margin, not mirrored)]) if kind == "splice" else None
        result = self_blend_details(
            crop,
            None if kind is None else landmarks,
            np.random.default_rng([seed, row]),
            config_for(kind, row_tracers),
            donor,
        )
        difference = np.abs(result.fake.astype(np.int16) - crop.astype(np.int16))
        panels = (
            crop,
            result.fake,
            result.mask,
            np.clip(difference * DIFFERENCE_GAIN, 0, 255).astype(np.uint8),
        )
        for column, panel in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(
                panel,
                cmap="gray" if panel.ndim == 2 else None,
                vmin=0,
                vmax=1 if panel.ndim == 2 else None,
            )
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=9)
        axes[row, 0].set_ylabel(f"{title}\nratio {result.blend_ratio:g}", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    # Full RGB (a palette would change the very colours the fakes are about), zlib-optimised.
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    compact = io.BytesIO()
    image.save(compact, format="PNG", optimize=True)
    atomic_write_bytes(out_png, compact.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/sbi_examples.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracers", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    draw(args.out, args.seed, tuple(args.tracers))
    print(args.out)


if __name__ == "__main__":
    main()
