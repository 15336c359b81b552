from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from fakescope.evaluation.metrics import MetricInputError, binary_metrics
from fakescope.evaluation.plots import (
    PlotInputError,
    plot_confusion_matrix,
    plot_reliability,
    plot_robustness,
    plot_roc,
    plot_training_curves,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _scores(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)
    return labels, scores


def _assert_drawn_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.02  # not a blank single-colour image
    # Written atomically: no temporary file is left beside it.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_plot_roc(tmp_path):
    labels, scores = _scores()
    path = plot_roc(labels, scores, tmp_path / "roc.png", title="toy")
    assert path == tmp_path / "roc.png"
    _assert_drawn_png(path)


def test_plot_roc_needs_both_classes(tmp_path):
    with pytest.raises(MetricInputError):
        plot_roc([0, 0], [0.1, 0.2], tmp_path / "roc.png")
    assert not (tmp_path / "roc.png").exists()


def test_plot_confusion_matrix_from_metrics(tmp_path):
    labels, scores = _scores()
    cm = binary_metrics(labels, scores)["confusion_matrix"]
    _assert_drawn_png(plot_confusion_matrix(cm, tmp_path / "sub" / "cm.png"))


def test_plot_confusion_matrix_with_an_empty_row(tmp_path):
    _assert_drawn_png(plot_confusion_matrix(np.array([[5, 1], [0, 0]]), tmp_path / "cm.png"))


def test_plot_confusion_matrix_rejects_wrong_shape(tmp_path):
    with pytest.raises(PlotInputError, match="cm.png"):
        plot_confusion_matrix([[1, 2, 3]], tmp_path / "cm.png")


def test_plot_training_curves_skips_missing_keys(tmp_path):
    history = [
        {
            "epoch": 0,
            "train_loss": 0.7,
            "val_loss": 0.69,
            "train_acc": 0.5,
            "val_acc": 0.52,
            "val_auc": None,
        },
        {
            "epoch": 1,
            "train_loss": 0.5,
            "val_loss": 0.55,
            "train_acc": 0.7,
            "val_acc": 0.68,
            "val_auc": 0.75,
        },
        {"epoch": 2, "train_loss": 0.4, "val_loss": 0.5, "val_auc": 0.8},
    ]
    _assert_drawn_png(plot_training_curves(history, tmp_path / "curves.png"))


def test_plot_training_curves_leaves_out_empty_panels(tmp_path):
    one_panel = plot_training_curves(
        [{"train_loss": 0.7}, {"train_loss": 0.6}], tmp_path / "a" / "one.png"
    )
    three_panels = plot_training_curves(
        [
            {"train_loss": 0.7, "val_acc": 0.5, "val_auc": 0.6},
            {"train_loss": 0.6, "val_acc": 0.6, "val_auc": 0.7},
        ],
        tmp_path / "b" / "three.png",
    )
    _assert_drawn_png(one_panel)
    _assert_drawn_png(three_panels)
    assert mpimg.imread(three_panels).shape[1] > 2 * mpimg.imread(one_panel).shape[1]


def test_plot_training_curves_without_any_known_key(tmp_path):
    with pytest.raises(PlotInputError, match="no values"):
        plot_training_curves([{"lr": 0.1}], tmp_path / "curves.png")


def test_plot_reliability_before_and_after(tmp_path):
    labels, scores = _scores(200)
    overconfident = np.clip((scores - 0.5) * 3 + 0.5, 0, 1)
    _assert_drawn_png(plot_reliability(labels, overconfident, scores, tmp_path / "rel.png"))


def test_plot_reliability_single_curve(tmp_path):
    labels, scores = _scores(50)
    _assert_drawn_png(plot_reliability(labels, scores, None, tmp_path / "rel.png"))


def test_plot_robustness(tmp_path):
    labels, scores = _scores()
    results = {
        "clean": binary_metrics(labels, scores),
        "jpeg-50": binary_metrics(labels, np.clip(scores * 0.8 + 0.1, 0, 1)),
        "reals only": binary_metrics(labels[labels == 0], scores[labels == 0]),  # auc None
    }
    _assert_drawn_png(plot_robustness(results, tmp_path / "robust.png"))


def test_plot_robustness_rejects_empty_results(tmp_path):
    with pytest.raises(PlotInputError, match="no robustness results"):
        plot_robustness({}, tmp_path / "robust.png")
