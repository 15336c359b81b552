"""The HTML report in a real headless Chromium: no console errors, and a page a person can read."""

import io

import numpy as np
import pytest
from PIL import Image

from browser import find_chromium, render_page
from fakescope.inference.reports import HtmlWriter
from test_reports import META, make_sample_scan

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install chromium)"
)

# The face-box strokes of the report's stylesheet (--box-fake, --box-real).
BOX_FAKE_RGB = (255, 45, 45)
BOX_REAL_RGB = (40, 220, 90)


def _pixels_near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 20) -> int:
    return int((np.abs(pixels.astype(int) - rgb) <= tolerance).all(axis=-1).sum())


def test_the_browser_check_sees_errors(tmp_path):
    """The check can fail: a page with an exception, a console.error and a missing image."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<!doctype html><link rel="icon" href="data:,"><img src="missing.png">'
        '<script>console.error("logged"); throw new Error("thrown")</script>'
    )
    errors = render_page(page, chromium=CHROMIUM).console_errors
    assert len(errors) == 3
    assert any("thrown" in e for e in errors) and any("logged" in e for e in errors)
    assert any("missing.png" in e for e in errors)


def test_html_report_renders_without_console_errors(tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    report = tmp_path / "report.html"
    with HtmlWriter(report, META) as writer:
        for result in make_sample_scan(files):
            writer.write(result)

    rendered = render_page(report, chromium=CHROMIUM, width=1200, height=900)

    assert rendered.console_errors == []
    pixels = np.asarray(Image.open(io.BytesIO(rendered.screenshot_png)).convert("RGB"))
    assert pixels.shape == (900, 1200, 3)
    assert pixels.std() > 20  # not a blank page
    # The first card (two faces, one over the threshold) is on screen with both box colours.
    assert _pixels_near(pixels, BOX_FAKE_RGB) > 100
    assert _pixels_near(pixels, BOX_REAL_RGB) > 100
