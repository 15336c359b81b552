"""The `fakescope` command line: each command is a thin call into the modules."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fakescope.batching import BATCH_SIZE
from fakescope.export import CALIBRATION_CROPS

app = typer.Typer(
    name="fakescope",
    help="Tell real face images and videos from deepfakes; train, evaluate and audit detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
synth_app = typer.Typer(help="Make synthetic fakes from real faces.", no_args_is_help=True)
app.add_typer(synth_app, name="synth")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def models(as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON.")) -> None:
    """List the registered detectors with their cards."""
    from fakescope.models.registry import list_detectors

    specs = list_detectors()
    if as_json:
        console.print_json(
            json.dumps(
                {s.name: {"card": s.card.model_dump(mode="json"), "loss": s.loss} for s in specs}
            )
        )
        return
    from fakescope.models.card import HALF_MEAN, HALF_STD, IMAGENET_MEAN, IMAGENET_STD

    known_norms = {(IMAGENET_MEAN, IMAGENET_STD): "ImageNet", (HALF_MEAN, HALF_STD): "[-1, 1]"}
    table = Table(title="Registered detectors")
    for column in ("name", "input", "output", "normalisation", "faces", "loss"):
        table.add_column(column)
    for s in specs:
        c = s.card
        norm = known_norms.get((tuple(c.mean), tuple(c.std)), f"mean {c.mean}, std {c.std}")
        table.add_row(
            s.name,
            f"{c.input_size}px",
            c.output,
            norm,
            f"{c.face_crop} +{c.face_margin:.0%}",
            s.loss,
        )
    console.print(table)


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config, e.g. configs/lite0.yaml."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data root (overrides data.root)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a config value: --set trainer.max_epochs=3"
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="A run dir or checkpoint to continue from."
    ),
    devices: Optional[str] = typer.Option(
        None, "--devices", help="Devices per node (e.g. 2); DDP when more than one."
    ),
    num_nodes: Optional[int] = typer.Option(None, "--num-nodes", help="Nodes for multi-node DDP."),
    accelerator: Optional[str] = typer.Option(None, "--accelerator", help="cpu, gpu or auto."),
) -> None:
    """Train a registered detector on a folder data set."""
    from fakescope.config import load_config
    from fakescope.data.discovery import DataError
    from fakescope.models.backbones import MissingWeightsError
    from fakescope.training.fit import fit

    overrides = list(set_)
    if data is not None:
        overrides.append(f"data.root={data}")
    if devices is not None:
        overrides.append(f"trainer.devices={devices}")
    if num_nodes is not None:
        overrides.append(f"trainer.num_nodes={num_nodes}")
    if accelerator is not None:
        overrides.append(f"trainer.accelerator={accelerator}")
    try:
        cfg = load_config(config, overrides)
        run_dir = fit(cfg, resume=resume)
    except (DataError, MissingWeightsError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    results_path = run_dir / "results.json"
    if results_path.is_file():
        results = json.loads(results_path.read_text())
        test = results["final"].get("test", {})
        console.print(
            f"[bold green]done[/] run dir: {run_dir}  "
            f"best {results['monitor']}: {results['best_score']}  "
            f"test AUC: {test.get('auc_roc')}  test accuracy: {test.get('accuracy')}"
        )


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(
        ..., help="A .ckpt, .safetensors or exported .onnx detector."
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="Labelled data dir; repeat for cross-data-set evaluation."
    ),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Override the card's threshold."
    ),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output dir (default: evaluation-<timestamp> beside the checkpoint's run).",
    ),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", help="Crops per forward."),
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="Also score under JPEG 95/75/50/30, blur, noise and downscaling "
        "(AUC, accuracy, plot).",
    ),
) -> None:
    """Metrics, ROC and confusion-matrix plots, a JSON report and per-file predictions (CSV), with
    the detector's face stage."""
    from datetime import datetime

    from fakescope.checkpoint import CheckpointError
    from fakescope.data.discovery import DataError
    from fakescope.evaluation.evaluate import evaluate_checkpoint

    out_dir = (
        out or checkpoint.resolve().parent.parent / f"evaluation-{datetime.now():%Y%m%d-%H%M%S}"
    )
    try:
        report = evaluate_checkpoint(
            checkpoint,
            data,
            out_dir,
            split=split,
            threshold=threshold,
            batch_size=batch_size,
            robustness=robustness,
        )
    except (CheckpointError, DataError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    table = Table(
        title=f"{report['detector']} v{report['detector_version']}, "
        f"threshold {report['threshold']:.3f} ({report['threshold_source']})"
    )
    for column in ("data set", "level", "n", "AUC", "AP", "accuracy", "EER", "F1 (fake)", "ECE"):
        table.add_column(column)
    for name, metrics in report["datasets"].items():
        levels = [("image", metrics)] if "auc_roc" in metrics else []
        levels += [
            (level.replace("_level", ""), m) for level, m in metrics.get("videos", {}).items()
        ]
        for level, m in levels:
            table.add_row(
                name,
                level,
                str(m["n"]),
                _fmt(m["auc_roc"]),
                _fmt(m["average_precision"]),
                _fmt(m["accuracy"]),
                _fmt(m["eer"]),
                _fmt(m["per_class"]["fake"]["f1"]),
                _fmt(m["ece"]),
            )
    console.print(table)
    for name, metrics in report["datasets"].items():
        if "robustness" in metrics:
            console.print(_robustness_table(name, metrics["robustness"]))
    console.print(f"report: {out_dir / 'evaluation.json'}")


def _robustness_table(name: str, sweep: dict) -> Table:
    """A sweep's rows, each change in AUC with its paired-bootstrap interval."""
    table = Table(title=f"robustness on {name} (both classes degraded alike)")
    for column in ("degradation", "AUC", "AUC change (95% interval)", "accuracy"):
        table.add_column(column)
    for degradation, entry in sweep.items():
        table.add_row(
            degradation,
            _fmt(entry["auc_roc"]),
            _fmt_change(entry.get("auc_change")),
            _fmt(entry["accuracy"]),
        )
    return table


@app.command()
def compare(
    before: Path = typer.Argument(..., help="A `fakescope evaluate` output dir."),
    after: Path = typer.Argument(
        ..., help="Another, of the same data sets (another detector, card or seed)."
    ),
    resamples: Optional[int] = typer.Option(
        None,
        "--resamples",
        help="Bootstrap resamples of the images "
        "(default: as many as `evaluate --robustness` draws).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the comparison as JSON."),
) -> None:
    """The change in AUC from one evaluation to another on the images both scored, with a
    paired-bootstrap 95% interval: a change whose interval holds 0 is not resolved."""
    from fakescope.evaluation.compare import CompareError, compare_evaluations
    from fakescope.evaluation.metrics import MetricInputError
    from fakescope.utils import atomic_write_json

    try:
        result = compare_evaluations(before, after, resamples)
    except (CompareError, MetricInputError, OSError, json.JSONDecodeError) as error:
        fail(str(error))
    except KeyError as error:  # an evaluation.json or predictions.csv without a field it needs
        fail(f"{before} or {after}: not as `fakescope evaluate` writes it (no {error})")
    table = Table(title=f"{before} -> {after}")
    for column in ("data set", "n", "AUC before", "AUC after", "change (95% interval)"):
        table.add_column(column)
    for name, row in result["datasets"].items():
        table.add_row(
            name,
            str(row["n"]),
            _fmt(row["auc_before"]),
            _fmt(row["auc_after"]),
            _fmt_change(row["auc_change"]),
        )
        if row["only_before"] or row["only_after"]:
            err_console.print(
                f"[yellow]warning:[/] {name}: {row['only_before']} images scored only before, "
                f"{row['only_after']} only after; compared on the {row['n']} both scored"
            )
    console.print(table)
    if out:
        atomic_write_json(out, result)
        console.print(f"report: {out}")


@app.command()
def calibrate(
    checkpoint: Path = typer.Argument(
        ...,
        help="A .ckpt, .safetensors or exported .onnx detector (an INT8 model gets its own fit).",
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="Labelled data dir; repeat to pool several."
    ),
    split: str = typer.Option("val", "--split", help="val or train (never test)."),
    method: str = typer.Option(
        "max-balanced-accuracy", "--method", help="max-balanced-accuracy or fpr."
    ),
    target_fpr: float = typer.Option(
        0.05, "--target-fpr", help="With --method fpr: highest false positive rate allowed."
    ),
    bins: int = typer.Option(15, "--bins", help="Bins for ECE and the reliability diagram."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output dir (default: <run>/calibrated; pass -o for a detector outside a run dir).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing calibration there."
    ),
    batch_size: int = typer.Option(BATCH_SIZE, "--batch-size", help="Crops per forward."),
    mirror_average: Optional[bool] = typer.Option(
        None,
        "--mirror-average/--no-mirror-average",
        help="Average each face's score with its mirror image's (twice the model's work); "
        "default: as the card says.",
    ),
    extra_margin: Optional[list[float]] = typer.Option(
        None,
        "--extra-margin",
        help="Also cut each face with this margin and average the cuts' scores; repeat for "
        "more. Face crops cut with a smaller margin are refused; default: as the card says.",
    ),
    no_extra_margins: bool = typer.Option(
        False, "--no-extra-margins", help="Cut each face with the card's face_margin only."
    ),
) -> None:
    """Fit temperature and decision threshold on validation data; write a calibrated detector."""
    from fakescope.evaluation.calibrate import calibrate_checkpoint

    if extra_margin and no_extra_margins:
        fail("--extra-margin and --no-extra-margins contradict each other: give one")
    extra_margins = () if no_extra_margins else tuple(extra_margin) if extra_margin else None
    try:
        report = calibrate_checkpoint(
            checkpoint,
            data,
            out,
            split=split,
            method=method,
            target_fpr=target_fpr,
            n_bins=bins,
            overwrite=overwrite,
            batch_size=batch_size,
            mirror_average=mirror_average,
            extra_margins=extra_margins,
        )
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    table = Table(
        title=f"{report['detector']} on {report['split']}: "
        f"{report['n_real']} real, {report['n_fake']} fake"
    )
    for column in (
        "",
        "temperature",
        "threshold",
        "ECE",
        "log loss",
        "Brier",
        "accuracy",
        "FPR",
        "TPR",
    ):
        table.add_column(column)
    for name in ("before", "after"):
        m = report[name]
        table.add_row(
            name,
            f"{m['temperature']:.4g}",
            f"{m['threshold']:.4f}",
            _fmt(m["ece"]),
            _fmt(m["log_loss"]),
            _fmt(m["brier"]),
            _fmt(m["accuracy"]),
            _fmt(m["false_positive_rate"]),
            _fmt(m["true_positive_rate"]),
        )
    console.print(table)
    for warning in report["warnings"]:
        err_console.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"threshold: {report['threshold_source']}\n"
        f"calibrated detector: {report['files']['detector']}"
    )


@app.command()
def audit(
    data: Path = typer.Argument(
        ..., help="A labelled data dir ({real,fake} or {train,val,test}/{real,fake})."
    ),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the JSON report here."),
    max_files: Optional[int] = typer.Option(
        None, "--max-files", help="Audit a seeded sample of this many files per class."
    ),
) -> None:
    """Find what, besides the manipulation, tells the classes apart.

    File format, size, duplicates...
    """
    from fakescope.data.audit import audit_dataset, format_audit
    from fakescope.utils import atomic_write_json

    if not data.is_dir():
        fail(f"data dir not found: {data}")
    report = audit_dataset(data, max_files=max_files)
    console.print(format_audit(report), highlight=False)
    if out:
        atomic_write_json(out, report)
        console.print(f"report: {out}")


@app.command()
def faces(
    src: Path = typer.Argument(..., help="A labelled data dir (any layout)."),
    out: Path = typer.Argument(..., help="Where the crops go (same folders, PNG)."),
    margin: float = typer.Option(
        0.3, "--margin", min=0.0, help="Margin around the face box, as a share of its side."
    ),
    size: int = typer.Option(256, "--size", min=16, help="Side of the saved crops in pixels."),
) -> None:
    """Cut the largest face of every image with MTCNN, as `scan` does, for training on faces;
    the other faces that `scan` also scores go to other_faces/."""
    from fakescope.data.discovery import DataError
    from fakescope.data.facecrops import SUMMARY_FILE, extract_face_crops

    try:
        summary = extract_face_crops(src, out, margin=margin, size=size)
    except (DataError, FileNotFoundError) as error:
        fail(str(error))
    console.print(
        f"{summary['crops']} crops in {out} "
        f"({len(summary['no_face_whole_image'])} without a face kept whole, "
        f"{len(summary['unreadable'])} unreadable; {summary['other_faces']} other faces) "
        f"in {summary['seconds']} s; "
        f"details in {out / SUMMARY_FILE}"
    )


@synth_app.command("sbi")
def synth_sbi(
    real_dir: Path = typer.Argument(..., help="A folder of real face images (recursive)."),
    out_dir: Path = typer.Argument(..., help="Where to write fake/, masks/ and sbi_manifest.json."),
    n_per_image: int = typer.Option(
        1, "--n-per-image", min=1, help="Fakes made from each real image."
    ),
    seed: int = typer.Option(0, "--seed"),
    splice_prob: float = typer.Option(
        0.0,
        "--splice-prob",
        min=0.0,
        max=1.0,
        help="Share of fakes spliced from another face's parts.",
    ),
) -> None:
    """Self-blended images (Shiohara & Yamasaki, CVPR 2022): fakes blended from one real face."""
    from fakescope.data.discovery import DataError
    from fakescope.data.sbi import SbiConfig, synthesize_sbi

    try:
        config = SbiConfig(splice_prob=splice_prob)
        summary = synthesize_sbi(
            real_dir, out_dir, n_per_image=n_per_image, seed=seed, config=config
        )
    except (DataError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    console.print(
        f"{summary['fakes']} fakes from {summary['images']} images in {summary['out_dir']}; "
        f"{summary['skipped']} skipped (listed in {summary['manifest']})"
    )


@synth_app.command("train-tracer")
def synth_train_tracer(
    out: Path = typer.Argument(..., help="Where to write the tracer (.safetensors)."),
    data: list[Path] = typer.Option(
        ..., "--data", help="A data folder whose real faces it learns from (repeatable)."
    ),
    upsampler: str = typer.Option(
        "transposed", "--upsampler", help="transposed, nearest (then a convolution) or shuffle."
    ),
    split: str = typer.Option(
        "train", "--split", help="Which split's real faces (train keeps val and test unseen)."
    ),
    steps: int = typer.Option(2000, "--steps", min=1),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Train an autoencoder whose decoder up-samples as generators do (AutoGAN, WIFS 2019): its
    re-rendered real faces are generator traces (data.self_blend.tracers in a training config)."""
    import json

    from fakescope.data.discovery import DataError, discover_folder
    from fakescope.data.learned_traces import UPSAMPLERS, save_tracer, train_tracer
    from fakescope.evaluation.evaluate import select_split

    if upsampler not in UPSAMPLERS:
        fail(f"--upsampler must be one of {', '.join(UPSAMPLERS)}, got {upsampler!r}")
    if out.suffix != ".safetensors":
        fail(f"{out}: a tracer is saved as NAME.safetensors")
    if split not in ("train", "val", "test", "all"):
        fail(f"--split must be train, val, test or all, got {split!r}")
    try:
        reals = [
            sample.path
            for folder in data
            for sample in select_split(discover_folder(folder), split)
            if sample.label == 0
        ]
        model, summary = train_tracer(reals, upsampler, steps=steps, seed=seed)
    except (DataError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    save_tracer(model, upsampler, out)
    console.print(f"tracer {out}: {json.dumps(summary)}")


BACKEND_HELP = "auto, torch or onnx (auto: onnx for .onnx files and for the default's INT8 export)."


def _load_detector(
    model: str,
    threshold: float | None,
    no_faces: bool,
    max_pixels: int | None,
    backend: str = "auto",
):
    from fakescope.checkpoint import CheckpointError
    from fakescope.inference.loading import load_detector
    from fakescope.io.images import DEFAULT_MAX_PIXELS

    options = {"threshold": threshold, "max_pixels": max_pixels or DEFAULT_MAX_PIXELS}
    if no_faces:
        options["use_faces"] = False
    try:
        return load_detector(model, backend=backend, **options)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        fail(str(error))


@app.command()
def scan(
    inputs: list[str] = typer.Argument(
        ..., help="Files, folders (recursive), globs ('shots/*.png'), or - for paths on stdin."
    ),
    model: str = typer.Option(
        "default",
        "--model",
        "-m",
        help="'default', a checkpoint (.ckpt / .safetensors) or an exported .onnx.",
    ),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Write all results as one JSON document."
    ),
    jsonl_out: Optional[Path] = typer.Option(
        None, "--jsonl", help="Stream one JSON line per file."
    ),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Stream one CSV row per file."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="A self-contained HTML report."),
    explain: bool = typer.Option(
        False, "--explain", help="Add Grad-CAM heat maps per face (slower)."
    ),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", min=0.0, max=1.0, help="Override the card's threshold."
    ),
    no_faces: bool = typer.Option(
        False, "--no-faces", help="Score whole images (for detectors trained that way)."
    ),
    frames: int = typer.Option(32, "--frames", min=1, help="Frames sampled per video."),
    batch_size: int = typer.Option(
        BATCH_SIZE, "--batch-size", min=1, help="Images per chunk and crops per forward."
    ),
    workers: int = typer.Option(
        2,
        "--workers",
        min=0,
        help="Threads that decode and find faces while the model runs (0: none).",
    ),
    max_pixels: Optional[int] = typer.Option(
        None, "--max-pixels", min=1, help="Refuse images above this many pixels."
    ),
    table_limit: int = typer.Option(200, "--table-limit", help="Rows shown in the terminal table."),
) -> None:
    """Is it a deepfake? A verdict and calibrated P(fake) per image or video.

    Exit code 0 when every input was scored, 2 when some could not be read, 1 on usage errors.
    """
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fakescope.inference.inputs import expand_inputs
    from fakescope.inference.reports import open_writers
    from fakescope.inference.scan import run_scan

    detector = _load_detector(model, threshold, no_faces, max_pixels, backend)
    rows: list[tuple[str, str, str, str, str]] = []
    progress = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )
    with (
        open_writers(
            json=json_out, jsonl=jsonl_out, csv=csv_out, html=html_out, meta=detector.describe()
        ) as writers,
        progress,
    ):
        task = progress.add_task("scan", total=None)

        def sink(result: dict) -> None:
            writers.write(result)
            progress.advance(task)
            if len(rows) < table_limit:
                rows.append(_table_row(result))

        summary = run_scan(
            expand_inputs(inputs, sys.stdin),
            detector,
            sink,
            batch_size=batch_size,
            frames=frames,
            explain=explain,
            workers=workers,
        )
    d = detector.describe()
    table = Table(
        title=f"{d['detector']} v{d['detector_version']} on {d['backend']}, "
        f"threshold {d['threshold']:.3f} ({d['threshold_source']})"
    )
    for column in ("file", "verdict", "P(fake)", "faces", "notes"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    shown = (
        f" (first {table_limit} shown)"
        if summary.scored + len(summary.problems) > table_limit
        else ""
    )
    console.print(
        f"{summary.scored} scored: {summary.fake} fake, {summary.real} real; "
        f"{len(summary.problems)} unreadable{shown}"
    )
    for file, reason in summary.problems:
        err_console.print(f"[yellow]could not read[/] {file}: {reason}", highlight=False)
    if summary.problems:
        raise typer.Exit(2)


def _table_row(result: dict) -> tuple[str, str, str, str, str]:
    if "error" in result:
        return (result["file"], "[yellow]unreadable[/]", "-", "-", result["error"])
    verdict = "[bold red]Fake[/]" if result["prediction"] == "Fake" else "[green]Real[/]"
    notes = []
    if result["kind"] == "video":
        faces = f"{result['frames_with_faces']}/{result['frames_sampled']} frames"
        notes.append(f"driving frames {result['driving_frames']}")
    else:
        faces = str(len(result["faces"]))
        if result["skipped_faces"]:
            notes.append(f"{len(result['skipped_faces'])} small faces skipped")
    if result.get("fallback"):
        notes.append("no face found: whole image scored")
    return (
        result["file"],
        verdict,
        f"{result['probabilities']['fake']:.3f}",
        faces,
        "; ".join(notes),
    )


@app.command()
def explain(
    image: Path = typer.Argument(..., help="An image file."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the overlay (PNG or JPEG)."),
    model: str = typer.Option("default", "--model", "-m", help="'default' or a checkpoint."),
    no_faces: bool = typer.Option(False, "--no-faces", help="Explain the whole image."),
) -> None:
    """Write a Grad-CAM overlay: where the detector saw evidence of a fake."""
    import cv2

    from fakescope.inference.detector import TorchModelRequiredError
    from fakescope.inference.explain import explain_image
    from fakescope.io.images import ImageDecodeError, decode_image
    from fakescope.utils import atomic_write_bytes

    detector = _load_detector(model, None, no_faces, None)
    try:
        pixels = decode_image(image, detector.max_pixels)
    except (ImageDecodeError, OSError) as error:
        fail(str(error), code=2)
    try:
        overlay, p_fake = explain_image(detector, pixels)
    except TorchModelRequiredError as error:
        fail(str(error))
    ok, encoded = cv2.imencode(out.suffix or ".png", cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if not ok:
        fail(f"cannot encode an image as {out.suffix!r}; use .png or .jpg")
    atomic_write_bytes(out, encoded.tobytes())
    console.print(f"{detector.verdict(p_fake)['prediction']}  P(fake) {p_fake:.3f}  overlay: {out}")


@app.command()
def export(
    checkpoint: Path = typer.Argument(
        ..., help="A .ckpt from `fakescope train` or a .safetensors detector."
    ),
    fmt: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    int8: bool = typer.Option(
        False, "--int8", help="Also write a static INT8 model (QDQ, per-channel weights)."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output dir (default: export/ beside the checkpoint)."
    ),
    calibration_data: Optional[list[Path]] = typer.Option(
        None,
        "--calibration-data",
        help="Images to calibrate INT8 with; repeat to draw evenly from several folders "
        "(default: generated toy faces).",
    ),
    calibration_crops: int = typer.Option(
        CALIBRATION_CROPS,
        "--calibration-crops",
        min=1,
        help="Faces to calibrate INT8 on; as many more are held out for the parity check.",
    ),
    eval_data: Optional[Path] = typer.Option(
        None, "--eval-data", help="Labelled data dir: AUC of each variant against PyTorch."
    ),
    split: str = typer.Option(
        "all", "--split", help="Split of --eval-data: train, val, test or all."
    ),
) -> None:
    """Export a detector to ONNX (optionally INT8) with a parity report against PyTorch."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.data.discovery import DataError
    from fakescope.export.onnx import ExportError, export_command

    try:
        report = export_command(
            checkpoint,
            fmt,
            int8,
            out,
            calibration_data or [],
            eval_data,
            calibration_crops=calibration_crops,
            eval_split=split,
        )
    except (CheckpointError, DataError, ExportError, FileNotFoundError, ValueError) as error:
        fail(str(error))
    table = Table(
        title=f"parity against {report['reference']} on {report['inputs']['n']} held-out crops"
    )
    for column in ("variant", "max |ΔP(fake)|", "mean |ΔP(fake)|", "AUC", "ΔAUC"):
        table.add_column(column)
    labelled = report["labelled"] or {}
    for name in ("onnx", "onnx_int8"):
        if name in report["inputs"]:
            d = report["inputs"][name]
            auc = labelled.get("auc", {}).get(name)
            table.add_row(
                name,
                _fmt(d["max_abs_diff_p_fake"]),
                _fmt(d["mean_abs_diff_p_fake"]),
                _fmt(auc),
                _fmt(labelled.get("auc_change", {}).get(name)),
            )
    console.print(table)
    for name, path in report["files"].items():
        console.print(f"{name}: {path}")


@app.command()
def serve(
    model: str = typer.Option(
        "default",
        "--model",
        "-m",
        help="'default', a checkpoint (.ckpt / .safetensors) or an exported .onnx.",
    ),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    api_key_file: Optional[Path] = typer.Option(
        None, "--api-key-file", help="First line is the key (else $FAKESCOPE_API_KEY)."
    ),
    keep_uploads: Optional[Path] = typer.Option(
        None, "--keep-uploads", help="Write every upload here (default: memory only)."
    ),
    max_image_mb: float = typer.Option(20, "--max-image-mb", min=0.001),
    max_video_mb: float = typer.Option(200, "--max-video-mb", min=0.001),
    max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1),
    max_queue: int = typer.Option(
        32, "--max-queue", min=1, help="Requests in progress before 503."
    ),
    timeout: float = typer.Option(60, "--timeout", min=0.1, help="Seconds per request before 504."),
    cors_origin: list[str] = typer.Option(
        [], "--cors-origin", help="Allow this origin (repeatable); CORS is off without it."
    ),
    no_faces: bool = typer.Option(False, "--no-faces", help="Score whole images."),
    threshold: Optional[float] = typer.Option(None, "--threshold", min=0.0, max=1.0),
) -> None:
    """Serve the HTTP API and the web page at http://HOST:PORT/."""
    from fakescope.checkpoint import CheckpointError
    from fakescope.serve.app import serve as run_server
    from fakescope.serve.settings import ApiKeyError

    try:
        run_server(
            model,
            host,
            port,
            api_key_file=api_key_file,
            keep_uploads=keep_uploads,
            max_image_mb=max_image_mb,
            max_video_mb=max_video_mb,
            max_pixels=max_pixels,
            max_queue=max_queue,
            timeout_s=timeout,
            cors_origins=tuple(cors_origin),
            no_faces=no_faces,
            threshold=threshold,
            backend=backend,
        )
    except (FileNotFoundError, CheckpointError, ApiKeyError, ValueError) as error:
        fail(str(error))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_change(change: dict | None) -> str:
    """A change in AUC with its interval, as `bootstrap.paired_auc_change` gives it."""
    return (
        "-"
        if change is None
        else "{:+.4f} ({:+.4f} to {:+.4f})".format(change["value"], *change["interval"])
    )


def run() -> None:
    """Console entry point: usage errors exit with 1 (Click's default is 2, which scan uses
    for unreadable inputs)."""
    try:
        # Without standalone mode Click returns the code of a command's `typer.Exit` (`fail`,
        # scan's 2) instead of exiting with it; ignored, every failure would exit 0.
        code = app(standalone_mode=False)
    except typer.Exit as done:
        raise SystemExit(done.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(1)
    except typer.TyperException as error:  # Click's usage and parameter errors
        error.show()
        raise SystemExit(1)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    run()
