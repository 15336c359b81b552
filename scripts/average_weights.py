"""Average the weights of several trained detectors of one kind into one (a "model soup",
Wortsman et al., ICML 2022), to be scored like any detector:

    .venv/bin/python scripts/average_weights.py soup/detector.safetensors RUN_A/.../best.ckpt \
        src/fakescope/weights/default.safetensors
    fakescope evaluate soup/detector.safetensors --split val --data ../shared/data/faceswap-lfw ...

Every floating-point tensor (weights and batch-norm statistics) is the plain mean; counters
are the first detector's. The card (input size, mirror averaging, temperature, threshold) is
the first detector's too: calibrate the soup before trusting its P(fake) or its threshold.
The docs/model-history.md trial was scored this way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fakescope.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_detector


def average_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of each floating-point tensor; other tensors from the first."""
    if any(state.keys() != states[0].keys() for state in states):
        raise CheckpointError(
            "the detectors have different layers: only detectors of one kind average"
        )
    return {
        key: torch.stack([state[key].float() for state in states]).mean(0).to(first.dtype)
        if first.is_floating_point()
        else first
        for key, first in states[0].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="NAME.safetensors to write (NAME.json beside it)")
    parser.add_argument("detectors", type=Path, nargs="+", help=".ckpt or .safetensors detectors")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} already exists; choose another name")
    try:
        metadata = [read_metadata(path) for path in args.detectors]
        kinds = {meta["detector"] for meta in metadata}
        if len(kinds) > 1:
            raise CheckpointError(
                f"the detectors are of different kinds ({', '.join(sorted(kinds))})"
            )
        models = [load_checkpoint(path)[0] for path in args.detectors]
        soup = models[0]
        soup.load_state_dict(average_state([model.state_dict() for model in models]))
    except (FileNotFoundError, CheckpointError) as error:
        parser.error(str(error))
    first = metadata[0]
    print(save_detector(soup, soup.card, first["detector"], first.get("options", {}), args.out))


if __name__ == "__main__":
    main()
