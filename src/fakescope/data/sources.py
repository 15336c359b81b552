"""Several data sets trained on together: each split on its own (its own manifest), then pooled.

Splitting each source separately keeps every source's val and test shares intact and lets a
run report test metrics per source, the numbers a cross-data-set comparison needs.
"""

from __future__ import annotations

from pathlib import Path

from fakescope.config import DataConfig
from fakescope.data.discovery import DataSplits, discover, groups_from_pairs_csv

MANIFEST = "split_manifest.json"


def manifest_name(source_name: str | None) -> str:
    return MANIFEST if source_name is None else f"split_manifest-{source_name}.json"


def source_name(root: Path) -> str:
    return Path(root).resolve().name


def discover_sources(config: DataConfig, run_dir: Path) -> tuple[DataSplits, dict[str, DataSplits]]:
    """(all sources pooled, each source by name); manifests are written to / read from run_dir.

    The pooled train split holds each source's train samples `repeat` times; by name they are once.
    """
    if not config.sources:
        return discover(config, manifest_path=run_dir / MANIFEST), {}
    names = [source_name(s.root) for s in config.sources]
    if len(set(names)) != len(names):
        raise ValueError(f"data sources need distinct folder names, got {names}")
    by_source: dict[str, DataSplits] = {}
    for name, source in zip(names, config.sources):
        single = config.model_copy(update={"root": source.root, "sources": []})
        groups = groups_from_pairs_csv(source.pairs_csv) if source.pairs_csv else None
        by_source[name] = discover(
            single, manifest_path=run_dir / manifest_name(name), groups=groups
        )
    repeats = dict(zip(names, (s.repeat for s in config.sources)))
    pooled = DataSplits(
        train=[s for name, splits in by_source.items() for s in splits.train * repeats[name]],
        val=[s for splits in by_source.values() for s in splits.val],
        test=[s for splits in by_source.values() for s in splits.test],
        layout="sources: " + ", ".join(f"{n} ({s.layout})" for n, s in by_source.items()),
        skipped=[item for splits in by_source.values() for item in splits.skipped],
    )
    return pooled, by_source
