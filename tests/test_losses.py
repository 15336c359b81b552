"""Losses: hand-computed values, both logit layouts, class weights, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fakescope.models.losses import LOSSES, create_loss


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


LOGITS = torch.tensor([[0.0], [2.0], [-1.0]])
TARGETS = torch.tensor([1, 0, 0])


def test_bce_matches_hand_computed_values():
    # -log(sigmoid(0)), -log(1 - sigmoid(2)), -log(1 - sigmoid(-1))
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0)) + math.log(1.0 + math.exp(-1.0))) / 3
    assert create_loss("bce")(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_focal_matches_hand_computed_values():
    alpha, gamma = 0.25, 2.0
    total = 0.0
    for z, y in [(0.0, 1), (2.0, 0), (-1.0, 0)]:
        p_t = _sigmoid(z) if y == 1 else 1.0 - _sigmoid(z)
        alpha_t = alpha if y == 1 else 1.0 - alpha
        total += -alpha_t * (1.0 - p_t) ** gamma * math.log(p_t)
    loss = create_loss("focal", alpha=alpha, gamma=gamma)(LOGITS, TARGETS)
    assert loss.item() == pytest.approx(total / 3, rel=1e-6)


def test_two_logits_cross_entropy_equals_torch_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 2, generator=generator) * 3
    targets = torch.randint(0, 2, (8,), generator=generator)
    expected = F.cross_entropy(logits, targets)
    assert create_loss("ce")(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert create_loss("bce")(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_focal_with_gamma_zero_is_alpha_weighted_bce():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 1, generator=generator)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])
    weights = torch.where(targets == 1, 0.3, 0.7).float()
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], targets.float(), weight=weights)
    loss = create_loss("focal", alpha=0.3, gamma=0.0)(logits, targets)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    plain = create_loss("focal", alpha=None, gamma=0.0)(logits, targets)
    assert plain.item() == pytest.approx(create_loss("bce")(logits, targets).item(), rel=1e-6)


def test_adaptive_focal_takes_alpha_from_class_weights():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(10, 2, generator=generator)
    targets = torch.randint(0, 2, (10,), generator=generator)
    # Inverse frequency for 30 real / 10 fake: total/count = (40/30, 40/10): alpha (0.25, 0.75).
    loss = create_loss("adaptive-focal", gamma=0.0, class_weights=[40 / 30, 40 / 10])
    assert torch.allclose(loss.alpha, torch.tensor([0.25, 0.75]))
    alpha = torch.tensor([0.25, 0.75])
    expected = (F.cross_entropy(logits, targets, reduction="none") * alpha[targets]).mean()
    assert loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-5)


def test_adaptive_focal_without_weights_is_half_focal():
    logits = torch.tensor([[0.5, -0.5], [1.0, 2.0]])
    targets = torch.tensor([1, 1])
    adaptive = create_loss("adaptive-focal", gamma=2.0)(logits, targets)
    focal = create_loss("focal", alpha=0.5, gamma=2.0)(logits, targets)
    assert adaptive.item() == pytest.approx(focal.item(), rel=1e-6)


def test_bce_focal_is_weighted_sum_of_parts():
    combined = create_loss("bce-focal", weight_bce=0.3, weight_focal=0.7, alpha=0.25, gamma=2.0)
    bce = create_loss("bce")(LOGITS, TARGETS)
    focal = create_loss("focal", alpha=0.25, gamma=2.0)(LOGITS, TARGETS)
    expected = (0.3 * bce + 0.7 * focal).item()
    assert combined(LOGITS, TARGETS).item() == pytest.approx(expected, rel=1e-6)


def test_class_weights_scale_each_sample_by_its_class():
    # [1, 3] rescaled to mean 1 is [0.5, 1.5].
    loss = create_loss("bce", class_weights=torch.tensor([1.0, 3.0]))
    per_sample = F.binary_cross_entropy_with_logits(LOGITS[:, 0], TARGETS.float(), reduction="none")
    expected = (per_sample * torch.tensor([1.5, 0.5, 0.5])).mean()
    assert loss(LOGITS, TARGETS).item() == pytest.approx(expected.item(), rel=1e-6)


def test_balanced_class_weights_change_nothing():
    weighted = create_loss("focal", class_weights=[2.0, 2.0])(LOGITS, TARGETS)
    assert weighted.item() == pytest.approx(create_loss("focal")(LOGITS, TARGETS).item(), rel=1e-6)


GRADIENT_CASES = [(name, {}) for name in sorted(LOSSES)] + [
    (name, {"gamma": 0.0}) for name in ("focal", "bce-focal", "adaptive-focal")
]


@pytest.mark.parametrize(("name", "gamma_args"), GRADIENT_CASES)
@pytest.mark.parametrize("columns", [1, 2])
def test_gradients_are_finite_even_for_saturated_logits(name, gamma_args, columns):
    logits = torch.tensor([[-100.0, 100.0], [100.0, -100.0], [0.0, 0.0], [30.0, -5.0]])[:, :columns]
    logits.requires_grad_(True)
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0]).unsqueeze(1)  # (B, 1) targets work too
    loss = create_loss(name, class_weights=[1.0, 2.0], **gamma_args)(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_class_weights_move_with_the_module():
    loss = create_loss("bce", class_weights=[1.0, 2.0])
    assert "class_weights" in dict(loss.named_buffers())


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("hinge", {}, "unknown loss"),
        ("focal", {"beta": 1.0}, "bad arguments"),
        ("focal", {"alpha": 1.5}, "alpha"),
        ("focal", {"gamma": -1.0}, "gamma"),
        ("bce", {"class_weights": [1.0, 0.0]}, "class_weights"),
        ("bce", {"class_weights": [1.0, 2.0, 3.0]}, "class_weights"),
    ],
)
def test_bad_configuration_is_a_clear_error(name, args, message):
    with pytest.raises(ValueError, match=message):
        create_loss(name, **args)


def test_mismatched_shapes_are_a_clear_error():
    loss = create_loss("bce")
    with pytest.raises(ValueError, match="targets"):
        loss(torch.zeros(4, 1), torch.zeros(3))
    with pytest.raises(ValueError, match="logits must be"):
        loss(torch.zeros(4, 3), torch.zeros(4))


def test_blend_mask_loss_pools_the_mask_and_leaves_unknown_items_out():
    from fakescope.models.losses import blend_mask_loss

    masks = torch.zeros(3, 8, 8)
    masks[0, :4, :4] = 1.0  # a blend over one quarter: one cell of a 2 x 2 map
    known = torch.tensor([1.0, 1.0, 0.0])
    right = torch.full((3, 1, 2, 2), -8.0)
    right[0, 0, 0, 0] = 8.0
    wrong = -right
    assert blend_mask_loss(right, masks, known) < 0.01 < 5.0 < blend_mask_loss(wrong, masks, known)
    # The unknown item (index 2) counts for nothing, whatever it predicts.
    moved = right.clone()
    moved[2] = 8.0
    assert torch.equal(blend_mask_loss(moved, masks, known), blend_mask_loss(right, masks, known))
    expected = F.binary_cross_entropy_with_logits(
        right[:2], torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    )
    assert torch.allclose(blend_mask_loss(right, masks, known), expected)
    assert blend_mask_loss(right, masks, torch.zeros(3)) == 0.0
