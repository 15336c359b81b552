"""Training batches that hold each fake beside the real face it was made from.

A self-blend is made from one real face; a fake listed in a `pairs.csv` (dfdc-faces) was made
from one real video. Seen in the same batch, the two differ only by the manipulation, so the
loss contrasts the manipulation itself rather than who or where the face is (Self-Blended
Images trains on such source-target pairs; the pooled, shuffled data otherwise puts a fake and
its real in the same batch about one pair in 800 at a batch of 32).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Sampler

from fakescope.data.discovery import Sample
from fakescope.data.sbi import SelfBlendedDataset

# index of a real item -> the indices of the fakes to place right after it
Partners = dict[int, list[int]]


def listed_partners(samples: Sequence[Sample], groups: Mapping[Path, Hashable]) -> Partners:
    """Each real sample's fakes from the same group (`groups_from_pairs_csv`).

    A sample repeated in the pooled list (a source's `repeat`) gives several copies of a group's
    reals; its fakes are dealt out among them in turn.
    """
    reals: dict[Hashable, list[int]] = defaultdict(list)
    fakes: dict[Hashable, list[int]] = defaultdict(list)
    for index, sample in enumerate(samples):
        group = groups.get(Path(sample.path).resolve())
        if group is not None:
            (fakes if sample.label else reals)[group].append(index)
    partners: Partners = defaultdict(list)
    for group, members in fakes.items():
        owners = reals.get(group)
        for turn, fake in enumerate(members if owners else []):
            partners[owners[turn % len(owners)]].append(fake)
    return dict(partners)


def blend_partners(
    blends: SelfBlendedDataset, owners: Sequence[int], offset: int
) -> Callable[[int], Partners]:
    """Per epoch: the base index of each real face (`owners[j]` for blends item j) -> its
    self-blend, at `offset + j` in a data set where the blends follow the base items."""

    def of_epoch(epoch: int) -> Partners:
        return {owners[j]: [offset + j] for j in range(len(blends)) if blends.is_fake(j, epoch)}

    return of_epoch


class EpochShuffle(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): a resumed run sees the same order.

    With `partners` it shuffles units instead of items: a real item followed by the fakes that
    `partners(epoch)` gives it, or one item alone; each item is placed once, with its real if
    it has one. A pair falls across two batches when its real ends one (about one pair in 32
    at a batch of 32).
    """

    def __init__(self, size: int, seed: int, partners: Callable[[int], Partners] | None = None):
        self.size = size
        self.seed = seed
        self.partners = partners
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        partners = self.partners(self.epoch) if self.partners else {}
        following = {fake for fakes in partners.values() for fake in fakes}
        units = [[i, *partners.get(i, [])] for i in range(self.size) if i not in following]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(units), generator=generator).tolist()
        return (index for unit in order for index in units[unit])

    def __len__(self) -> int:
        return self.size


def merged(*sources: Callable[[int], Partners]) -> Callable[[int], Partners]:
    """Partners from several sources, each real's fakes in the order of the sources."""

    def of_epoch(epoch: int) -> Partners:
        joined: Partners = defaultdict(list)
        for source in sources:
            for real, fakes in source(epoch).items():
                joined[real].extend(fakes)
        return dict(joined)

    return of_epoch
