r"""How much each half of an `avgmax` head moves the logit: the channels' means or their maxima.

For a Lite detector trained with `model.options.pooling=avgmax`, the logit is a weighted sum
of 1,280 channel means plus one of 1,280 channel maxima. Over a sample of a run's validation
crops (its split manifests), this prints each sum's spread and how well each alone ranks real
against fake (AUC); the model card's "Average and maximum pooling" quotes it.

    .venv/bin/python scripts/pooled_halves.py runs/default-avgmax-20261207-092250 [--per-set 240]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from fakescope.checkpoint import load_checkpoint
from fakescope.data.augment import build_transform
from fakescope.io.images import decode_image


def half_terms(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(N, 2): each image's logit contribution from the means and from the maxima."""
    weight = model.classifier.weight.detach().flatten()
    channels = weight.numel() // 2
    with torch.no_grad():
        pooled = model.pool(model.forward_features(images)).flatten(1)
    return torch.stack(
        [pooled[:, :channels] @ weight[:channels], pooled[:, channels:] @ weight[channels:]], 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--per-set", type=int, default=240)
    args = parser.parse_args()
    model, card = load_checkpoint(args.run / "checkpoints" / "best.ckpt")
    if model.classifier.in_features != 2 * model.num_features:
        parser.error(f"{args.run} was not trained with pooling avgmax")
    model.eval()
    transform = build_transform("none", card.input_size, card.mean, card.std, train=False)
    for manifest_path in sorted(args.run.glob("split_manifest-*.json")):
        manifest = json.loads(manifest_path.read_text())
        val = manifest["splits"]["val"]
        picked = np.random.default_rng(0).permutation(len(val))[: args.per_set]
        paths = [Path(manifest["root"]) / val[i][0] for i in picked]
        labels = np.array([val[i][1] for i in picked])
        images = [decode_image(path) for path in paths]
        terms = torch.cat(
            [
                half_terms(model, torch.stack([transform(im) for im in images[i : i + 32]]))
                for i in range(0, len(images), 32)
            ]
        ).numpy()
        name = manifest_path.stem.removeprefix("split_manifest-")
        means, maxima = terms[:, 0], terms[:, 1]
        aucs = [roc_auc_score(labels, t) for t in (means, maxima, means + maxima)]
        print(
            f"{name}: {len(labels)} val crops; std of the means' term {means.std():.2f}, of the"
            f" maxima's {maxima.std():.2f}; AUC means alone {aucs[0]:.3f}, maxima alone"
            f" {aucs[1]:.3f}, both {aucs[2]:.3f}"
        )


if __name__ == "__main__":
    main()
