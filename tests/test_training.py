"""Training end to end: run dir contents, skill on held-out data, resume, bad data, DDP."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

from fakescope.checkpoint import load_checkpoint
from fakescope.config import (
    DataConfig,
    ModelConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
    apply_overrides,
    load_config,
)
from fakescope.data.discovery import DataError
from fakescope.data.pairmasks import mask_name
from fakescope.data.toy import make_toy_dataset
from fakescope.demo import demo_config
from fakescope.training import fit as fit_module
from fakescope.training.fit import fit
from fakescope.training.module import DetectorModule

RUN_FILES = [
    "config.yaml",
    "split_manifest.json",
    "data_summary.json",
    "model_summary.json",
    "history.json",
    "results.json",
    "training_curves.png",
    "test_confusion_matrix.png",
    "test_roc_curve.png",
    "checkpoints/best.ckpt",
    "checkpoints/last.ckpt",
    "logs/csv/metrics.csv",
]


def test_tiny_run_learns_and_writes_every_file(trained_run: Path):
    for name in RUN_FILES:
        assert (trained_run / name).is_file(), f"missing {name}"
    assert list((trained_run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((trained_run / "results.json").read_text())
    test = results["final"]["test"]
    assert test["n"] > 0
    assert test["auc_roc"] > 0.9
    assert results["epochs_trained"] == 3
    assert [row["epoch"] for row in results["history"]] == [0, 1, 2]
    assert {"train_loss", "val_loss", "val_auc", "val_acc"} <= set(results["history"][-1])
    summary = json.loads((trained_run / "model_summary.json").read_text())
    assert summary["input_shape"] == [1, 3, 128, 128]
    assert summary["output_shape"] == [1, 1]
    assert 0 < summary["trainable_parameters"] <= summary["total_parameters"]
    config = TrainConfig.model_validate(yaml.safe_load((trained_run / "config.yaml").read_text()))
    assert config.model.name == "lite0"


def test_checkpoint_loads_safely_and_scores_like_training(trained_run: Path, toy_data: Path):
    model, card = load_checkpoint(trained_run / "checkpoints" / "best.ckpt")
    assert card.name == "lite0" and card.input_size == 128
    # weights_only loading: the checkpoint must hold nothing but tensors and plain data.
    payload = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    for key in (
        "state_dict",
        "optimizer_states",
        "lr_schedulers",
        "epoch",
        "global_step",
        "fakescope",
    ):
        assert key in payload


def test_split_manifest_is_reused(trained_run: Path, toy_data: Path):
    from fakescope.config import DataConfig
    from fakescope.data.discovery import discover

    manifest = trained_run / "split_manifest.json"
    before = manifest.read_bytes()
    again = discover(DataConfig(root=toy_data, split_seed=999), manifest_path=manifest)
    assert manifest.read_bytes() == before
    recorded = json.loads(before)
    assert len(again.test) == sum(1 for _ in recorded["splits"]["test"])


def _config(data: Path, out: Path, epochs: int, **trainer) -> TrainConfig:
    cfg = demo_config(data, out, epochs=epochs, image_size=48)
    return cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update=trainer)})


def test_resume_matches_an_unbroken_run(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=40, size=48, seed=1)
    unbroken = fit(_config(data, tmp_path / "a", epochs=2))
    first = fit(_config(data, tmp_path / "b", epochs=1))
    first_log = (first / "logs" / "csv" / "metrics.csv").read_bytes()
    resumed = fit(_config(data, tmp_path / "b", epochs=2), resume=first)
    assert resumed == first
    # The first session's log survives; the resumed one logs beside it.
    assert (first / "logs" / "csv" / "metrics.csv").read_bytes() == first_log
    with open(first / "logs" / "csv-resume-1" / "metrics.csv", newline="") as rows:
        assert {row["epoch"] for row in csv.DictReader(rows)} == {"1"}
    a = torch.load(unbroken / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] == b["epoch"]
    assert (
        a["global_step"]
        == b["global_step"]
        == json.loads((unbroken / "results.json").read_text())["global_step"]
    )
    steps_a = [s["step"] for s in a["optimizer_states"][0]["state"].values()]
    steps_b = [s["step"] for s in b["optimizer_states"][0]["state"].values()]
    assert steps_a == steps_b
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key
    history = json.loads((resumed / "results.json").read_text())["history"]
    assert [row["epoch"] for row in history] == [0, 1]


def test_broken_files_are_skipped_and_reported(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=30, size=48, seed=2)
    (data / "real" / "empty.jpg").write_bytes(b"")
    (data / "fake" / "notes.png").write_text("not an image")
    good = next((data / "real").glob("*.jpg"), None) or next((data / "real").iterdir())
    (data / "fake" / "truncated.jpg").write_bytes(good.read_bytes()[:200])
    run = fit(_config(data, tmp_path / "runs", epochs=1))
    summary = json.loads((run / "data_summary.json").read_text())
    skipped = {Path(item["path"]).name for item in summary["skipped"]}
    assert {"empty.jpg", "notes.png", "truncated.jpg"} <= skipped
    assert (
        json.loads((run / "results.json").read_text())["data"]["skipped_count"]
        == summary["skipped_count"]
    )


def test_empty_class_stops_before_training(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=10, size=48, seed=3)
    for path in (data / "fake").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="fake"):
        fit(_config(data, tmp_path / "runs", epochs=1))
    assert not any((tmp_path / "runs").glob("*/checkpoints"))


def test_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(DataError, match="not found|does not exist"):
        fit(_config(tmp_path / "nowhere", tmp_path / "runs", epochs=1))


def test_overrides_and_config_errors(tmp_path: Path):
    raw = {"data": {"root": "x"}, "model": {"name": "lite0"}}
    out = apply_overrides(
        raw, ["trainer.max_epochs=7", "optimizer.lr_head=3e-4", "model.pretrained=false"]
    )
    cfg = TrainConfig.model_validate(out)
    assert (
        cfg.trainer.max_epochs == 7
        and cfg.optimizer.lr_head == 3e-4
        and cfg.model.pretrained is False
    )
    with pytest.raises(ValueError):
        apply_overrides(raw, ["no-equals-sign"])
    path = tmp_path / "bad.yaml"
    path.write_text(
        yaml.safe_dump(
            {"data": {"root": "x"}, "model": {"name": "lite0"}, "trainer": {"max_epoch": 3}}
        )
    )
    with pytest.raises(ValueError, match="max_epoch"):
        load_config(path)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=24, size=32, seed=4)
    config = _config(data, tmp_path / "runs", epochs=1)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fakescope.cli",
            "train",
            str(config_path),
            "--devices",
            "2",
            "--accelerator",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs  # both ranks wrote into one run dir
    results = json.loads((runs[0] / "results.json").read_text())
    assert results["world_size"] == 2
    assert results["global_step"] > 0


@pytest.mark.parametrize(
    "native_bf16, asked, runs_in",
    [
        (True, "auto", "bf16-mixed"),
        (False, "auto", "32"),
        (True, "32", "32"),
        (False, "bf16-mixed", "bf16-mixed"),  # asked for: kept, with a warning
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_runs_it_natively(
    monkeypatch, caplog, tmp_path: Path, native_bf16: bool, asked: str, runs_in: str
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: native_bf16)
    config = _config(tmp_path, tmp_path / "runs", epochs=1, precision=asked)
    with caplog.at_level(logging.WARNING, logger=fit_module.__name__):
        assert fit_module.resolve_precision(config).trainer.precision == runs_in
    assert ("emulated" in caplog.text) == (asked == "bf16-mixed" and not native_bf16)


def test_bf16_channels_last_and_accumulation_train(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(fit_module, "cpu_has_bf16", lambda: True)
    data = make_toy_dataset(tmp_path / "data", n_per_class=20, size=48, seed=5)
    config = _config(
        data,
        tmp_path / "runs",
        epochs=1,
        precision="auto",
        channels_last=True,
        accumulate_grad_batches=2,
    )
    config = config.model_copy(update={"data": config.data.model_copy(update={"batch_size": 8})})
    run = fit(config)
    # The run records what "auto" resolved to, so its config.yaml trains the same way anywhere.
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["precision"] == "bf16-mixed"
    results = json.loads((run / "results.json").read_text())
    assert (
        results["global_step"] == 2
    )  # 28 training images, batches of 8: 4 batches, 2 optimiser steps
    assert results["final"]["val"]["n"] > 0


def test_several_sources_are_split_apart_and_scored_apart(tmp_path: Path):
    from fakescope.config import SourceConfig
    from fakescope.data.discovery import run_manifest_for

    first = make_toy_dataset(tmp_path / "alpha", n_per_class=20, size=48, seed=6)
    second = make_toy_dataset(tmp_path / "beta", n_per_class=20, size=48, seed=7)
    config = _config(first, tmp_path / "runs", epochs=1)
    data = config.data.model_copy(
        update={"root": None, "sources": [SourceConfig(root=first), SourceConfig(root=second)]}
    )
    run = fit(config.model_copy(update={"data": data}))
    for name in ("alpha", "beta"):
        manifest = run / f"split_manifest-{name}.json"
        assert manifest.is_file()
        assert run_manifest_for(run / "checkpoints" / "best.ckpt", tmp_path / name) == manifest
    results = json.loads((run / "results.json").read_text())
    final = results["final"]
    assert final["test_alpha"]["n"] + final["test_beta"]["n"] == final["test"]["n"]
    assert set(results["data"]["sources"]) == {"alpha", "beta"}


def test_a_repeated_source_is_seen_that_many_times_in_training_only(tmp_path: Path):
    from fakescope.config import DataConfig, SourceConfig
    from fakescope.data.sources import discover_sources

    small = make_toy_dataset(tmp_path / "small", n_per_class=10, size=48, seed=6)
    large = make_toy_dataset(tmp_path / "large", n_per_class=30, size=48, seed=7)
    data = DataConfig(sources=[SourceConfig(root=small, repeat=3), SourceConfig(root=large)])
    (tmp_path / "run").mkdir()
    pooled, by_source = discover_sources(data, tmp_path / "run")
    assert len(pooled.train) == 3 * len(by_source["small"].train) + len(by_source["large"].train)
    assert pooled.train.count(by_source["small"].train[0]) == 3
    for split in ("val", "test"):
        assert len(getattr(pooled, split)) == sum(
            len(getattr(s, split)) for s in by_source.values()
        )


def test_self_blended_fakes_join_the_training_set(tmp_path: Path):
    from fakescope.config import SelfBlendConfig

    data = make_toy_dataset(tmp_path / "data", n_per_class=20, size=48, seed=8)
    config = _config(data, tmp_path / "runs", epochs=2)
    config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={"batch_size": 8, "self_blend": SelfBlendConfig(fake_ratio=1.0)}
            )
        }
    )
    run = fit(config)
    results = json.loads((run / "results.json").read_text())
    # 28 training images plus one self-blend of each of the 14 reals: 42 items, 6 batches an epoch.
    assert results["global_step"] == 12


def test_self_blend_options_reach_the_blender(tmp_path: Path):
    from fakescope.config import SelfBlendConfig
    from fakescope.data.learned_traces import save_tracer, trace_autoencoder
    from fakescope.data.sources import discover_sources
    from fakescope.models.registry import get_spec
    from fakescope.training.datamodule import FolderDataModule

    data = make_toy_dataset(tmp_path / "data", n_per_class=10, size=48, seed=9, image_format="png")
    # One fake's mask, where `fakescope faces` writes it.
    fake = sorted((Path(data) / "fake").glob("*.png"))[0]
    mask_file = Path(data) / mask_name(fake.relative_to(data).as_posix())
    mask_file.parent.mkdir(parents=True)
    cv2.imwrite(str(mask_file), np.full((48, 48), 255, np.uint8))
    tracer = tmp_path / "nearest.safetensors"
    save_tracer(trace_autoencoder("nearest"), "nearest", tracer)
    options = SelfBlendConfig(
        fake_ratio=0.5,
        generator_trace_prob=0.3,
        generated_prob=0.1,
        tracers=(tracer,),
        splice_prob=0.2,
        part_mask_prob=0.7,
        mask_loss_weight=0.5,
    )
    config = _config(data, tmp_path / "runs", epochs=1).data.model_copy(
        update={"self_blend": options}
    )
    (tmp_path / "run").mkdir()
    splits, _ = discover_sources(config, tmp_path / "run")
    module = FolderDataModule(config, get_spec("lite0").card, splits, seed=0)
    joined = module.train_dataloader().dataset
    blends = joined.blends
    assert blends.fake_ratio == 0.5 and blends.with_masks
    assert joined.base.masks == {fake.resolve(): mask_file.resolve()}
    chosen = options.model_dump(exclude={"fake_ratio", "mask_loss_weight"})
    assert {name: getattr(blends.config, name) for name in chosen} == chosen


def test_other_faces_of_real_training_images_join_training_as_reals(tmp_path: Path, caplog):
    from fakescope.data.facecrops import other_face_name
    from fakescope.data.sources import discover_sources
    from fakescope.models.registry import get_spec
    from fakescope.training.datamodule import FolderDataModule, other_real_faces

    data = Path(
        make_toy_dataset(tmp_path / "data", n_per_class=10, size=48, seed=9, image_format="png")
    )
    config = _config(data, tmp_path / "runs", epochs=1).data
    (tmp_path / "run").mkdir()
    splits, _ = discover_sources(config, tmp_path / "run")
    # An other face beside one real and one fake of the train split and one real of val.
    chosen = [
        next(s for s in splits.train if s.label == 0),
        next(s for s in splits.train if s.label == 1),
        next(s for s in splits.val if s.label == 0),
    ]
    others = []
    for sample in chosen:
        other = data / other_face_name(sample.path.relative_to(data).as_posix(), 1)
        other.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(other), np.zeros((48, 48, 3), np.uint8))
        others.append(other.resolve())

    plain = FolderDataModule(config, get_spec("lite0").card, splits, seed=0)
    with_others = FolderDataModule(
        config.model_copy(update={"other_real_faces": True}),
        get_spec("lite0").card,
        splits,
        seed=0,
    )
    # Only the real training image's other face joins, labelled real; val stays as it was.
    assert with_others.train_samples[:-1] == plain.train_samples
    assert with_others.train_samples[-1].path == others[0]
    assert with_others.train_samples[-1].label == 0
    assert with_others.val_samples == plain.val_samples
    # Crops cut before other faces were kept say so (their summary has no count of them).
    (data / "face_crops.json").write_text(json.dumps({"crops": 20}))
    with caplog.at_level(logging.WARNING, logger="fakescope.data.facecrops"):
        other_real_faces(config, splits.train)
    assert "run fakescope faces again" in caplog.text


def test_the_blend_mask_loss_trains_a_head_that_checkpoints_leave_out(tmp_path: Path):
    from fakescope.config import SelfBlendConfig

    data = make_toy_dataset(tmp_path / "data", n_per_class=20, size=48, seed=8)
    config = _config(data, tmp_path / "runs", epochs=1)
    blends = SelfBlendConfig(fake_ratio=1.0, mask_loss_weight=1.0)
    config = config.model_copy(
        update={"data": config.data.model_copy(update={"batch_size": 8, "self_blend": blends})}
    )
    run = fit(config)
    with open(run / "logs" / "csv" / "metrics.csv", newline="") as rows:
        logged = [float(row["train_mask_loss_epoch"] or "nan") for row in csv.DictReader(rows)]
    assert [value for value in logged if value > 0], "no blend-mask loss was logged"
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert state["mask_head.weight"].shape == (1, 1280, 1, 1)
    detector, _ = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert not [key for key in detector.state_dict() if "mask_head" in key]


def test_the_blend_mask_loss_reads_the_detectors_last_feature_map():
    from fakescope.config import SelfBlendConfig
    from fakescope.models.losses import blend_mask_loss

    L.seed_everything(0)
    # Eval mode: no dropout draws or batch statistics between the passes compared.
    module = _small_lite0_module(self_blend=SelfBlendConfig(mask_loss_weight=0.5)).eval()
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 0, 1])
    masks, known = torch.zeros(4, 64, 64), torch.tensor([1.0, 1.0, 1.0, 0.0])
    masks[1, 16:48, 16:48] = 1.0
    loss, probs, _, mask_loss = module._step((images, labels, masks, known))
    features = module.detector.forward_features(images)
    assert torch.allclose(mask_loss, blend_mask_loss(module.mask_head(features), masks, known))
    assert torch.allclose(loss, module.loss_fn(module.detector(images), labels))
    with warnings.catch_warnings():  # self.log() outside a Trainer warns and logs nothing
        warnings.simplefilter("ignore")
        total = module.training_step((images, labels, masks, known), 0)
    assert torch.allclose(total, loss + 0.5 * mask_loss)
    # Validation batches carry no masks: the step scores them as before.
    assert module._step((images, labels))[3] is None
    mask_loss.backward()
    assert module.mask_head.weight.grad.abs().sum() > 0
    assert module.detector.classifier.weight.grad is None
    with pytest.raises(ValueError, match="mask_loss_weight needs a detector with one feature map"):
        _small_lite0_module("mobilenetv2-attention", self_blend=SelfBlendConfig(mask_loss_weight=1))


def test_ema_weights_are_checkpointed_loaded_and_resumed(tmp_path: Path):
    data = make_toy_dataset(tmp_path / "data", n_per_class=40, size=48, seed=6)
    unbroken = fit(_config(data, tmp_path / "a", epochs=2, ema_decay=0.9))
    payload = torch.load(unbroken / "checkpoints" / "last.ckpt", weights_only=True)
    # Validation AUC does not improve in the second epoch here: "last" is the end all the same.
    assert (
        payload["global_step"] == json.loads((unbroken / "results.json").read_text())["global_step"]
    )
    averaged, trained = payload["state_dict"], payload["current_model_state"]
    assert averaged.keys() == trained.keys()
    weights = [k for k, v in averaged.items() if v.is_floating_point() and "running_" not in k]
    assert any(not torch.allclose(averaged[k], trained[k]) for k in weights), (
        "the average equals the raw weights"
    )
    model, _ = load_checkpoint(unbroken / "checkpoints" / "last.ckpt")
    for name, value in model.state_dict().items():
        assert torch.equal(value, averaged[f"detector.{name}"]), name  # the average is what loads
    # A resumed run continues both the raw weights and their average.
    first = fit(_config(data, tmp_path / "b", epochs=1, ema_decay=0.9))
    resumed = fit(_config(data, tmp_path / "b", epochs=2, ema_decay=0.9), resume=first)
    again = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    for state in ("state_dict", "current_model_state"):
        for key, value in payload[state].items():
            assert torch.allclose(value.float(), again[state][key].float(), atol=1e-5), (state, key)


def _small_lite0_module(detector: str = "lite0", **data) -> DetectorModule:
    """A randomly initialised lite0 on 64-px inputs, for tests that drive a Lightning Trainer."""
    config = TrainConfig(
        data=DataConfig(root="unused", **data),
        model=ModelConfig(name=detector, pretrained=False, card={"input_size": 64}),
        scheduler=SchedulerConfig(name="none"),
        trainer=TrainerConfig(max_epochs=1, early_stopping=None),
    )
    return DetectorModule(config.model_dump(mode="json"))


def test_validation_scores_the_epoch_not_each_batch(recwarn):
    # Validation batches come in folder order, so one batch often holds one class; the AUC is
    # the epoch's, and a batch of one class must not be scored (torchmetrics warns on it).
    L.seed_everything(0)
    module = _small_lite0_module().eval()
    images = torch.randn(16, 3, 64, 64)
    labels = torch.tensor([0] * 8 + [1] * 8)
    trainer = L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
    )
    (logged,) = trainer.validate(
        module, DataLoader(TensorDataset(images, labels), batch_size=8), verbose=False
    )
    with torch.no_grad():
        probs = torch.cat([module._step((images[i : i + 8], labels[i : i + 8]))[1] for i in (0, 8)])
    assert logged["val_auc"] == pytest.approx(
        roc_auc_score(labels.numpy(), probs.numpy()), abs=1e-6
    )
    assert not [w for w in recwarn if "samples in targets" in str(w.message)]


def test_the_sanity_pass_leaves_the_auc_to_the_epoch(recwarn):
    # Lightning's sanity pass reads a validation batch or two before training; in folder order
    # they hold one class, so an AUC there is meaningless, and it must not leak into epoch 0's.
    L.seed_everything(0)
    module = _small_lite0_module()
    images = torch.randn(16, 3, 64, 64)
    labels = torch.tensor([0] * 8 + [1] * 8)
    loader = DataLoader(TensorDataset(images, labels), batch_size=4)
    trainer = L.Trainer(
        max_epochs=1,
        num_sanity_val_steps=1,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    module.eval()
    with torch.no_grad():
        batches = [(images[i : i + 4], labels[i : i + 4]) for i in range(0, 16, 4)]
        probs = torch.cat([module._step(batch)[1] for batch in batches])
    logged = trainer.callback_metrics["val_auc"].item()
    assert logged == pytest.approx(roc_auc_score(labels.numpy(), probs.numpy()), abs=1e-6)
    assert not [w for w in recwarn if "samples in targets" in str(w.message)]
