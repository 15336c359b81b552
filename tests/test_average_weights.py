"""scripts/average_weights.py: a soup of detectors is the mean of their weights, loads, scores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fakescope
from fakescope.checkpoint import load_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_weights.py"


def average(out: Path, *detectors: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *map(str, detectors)],
        capture_output=True,
        text=True,
    )


def test_soup_is_the_mean_of_the_weights_and_scores_like_a_detector(
    trained_run: Path, tmp_path: Path
):
    best, last = (
        trained_run / "checkpoints" / "best.ckpt",
        trained_run / "checkpoints" / "last.ckpt",
    )
    states = [load_checkpoint(path)[0].state_dict() for path in (best, last)]
    key = next(
        k
        for k, v in states[0].items()
        if v.is_floating_point() and not torch.equal(v, states[1][k])
    )
    out = tmp_path / "soup" / "detector.safetensors"
    assert average(out, best, last).returncode == 0
    soup, card = load_checkpoint(out)
    torch.testing.assert_close(soup.state_dict()[key], (states[0][key] + states[1][key]) / 2)
    assert card == load_checkpoint(best)[1]
    crops = [np.full((64, 64, 3), value, np.uint8) for value in (40, 200)]
    assert np.isfinite(fakescope.load(str(out)).score_faces([[crop] for crop in crops])).all()
    # Nothing the user had is overwritten.
    before = out.read_bytes()
    refused = average(out, best, last)
    assert (
        refused.returncode != 0
        and "already exists" in refused.stderr
        and out.read_bytes() == before
    )


@pytest.mark.parametrize("missing", [True, False])
def test_soup_refuses_what_is_not_a_detector(trained_run: Path, tmp_path: Path, missing: bool):
    other = tmp_path / "missing.ckpt"
    if not missing:
        other.write_bytes(b"not a checkpoint")
    result = average(
        tmp_path / "soup.safetensors", trained_run / "checkpoints" / "best.ckpt", other
    )
    assert (
        result.returncode == 2 and str(other) in result.stderr and "Traceback" not in result.stderr
    )
    assert not (tmp_path / "soup.safetensors").exists()
