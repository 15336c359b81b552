import base64
import csv
import html
import io
import json
import math
import re
import tracemalloc
from html.parser import HTMLParser
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from fakescope.inference.reports import (
    CSV_COLUMNS,
    CsvWriter,
    HtmlWriter,
    JsonlWriter,
    JsonWriter,
    ReportInputError,
    open_writers,
    to_json_value,
)

META = {
    "detector": "lite0-test",
    "detector_version": "1.2",
    "threshold": 0.5,
    "threshold_source": "validation",
    "temperature": 1.3,
    "face_stage": "mtcnn",
    "backend": "onnxruntime-int8",
}
NASTY_NAME = "a<b>&\"c'.png"
VIDEO_FPS = 10
OUTPUTS = ("json", "jsonl", "csv", "html")


# -- a sample scan: files on disk and the results a scan of them gives ----------------------------


def _heatmap_uri(seed: int) -> str:
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.uint8), (48, 1))
    pixels = np.stack([ramp, np.full((48, 48), 40 * seed, np.uint8), ramp.T], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _photo(path: Path, size: tuple[int, int], boxes: list[list[float]]) -> Path:
    """A grey picture with a skin-coloured ellipse in each box."""
    picture = Image.new("RGB", size, (110, 120, 130))
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        draw.ellipse(box, fill=(224, 180, 150))
    picture.save(path)
    return path


def _frame_level(index: int) -> int:
    return 20 + 20 * index


def _video(path: Path, n_frames: int = 12) -> Path:
    """A 96x64 video whose frame i is a flat grey of level `_frame_level(i)`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(n_frames):
            image = np.full((64, 96, 3), _frame_level(i), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def _verdict(p_fake: float) -> dict:
    fake = p_fake >= META["threshold"]
    return {
        "prediction": "Fake" if fake else "Real",
        "confidence": p_fake if fake else 1 - p_fake,
        "probabilities": {"real": 1 - p_fake, "fake": p_fake},
    }


def _face(box: list[float], p_fake: float, heatmap: str | None = None) -> dict:
    face = {"box": box, "detection_score": 0.99, "p_fake": p_fake}
    return {**face, "heatmap": heatmap} if heatmap else face


def _image_result(path: Path, size, faces, skipped=(), p_fake=None, **extra) -> dict:
    """An image result shaped like `Detector.predict`'s."""
    top = max(faces, key=lambda f: f["p_fake"]) if faces else None
    return {
        **_verdict(top["p_fake"] if top else p_fake),
        "file": str(path),
        "kind": "image",
        "image_size": list(size),
        "faces": list(faces),
        "face": top,
        "fallback": None if faces else "whole-image",
        "skipped_faces": list(skipped),
        **extra,
        **META,
        "timing_ms": {"decode": 1.0, "faces": 2.0, "model": 3.0},
    }


def _video_result(path: Path) -> dict:
    """A video result shaped like `Detector.predict_video`'s: 6 of 12 frames, frame 9 the top."""
    scores = {1: 0.55, 3: 0.62, 5: 0.7, 7: 0.81, 9: 0.93, 11: 0.4}  # frame 11 has no face
    timeline = [
        {
            "frame": index,
            "time_s": index / VIDEO_FPS,
            "p_fake": p_fake,
            "faces": [] if index == 11 else [_face([20.0, 10.0, 60.0, 55.0], p_fake)],
            "fallback": "whole-image" if index == 11 else None,
        }
        for index, p_fake in scores.items()
    ]
    return {
        **_verdict(float(np.mean([t["p_fake"] for t in timeline if t["faces"]]))),
        "file": str(path),
        "kind": "video",
        "frames_sampled": 6,
        "frames_with_faces": 5,
        "fallback": None,
        "timeline": timeline,
        "driving_frames": [9, 7, 5],
        **META,
        "timing_ms": {"total": 40.0},
    }


def make_sample_scan(folder: Path) -> list[dict]:
    """Results of a scan with every case a report shows, for files made in `folder`.

    Two faces (one over the threshold) with heat maps and a skipped face; a file name full of
    HTML syntax; an image with no face (whole-image fallback with a heat map); a video whose
    verdict frame is frame 9; a file that could not be read.
    """
    crowd_faces = [
        _face([30.0, 40.0, 100.0, 130.0], 0.91, _heatmap_uri(1)),
        _face([140.0, 50.0, 205.0, 135.0], 0.12, _heatmap_uri(2)),
    ]
    skipped = [{"box": [212.0, 8.0, 232.0, 30.0], "reason": "face smaller than 40 px"}]
    crowd = _photo(folder / "crowd.png", (240, 180), [f["box"] for f in crowd_faces + skipped])
    nasty_face = [_face([60.0, 30.0, 140.0, 130.0], 0.08)]
    nasty = _photo(folder / NASTY_NAME, (200, 160), [nasty_face[0]["box"]])
    landscape = _photo(folder / "landscape.jpg", (320, 120), [])
    return [
        _image_result(crowd, (240, 180), crowd_faces, skipped),
        _image_result(nasty, (200, 160), nasty_face),
        _image_result(landscape, (320, 120), [], p_fake=0.3, heatmap=_heatmap_uri(3)),
        _video_result(_video(folder / "clip.mp4")),
        {"file": str(folder / "broken.jpg"), "kind": "image", "error": "cannot decode: empty file"},
    ]


@pytest.fixture
def sample(tmp_path) -> list[dict]:
    files = tmp_path / "files"
    files.mkdir()
    return make_sample_scan(files)


def _write_all(writer, results) -> None:
    with writer:
        for result in results:
            writer.write(result)


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


# -- JSON -------------------------------------------------------------------------------------


def test_json_document_round_trips(tmp_path, sample):
    path = tmp_path / "out" / "scan.json"
    _write_all(JsonWriter(path, META), sample)
    document = json.loads(path.read_text())
    assert document["detector"] == META
    assert document["results"] == to_json_value(sample)
    summary = document["summary"]
    counts = {key: summary[key] for key in ("files", "fake", "real", "unreadable")}
    assert counts == {"files": 5, "fake": 2, "real": 2, "unreadable": 1}
    assert summary["started"] <= summary["finished"]
    assert _files_in(path.parent) == ["scan.json"]


def test_documents_get_the_usual_file_permissions(tmp_path, sample):
    usual = tmp_path / "usual.txt"
    usual.write_text("")
    paths = {kind: tmp_path / f"scan.{kind}" for kind in OUTPUTS}
    _write_all(open_writers(meta=META, **paths), sample[:1])
    for path in paths.values():
        assert path.stat().st_mode & 0o777 == usual.stat().st_mode & 0o777


def test_json_with_no_results_is_valid(tmp_path):
    path = tmp_path / "scan.json"
    _write_all(JsonWriter(path, META), [])
    assert json.loads(path.read_text())["results"] == []


def test_json_appears_only_on_close(tmp_path, sample):
    path = tmp_path / "scan.json"
    writer = JsonWriter(path, META)
    writer.write(sample[0])
    assert not path.exists()
    writer.close()
    writer.close()  # a second close changes nothing
    assert len(json.loads(path.read_text())["results"]) == 1


def test_failed_scan_keeps_the_old_json(tmp_path, sample):
    path = tmp_path / "scan.json"
    path.write_text('{"old": true}')
    with pytest.raises(RuntimeError, match="disk on fire"):
        with JsonWriter(path, META) as writer:
            writer.write(sample[0])
            raise RuntimeError("disk on fire")
    assert path.read_text() == '{"old": true}'
    assert _files_in(tmp_path) == ["scan.json"]


def test_json_values_are_strict_json():
    value = {"a": np.float32(0.25), "b": [np.int64(3), float("nan")], "c": np.arange(2)}
    assert to_json_value(value) == {"a": 0.25, "b": [3, None], "c": [0, 1]}
    assert to_json_value({"t": math.inf, "p": Path("x/y")}) == {"t": None, "p": "x/y"}


# -- JSON Lines -------------------------------------------------------------------------------


def test_jsonl_one_parsable_line_per_result(tmp_path, sample):
    path = tmp_path / "scan.jsonl"
    _write_all(JsonlWriter(path), sample)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == to_json_value(sample)


def test_jsonl_lines_are_readable_while_the_scan_runs(tmp_path, sample):
    path = tmp_path / "scan.jsonl"
    with JsonlWriter(path) as writer:
        writer.write(sample[0])
        assert json.loads(path.read_text())["file"] == sample[0]["file"]


# -- CSV --------------------------------------------------------------------------------------


def test_csv_has_fixed_columns_and_one_row_per_result(tmp_path, sample):
    path = tmp_path / "scan.csv"
    _write_all(CsvWriter(path, META), sample)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == list(CSV_COLUMNS)
    assert [row["file"] for row in rows] == [r["file"] for r in sample]
    crowd, nasty, landscape, video, broken = rows
    assert (crowd["prediction"], crowd["p_fake"], crowd["faces"]) == ("Fake", "0.91", "2")
    assert (crowd["fallback"], crowd["threshold"], crowd["detector"]) == ("", "0.5", "lite0-test")
    assert nasty["file"].endswith(NASTY_NAME)
    assert (landscape["faces"], landscape["fallback"]) == ("0", "whole-image")
    assert (video["kind"], video["prediction"], video["faces"]) == ("video", "Fake", "1")
    assert broken["error"] == "cannot decode: empty file"
    assert (broken["prediction"], broken["p_fake"], broken["faces"]) == ("", "", "")
    # Error results carry no detector fields: the scan's meta fills them.
    assert (broken["detector"], broken["detector_version"]) == ("lite0-test", "1.2")


# -- HTML -------------------------------------------------------------------------------------

VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}


class StrictParser(HTMLParser):
    """Fails on an end tag that does not close the open element; collects text and attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.text: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.attributes += [(tag, name, value or "") for name, value in attrs]

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.open == [], f"unclosed elements: {parser.open}"
    return parser


def _write_html(tmp_path: Path, results: list[dict]) -> str:
    path = tmp_path / "report.html"
    _write_all(HtmlWriter(path, META), results)
    assert _files_in(tmp_path) == ["report.html"]  # no spool or temporary file left behind
    return path.read_text(encoding="utf-8")


def _card(page: str, file_name: str) -> str:
    cards = [c for c in page.split("<article")[1:] if html.escape(file_name) in c]
    assert len(cards) == 1
    return cards[0]


def test_html_is_well_formed_and_self_contained(tmp_path, sample):
    page = _write_html(tmp_path, sample)
    for tag, name, value in _parse(page).attributes:
        if name in ("src", "href"):
            assert value.startswith("data:"), f"<{tag} {name}> leaves the page: {value[:60]}"
    assert "<script" not in page
    assert page.count('<article class="card') == len(sample)


def test_html_escapes_file_names(tmp_path, sample):
    page = _write_html(tmp_path, sample)
    text = "".join(_parse(page).text)
    for result in sample:
        assert html.escape(Path(result["file"]).name) in page
        assert result["file"] in text
    assert "a<b>" not in page


def test_html_summary_comes_first_with_counts(tmp_path, sample):
    page = _write_html(tmp_path, sample)
    assert page.index('class="summary"') < page.index("<article")
    summary = page[page.index('class="summary"') : page.index("</header>")]
    counts = dict(re.findall(r'class="count (\w+)"><b>(\d+)</b>', summary))
    assert counts == {"files": "5", "fake": "2", "real": "2", "unreadable": "1"}
    assert "lite0-test" in summary and "v1.2" in summary and "0.500" in summary
    assert "run by onnxruntime-int8" in summary


def test_html_cards_show_boxes_heat_maps_and_notes(tmp_path, sample):
    page = _write_html(tmp_path, sample)
    crowd = _card(page, "crowd.png")
    assert crowd.count('class="box fake"') == 1  # the face over the threshold
    assert crowd.count('class="box real"') == 1
    assert crowd.count('class="box skipped"') == 1
    assert crowd.count('<img class="heat"') == 2
    assert "face smaller than 40 px" in crowd
    landscape = _card(page, "landscape.jpg")
    assert "No face found" in landscape and landscape.count('<img class="heat"') == 1
    broken = _card(page, "broken.jpg")
    assert "Unreadable" in broken and "cannot decode: empty file" in broken


def test_html_says_when_the_detector_has_no_face_stage(tmp_path, sample):
    landscape = {**sample[2], "face_stage": "none"}
    card = _card(_write_html(tmp_path, [landscape]), "landscape.jpg")
    assert "looks at whole images" in card and "No face found" not in card


def test_html_video_card_shows_the_verdict_frame_and_timeline(tmp_path, sample):
    page = _write_html(tmp_path, sample)
    video = _card(page, "clip.mp4")
    assert video.count('<svg class="timeline"') == 1 and 'class="threshold"' in video
    assert video.count('class="dot fake"') == 5 and video.count('class="dot noface"') == 1
    thumbnail = re.search(r'<image href="data:image/jpeg;base64,([^"]+)"', video).group(1)
    picture = Image.open(io.BytesIO(base64.b64decode(thumbnail))).convert("L")
    assert abs(np.asarray(picture, dtype=float).mean() - _frame_level(9)) < 12


def test_html_notes_a_file_gone_since_the_scan(tmp_path, sample):
    Path(sample[0]["file"]).unlink()
    crowd = _card(_write_html(tmp_path, sample), "crowd.png")
    assert "No preview" in crowd and "file not found" in crowd


def test_html_drops_heat_maps_that_are_not_inline_images(tmp_path, sample):
    sample[0]["faces"][0]["heatmap"] = "https://example.com/x.png"
    page = _write_html(tmp_path, sample[:1])
    assert "example.com" not in page
    assert _card(page, "crowd.png").count('<img class="heat"') == 1


# -- all writers ------------------------------------------------------------------------------


def test_open_writers_writes_each_output_asked_for(tmp_path, sample):
    paths = {kind: tmp_path / f"scan.{kind}" for kind in ("json", "csv", "html")}
    _write_all(open_writers(meta=META, **paths), sample)
    assert _files_in(tmp_path) == ["scan.csv", "scan.html", "scan.json"]
    _write_all(open_writers(meta=META), sample)  # no output asked for: nothing to do


def test_a_bad_result_aborts_the_documents_and_names_the_file(tmp_path, sample):
    paths = {kind: tmp_path / f"scan.{kind}" for kind in OUTPUTS}
    with pytest.raises(ReportInputError, match="odd.png has no prediction, probabilities"):
        bad = {"file": "odd.png", "kind": "image"}
        _write_all(open_writers(meta=META, **paths), [sample[0], bad])
    # The logs keep the line they finished; no half document is left.
    assert _files_in(tmp_path) == ["scan.csv", "scan.jsonl"]
    assert len(paths["jsonl"].read_text().splitlines()) == 1
    with pytest.raises(ReportInputError, match="a dict with a 'file' key"):
        _write_all(JsonlWriter(paths["jsonl"]), ["not a result"])
    del sample[0]["faces"][0]["p_fake"]
    with pytest.raises(ReportInputError, match="crowd.png: KeyError"):
        _write_all(HtmlWriter(paths["html"], META), sample[:1])


def test_undecodable_file_names_do_not_break_any_output(tmp_path):
    result = {"file": "bad\udcff.jpg", "kind": "image", "error": "cannot decode image"}
    paths = {kind: tmp_path / f"scan.{kind}" for kind in OUTPUTS}
    _write_all(open_writers(meta=META, **paths), [result])
    assert json.loads(paths["jsonl"].read_text())["file"] == "bad\udcff.jpg"
    assert json.loads(paths["json"].read_text())["results"][0]["file"] == "bad\udcff.jpg"
    assert "bad\\udcff.jpg" in paths["csv"].read_text(encoding="utf-8")
    assert "bad?.jpg" in paths["html"].read_text(encoding="utf-8")


# -- memory: results stream through ---------------------------------------------------------


def _many_results(n: int, image: str):
    """Small results, from a generator: the test itself holds one at a time."""
    for i in range(n):
        if i % 10 == 0:
            yield {"file": f"/data/broken_{i:05d}.jpg", "kind": "image", "error": "empty file"}
        else:
            face = {"box": [10.0, 12.0, 80.0, 90.0], "p_fake": (i % 97) / 97}
            yield {"file": image, "kind": "image", **_verdict(face["p_fake"]), "faces": [face]}


def _bytes_kept(write, results) -> int:
    """Bytes allocated while writing `results` that are still held afterwards."""
    tracemalloc.start()
    try:
        for result in results:
            write(result)
        return tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_logs_and_json_stream_without_holding_results(tmp_path):
    n = 20_000
    paths = {kind: tmp_path / f"scan.{kind}" for kind in ("json", "jsonl", "csv")}
    results = _many_results(n, "/data/img.jpg")
    with open_writers(meta=META, **paths) as writers:
        for result in islice(results, n // 2):  # warm up: buffers and caches exist
            writers.write(result)
        # Holding 2,000 results, or their lines, would keep far more than 64 KiB.
        assert _bytes_kept(writers.write, islice(results, 2_000)) < 64 * 2**10
        for result in results:
            writers.write(result)
    assert len(json.loads(paths["json"].read_text())["results"]) == n
    assert sum(1 for _ in paths["jsonl"].open()) == n
    with paths["csv"].open(newline="") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == n


def test_html_spools_cards_to_disk(tmp_path, sample):
    n = 2_000
    path = tmp_path / "report.html"
    results = _many_results(n, sample[0]["file"])
    writer = HtmlWriter(path, META)
    for result in islice(results, n // 2):
        writer.write(result)
    assert _bytes_kept(writer.write, islice(results, 200)) < 64 * 2**10
    for result in results:
        writer.write(result)
    # Putting the summary above the cards copies them; it must not read them all into memory.
    assert _peak_bytes(writer.close) < 2**20
    assert path.stat().st_size > 4 * 2**20
    assert path.read_text().count('<article class="card') == n
