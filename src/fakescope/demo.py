"""`make demo`: the whole train -> evaluate path end to end on generated data, offline, on a CPU.

Usage: python -m fakescope.demo OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fakescope.config import DataConfig, ModelConfig, OptimizerConfig, SchedulerConfig, TrainConfig, TrainerConfig
from fakescope.data.toy import make_toy_dataset
from fakescope.evaluation.evaluate import evaluate_checkpoint
from fakescope.training.fit import fit


def demo_config(data_root: Path, output_dir: Path, epochs: int = 3, image_size: int = 128) -> TrainConfig:
    """A small lite0 (ImageNet weights from its package) on small images: about a minute on 2 cores."""
    return TrainConfig(
        name="demo",
        output_dir=output_dir,
        data=DataConfig(root=data_root, augmentation="none", batch_size=32, num_workers=0),
        model=ModelConfig(name="lite0", pretrained=True, card={"input_size": image_size, "face_crop": "none"}),
        # Few steps on small images: rates well above the fine-tuning defaults.
        optimizer=OptimizerConfig(lr_backbone=1e-3, lr_head=3e-3),
        scheduler=SchedulerConfig(name="none"),
        trainer=TrainerConfig(max_epochs=epochs, early_stopping=None, log_every_n_steps=5),
    )


def run_demo(out_dir: Path) -> dict:
    data_root = make_toy_dataset(out_dir / "data", n_per_class=150, size=128, seed=0)
    run_dir = fit(demo_config(data_root, out_dir / "runs"))
    report = evaluate_checkpoint(run_dir / "checkpoints" / "best.ckpt", [data_root], run_dir / "evaluation")
    return {"run_dir": str(run_dir), "test": report["datasets"][data_root.name]}


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    summary = run_demo(out_dir)
    test = summary["test"]
    print(json.dumps({"run_dir": summary["run_dir"], "test_auc": test["auc_roc"], "test_accuracy": test["accuracy"]}, indent=2))


if __name__ == "__main__":
    main()
