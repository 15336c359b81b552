r"""AUC on photoshop-ciplab by difficulty and by edited part, from `fakescope evaluate`'s
predictions.csv of that set.

CIPLAB's fake file names say how hard the edit is (`easy_`, `mid_`, `hard_`) and end in a
4-digit mask of the edited parts (left eye, right eye, nose, mouth: `1100` = both eyes).
Each group's AUC sets its fakes against every real image of the same predictions, so the
groups are comparable with each other and with the set's overall AUC.

    .venv/bin/python scripts/photoshop_breakdown.py \
        EVAL_DIR/photoshop-ciplab/predictions.csv [--out breakdown.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

from sklearn.metrics import roc_auc_score

PARTS = ("left eye", "right eye", "nose", "mouth")
FAKE_NAME = re.compile(r"(easy|mid|hard)_\d+_([01]{4})$")


def fake_groups(file: str) -> list[str]:
    """The groups a fake belongs to: its difficulty, each part it edits, its number of parts."""
    match = FAKE_NAME.search(Path(file).stem)
    if match is None:
        return []
    difficulty, mask = match.groups()
    parts = [part for part, bit in zip(PARTS, mask) if bit == "1"]
    return [
        f"difficulty {difficulty}",
        *(f"part {part}" for part in parts),
        f"parts edited: {len(parts)}",
    ]


def breakdown(rows: list[dict]) -> dict[str, dict]:
    real_scores = [float(row["p_fake"]) for row in rows if row["label"] == "real"]
    fakes_by_group: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["label"] == "fake":
            for group in fake_groups(row["file"]):
                fakes_by_group[group].append(float(row["p_fake"]))
    result = {}
    for group in sorted(fakes_by_group):
        fakes = fakes_by_group[group]
        labels = [0] * len(real_scores) + [1] * len(fakes)
        auc = roc_auc_score(labels, real_scores + fakes) if fakes and real_scores else None
        result[group] = {"fakes": len(fakes), "reals": len(real_scores), "auc_roc": auc}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with open(args.predictions, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "image"]
    result = breakdown(rows)
    for group, numbers in result.items():
        auc = "n/a" if numbers["auc_roc"] is None else f"{numbers['auc_roc']:.4f}"
        print(f"{group:24s} {numbers['fakes']:4d} fakes  AUC {auc}")
    if args.out:
        args.out.write_text(
            json.dumps({"predictions": str(args.predictions), "groups": result}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
