"""scripts/other_faces_flagged.py: each photo's largest face is counted apart from its others."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "other_faces_flagged.py"
_spec = importlib.util.spec_from_file_location("other_faces_flagged", SCRIPT)
other_faces_flagged = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(other_faces_flagged)


def face(side: float, p_fake: float) -> dict:
    return {"box": [10.0, 10.0, 10.0 + side, 10.0 + side], "p_fake": p_fake}


def test_the_largest_face_is_the_main_one_whatever_its_place_in_the_list():
    results = [
        {"faces": [face(20, 0.9), face(80, 0.1), face(30, 0.6)]},  # real: two bystanders flagged
        {"faces": [face(50, 0.7)]},  # fake, flagged
        {"faces": [face(40, 0.2), face(60, 0.5)]},  # fake: main flagged at 0.5, other not
        {"faces": [], "fallback": "whole-image"},  # no face: nothing to count
        {"file": "broken.png", "error": "cannot decode"},
    ]
    counts = other_faces_flagged.count_flagged(results, [0, 1, 1, 0, 1], threshold=0.5)
    assert counts == {
        "fake photos, main face": {"faces": 2, "flagged": 2},
        "fake photos, other faces": {"faces": 1, "flagged": 0},
        "real photos, main face": {"faces": 1, "flagged": 0},
        "real photos, other faces": {"faces": 2, "flagged": 2},
    }


def test_an_existing_output_is_refused_before_any_work(tmp_path: Path):
    out = tmp_path / "flagged.json"
    out.write_text("kept")
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "missing.safetensors",
            "--data",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "already exists" in result.stderr
    assert out.read_text() == "kept"
