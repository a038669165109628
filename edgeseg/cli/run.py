"""`edgeseg run`: stream a camera, video, image folder, network stream or the synthetic scenes through
a model and report FPS, latency percentiles, dropped frames and (with ground truth) mIoU.

With no arguments it runs the newest export in the workspace (else the shipped default model) on the
synthetic stream with ground truth, headless, for a bounded number of frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli.options import card_option

DEFAULT_SYNTHETIC_FRAMES = 300


def run_command(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Artifact (.onnx/.engine/.pt) or exported model name (NAME or NAME.VARIANT); "
        "default: the newest export in the workspace, else the shipped model.",
    ),
    card_file: Path | None = card_option(),
    backend: str | None = typer.Option(
        None, "--backend", help="onnxruntime, tensorrt or torch (default: from the artifact's file type)."
    ),
    providers: str = typer.Option("cpu", "--providers", help="ONNX Runtime providers: cpu or auto."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads for inference, shared by the workers (default: all cores)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Inference workers on consecutive frames (default: 2 for files and a light model, up "
        "to 64 MB, on ONNX Runtime CPU, for throughput; otherwise 1, and always 1 for live sources, "
        "for latency).",
    ),
    device: str = typer.Option("cpu", "--device", help="Device for .pt checkpoints (cpu, cuda, auto)."),
    camera: int | None = typer.Option(None, "--camera", help="Camera index (live)."),
    video: Path | None = typer.Option(None, "--video", help="Video file (every frame processed)."),
    images: str | None = typer.Option(None, "--images", help="Image folder or glob (every image)."),
    url: str | None = typer.Option(None, "--url", help="rtsp:// or http:// stream (live)."),
    gst: str | None = typer.Option(None, "--gst", help="GStreamer pipeline ending in appsink (live)."),
    synthetic: bool = typer.Option(
        False, "--synthetic", help="Generated street scenes with ground truth (the default source)."
    ),
    frames: int | None = typer.Option(
        None,
        "--frames",
        "-n",
        help=f"Stop after N captured frames (synthetic default: {DEFAULT_SYNTHETIC_FRAMES}).",
    ),
    loop: bool = typer.Option(False, "--loop", help="Repeat a video or image folder (soak, demos)."),
    realtime: bool = typer.Option(
        False, "--realtime", help="Replay a file at its frame rate like a camera (frames get dropped)."
    ),
    synthetic_size: str | None = typer.Option(
        None, "--synthetic-size", help="HxW of synthetic frames (default: the model's input size)."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Ground-truth masks paired by file stem (video frames: <stem>_000123)."
    ),
    show: bool = typer.Option(False, "--show", help="Show a window (needs a display)."),
    save: Path | None = typer.Option(None, "--save", help="Write the annotated video (.mp4/.avi)."),
    save_masks: Path | None = typer.Option(None, "--save-masks", help="Write class-id PNGs here."),
    log: Path | None = typer.Option(None, "--log", help="Per-frame JSONL log."),
    mode: str = typer.Option("overlay", "--mode", help="Visual mode: overlay, mask or side-by-side."),
    alpha: float = typer.Option(0.5, "--alpha", help="Overlay opacity, 0..1."),
    legend: bool = typer.Option(False, "--legend", help="Draw class names and colours."),
    reconnect: bool = typer.Option(
        False, "--reconnect", help="Reopen a live source that stops delivering (with backoff)."
    ),
    reconnect_timeout: float = typer.Option(
        30.0, "--reconnect-timeout", help="Give up after this many seconds without frames."
    ),
    report: Path | None = typer.Option(None, "--report", help="Write the final report as JSON."),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Workspace (default: $EDGESEG_WORKDIR or ./edgeseg-work)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the final report as JSON."),
) -> None:
    """Stream frames through a model: FPS, latency p50/p95/p99, dropped frames, live mIoU."""
    from edgeseg import workspace
    from edgeseg.artifacts import read_card
    from edgeseg.cli import print_error
    from edgeseg.cli.options import parse_hw
    from edgeseg.console import print_json, warn
    from edgeseg.errors import EdgesegError, ExitCode, SourceLost
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.draw import Renderer
    from edgeseg.runtime.launch import open_pipeline
    from edgeseg.runtime.pipeline import Reconnect
    from edgeseg.runtime.sinks import JsonlSink, MaskSink, Sink, VideoSink, WindowSink
    from edgeseg.runtime.sources import LabelLookup, open_source
    from edgeseg.signals import StopOnce

    if frames is not None and frames < 1:
        raise EdgesegError("--frames must be at least 1")
    if reconnect_timeout <= 0:
        raise EdgesegError("--reconnect-timeout must be positive")
    _check_outputs(save=save, log=log, report=report, save_masks=save_masks)
    sources = [camera, video, images, url, gst]
    if not synthetic and all(s is None for s in sources):
        synthetic = True  # the default: a stream with ground truth
    if synthetic and frames is None:
        frames = DEFAULT_SYNTHETIC_FRAMES
    if synthetic and labels is not None:
        raise EdgesegError("--synthetic brings its own ground truth; --labels is for video/images")

    root = workspace.workdir(workdir)
    artifact = workspace.find_artifact(model, root, backend=backend)
    card = read_card(artifact, card_file)
    size = parse_hw(synthetic_size) if synthetic_size else _synthetic_size(card)
    if synthetic:
        _check_synthetic_classes(card.classes)
    source = open_source(
        camera=camera,
        video=video,
        images=images,
        url=url,
        gst=gst,
        synthetic=frames if synthetic else None,
        loop=loop,
        synthetic_size=size,
    )
    lookup = LabelLookup(labels, card.palette) if labels is not None else None
    sinks: list[Sink] = []
    if show:
        sinks.append(WindowSink(f"edgeseg: {artifact.name}"))
    if save is not None:
        sinks.append(VideoSink(save, fps=None))
    if save_masks is not None:
        sinks.append(MaskSink(save_masks))
    if log is not None:
        sinks.append(JsonlSink(log, card.classes))
    renderer = Renderer(card.palette, card.classes, mode=mode, alpha=alpha, legend=legend)
    pipe = open_pipeline(
        artifact,
        source,
        sinks,
        workers=workers,
        options=BackendOptions(providers=providers, threads=threads, device=device, card=card),
        own_process=True,  # no OpenCV pool beside a CPU backend
        labels=lookup,
        max_frames=frames,
        reconnect=Reconnect(enabled=reconnect, timeout=reconnect_timeout),
        renderer=renderer if any(s.needs_render for s in sinks) else None,
        realtime=realtime,
    )
    with StopOnce() as signals:  # a second Ctrl-C or SIGTERM cannot cut the report short
        failure: Exception | None = None
        try:
            try:
                _run_with_status(pipe, frames, quiet=json_out)
            except Exception as exc:  # an output or stage failed: what was saved is still reported
                failure = exc
            finally:
                signals.finalising()
        except KeyboardInterrupt:
            pass  # it arrived just as the run ended: the run is complete, finish it as such
        stats = pipe.stats
        if failure is not None and not (pipe.streamed or isinstance(failure, SourceLost)):
            raise failure  # nothing ran (e.g. the camera is not there): the one line says it all
        result = pipe.report()
        result["artifact"] = str(artifact)
        if lookup is not None:
            result["labels"] = {"folder": str(labels), "matched": lookup.matched}
            if lookup.matched == 0 and stats.processed:
                warn(f"no frame name matched a label file in {labels}; no mIoU (see --labels help)")
        report_failed = _save_report(report, result)
        if json_out or report_failed:
            print_json(result)  # on a full disk the console (journal) still gets the report
        else:
            print_report(result, card.classes)
            if report is not None:
                from edgeseg.console import console

                console.print(f"report written to {report}")
    if failure is not None:
        raise failure
    if report_failed is not None:
        raise report_failed
    if stats.exit_code != ExitCode.OK:
        if not stats.interrupted:
            print_error(result["ended"]["reason"])
        raise typer.Exit(stats.exit_code)


def _check_outputs(
    *, save: Path | None, log: Path | None, report: Path | None, save_masks: Path | None
) -> None:
    """Every output path must be writable before the model loads: a typo fails in the first second,
    not when the first frame (or the report, an hour later) is written."""
    from edgeseg.atomic import check_writable
    from edgeseg.runtime.sinks import VideoSink

    if save is not None:
        VideoSink.codec_for(save)
    for option, path in (("--save", save), ("--log", log), ("--report", report)):
        if path is not None:
            check_writable(path, option)
    if save_masks is not None:
        check_writable(save_masks, "--save-masks", folder=True)


def _save_report(path: Path | None, result: dict[str, Any]) -> Exception | None:
    """Write the report; if its own path fails, say so (the caller prints it on stdout instead)."""
    from edgeseg.atomic import write_json
    from edgeseg.errors import OutputFailed

    if path is None:
        return None
    try:
        write_json(path, result)
    except OutputFailed as exc:
        return OutputFailed(f"{exc}; the report went to standard output instead")
    return None


def _synthetic_size(card: Any) -> tuple[int, int]:
    return (256, 512) if card.dynamic else tuple(card.input_size)


def _check_synthetic_classes(classes: list[str]) -> None:
    from edgeseg.data.synth import SYNTH_CLASSES
    from edgeseg.errors import EdgesegError

    if len(classes) != len(SYNTH_CLASSES):
        raise EdgesegError(
            f"--synthetic scores against {len(SYNTH_CLASSES)} street classes but this model predicts "
            f"{len(classes)}; pass a --video/--images/--camera source for it"
        )


def _run_with_status(pipe: Any, frames: int | None, *, quiet: bool) -> Any:
    """Run the pipeline with a transient rich progress/status line on stderr."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeseg.console import err_console

    if quiet or not err_console.is_terminal:
        return pipe.run()
    with Progress(
        SpinnerColumn(),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting", total=frames)

        def status(stats: Any) -> None:
            total = frames or pipe.source.length
            progress.update(task, completed=stats.processed, total=total, description=stats.status_line())

        return pipe.run(status)


def print_report(report: dict[str, Any], classes: list[str]) -> None:
    """Final rich tables: throughput and latency, per-stage percentiles, gaps, mIoU and per-class IoU."""
    from edgeseg.console import console, table

    f = report["frames"]
    lat = report["latency_ms"]
    e2e = lat["capture_to_result"]
    workers = report.get("workers", 1)
    title = (
        f"{Path(report['artifact']).name} on {report['source']['kind']} ({report['backend'].get('backend')}"
        f"{f', {workers} inference workers' if workers > 1 else ''})"
    )
    rows: list[list[Any]] = [
        ["frames processed", f["processed"]],
        ["frames dropped", f["dropped"]],
        ["FPS (end-to-end)", report["fps"]],
        ["FPS (after first frame)", report["steady_fps"]],
        ["latency p50 ms (capture to result)", e2e["p50"]],
        ["latency p95 ms", e2e["p95"]],
        ["latency p99 ms", e2e["p99"]],
    ]
    cpu = report.get("cpu")
    if cpu:
        rows.append(
            [
                "CPU ms per frame (all threads)",
                f"{cpu['process_ms_per_frame']:.2f} ({cpu['cores_busy']:.2f} of {cpu['cores']} cores busy)",
            ]
        )
    metrics = report.get("metrics")
    if metrics:
        rows += [["mIoU", metrics["miou"]], ["pixel accuracy", metrics["pixel_accuracy"]]]
    if report["interrupted"]:
        rows.append(["interrupted", "yes"])
    console.print(table(title, ["metric", "value"], rows))
    if not report.get("live", True):
        console.print(
            "[dim]file source: frames are read ahead to keep inference busy, so latency includes "
            "queueing; --realtime replays at the file's frame rate like a camera[/]"
        )
    stage_cpu = cpu["stage_ms_per_frame"] if cpu else {}
    stage_rows = [
        [name, s["p50"], s["p95"], s["p99"], s["mean"], stage_cpu.get(name)]
        for name, s in lat["stages"].items()
        if s["p50"] is not None
    ]
    if "other threads" in stage_cpu:
        stage_rows.append(["other threads", None, None, None, None, stage_cpu["other threads"]])
    console.print(
        table("per-stage latency (ms)", ["stage", "p50", "p95", "p99", "mean", "CPU ms/frame"], stage_rows)
    )
    if stage_cpu:
        console.print(
            "[dim]CPU ms/frame: each stage thread's CPU time per processed frame; other threads = "
            "library pools (video decoder, the inference runtime's extra threads) and the main thread[/]"
        )
    if workers > 1:
        console.print(
            f"[dim]inference: one frame on one of {workers} workers that run side by side, each with its "
            "share of the threads (--workers 1 for the lowest latency per frame)[/]"
        )
    if report["gaps"]:
        gap_rows = [
            [i + 1, g["start_s"], g["duration_s"], g["reconnect_attempts"], "yes" if g["recovered"] else "no"]
            for i, g in enumerate(report["gaps"])
        ]
        console.print(table("source gaps", ["gap", "at s", "length s", "attempts", "recovered"], gap_rows))
    if metrics:
        iou = metrics["per_class_iou"]
        console.print(table("per-class IoU", ["class", "IoU"], [[c, iou.get(c)] for c in classes]))


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
