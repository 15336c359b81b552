"""The HTTP API through FastAPI's TestClient: every route, limit and error code, auth, batching."""

from __future__ import annotations

import io
import json
import logging
import struct
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from torch import nn

from fakescope.inference.detector import Detector
from fakescope.models.card import DetectorCard
from fakescope.serve.app import ACCESS_LOGGER, create_app
from fakescope.serve.settings import ApiKeyError, ServeSettings, resolve_api_key
from media import FixedFaces


class TinyNet(nn.Module):
    """A whole-image detector small enough that a forward costs nothing."""

    def __init__(self):
        super().__init__()
        self.card = DetectorCard(name="tiny", version="3", input_size=32, face_crop="none")
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.conv(x).relu().mean((2, 3)))

    def cam_layer(self):
        return self.conv


class GatedDetector(Detector):
    """Counts its forwards; while `gate` is clear, a forward waits for it (a busy model)."""

    def __init__(self):
        model = TinyNet()
        super().__init__(model, model.card, use_faces=False)
        self.forwards = 0
        self.gate = threading.Event()
        self.gate.set()

    def crop_logits(self, crops, batch_size=32):
        self.forwards += 1
        self.gate.wait(10)
        return super().crop_logits(crops, batch_size)


def png_bytes(size=(48, 40), seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def flat_png(size: tuple[int, int]) -> bytes:
    """A one-colour PNG: many pixels in few bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(size=(64, 64)) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_bomb(side: int = 100_000) -> bytes:
    """A valid ~100-byte PNG whose header claims side x side pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def mp4_bytes(frames: int = 6, size: int = 64) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def files(*items: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in items]


@pytest.fixture
def detector():
    return GatedDetector()


@pytest.fixture
def client(detector):
    with TestClient(
        create_app(detector, ServeSettings(max_image_bytes=200_000, max_pixels=1_000_000))
    ) as client:
        yield client


def test_health_ready_models_page_and_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True}
    models = client.get("/v1/models").json()["models"]
    assert models[0]["detector"] == "tiny" and models[0]["card"]["input_size"] == 32
    page = client.get("/")
    assert page.status_code == 200 and 'id="file-input"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200
    assert "/v1/detect" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_not_ready_until_the_model_is_loaded(detector):
    app = create_app(lambda: detector)
    bare = TestClient(app)  # no `with`: the start-up (model loading) has not run
    assert bare.get("/healthz").status_code == 200
    assert bare.get("/readyz").status_code == 503
    assert bare.post("/v1/detect", files=files(("a.png", png_bytes()))).status_code == 503
    with TestClient(app) as client:  # the factory is called at start-up
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/detect", files=files(("a.png", png_bytes()))).status_code == 200


def test_detect_images_gives_the_python_api_result_plus_timing(client, detector):
    data = png_bytes()
    response = client.post(
        "/v1/detect", files=files(("dir/a.png", data), ("b.png", png_bytes(seed=2)))
    )
    assert response.status_code == 200
    payload = response.json()
    expected = detector.predict(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    first = payload["results"][0]
    assert first["file"] == "a.png"  # the client's folder is dropped
    assert first["probabilities"] == expected["probabilities"]
    assert first["prediction"] == expected["prediction"] and first["image_size"] == [48, 40]
    assert first["detector"] == "tiny" and first["threshold"] == 0.5 and "heatmap" not in first
    assert len(payload["results"]) == 2
    assert set(payload["timing_ms"]) == {"upload", "processing", "total"}
    assert response.headers["x-request-id"]


def test_serve_scores_each_faces_cuts_as_the_python_api_does():
    model = TinyNet()
    card = model.card.with_updates(extra_margins=(0.1, 0.5), mirror_average=True)
    faces = FixedFaces((4.0, 4.0, 30.0, 34.0), (20.0, 10.0, 44.0, 36.0))
    detector = Detector(model, card, use_faces=True, face_detector=faces)
    data = png_bytes(seed=3)
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    with TestClient(create_app(detector, ServeSettings())) as client:
        response = client.post("/v1/detect", files=files(("a.png", data)))
    assert response.status_code == 200
    served = response.json()["results"][0]
    expected = detector.predict(image)
    assert [f["p_fake"] for f in served["faces"]] == [f["p_fake"] for f in expected["faces"]]
    assert served["probabilities"] == expected["probabilities"]
    # Each face's score is the mean over its three cuts, not its card-margin crop's alone.
    prepared = detector.prepare(image, faces.detection)
    one_cut = detector.score_faces([cuts[:1] for cuts in prepared.views])
    assert not np.allclose([f["p_fake"] for f in served["faces"]], one_cut, atol=1e-4)


def test_explain_adds_heat_maps(client):
    result = client.post("/v1/detect?explain=true", files=files(("a.png", png_bytes()))).json()[
        "results"
    ][0]
    assert result["heatmap"].startswith("data:image/png;base64,")


def test_detect_video(client):
    response = client.post("/v1/detect", files=files(("clip.mov", mp4_bytes())))
    assert response.status_code == 200
    result = response.json()["results"][0]
    assert (
        result["kind"] == "video" and result["file"] == "clip.mov" and result["frames_sampled"] == 6
    )


TRUNCATED_JPEG = jpeg_bytes()[:1500]
POLYGLOT_JPEG_ZIP = jpeg_bytes() + b"PK\x03\x04" + b"\0" * 26 + b"PK\x05\x06" + b"\0" * 18
GIF_HTML = b"GIF89a<html><script>alert(1)</script></html>"


@pytest.mark.parametrize(
    ("name", "data", "status"),
    [
        ("truncated.jpg", TRUNCATED_JPEG, 422),
        ("bomb.png", png_bomb(), 413),
        ("random.jpg", np.random.default_rng(0).bytes(4096), 415),
        ("empty.jpg", b"", 422),
        ("tiny.png", png_bytes((1, 1)), 200),
        ("polyglot.jpg", POLYGLOT_JPEG_ZIP, 200),  # judged by what it starts as: a JPEG
        ("gif-html.gif", GIF_HTML, 422),
        ("short.png", b"\x89PNG", 415),
        ("broken-video.mp4", b"\0\0\0\x18ftypmp42" + b"\0" * 500, 422),
    ],
)
def test_bad_uploads_get_their_status_and_the_server_keeps_serving(client, name, data, status):
    response = client.post("/v1/detect", files=files((name, data)))
    assert response.status_code == status, response.text
    if status != 200:
        assert name in response.json()["detail"]
    assert client.post("/v1/detect", files=files(("good.png", png_bytes()))).status_code == 200


@pytest.mark.parametrize(
    ("request_kwargs", "status", "message"),
    [
        ({"files": files(("big.png", png_bytes((300, 300))))}, 413, "limit"),  # ~270 kB > 200 kB
        ({"files": files(("many.png", flat_png((1200, 1000))))}, 413, "pixels"),  # > 1 MP
        (
            {"files": files(*[(f"{i}.png", png_bytes((2, 2))) for i in range(17)])},
            413,
            "too many files",
        ),
        ({"content": b"{}", "headers": {"content-type": "application/json"}}, 415, "multipart"),
        ({"data": {"note": "no file"}, "files": {"unused": (None, "x")}}, 400, "no file"),
        ({"files": files(("a.mp4", mp4_bytes(2)), ("b.png", png_bytes()))}, 400, "one video"),
    ],
)
def test_request_limits(client, request_kwargs, status, message):
    response = client.post("/v1/detect", **request_kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_declared_length_over_the_limit_is_refused_before_reading(client):
    headers = {"content-type": "multipart/form-data; boundary=x", "content-length": str(10**12)}
    response = client.post("/v1/detect", content=b"--x--\r\n", headers=headers)
    assert response.status_code == 413


def test_concurrent_requests_share_forwards(detector):
    n = 8
    settings = ServeSettings(max_batch_crops=n, max_wait_ms=3000, request_threads=n)
    with TestClient(create_app(detector, settings)) as client:
        with ThreadPoolExecutor(n) as pool:
            statuses = list(
                pool.map(
                    lambda i: (
                        client.post(
                            "/v1/detect", files=files((f"{i}.png", png_bytes(seed=i)))
                        ).status_code
                    ),
                    range(n),
                )
            )
        metrics = client.get("/metrics").text
    assert statuses == [200] * n
    assert detector.forwards < n
    assert f"fakescope_model_crops_total {n}" in metrics


def _wait_until(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_queue_full_gives_503_with_retry_after(detector):
    app = create_app(detector, ServeSettings(max_queue=1, max_wait_ms=0))
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        detector.gate.clear()
        first = pool.submit(client.post, "/v1/detect", files=files(("a.png", png_bytes())))
        _wait_until(lambda: detector.forwards == 1)
        refused = client.post("/v1/detect", files=files(("b.png", png_bytes())))
        detector.gate.set()
        assert first.result().status_code == 200
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert client.post("/v1/detect", files=files(("c.png", png_bytes()))).status_code == 200


def test_a_slow_request_times_out_with_504(detector):
    with TestClient(
        create_app(detector, ServeSettings(request_timeout_s=0.3, max_wait_ms=0))
    ) as client:
        detector.gate.clear()
        response = client.post("/v1/detect", files=files(("a.png", png_bytes())))
        detector.gate.set()
        assert response.status_code == 504
        _wait_until(lambda: app_in_flight(client) == 0)
        assert client.post("/v1/detect", files=files(("b.png", png_bytes()))).status_code == 200


def app_in_flight(client) -> int:
    return client.app.state.server.in_flight


def test_api_key_guards_v1_routes_only(detector):
    with TestClient(create_app(detector, ServeSettings(api_key="s3cret-key"))) as client:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic s3cret-key"},
        ):
            response = client.get("/v1/models", headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert (
                client.post(
                    "/v1/detect", files=files(("a.png", png_bytes())), headers=headers
                ).status_code
                == 401
            )
        good = {"Authorization": "Bearer s3cret-key"}
        assert client.get("/v1/models", headers=good).status_code == 200
        assert (
            client.post("/v1/detect", files=files(("a.png", png_bytes())), headers=good).status_code
            == 200
        )
        for open_route in ("/", "/healthz", "/readyz", "/metrics"):
            assert client.get(open_route).status_code == 200


def test_api_key_from_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKESCOPE_API_KEY", "from-env")
    assert resolve_api_key(None) == "from-env"
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert resolve_api_key(key_file) == "from-file"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ApiKeyError, match="empty"):
        resolve_api_key(tmp_path / "empty")
    with pytest.raises(ApiKeyError, match="missing"):
        resolve_api_key(tmp_path / "missing")


def test_cors_is_off_unless_origins_are_given(detector):
    preflight = {"Origin": "https://news.example", "Access-Control-Request-Method": "POST"}
    with TestClient(create_app(detector)) as client:
        assert (
            "access-control-allow-origin"
            not in client.options("/v1/detect", headers=preflight).headers
        )
    with TestClient(
        create_app(detector, ServeSettings(cors_origins=("https://news.example",)))
    ) as client:
        allowed = client.options("/v1/detect", headers=preflight).headers
        assert allowed["access-control-allow-origin"] == "https://news.example"


def test_metrics_count_requests_latencies_and_errors(client):
    client.post("/v1/detect", files=files(("a.png", png_bytes())))
    client.post("/v1/detect", files=files(("x.jpg", b"not an image at all")))
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'fakescope_requests_total{route="/v1/detect",method="POST",status="200"} 1' in text
    assert 'fakescope_requests_total{route="/v1/detect",method="POST",status="415"} 1' in text
    assert 'fakescope_requests_total{route="unmatched",method="GET",status="404"} 1' in text
    assert 'fakescope_request_duration_seconds_bucket{route="/v1/detect",le="+Inf"} 2' in text
    assert "fakescope_model_batches_total 1" in text and "fakescope_ready 1" in text


def test_access_log_is_json_without_file_contents(client, caplog):
    marker = b"SECRET-PIXELS"
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.post("/v1/detect", files=files(("a.jpg", b"\xff\xd8\xff" + marker * 10)))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    assert lines[-1]["path"] == "/v1/detect" and lines[-1]["status"] == 422
    assert lines[-1]["files"] == 1 and lines[-1]["bytes"] == 133 and lines[-1]["request_id"]
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


def test_uploads_stay_in_memory_unless_kept(detector, tmp_path, monkeypatch):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = png_bytes((900, 900))  # ~2.4 MB: above the 1 MB at which form parsers spool to disk
    kept = tmp_path / "kept"
    with TestClient(create_app(detector, ServeSettings(keep_uploads=None))) as client:
        assert client.post("/v1/detect", files=files(("big.png", big))).status_code == 200
        assert client.post("/v1/detect", files=files(("clip.mp4", mp4_bytes(2)))).status_code == 200
    assert list(spool.iterdir()) == []
    with TestClient(create_app(detector, ServeSettings(keep_uploads=kept))) as client:
        assert client.post("/v1/detect", files=files(("../../evil.png", big))).status_code == 200
    (saved,) = kept.iterdir()
    assert saved.suffix == ".png" and saved.read_bytes() == big and "evil" not in saved.name


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="max_queue"):
        ServeSettings(max_queue=0)
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(api_key="")
