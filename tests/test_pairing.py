"""Paired training batches: each fake beside the real it was made from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fakescope.config import DataConfig, SelfBlendConfig, SourceConfig
from fakescope.data.discovery import Sample
from fakescope.data.sources import discover_sources
from fakescope.data.toy import make_toy_dataset
from fakescope.models.registry import get_spec
from fakescope.training.datamodule import FolderDataModule
from fakescope.training.pairing import EpochShuffle, listed_partners, merged


def test_a_shuffle_with_partners_places_each_item_once_and_fakes_right_after_their_real():
    partners = {0: [5], 3: [7, 9]}
    sampler = EpochShuffle(12, seed=1, partners=lambda epoch: partners)
    order = list(sampler)
    assert sorted(order) == list(range(12))
    assert order[order.index(0) + 1] == 5
    assert order[order.index(3) + 1 : order.index(3) + 3] == [7, 9]
    again = EpochShuffle(12, seed=1, partners=lambda epoch: partners)
    assert list(again) == order  # (seed, epoch) alone decide
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_without_partners_the_order_is_the_runs_before_pairing_existed():
    sampler = EpochShuffle(50, seed=43)
    sampler.set_epoch(3)
    expected = torch.randperm(50, generator=torch.Generator().manual_seed(46)).tolist()
    assert list(sampler) == expected


def test_a_paired_epoch_shuffle_asks_for_each_epochs_partners():
    asked = []

    def of_epoch(epoch: int) -> dict[int, list[int]]:
        asked.append(epoch)
        return {0: [epoch + 1]}

    sampler = EpochShuffle(4, seed=0, partners=of_epoch)
    sampler.set_epoch(2)
    order = list(sampler)
    assert asked == [2] and order[order.index(0) + 1] == 3


def test_listed_fakes_follow_their_real_and_are_dealt_among_its_repeats(tmp_path: Path):
    def sample(name: str, label: int) -> Sample:
        return Sample(tmp_path / name, label)

    samples = [
        sample("r1", 0),
        sample("f1a", 1),
        sample("r2", 0),
        sample("f1b", 1),
        sample("lonely", 1),
        sample("r2", 0),  # a repeated source lists its files twice
        sample("f2a", 1),
        sample("f2b", 1),
    ]
    groups = {tmp_path / n: g for n, g in [("r1", 1), ("f1a", 1), ("f1b", 1), ("r2", 2)]}
    groups |= {tmp_path / "f2a": 2, tmp_path / "f2b": 2, tmp_path / "lonely": 3}
    assert listed_partners(samples, groups) == {0: [1, 3], 2: [6], 5: [7]}


def test_merged_partners_keep_each_sources_fakes_in_order():
    joined = merged(lambda epoch: {0: [4]}, lambda epoch: {0: [epoch], 2: [6]})
    assert joined(9) == {0: [4, 9], 2: [6]}


def test_paired_batches_put_self_blends_and_listed_fakes_beside_their_reals(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=12, size=32, seed=3)
    reals = sorted((data / "real").iterdir())
    fakes = sorted((data / "fake").iterdir())
    rows = [f"{r.name},{f.name}" for r, f in zip(reals, fakes)]
    (data / "pairs.csv").write_text("real,fake\n" + "\n".join(rows) + "\n")
    config = DataConfig(
        sources=[SourceConfig(root=data, pairs_csv=data / "pairs.csv")],
        self_blend=SelfBlendConfig(fake_ratio=0.5),
        paired_batches=True,
        batch_size=4,
        num_workers=0,
    )
    (tmp_path / "run").mkdir()
    splits, _ = discover_sources(config, tmp_path / "run")
    module = FolderDataModule(config, get_spec("lite0").card, splits, seed=0)
    loader = module.train_dataloader()
    base = module.train_samples
    keys = [index for _, index in loader.sampler]
    assert sorted(keys) == list(range(len(loader.dataset)))

    def path_of(index: int) -> Path:
        if index < len(base):
            return base[index].path
        return loader.dataset.blends.samples[index - len(base)].path

    blended = [
        i for i in keys if i >= len(base) and loader.dataset.blends.is_fake(i - len(base), 0)
    ]
    listed = [i for i in keys if i < len(base) and base[i].label == 1]
    assert blended and listed
    partner_of = {f.resolve(): r for f, r in zip(fakes, reals)}
    for fake in blended + listed:
        real = keys[keys.index(fake) - 1]
        while real >= len(base) or base[real].label == 1:  # a real's fakes follow one another
            real = keys[keys.index(real) - 1]
        expected = path_of(fake) if fake in blended else partner_of[path_of(fake).resolve()]
        assert path_of(real).resolve() == expected.resolve()


def test_paired_batches_refuse_a_weighted_sampler_that_would_ignore_them(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=6, size=32, seed=4)
    config = DataConfig(
        sources=[SourceConfig(root=data)], paired_batches=True, balance="weighted-sampler"
    )
    (tmp_path / "run").mkdir()
    splits, _ = discover_sources(config, tmp_path / "run")
    with pytest.raises(ValueError, match="paired_batches and balance: weighted-sampler"):
        FolderDataModule(config, get_spec("lite0").card, splits, seed=0)
