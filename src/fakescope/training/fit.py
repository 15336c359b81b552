"""`fit(config)`: one training run, from folders to a run dir a researcher can cite.

Run dir:  config.yaml  split_manifest.json  data_summary.json  model_summary.json
          checkpoints/{best,last}.ckpt  logs/ (CSV, TensorBoard)  history.json
          training_curves.png  results.json  test_roc_curve.png  test_confusion_matrix.png
The checkpoint is chosen on validation data; the test split is scored once, at the end.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from fakescope.checkpoint import load_checkpoint
from fakescope.config import TrainConfig, config_to_yaml
from fakescope.data.discovery import DataError, DataSplits
from fakescope.data.sources import discover_sources
from fakescope.evaluation.predict import predict_loader
from fakescope.evaluation.report import evaluate_scores
from fakescope.hardware import cpu_has_bf16
from fakescope.models.registry import get_spec
from fakescope.models.scoring import probabilities
from fakescope.training.callbacks import (
    AtomicCheckpointIO,
    EpochHistory,
    RngState,
    UnfreezeBackbone,
)
from fakescope.training.datamodule import FolderDataModule
from fakescope.training.module import DetectorModule, count_parameters
from fakescope.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

# Set by rank 0 for the worker processes Lightning launches for DDP, so every rank of a run
# writes into the same run dir.
RUN_DIR_ENV = "FAKESCOPE_RUN_DIR"


def resolve_run_dir(config: TrainConfig, resume: Path | None) -> Path:
    """A new timestamped dir for a new run (never reusing one); the run's own dir on resume."""
    if os.environ.get(RUN_DIR_ENV) and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(os.environ[RUN_DIR_ENV])
    if resume is not None:
        return resume.parent.parent if resume.is_file() else resume
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = config.output_dir / f"{config.name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = config.output_dir / f"{config.name}-{stamp}-{suffix}"
    return run_dir


def resume_checkpoint(resume: Path) -> Path:
    path = resume / "checkpoints" / "last.ckpt" if resume.is_dir() else resume
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: checkpoint not found: {path}")
    return path


def data_summary(splits: DataSplits) -> dict:
    counts = {
        name: {
            "real": sum(s.label == 0 for s in samples),
            "fake": sum(s.label == 1 for s in samples),
        }
        for name, samples in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    return {
        "layout": splits.layout,
        "counts": counts,
        "skipped_count": len(splits.skipped),
        "skipped": [{"path": str(path), "reason": reason} for path, reason in splits.skipped],
    }


def check_trainable(splits: DataSplits) -> None:
    """Stop before any training when a split lacks a class: the run could not mean anything."""
    for name, samples in (("train", splits.train), ("val", splits.val)):
        for label, cls in ((0, "real"), (1, "fake")):
            if not any(s.label == label for s in samples):
                raise DataError(
                    f"the {name} split has no {cls} images; "
                    "training needs both classes in train and val"
                )


def model_summary(module: DetectorModule) -> dict:
    detector = module.detector
    total, trainable = count_parameters(detector)
    size_bytes = sum(
        t.numel() * t.element_size() for t in list(detector.parameters()) + list(detector.buffers())
    )
    size = module.card.input_size
    was_training = detector.training
    detector.eval()
    with torch.inference_mode():
        output_shape = list(detector(torch.zeros(1, 3, size, size)).shape)
    detector.train(was_training)
    return {
        "detector": module.card.name,
        "total_parameters": total,
        "trainable_parameters": trainable,
        "size_mb": round(size_bytes / 2**20, 3),
        "input_shape": [1, 3, size, size],
        "output_shape": output_shape,
        "output": module.card.output,
        "feature_dims": getattr(detector, "feature_dims", {}),
    }


def csv_log_version(run_dir: Path, resuming: bool) -> str:
    """Where this session's CSV log goes: Lightning's CSV logger deletes the metrics.csv it
    finds, so each resume logs beside the earlier sessions instead of over them."""
    if not resuming:
        return "csv"
    n = 1
    while (run_dir / "logs" / f"csv-resume-{n}").exists():
        n += 1
    return f"csv-resume-{n}"


def resolve_precision(config: TrainConfig) -> TrainConfig:
    """The config with its trainer's "auto" precision decided: bf16-mixed where the device runs
    bf16 natively (a CPU with AVX-512 BF16 or AMX, a CUDA GPU that supports it), else "32".

    Emulated bf16 is slow: on an AVX2-only CPU, lite0's training step ran 7.7x slower in bf16
    autocast than in fp32, where a CPU with native bf16 ran it 2.1x faster (docs/performance.md).
    A config that asks for bf16-mixed where it is emulated gets it, with a warning.
    """
    tcfg = config.trainer
    on_gpu = tcfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    native_bf16 = torch.cuda.is_bf16_supported() if on_gpu else cpu_has_bf16()
    device = "GPU" if on_gpu else "CPU"
    precision = tcfg.precision
    if precision == "auto":
        precision = "bf16-mixed" if native_bf16 else "32"
        log.info(
            "precision auto: %s (this %s %s native bf16)",
            precision,
            device,
            "has" if native_bf16 else "lacks",
        )
    elif precision == "bf16-mixed" and not native_bf16:
        log.warning(
            "precision bf16-mixed on a %s without native bf16 is emulated and runs several times "
            "slower than fp32; set trainer.precision to auto or 32",
            device,
        )
    return config.model_copy(update={"trainer": tcfg.model_copy(update={"precision": precision})})


def build_trainer(
    config: TrainConfig, run_dir: Path, resuming: bool
) -> tuple[L.Trainer, ModelCheckpoint, EpochHistory]:
    tcfg = config.trainer
    es = tcfg.early_stopping
    monitor = es.monitor if es else "val_auc"
    mode = "min" if monitor == "val_loss" else "max"
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_top_k=1
    )
    # Every epoch's end, improved or not, for --resume: Lightning's own save_last writes only
    # when the monitored metric improved, so a resumed run would repeat the epochs after it.
    latest = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1
    )
    history = EpochHistory(run_dir)
    callbacks: list[L.Callback] = [checkpoint, latest, history, RngState()]
    if es:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=es.patience, min_delta=es.min_delta)
        )
    if tcfg.ema_decay:
        callbacks.append(EMAWeightAveraging(decay=tcfg.ema_decay))
    if config.finetune:
        ft = config.finetune
        callbacks.append(
            UnfreezeBackbone(ft.unfreeze_at_epoch, ft.unfreeze_layers, ft.train_batchnorm)
        )
    multi_process = tcfg.num_nodes > 1 or (tcfg.devices not in (1, "1", "auto"))
    trainer = L.Trainer(
        default_root_dir=run_dir,
        max_epochs=tcfg.max_epochs,
        precision=tcfg.precision,
        gradient_clip_val=tcfg.gradient_clip_norm,
        accumulate_grad_batches=tcfg.accumulate_grad_batches,
        accelerator=tcfg.accelerator,
        devices=tcfg.devices,
        num_nodes=tcfg.num_nodes,
        strategy="ddp" if multi_process else "auto",
        callbacks=callbacks,
        logger=[
            CSVLogger(run_dir, name="logs", version=csv_log_version(run_dir, resuming)),
            TensorBoardLogger(run_dir, name="logs", version="tensorboard"),
        ],
        plugins=[AtomicCheckpointIO()],
        log_every_n_steps=tcfg.log_every_n_steps,
        limit_train_batches=tcfg.limit_train_batches,
        # A sanity pass would draw from the random generators between restore and training.
        num_sanity_val_steps=0 if resuming else 2,
    )
    return trainer, checkpoint, history


def fit(config: TrainConfig, resume: Path | None = None) -> Path:
    """Train, pick the checkpoint on validation, score the test split once. Returns the run dir."""
    resume = Path(resume) if resume else None
    resume_ckpt = resume_checkpoint(resume) if resume else None
    run_dir = resolve_run_dir(config, resume)
    is_launcher = os.environ.get("LOCAL_RANK", "0") == "0"
    config = resolve_precision(config)
    L.seed_everything(config.trainer.seed, workers=True)

    splits, by_source = discover_sources(config.data, run_dir)
    check_trainable(splits)
    summary = data_summary(splits)
    if by_source:
        summary["sources"] = {name: data_summary(s) for name, s in by_source.items()}
    if is_launcher:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", config_to_yaml(config))
        atomic_write_json(run_dir / "data_summary.json", summary)
        if splits.skipped:
            log.warning(
                "skipped %d unreadable files (listed in data_summary.json)", len(splits.skipped)
            )

    card = get_spec(config.model.name).card.with_updates(**config.model.card)
    datamodule = FolderDataModule(config.data, card, splits, config.trainer.seed)
    module = DetectorModule(
        config.model_dump(mode="json"), class_weights=datamodule.loss_class_weights()
    )
    if config.trainer.channels_last:
        module = module.to(memory_format=torch.channels_last)
    if is_launcher:
        atomic_write_json(run_dir / "model_summary.json", model_summary(module))

    trainer, checkpoint, history = build_trainer(config, run_dir, resuming=resume_ckpt is not None)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt, weights_only=True)
    finally:
        if is_launcher:
            os.environ.pop(RUN_DIR_ENV, None)
    train_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return run_dir
    eval_sets = {
        "val": splits.val,
        "test": splits.test,
        **{f"test_{n}": s.test for n, s in by_source.items()},
    }
    results = final_results(
        run_dir, datamodule, eval_sets, checkpoint, history, trainer, train_seconds, summary
    )
    atomic_write_json(run_dir / "results.json", results)
    return run_dir


def final_results(
    run_dir: Path,
    datamodule: FolderDataModule,
    eval_sets: dict[str, list],
    checkpoint: ModelCheckpoint,
    history: EpochHistory,
    trainer: L.Trainer,
    train_seconds: float,
    summary: dict,
) -> dict:
    best_path = Path(checkpoint.best_model_path or run_dir / "checkpoints" / "last.ckpt")
    detector, card = load_checkpoint(best_path)
    splits = {}
    for name, samples in eval_sets.items():
        if not samples:
            continue
        labels, logits = predict_loader(detector, card, datamodule.eval_dataloader(samples))
        probs = probabilities(logits, card.temperature)
        splits[name] = evaluate_scores(
            labels,
            probs,
            card.threshold,
            card.threshold_source,
            run_dir,
            prefix=f"{name}_",
            title=f"{card.name} ({name})",
        )
    best_score = checkpoint.best_model_score
    return {
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "detector": card.name,
        "card": card.model_dump(mode="json"),
        "best_checkpoint": str(best_path),
        "monitor": checkpoint.monitor,
        "best_score": float(best_score) if best_score is not None else None,
        "epochs_trained": trainer.current_epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "train_seconds": round(train_seconds, 2),
        "train_images_per_s": history.images_per_second(),
        "history": history.rows,
        "final": splits,
        "data": summary,
    }
