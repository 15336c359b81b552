"""The Detector API: images, faces, fallback, batching, videos, heat maps."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from skimage import data as skdata

import fakescope
from fakescope.data.toy import read_patch_boxes
from fakescope.faces import crop_face
from fakescope.inference import backends
from fakescope.inference.detector import Detector
from fakescope.inference.explain import explain_crops, explain_image
from fakescope.inference.inputs import InputProblem, ScanInput, expand_inputs
from fakescope.io.images import decode_image
from fakescope.models.registry import list_detectors
from fakescope.models.scoring import probabilities
from media import FixedFaces, write_video

SEED_KEYS = ["prediction", "confidence", "probabilities"]


@pytest.fixture(scope="session")
def detector(trained_run: Path) -> Detector:
    return fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"))


@pytest.fixture(scope="session")
def face_detector(trained_run: Path) -> Detector:
    """The toy model behind the MTCNN face stage: the structure of face results, not their skill."""
    model_path = trained_run / "checkpoints" / "best.ckpt"
    return fakescope.load(str(model_path), use_faces=True)


def astronaut_face() -> np.ndarray:
    return skdata.astronaut()[30:230, 140:320]  # the face with some margin


def group_photo() -> np.ndarray:
    """Three faces of different sizes on a plain canvas, and one far too small to score."""
    canvas = np.full((520, 900, 3), 200, dtype=np.uint8)
    face = astronaut_face()
    for (x, y), scale in (((20, 40), 1.6), ((420, 120), 1.3), ((700, 300), 1.0), ((640, 40), 0.25)):
        resized = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = resized.shape[:2]
        canvas[y : y + h, x : x + w] = resized
    return canvas


def save(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path)
    return path


def test_result_has_the_seed_keys_first(detector: Detector, toy_data: Path):
    image = next((toy_data / "fake").iterdir())
    result = detector.predict(image)
    assert list(result)[:3] == SEED_KEYS
    assert result["prediction"] in ("Fake", "Real")
    probs = result["probabilities"]
    assert probs["real"] + probs["fake"] == pytest.approx(1.0, abs=1e-5)
    assert result["confidence"] == pytest.approx(max(probs.values()), abs=1e-6)
    assert result["detector"] == "lite0" and result["threshold"] == 0.5
    assert result["fallback"] == "whole-image" and result["face"] is None  # a whole-image detector


def test_toy_detector_is_right_on_held_out_files(
    detector: Detector, trained_run: Path, toy_data: Path
):
    import json

    manifest = json.loads((trained_run / "split_manifest.json").read_text())
    test = manifest["splits"]["test"]
    paths = [toy_data / rel for rel, _ in test]
    labels = [label for _, label in test]
    results = detector.predict_batch(paths, batch_size=16)
    correct = sum((r["prediction"] == "Fake") == bool(y) for r, y in zip(results, labels))
    assert correct / len(labels) > 0.85


def test_batch_equals_single_and_really_batches(detector: Detector, toy_data: Path, monkeypatch):
    paths = sorted((toy_data / "real").iterdir())[:5] + sorted((toy_data / "fake").iterdir())[:5]
    singles = [detector.predict(p)["probabilities"]["fake"] for p in paths]
    forwards = []
    original = detector.model.forward
    monkeypatch.setattr(detector.model, "forward", lambda x: forwards.append(len(x)) or original(x))
    batch = [r["probabilities"]["fake"] for r in detector.predict_batch(paths, batch_size=32)]
    assert forwards == [16]  # one forward for ten files, padded to a bucketed batch size
    assert batch == pytest.approx(singles, abs=1e-5)


def test_unreadable_file_does_not_stop_a_batch(detector: Detector, toy_data: Path, tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    good = next((toy_data / "real").iterdir())
    results = detector.predict_batch([good, broken, good])
    assert "error" in results[1] and "broken.jpg" in results[1]["error"]
    assert results[0]["probabilities"] == results[2]["probabilities"]


def test_multi_face_image_scores_each_face_and_takes_the_max(face_detector: Detector):
    result = face_detector.predict(group_photo())
    assert len(result["faces"]) == 3
    sides = [f["box"][2] - f["box"][0] for f in result["faces"]]
    assert sides == sorted(sides, reverse=True)
    scores = [f["p_fake"] for f in result["faces"]]
    assert result["probabilities"]["fake"] == pytest.approx(max(scores), abs=1e-6)
    assert result["face"]["p_fake"] == max(scores)
    assert result["fallback"] is None
    # The 29-px face is under half the largest, so the coarse search of this 900-px photo
    # settles it without searching that small (FaceDetector.detect_batch): not listed.
    assert result["skipped_faces"] == []


def test_no_face_falls_back_to_the_whole_image_and_says_so(face_detector: Detector):
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 300, dtype=np.float32)[None, :, None].repeat(200, 0).repeat(3, 2)
    image = np.clip(gradient + rng.normal(0, 5, gradient.shape), 0, 255).astype(np.uint8)
    result = face_detector.predict(image)
    assert result["faces"] == [] and result["face"] is None
    assert result["fallback"] == "whole-image"


def test_threshold_override_changes_the_verdict_not_the_score(trained_run: Path, toy_data: Path):
    path = next((toy_data / "fake").iterdir())
    low = fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"), threshold=0.0).predict(
        path
    )
    high = fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"), threshold=1.0).predict(
        path
    )
    assert low["probabilities"] == high["probabilities"]
    assert low["prediction"] == "Fake" and low["threshold_source"] == "override"
    assert high["prediction"] == "Real" or high["probabilities"]["fake"] == 1.0


def test_video_is_the_mean_over_sampled_frames(detector: Detector, toy_data: Path, tmp_path: Path):
    images = [decode_image(p) for p in sorted((toy_data / "fake").iterdir())[:6]]
    images += [decode_image(p) for p in sorted((toy_data / "real").iterdir())[:6]]
    video = write_video(
        tmp_path / "clip.mp4", [cv2.resize(i, (128, 128)) for i in images for _ in range(5)]
    )
    result = detector.predict_video(video, frames=12)
    assert list(result)[:3] == SEED_KEYS
    assert result["frames_sampled"] == 12 and len(result["timeline"]) == 12
    frames = [t["frame"] for t in result["timeline"]]
    assert frames == sorted(frames) and frames[0] <= 4 and frames[-1] >= 55
    mean = np.mean([t["p_fake"] for t in result["timeline"]])
    assert result["probabilities"]["fake"] == pytest.approx(mean, abs=1e-5)
    top = max(result["timeline"], key=lambda t: t["p_fake"])["frame"]
    assert result["driving_frames"][0] == top


def test_heat_maps_peak_inside_the_known_fake_patch(detector: Detector, toy_data: Path):
    boxes = read_patch_boxes(toy_data)
    paths = sorted(boxes)[:30]
    crops = [decode_image(p) for p in paths]
    maps = explain_crops(detector.model, detector.card, crops, detector.transform)
    hits = 0
    for path, heat, crop in zip(paths, maps, crops):
        scale = heat.shape[0] / crop.shape[0]
        x0, y0, x1, y1 = (v * scale for v in boxes[path])
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        hits += x0 <= x < x1 and y0 <= y < y1
    # A patch covers 5-12% of the image: chance would put few peaks inside it.
    assert hits / len(paths) >= 0.7, f"{hits}/{len(paths)} heat-map peaks inside the patch"


def test_explain_image_overlays_faces_and_reports_carry_heat_maps(face_detector: Detector):
    photo = group_photo()
    overlay, p_fake = explain_image(face_detector, photo)
    assert overlay.shape == photo.shape and overlay.dtype == np.uint8
    assert not np.array_equal(overlay, photo)
    result = face_detector.predict(photo, explain=True)
    assert p_fake == pytest.approx(result["probabilities"]["fake"], abs=1e-5)
    uri = result["faces"][0]["heatmap"]
    assert uri.startswith("data:image/png;base64,")
    import base64

    png = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert png.format == "PNG" and max(png.size) <= 256


def test_inputs_expand_files_folders_globs_and_stdin(tmp_path: Path):
    folder = tmp_path / "shots"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.JPG", "clip.mp4", "notes.txt", ".hidden.png"):
        (folder / name).write_bytes(b"x")
    listed = list(expand_inputs([str(folder)]))
    assert [(i.path.name, i.kind) for i in listed] == [
        ("a.png", "image"),
        ("clip.mp4", "video"),
        ("b.JPG", "image"),
    ]
    globbed = list(expand_inputs([str(folder / "*.png")]))
    assert [i.path.name for i in globbed] == ["a.png"]
    problems = list(expand_inputs([str(tmp_path / "missing.jpg"), str(tmp_path / "*.gif")]))
    assert all(isinstance(p, InputProblem) for p in problems) and len(problems) == 2
    stdin = io.StringIO(f"{folder / 'a.png'}\n\n{folder / 'clip.mp4'}\n")
    from_stdin = list(expand_inputs(["-"], stdin))
    assert from_stdin == [
        ScanInput(folder / "a.png", "image"),
        ScanInput(folder / "clip.mp4", "video"),
    ]


@pytest.mark.parametrize("name", [spec.name for spec in list_detectors()])
def test_grad_cam_works_for_every_registered_detector(name: str):
    import torch

    from fakescope.inference.explain import gradcam_maps
    from fakescope.models.registry import create_detector

    torch.manual_seed(0)
    model = create_detector(name, pretrained=False, card_overrides={"input_size": 96})
    maps = gradcam_maps(model, model.card, torch.randn(2, 3, 96, 96))
    assert maps.shape == (2, 96, 96)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_a_decompression_bomb_is_listed_not_decoded(detector: Detector, tmp_path: Path):
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    result = detector.predict(bomb)
    assert "error" in result and "pixels" in result["error"]
    assert "bomb.png" in result["error"]


def test_scan_with_a_producer_pool_gives_the_same_results_in_the_same_order(
    detector: Detector, toy_data: Path, tmp_path: Path
):
    from fakescope.inference.scan import run_scan

    images = sorted((toy_data / "real").iterdir())[:5] + sorted((toy_data / "fake").iterdir())[:5]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    frames = [cv2.resize(decode_image(p), (128, 128)) for p in images[:4] for _ in range(3)]
    video = write_video(tmp_path / "clip.mp4", frames)
    items = [ScanInput(p, "image") for p in images[:3]]
    items += [ScanInput(broken, "image"), InputProblem("missing.png", "no such file")]
    items += [ScanInput(video, "video")] + [ScanInput(p, "image") for p in images[3:]]

    def scan(workers: int) -> list[dict]:
        results: list[dict] = []
        run_scan(items, detector, results.append, batch_size=3, frames=6, workers=workers)
        return results

    plain, pooled = scan(0), scan(2)
    names = (
        [str(p) for p in images[:3]]
        + [str(broken), "missing.png", str(video)]
        + [str(p) for p in images[3:]]
    )
    assert [r["file"] for r in pooled] == [r["file"] for r in plain] == names
    assert "error" in pooled[3] and "error" in pooled[4] and pooled[5]["kind"] == "video"
    for a, b in zip(plain, pooled):
        assert a.get("probabilities") == b.get("probabilities")


def test_mirror_average_scores_each_crop_with_its_mirror_image(trained_run: Path, toy_data: Path):
    plain = fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"))
    mirrored = fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"))
    mirrored.card = mirrored.card.with_updates(mirror_average=True)
    crops = [decode_image(path) for path in sorted((toy_data / "fake").iterdir())[:4]]
    flipped = [crop[:, ::-1] for crop in crops]
    expected = (plain.crop_logits(crops) + plain.crop_logits(flipped)) / 2
    np.testing.assert_allclose(mirrored.crop_logits(crops), expected, atol=1e-5)
    # A crop and its mirror image get one score; without averaging they need not.
    np.testing.assert_allclose(
        mirrored.crop_logits(flipped), mirrored.crop_logits(crops), atol=1e-5
    )
    assert not np.allclose(plain.crop_logits(flipped), plain.crop_logits(crops), atol=1e-5)


def test_extra_margins_score_each_face_as_the_mean_of_its_cuts(trained_run: Path):
    checkpoint = str(trained_run / "checkpoints" / "best.ckpt")
    boxes = ((150.0, 40.0, 290.0, 200.0), (30.0, 300.0, 110.0, 400.0))
    plain = fakescope.load(checkpoint, use_faces=True, face_detector=FixedFaces(*boxes))
    viewed = fakescope.load(checkpoint, use_faces=True, face_detector=FixedFaces(*boxes))
    viewed.card = viewed.card.with_updates(mirror_average=True, extra_margins=(0.1, 0.6))
    image = skdata.astronaut()
    size = plain.card.input_size

    prepared = viewed.prepare(image, viewed.detect_faces([image])[0])
    assert [len(cuts) for cuts in prepared.views] == [3, 3]
    for box, crop in zip(boxes, prepared.crops):  # heat maps show the card's own margin
        expected_crop = crop_face(image, box, margin=plain.card.face_margin, out_size=size)
        np.testing.assert_array_equal(crop, expected_crop)

    def mirrored(crops):
        return (plain.crop_logits(crops) + plain.crop_logits([c[:, ::-1] for c in crops])) / 2

    per_margin = [
        mirrored([crop_face(image, box, margin=m, out_size=size) for box in boxes])
        for m in (plain.card.face_margin, 0.1, 0.6)
    ]
    expected = np.mean(per_margin, axis=0)
    np.testing.assert_allclose(viewed.face_logits(prepared.views), expected, atol=1e-5)
    assert not np.allclose(expected, mirrored(prepared.crops), atol=1e-4)  # the cuts matter
    # Evaluation, calibration and predict all score a face this way.
    np.testing.assert_allclose(viewed.image_logits([image]), [expected.max()], atol=1e-5)
    result = viewed.predict(image)
    faces = probabilities(expected, viewed.card.temperature)
    assert [f["p_fake"] for f in result["faces"]] == pytest.approx(faces.tolist(), abs=1e-5)
    assert result["probabilities"]["fake"] == pytest.approx(faces.max(), abs=1e-5)
    with pytest.raises(ValidationError):
        viewed.card.with_updates(extra_margins=(-0.1,))


def test_mirror_averaged_heat_maps_explain_crop_and_mirror_alike(trained_run: Path, toy_data: Path):
    detector = fakescope.load(str(trained_run / "checkpoints" / "best.ckpt"), backend="torch")
    size = detector.card.input_size
    crops = [
        cv2.resize(decode_image(path), (size, size))
        for path in sorted((toy_data / "fake").iterdir())[:3]
    ]
    flipped = [np.ascontiguousarray(crop[:, ::-1]) for crop in crops]

    def maps(card, images):
        return explain_crops(detector.model, card, images, detector.transform)

    mirrored = detector.card.with_updates(mirror_average=True)
    for a, b in zip(maps(mirrored, crops), maps(mirrored, flipped)):
        np.testing.assert_allclose(a, b[:, ::-1], atol=1e-4)  # one score, one explanation
    plain = maps(detector.card, crops)
    assert not all(
        np.allclose(a, b[:, ::-1], atol=1e-4) for a, b in zip(plain, maps(detector.card, flipped))
    )


@pytest.mark.parametrize(
    ("precision", "native_bf16", "warns"),
    [
        ("bf16", False, True),
        ("bf16", True, False),
        ("auto", False, False),
    ],
)
def test_torch_backend_warns_when_asked_for_emulated_bf16(
    monkeypatch, precision: str, native_bf16: bool, warns: bool
):
    # Emulated bf16 ran 12x slower than fp32 on an AVX2-only CPU; "auto" never picks it there.
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: native_bf16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = backends.TorchBackend(torch.nn.Conv2d(3, 2, 1), precision=precision)
    assert any("emulated" in str(w.message) for w in caught) == warns
    assert backend.bf16 == (precision == "bf16" or native_bf16)
