"""Face detection on faces cut from skimage's astronaut photo, and exact crop geometry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from conftest import shared_dataset
from fakescope.faces import Face, FaceDetection, FaceDetector, _nms_each_image, crop_face

# The astronaut's face with some context around it (rows, columns of the 512x512 photo).
FACE_REGION = (slice(20, 220), slice(130, 320))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def face_patch() -> np.ndarray:
    return data.astronaut()[FACE_REGION]


def paste(canvas: np.ndarray, patch: np.ndarray, scale: float, x: int, y: int) -> None:
    scaled = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas[y : y + scaled.shape[0], x : x + scaled.shape[1]] = scaled


def group_scene(face_patch: np.ndarray) -> np.ndarray:
    """640x480: faces of about 115 and 92 px, one of 44 px (under half) and one of 25 px."""
    canvas = np.full((480, 640, 3), 200, np.uint8)
    paste(canvas, face_patch, 1.0, 10, 10)
    paste(canvas, face_patch, 0.8, 250, 30)
    paste(canvas, face_patch, 0.4, 450, 300)
    paste(canvas, face_patch, 0.25, 560, 40)
    return canvas


def box_center(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_astronaut_has_one_face_with_landmarks(detector):
    result = detector.detect(data.astronaut())
    assert isinstance(result, FaceDetection)
    assert len(result.faces) == 1 and result.skipped == []
    face = result.faces[0]
    x1, y1, x2, y2 = face.box
    # The face lies in the upper middle of the photo.
    assert 150 < x1 < x2 < 300 and 30 < y1 < y2 < 200
    assert face.score >= 0.9
    assert face.landmarks is not None and face.landmarks.shape == (5, 2)
    # Eyes above the nose above the mouth, all inside the box.
    ys = face.landmarks[:, 1]
    assert ys[:2].mean() < ys[2] < ys[3:].mean()
    assert np.all((face.landmarks[:, 0] > x1) & (face.landmarks[:, 0] < x2))
    assert np.all((face.landmarks[:, 1] > y1) & (face.landmarks[:, 1] < y2))


def test_group_keeps_large_faces_largest_first_and_skips_small_ones(detector, face_patch):
    result = detector.detect(group_scene(face_patch))

    assert len(result.faces) == 2
    assert result.faces[0].side > result.faces[1].side
    assert box_center(result.faces[0].box)[0] < 200  # the unscaled copy, pasted on the left
    assert box_center(result.faces[1].box)[0] > 250

    reasons = {round(box_center(face.box)[0]): reason for face, reason in result.skipped}
    assert len(reasons) == 2
    relative = next(r for x, r in reasons.items() if 450 < x < 530)
    tiny = next(r for x, r in reasons.items() if x > 560)
    assert "smaller than 0.5 x the largest face" in relative
    assert "below minimum size 40 px" in tiny


def test_thresholds_are_configurable(detector, face_patch):
    scene = group_scene(face_patch)
    permissive = FaceDetector(min_face_size=20, relative_min=0.0)
    assert len(permissive.detect(scene).faces) == 4
    strict = FaceDetector(min_face_size=100)
    result = strict.detect(scene)
    assert len(result.faces) == 1
    assert any("below minimum size 100 px" in reason for _, reason in result.skipped)


@pytest.mark.parametrize("kind", ["noise", "gradient", "tiny"])
def test_images_without_faces(detector, kind):
    rng = np.random.default_rng(0)
    images = {
        "noise": lambda: rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),
        "gradient": lambda: np.repeat(
            np.repeat(np.linspace(0, 255, 320).astype(np.uint8)[None, :, None], 240, 0), 3, 2
        ),
        # Smaller than the smallest face MTCNN searches for.
        "tiny": lambda: np.full((12, 16, 3), 128, np.uint8),
    }
    result = detector.detect(images[kind]())
    assert result.faces == [] and result.skipped == []


def test_large_image_is_downscaled_and_boxes_map_back(detector, face_patch):
    small = np.full((480, 640, 3), 200, np.uint8)
    paste(small, face_patch, 1.0, 200, 120)
    big = cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_CUBIC)
    factor = 4000 / 640

    big_result = detector.detect(big)
    small_result = detector.detect(small)
    assert len(big_result.faces) == len(small_result.faces) == 1
    big_face, small_face = big_result.faces[0], small_result.faces[0]
    tolerance = 0.05 * small_face.side
    assert np.allclose(np.array(big_face.box) / factor, small_face.box, atol=tolerance)
    assert np.allclose(big_face.landmarks / factor, small_face.landmarks, atol=tolerance)

    # Detection ran on the 1024x768 copy: detecting on that copy and scaling by hand agrees.
    # (A 20-px minimum face keeps the copy itself from being scaled down again; keeping faces
    # of any size relative to the largest rules out the coarse first search.)
    searching_small_faces = FaceDetector(min_face_size=20, relative_min=0.0)
    copy = cv2.resize(big, (1024, 768), interpolation=cv2.INTER_AREA)
    copy_face = searching_small_faces.detect(copy).faces[0]
    big_face = searching_small_faces.detect(big).faces[0]
    assert np.allclose(np.array(copy_face.box) * 4000 / 1024, big_face.box, atol=1e-2)
    assert np.allclose(copy_face.landmarks * 4000 / 1024, big_face.landmarks, atol=1e-2)


def test_detection_searches_a_copy_scaled_to_the_smallest_face_worth_finding(
    face_patch, monkeypatch
):
    """With a 40-px minimum, faces down to 30 px are searched: MTCNN's 20-px smallest face."""
    detector = FaceDetector(min_face_size=40)
    shapes = []
    original = detector._run_mtcnn
    monkeypatch.setattr(
        detector, "_run_mtcnn", lambda batch: shapes.append(batch.shape[1:3]) or original(batch)
    )
    scene = np.full((300, 450, 3), 200, np.uint8)
    paste(scene, face_patch, 0.6, 100, 60)
    result = detector.detect(scene)
    assert shapes == [(200, 300)]  # 300 x 450 scaled by 20 / (0.75 x 40)
    assert len(result.faces) == 1 and 0 < result.faces[0].box[0] < 450


def _searched_shapes(detector: FaceDetector, monkeypatch) -> list[tuple[int, int]]:
    shapes: list[tuple[int, int]] = []
    original = detector._run_mtcnn
    monkeypatch.setattr(
        detector, "_run_mtcnn", lambda batch: shapes.append(batch.shape[1:3]) or original(batch)
    )
    return shapes


def test_a_large_face_in_a_large_photo_is_settled_by_the_coarse_search(face_patch, monkeypatch):
    """A 1024-px portrait: the 320-px copy finds the faces to keep, the fine search is skipped."""
    photo = np.full((1024, 1024, 3), 200, np.uint8)
    paste(photo, face_patch, 3.0, 40, 100)  # about 345 px
    paste(photo, face_patch, 2.0, 620, 500)  # about 230 px: over half the largest, kept
    detector = FaceDetector()
    shapes = _searched_shapes(detector, monkeypatch)
    coarse = detector.detect(photo)
    assert shapes == [(320, 320)]

    monkeypatch.setattr("fakescope.faces._COARSE_SIDE", 10**6)  # no coarse search: 683-px copy
    fine = detector.detect(photo)
    assert shapes[1:] == [(683, 683)]
    assert len(coarse.faces) == len(fine.faces) == 2
    # MTCNN's boxes move by a few percent between search scales; its landmarks less.
    for a, b in zip(coarse.faces, fine.faces):
        assert np.allclose(a.box, b.box, atol=0.1 * b.side)
        assert np.allclose(a.landmarks, b.landmarks, atol=0.05 * b.side)


def test_a_small_face_in_a_large_photo_gets_the_fine_search(face_patch, monkeypatch):
    photo = np.full((1024, 1024, 3), 200, np.uint8)
    paste(photo, face_patch, 0.5, 400, 400)  # about 58 px: under the coarse copy's reach x 1.5
    detector = FaceDetector()
    shapes = _searched_shapes(detector, monkeypatch)
    result = detector.detect(photo)
    assert shapes == [(320, 320), (683, 683)]
    assert len(result.faces) == 1 and 400 < result.faces[0].box[0] < 470


def test_a_face_that_fills_a_tight_crop_is_found_by_a_search_at_full_size(monkeypatch):
    """A 224-px crop inside the face's own box (as dfdc-faces' frames are cut): the 149-px copy
    that the 40-px minimum asks for shows MTCNN no face; the image itself does."""
    photo = data.astronaut()
    detector = FaceDetector()
    x0, y0, x1, y1 = detector.detect(photo).faces[0].box
    inset_x, inset_y = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    tight = photo[int(y0 + inset_y) : int(y1 - inset_y), int(x0 + inset_x) : int(x1 - inset_x)]
    tight = cv2.resize(tight, (224, 224), interpolation=cv2.INTER_CUBIC)
    shapes = _searched_shapes(detector, monkeypatch)
    result = detector.detect(tight)
    assert shapes == [(149, 149), (224, 224)]
    assert len(result.faces) == 1 and result.faces[0].side > 150


def test_a_faceless_photo_already_searched_at_its_largest_scale_is_not_searched_again(
    monkeypatch,
):
    noise = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    detector = FaceDetector()
    shapes = _searched_shapes(detector, monkeypatch)
    assert detector.detect(noise).faces == []
    assert shapes == [(240, 320), (768, 1024)]  # the coarse copy, then detect_max_side's


def test_detect_batch_equals_detect_on_each_image(detector, face_patch):
    scene = group_scene(face_patch)
    images = [
        scene,
        data.astronaut(),
        np.ascontiguousarray(scene[:, ::-1]),  # same shape as `scene`: batched with it
        np.full((100, 150, 3), 90, np.uint8),
    ]
    batched = detector.detect_batch(images)
    assert len(batched) == len(images)
    for image, from_batch in zip(images, batched):
        alone = detector.detect(image)
        assert len(from_batch.faces) == len(alone.faces)
        assert [r for _, r in from_batch.skipped] == [r for _, r in alone.skipped]
        for a, b in zip(from_batch.faces, alone.faces):
            assert np.allclose(a.box, b.box, atol=1e-2)
            assert a.score == pytest.approx(b.score, abs=1e-4)
    assert len(batched[0].faces) == len(batched[2].faces) == 2
    assert detector.detect_batch([]) == []


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((50, 50), np.uint8),
        np.zeros((50, 50, 4), np.uint8),
        np.zeros((50, 50, 3), np.float32),
    ],
)
def test_detect_rejects_non_rgb_uint8(detector, image):
    with pytest.raises(ValueError, match="image 0"):
        detector.detect(image)


def test_face_side_is_the_longer_side():
    assert Face(box=(10.0, 20.0, 30.0, 60.0), score=1.0, landmarks=None).side == 40.0


# --- crop_face: exact geometry ---------------------------------------------------------


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (80, 100, 3), dtype=np.uint8)


def test_crop_inside_the_image(image):
    # 20 px box centred at (50, 50), margin 0.5: a 30 px square from 35 to 65.
    crop = crop_face(image, (40, 40, 60, 60), margin=0.5)
    assert np.array_equal(crop, image[35:65, 35:65])


def test_crop_of_a_tall_box_is_square_on_its_longer_side(image):
    # w 20, h 40, centre (20, 40): a 40 px square from x 0, y 20.
    crop = crop_face(image, (10, 20, 30, 60), margin=0.0)
    assert np.array_equal(crop, image[20:60, 0:40])


def test_crop_with_fractional_box(image):
    # side 9.6 * 1.25 = 12, centre 15: from 9 to 21.
    crop = crop_face(image, (10.2, 10.2, 19.8, 19.8), margin=0.25)
    assert np.array_equal(crop, image[9:21, 9:21])


def test_crop_past_top_left_is_padded_black(image):
    crop = crop_face(image, (-10, -10, 10, 10), margin=0.0)
    assert crop.shape == (20, 20, 3)
    assert np.array_equal(crop[10:, 10:], image[0:10, 0:10])
    assert not crop[:10].any() and not crop[:, :10].any()


def test_crop_past_bottom_right_is_padded_black(image):
    # The image is 100 wide and 80 high.
    crop = crop_face(image, (90, 70, 110, 90), margin=0.0)
    assert np.array_equal(crop[:10, :10], image[70:80, 90:100])
    assert not crop[10:].any() and not crop[:, 10:].any()


def test_crop_wholly_outside_is_black(image):
    crop = crop_face(image, (200, 200, 220, 220), margin=0.0)
    assert crop.shape == (20, 20, 3) and not crop.any()


def test_crop_resized_down_averages_with_inter_area(image):
    crop = crop_face(image, (40, 40, 60, 60), margin=0.5, out_size=15)
    expected = image[35:65, 35:65].astype(np.float64).reshape(15, 2, 15, 2, 3).mean(axis=(1, 3))
    assert crop.shape == (15, 15, 3) and crop.dtype == np.uint8
    assert np.abs(crop - expected).max() <= 1.0


def test_crop_resized_up_uses_cubic(image):
    crop = crop_face(image, (40, 40, 60, 60), margin=0.0, out_size=64)
    source = image[40:60, 40:60]
    assert np.array_equal(crop, cv2.resize(source, (64, 64), interpolation=cv2.INTER_CUBIC))
    assert not np.array_equal(crop, cv2.resize(source, (64, 64), interpolation=cv2.INTER_LINEAR))


def test_crop_of_a_grayscale_image():
    gray = np.arange(100, dtype=np.uint8).reshape(10, 10)
    assert np.array_equal(crop_face(gray, (2, 2, 6, 6), margin=0.0), gray[2:6, 2:6])


@pytest.mark.parametrize(
    "box, kwargs, message",
    [
        ((10, 10, 10, 20), {}, "empty"),
        ((10, 10, 20, 20), {"margin": -0.1}, "margin"),
        ((10, 10, 20, 20), {"out_size": 0}, "out_size"),
    ],
)
def test_crop_rejects_bad_arguments(image, box, kwargs, message):
    with pytest.raises(ValueError, match=message):
        crop_face(image, box, **kwargs)


def face_filling_candidates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around a face that fills a 224-px frame; half of them score exactly 1.0."""
    corners = rng.uniform(-40, 40, size=(n, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(200, 280, size=(n, 1))], axis=1)
    scores = np.where(rng.random(n) < 0.5, 1.0, rng.uniform(0.9, 1.0, n))
    return boxes.astype(np.float32), scores.astype(np.float32)


def test_final_nms_keeps_each_image_s_boxes_whatever_the_batch():
    rng = np.random.default_rng(0)
    boxes, scores = face_filling_candidates(rng, 200)
    other_boxes, other_scores = face_filling_candidates(rng, 200)

    def kept_of_image(boxes, scores, image_inds, image):
        keep = _nms_each_image(
            torch.from_numpy(boxes),
            torch.from_numpy(scores),
            torch.from_numpy(image_inds),
            0.7,
            "Min",
        )
        return boxes[[k for k in keep.numpy() if image_inds[k] == image]]

    alone = kept_of_image(boxes, scores, np.zeros(200), 0)
    # The same candidates as the second image of a batch (facenet-pytorch's own NMS, which
    # ranks the batch's candidates together with an unstable sort, kept other boxes here).
    together = kept_of_image(
        np.concatenate([other_boxes, boxes]),
        np.concatenate([other_scores, scores]),
        np.repeat([0.0, 1.0], 200),
        1,
    )
    np.testing.assert_array_equal(together, alone)
    first_best = np.flatnonzero(scores == scores.max())[0]
    np.testing.assert_array_equal(alone[0], boxes[first_best])  # ties go to the earlier candidate


def test_a_dfdc_frame_s_faces_do_not_depend_on_the_frames_beside_it(detector: FaceDetector):
    # 224-px DFDC face crops: the frames where facenet-pytorch's own NMS moved the box.
    frames = sorted((shared_dataset("dfdc-faces") / "fake").glob("*.jpg"))[:32]
    images = [np.asarray(Image.open(path).convert("RGB")) for path in frames]
    alone = [detector.detect(image) for image in images]
    together = [
        d for start in range(0, 32, 16) for d in detector.detect_batch(images[start : start + 16])
    ]
    for a, t in zip(alone, together):
        assert len(a.faces) == len(t.faces)
        for face_alone, face_together in zip(a.faces, t.faces):
            assert face_alone.box == pytest.approx(face_together.box, abs=1e-2)
