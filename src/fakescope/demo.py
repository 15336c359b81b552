"""`make demo`: the whole train -> evaluate path end to end on generated data, offline, on a CPU.

Usage: python -m fakescope.demo OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fakescope.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)
from fakescope.data.toy import make_toy_dataset
from fakescope.evaluation.evaluate import evaluate_checkpoint
from fakescope.inference.inputs import ScanInput
from fakescope.inference.loading import load_detector
from fakescope.inference.reports import open_writers
from fakescope.inference.scan import run_scan
from fakescope.training.fit import fit


def demo_config(
    data_root: Path, output_dir: Path, epochs: int = 3, image_size: int = 128
) -> TrainConfig:
    """A small lite0 (its package's ImageNet weights) on small images: about a minute on 2 cores."""
    return TrainConfig(
        name="demo",
        output_dir=output_dir,
        data=DataConfig(root=data_root, augmentation="none", batch_size=32, num_workers=0),
        model=ModelConfig(
            name="lite0", pretrained=True, card={"input_size": image_size, "face_crop": "none"}
        ),
        # Few steps on small images: rates well above the fine-tuning defaults.
        optimizer=OptimizerConfig(lr_backbone=1e-3, lr_head=3e-3),
        scheduler=SchedulerConfig(name="none"),
        trainer=TrainerConfig(max_epochs=epochs, early_stopping=None, log_every_n_steps=5),
    )


def run_demo(out_dir: Path) -> dict:
    """Generate data, train, evaluate on the held-out split, and scan its test files into HTML."""
    data_root = make_toy_dataset(out_dir / "data", n_per_class=150, size=128, seed=0)
    run_dir = fit(demo_config(data_root, out_dir / "runs"))
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    report = evaluate_checkpoint(checkpoint, [data_root], run_dir / "evaluation")
    manifest = json.loads((run_dir / "split_manifest.json").read_text())
    test = manifest["splits"]["test"]
    test_files = [
        data_root / rel for label in (0, 1) for rel in [r for r, y in test if y == label][:12]
    ]
    detector = load_detector(checkpoint)
    with open_writers(
        html=out_dir / "scan.html", json=out_dir / "scan.json", meta=detector.describe()
    ) as writers:
        run_scan((ScanInput(p, "image") for p in test_files), detector, writers.write, explain=True)
    return {
        "run_dir": str(run_dir),
        "test": report["datasets"][data_root.name],
        "scan_report": str(out_dir / "scan.html"),
    }


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    summary = run_demo(out_dir)
    test = summary["test"]
    print(
        json.dumps(
            {
                "run_dir": summary["run_dir"],
                "test_auc": test["auc_roc"],
                "test_accuracy": test["accuracy"],
                "scan_report": summary["scan_report"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
