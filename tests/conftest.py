"""Shared fixtures: small generated data sets and one tiny trained run, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakescope.data.toy import make_toy_dataset
from fakescope.demo import demo_config
from fakescope.training.fit import fit

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """A data set from ../shared/data, or a clean skip when it is not there."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    return make_toy_dataset(
        tmp_path_factory.mktemp("toy") / "data", n_per_class=100, size=128, seed=0
    )


@pytest.fixture(scope="session")
def trained_run(toy_data, tmp_path_factory) -> Path:
    """A lite0 trained for three epochs on the toy data: the run dir."""
    return fit(demo_config(toy_data, tmp_path_factory.mktemp("runs")))
