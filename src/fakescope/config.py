"""Training configuration: YAML files validated by pydantic, with `--set key=value` overrides.

The effective config (after overrides) is saved in every run dir, so a run can be repeated
from its own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(_Strict):
    """One data set among several trained on together; each is split on its own."""

    root: Path
    # A CSV pairing each fake with the real it was made from (columns naming the two files):
    # a pair is never divided between splits, so scenes cannot leak from train to test.
    pairs_csv: Path | None = None
    # Each training item of this source is seen `repeat` times per epoch (its self-blends
    # too, each a fresh blend): the way to weight a small source against large ones.
    # Validation and test splits are not repeated.
    repeat: int = Field(1, ge=1)


class SelfBlendConfig(_Strict):
    """Self-blended fakes made online from the real training faces (Shiohara & Yamasaki 2022)."""

    # Each real training image adds one more item per epoch; this share of them is blended
    # into a fake (the rest stay real copies).
    fake_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Generator traces (fakescope.data.traces): the share of blends whose source is
    # re-rendered by a random up-sampling layer, and of fakes that are whole re-rendered images.
    generator_trace_prob: float = Field(0.0, ge=0.0, le=1.0)
    generated_prob: float = Field(0.0, ge=0.0, le=1.0)
    # Trained tracers (`fakescope synth train-tracer`) that make those traces instead of
    # random up-sampling layers (fakescope.data.learned_traces).
    tracers: tuple[Path, ...] = ()
    # The share of blends that are splices: parts of another real training face pasted in.
    splice_prob: float = Field(0.0, ge=0.0, le=1.0)
    # The share of the other blends whose mask covers one part (the eyes, the nose or the
    # mouth) instead of the whole face: local edits.
    part_mask_prob: float = Field(0.2, ge=0.0, le=1.0)
    # The weight of a second loss that asks where a face was blended (after Face X-ray, Li et
    # al., CVPR 2020): a 1x1 convolution on the detector's last feature map predicts each
    # self-blend's mask, pooled to that map's cells, and all zeros for real faces. A data
    # set's own fake is in it where `fakescope faces` found its mask (`face_masks/`: where a
    # paired fake differs from its real) and left out elsewhere. Training only: the
    # detector's weights and outputs keep their shape. 0 turns it off.
    mask_loss_weight: float = Field(0.0, ge=0.0)


class ReframeConfig(_Strict):
    """Training crops re-framed at random, as a face detector's box varies from image to image.

    The detector then scores faces cut at the card's margins (`face_margin`, `extra_margins`)
    and shifted by a detector's jitter as faces it has seen, not as a framing it never met.
    """

    # The share of training images re-framed; the rest keep the crop's own framing.
    p: float = Field(0.5, gt=0.0, le=1.0)
    # The smallest cut, as a fraction of the image's sides; it lies anywhere inside the image.
    min_scale: float = Field(0.85, gt=0.0, lt=1.0)


class DataConfig(_Strict):
    # One of: `root` (a discovered layout), `sources` (several such roots, each split on its
    # own and then pooled), or explicit per-class, per-split directories.
    root: Path | None = None
    sources: list[SourceConfig] = Field(default_factory=list)
    real_train_dir: Path | None = None
    fake_train_dir: Path | None = None
    real_val_dir: Path | None = None
    fake_val_dir: Path | None = None
    real_test_dir: Path | None = None
    fake_test_dir: Path | None = None
    # Used when a layout has no split of its own (flat real/fake).
    val_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.15, ge=0.0, lt=1.0)
    split_seed: int = 42
    augmentation: str = "light"
    # Re-scale and re-encode every training image (both classes alike) before augmenting:
    # the cure for data sets whose classes were saved differently (see `fakescope audit`).
    equalize_history: bool = False
    reframe: ReframeConfig | None = None
    # Landmarks come from the `face_landmarks.json` that `fakescope faces` writes at a data
    # root; faces without them are blended through a central ellipse.
    self_blend: SelfBlendConfig | None = None
    # Train also on the other faces of each real training image that `fakescope faces` cut
    # (`other_faces/`), labelled real: the scan scores every face, bystanders included.
    other_real_faces: bool = False
    # Shuffle each fake into the batch of the real it was made from: self-blends beside their
    # source face, a source's pairs.csv fakes beside their real (`fakescope.training.pairing`).
    paired_batches: bool = False
    sharpen_blurry: bool = False
    blur_threshold: float = 100.0
    balance: Literal["none", "undersample", "weighted-sampler", "class-weights"] = "none"
    max_samples_per_class: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    eval_batch_size: int | None = Field(None, gt=0)
    # None: one worker per core.
    num_workers: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _has_a_source(self) -> "DataConfig":
        explicit = any(
            getattr(self, f"{c}_{s}_dir")
            for c in ("real", "fake")
            for s in ("train", "val", "test")
        )
        given = sum([self.root is not None, bool(self.sources), explicit])
        if given != 1:
            raise ValueError(
                "data needs exactly one of `root`, `sources`, or real_/fake_ train/val/test dirs"
            )
        return self


class ModelConfig(_Strict):
    name: str
    pretrained: bool = True
    weights_path: Path | None = None
    allow_download: bool = False
    # Card fields to change for this run, e.g. {input_size: 128}.
    card: dict[str, Any] = Field(default_factory=dict)
    # Family-specific builder options.
    options: dict[str, Any] = Field(default_factory=dict)


class LossConfig(_Strict):
    # None: the detector's registered default loss.
    name: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)


class OptimizerConfig(_Strict):
    lr_backbone: float = Field(1e-5, gt=0)
    lr_head: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-2, ge=0)


class SchedulerConfig(_Strict):
    name: Literal["none", "cosine-warm-restarts", "onecycle", "plateau"] = "cosine-warm-restarts"
    t_0: int = Field(10, gt=0)
    t_mult: int = Field(2, ge=1)
    eta_min: float = 1e-7
    plateau_factor: float = Field(0.3, gt=0, lt=1)
    plateau_patience: int = Field(3, ge=0)
    min_lr: float = 1e-7
    onecycle_pct_start: float = Field(0.3, gt=0, lt=1)


class FinetuneConfig(_Strict):
    """Second phase of transfer learning: unfreeze the end of the backbone.

    The unfrozen layers train at `optimizer.lr_backbone` (set it 10x below lr_head for the
    usual transfer recipe); BatchNorm stays frozen in inference mode unless asked.
    """

    unfreeze_at_epoch: int = Field(..., ge=1)
    unfreeze_layers: int = Field(20, gt=0)
    train_batchnorm: bool = False


class EarlyStoppingConfig(_Strict):
    monitor: Literal["val_auc", "val_acc", "val_loss"] = "val_auc"
    patience: int = Field(5, ge=0)
    min_delta: float = Field(1e-3, ge=0)


class TrainerConfig(_Strict):
    max_epochs: int = Field(10, gt=0)
    # "auto": bf16-mixed where the hardware runs bf16 natively, else "32"; a run dir's config.yaml
    # records what it resolved to (`fakescope.training.fit.resolve_precision`).
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = "32"
    gradient_clip_norm: float | None = 1.0
    accumulate_grad_batches: int = Field(1, ge=1)
    early_stopping: EarlyStoppingConfig | None = Field(default_factory=EarlyStoppingConfig)
    # An exponential moving average of the weights (updated after every optimiser step) is
    # what validation scores, the checkpoints hold and a run ships: it smooths the last
    # steps' noise. None trains and keeps the raw weights.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(1, ge=1)
    seed: int = 42
    channels_last: bool = False
    limit_train_batches: int | float | None = None
    log_every_n_steps: int = Field(10, gt=0)


class TrainConfig(_Strict):
    name: str = "run"
    output_dir: Path = Path("runs")
    data: DataConfig
    model: ModelConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    finetune: FinetuneConfig | None = None


def _parse_value(text: str) -> Any:
    # YAML gives the natural types: 3 -> int, 1e-4 -> float, true -> bool, null -> None.
    return yaml.safe_load(text)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings to a nested dict (a copy)."""
    result = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        dotted, value = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = result
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = _parse_value(value)
    return result


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    return TrainConfig.model_validate(apply_overrides(raw, overrides or []))


def config_to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
