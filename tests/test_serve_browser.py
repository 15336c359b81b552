"""A real `fakescope serve` on 127.0.0.1, its page driven in headless Chromium."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from browser import find_chromium, open_browser
from fakescope.checkpoint import save_detector
from fakescope.models.registry import create_detector

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium)"
)

# The page's --fake and --real colours, used for face boxes and the probability bar.
FAKE_RGB = (198, 40, 40)
REAL_RGB = (30, 142, 62)
VERDICT = "document.querySelector('.result')?.dataset.verdict"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server over an untrained lite0 (64 px, MTCNN faces).

    The verdicts mean nothing; the plumbing is real.
    """
    folder = tmp_path_factory.mktemp("serve")
    model = create_detector("lite0", pretrained=False, card_overrides={"input_size": 64})
    checkpoint = save_detector(model, model.card, "lite0", {}, folder / "lite0.safetensors")
    port = _free_port()
    log = (folder / "server.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakescope",
            "serve",
            "--model",
            str(checkpoint),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while _status(url + "/readyz") != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.seek(0)
            pytest.fail(f"the server did not become ready:\n{log.read()[-3000:]}")
        time.sleep(0.2)
    yield {"url": url, "process": process, "log": log, "folder": folder}
    if process.poll() is None:
        process.kill()
        process.wait()
    log.close()


@pytest.fixture(scope="module")
def photos(server) -> dict[str, Path]:
    folder = server["folder"]
    face = folder / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(face)
    junk = folder / "holiday.jpg"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    return {"face": face, "junk": junk}


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(pixels - rgb) <= tolerance).all(axis=-1).sum())


def test_page_gives_a_verdict_boxes_a_heat_map_and_a_clear_error(server, photos, tmp_path):
    with open_browser(CHROMIUM, timeout_s=150) as browser:
        page = browser.new_page(server["url"] + "/", 1200, 900)
        page.set_files("#file-input", [photos["face"]])
        verdict = page.wait_for(VERDICT, timeout_s=60)
        text = page.evaluate("document.querySelector('.result .verdict').textContent")
        assert verdict in ("Real", "Fake") and text.startswith(verdict) and "P(fake)" in text
        assert page.evaluate("document.querySelectorAll('.result .face-box').length") >= 1
        assert page.evaluate("document.querySelector('.result .bar').getAttribute('aria-valuenow')")

        page.evaluate("document.querySelector('.result .explain').click()")
        alt = page.wait_for("document.querySelector('.result .heatmaps img')?.alt", timeout_s=60)
        assert alt.startswith("Heat map. Face 1")

        page.set_files("#file-input", [photos["junk"]])
        page.wait_for("!!document.querySelector('.result.is-error')", timeout_s=30)
        message = page.evaluate("document.querySelector('.result.is-error .verdict').textContent")
        assert message.startswith("fakescope cannot read this file: it is not an image")
        assert (
            page.evaluate("document.querySelector('.result.is-error .file-name').textContent")
            == "holiday.jpg"
        )
        assert (
            page.evaluate(
                "document.querySelector('.result.is-error .verdict').getAttribute('role')"
            )
            == "alert"
        )

        page.evaluate("window.scrollTo(0, 0)")
        shot = page.screenshot()
        (tmp_path / "serve-desktop.png").write_bytes(shot)
        # The failed upload logs its 415 in the console; nothing else may.
        assert [e for e in page.console_errors() if "415" not in e] == []
    pixels = _pixels(shot)
    box_colour = FAKE_RGB if verdict == "Fake" else REAL_RGB
    assert _near(pixels, box_colour) > 300  # the face box and the bar


def test_page_fits_a_phone(server, photos, tmp_path):
    with open_browser(CHROMIUM, timeout_s=90) as browser:
        page = browser.new_page(server["url"] + "/", 390, 844, mobile=True)
        page.set_files("#file-input", [photos["face"]])
        page.wait_for(VERDICT, timeout_s=60)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert (
            page.evaluate("document.querySelector('.result .frame').getBoundingClientRect().right")
            <= 390
        )
        shot = page.screenshot()
        (tmp_path / "serve-phone.png").write_bytes(shot)
    assert _pixels(shot).shape == (844, 390, 3)


def test_sigterm_stops_the_server_cleanly(server):
    process = server["process"]
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: the exit status says SIGTERM.
    assert process.wait(timeout=30) == -signal.SIGTERM
    server["log"].seek(0)
    lines = server["log"].read().splitlines()
    assert any("Application shutdown complete" in line for line in lines)
    assert not any("Traceback" in line for line in lines)
    access = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(
        entry["path"] == "/v1/detect" and entry["status"] == 200 and entry["files"] == 1
        for entry in access
    )
