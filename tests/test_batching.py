"""Bucketed batch sizes: few shapes for the kernel caches, the same results as unpadded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from fakescope.batching import bucket_size, pad_batch
from fakescope.faces import FaceDetector


@pytest.mark.parametrize(
    ("n", "largest", "expected"),
    [
        (1, 32, 1),
        (2, 32, 2),
        (3, 32, 4),
        (5, 32, 8),
        (16, 32, 16),
        (17, 32, 32),
        (20, 24, 24),
        (40, 32, 40),
        (17, 512, 32),
        (187, 512, 192),
        (500, 512, 512),
    ],
)
def test_bucket_size(n, largest, expected):
    assert bucket_size(n, largest) == expected


def test_bucket_size_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="at least one"):
        bucket_size(0, 32)


def test_pad_batch_appends_zero_rows_in_the_same_memory_format():
    batch = torch.randn(3, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    padded = pad_batch(batch, 8)
    assert padded.shape == (8, 3, 8, 8)
    assert padded.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(padded[:3], batch) and not padded[3:].any()
    assert pad_batch(batch, 3) is batch


def test_mtcnn_refinement_networks_see_bucketed_batches_and_find_the_same_faces(monkeypatch):
    detector = FaceDetector()
    sizes: list[int] = []
    hooks = [
        wrapper.network.register_forward_pre_hook(lambda _module, args: sizes.append(len(args[0])))
        for wrapper in (detector._mtcnn.rnet, detector._mtcnn.onet)
    ]
    images = [data.astronaut(), np.ascontiguousarray(data.astronaut()[:, ::-1]), data.chelsea()]
    bucketed = detector.detect_batch(images)
    for hook in hooks:
        hook.remove()
    assert sizes and all(size % 16 == 0 or size & (size - 1) == 0 for size in sizes), sizes

    # The same boxes as the networks run on the exact candidate count.
    monkeypatch.setattr(detector._mtcnn, "rnet", detector._mtcnn.rnet.network)
    monkeypatch.setattr(detector._mtcnn, "onet", detector._mtcnn.onet.network)
    exact = detector.detect_batch(images)
    assert [len(d.faces) for d in bucketed] == [len(d.faces) for d in exact]
    for ours, theirs in zip(bucketed, exact):
        for a, b in zip(ours.faces, theirs.faces):
            assert np.allclose(a.box, b.box, atol=1e-2) and a.score == pytest.approx(
                b.score, abs=1e-4
            )
