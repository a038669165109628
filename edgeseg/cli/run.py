"""`edgeseg run`: stream a camera, video, image folder, network stream or the synthetic scenes through
a model and report FPS, latency percentiles, dropped frames and (with ground truth) mIoU.

With no arguments it runs the newest export in the workspace (else the shipped default model) on the
synthetic stream with ground truth, headless, for a bounded number of frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeseg.cli.options import allow_other_gpu_option, card_option, workdir_option

if TYPE_CHECKING:
    from edgeseg.runtime.plan import OpenRun, RunPlan
    from edgeseg.runtime.report import RunReport

DEFAULT_SYNTHETIC_FRAMES = 300


def run_command(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Artifact (.onnx/.engine/.pt) or exported model name (NAME or NAME.VARIANT).",
        show_default="the newest export in the workspace, else the shipped model",
    ),
    card_file: Path | None = card_option(),
    allow_other_gpu: bool = allow_other_gpu_option(),
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="onnxruntime, tensorrt or torch.",
        show_default="from the artifact's file type",
    ),
    providers: str = typer.Option("cpu", "--providers", help="ONNX Runtime providers: cpu or auto."),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads for inference, shared by the workers.", show_default="all cores"
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Inference workers on consecutive frames: throughput for files, latency for live sources.",
        show_default="2 for a file and a light model (up to 64 MB) on ONNX Runtime CPU, else 1",
    ),
    device: str = typer.Option("cpu", "--device", help="Device for .pt checkpoints (cpu, cuda, auto)."),
    # every source option repeats: several streams run through one model with batched inference
    camera: list[int] | None = typer.Option(None, "--camera", metavar="<int>", help="Camera index (live)."),
    video: list[Path] | None = typer.Option(
        None, "--video", metavar="<path>", help="Video file (every frame processed)."
    ),
    images: list[str] | None = typer.Option(
        None, "--images", metavar="<str>", help="Image folder or glob (every image)."
    ),
    url: list[str] | None = typer.Option(
        None, "--url", metavar="<str>", help="rtsp:// or http:// stream (live)."
    ),
    gst: list[str] | None = typer.Option(
        None, "--gst", metavar="<str>", help="GStreamer pipeline ending in appsink (live)."
    ),
    synthetic: int = typer.Option(
        0,
        "--synthetic",
        count=True,
        metavar="",
        show_default="the source when no other is given",
        help="Generated street scenes with ground truth. Every source option "
        "repeats (--camera 0 --camera 1, --synthetic --synthetic): the streams run through one model, "
        "batched.",
    ),
    frames: int | None = typer.Option(
        None,
        "--frames",
        "-n",
        help="Stop after N captured frames, per stream.",
        show_default=f"{DEFAULT_SYNTHETIC_FRAMES} for --synthetic, else the whole source",
    ),
    loop: bool = typer.Option(False, "--loop", help="Repeat a video or image folder (soak, demos)."),
    realtime: bool = typer.Option(
        False, "--realtime", help="Replay a file at its frame rate like a camera (frames get dropped)."
    ),
    synthetic_size: str | None = typer.Option(
        None, "--synthetic-size", help="HxW of synthetic frames.", show_default="the model's input size"
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Ground-truth masks paired by file stem (video frames: <stem>_000123)."
    ),
    show: bool = typer.Option(
        False,
        "--show",
        help="Show the run: an OpenCV window, or, with pip's headless OpenCV, the live view in your browser.",
    ),
    serve: str | None = typer.Option(
        None,
        "--serve",
        help="Serve a live view (MJPEG stream, FPS, latency, class shares, mIoU) over HTTP at "
        "PORT, :PORT or HOST:PORT; 127.0.0.1 unless a host is given (0.0.0.0: every interface).",
    ),
    save: Path | None = typer.Option(None, "--save", help="Write the annotated video (.mp4/.avi)."),
    save_masks: Path | None = typer.Option(None, "--save-masks", help="Write class-id PNGs here."),
    log: Path | None = typer.Option(None, "--log", help="Per-frame JSONL log."),
    tile: bool = typer.Option(
        False,
        "--tile",
        help="Several streams: --show/--save draw them side by side in one window/video (--serve always does).",
    ),
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
    workdir: Path | None = workdir_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the final report as JSON."),
    # ROS 2 bags (issue 18): a bag topic as the source, results written as a new bag
    bag: list[Path] | None = typer.Option(
        None,
        "--bag",
        metavar="<path>",
        help="rosbag2 folder or .mcap/.db3 file (every frame; --realtime: recorded speed).",
    ),
    topic: str | None = typer.Option(
        None, "--topic", help="Image topic of --bag.", show_default="the bag's only image topic"
    ),
    labels_topic: str | None = typer.Option(
        None, "--labels-topic", help="Topic of --bag with mono8 class-id masks, paired by header stamp."
    ),
    save_bag: Path | None = typer.Option(
        None, "--save-bag", help="Write class maps (mono8) and per-frame stats as a new bag."
    ),
    save_bag_overlay: bool = typer.Option(
        False, "--save-bag-overlay", help="Also write the --mode rendering (bgr8) into --save-bag."
    ),
    bag_storage: str = typer.Option("mcap", "--bag-storage", help="--save-bag storage: mcap or sqlite3."),
) -> None:
    """Stream frames through a model: FPS, latency p50/p95/p99, dropped frames, live mIoU."""
    from edgeseg.cli.options import parse_hw
    from edgeseg.cli.run_streams import source_streams
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.plan import Outputs, RunPlan, View
    from edgeseg.runtime.streaming.reconnect import Reconnect

    outputs = Outputs(
        video=save, masks=save_masks, log=log, bag=save_bag, bag_storage=bag_storage,
        bag_overlay=save_bag_overlay, report=report,
    )  # fmt: skip
    streams = source_streams(  # the default: one synthetic stream, with ground truth
        synthetic, frames or DEFAULT_SYNTHETIC_FRAMES, camera=camera, video=video, images=images, url=url,
        gst=gst, bag=bag, bag_topics={"topic": topic, "labels_topic": labels_topic},
    )  # fmt: skip
    plan = RunPlan(
        model=model,
        sources=tuple(streams),
        outputs=outputs,
        view=View(show=show, serve=serve, tile=tile, mode=mode, alpha=alpha, legend=legend),
        labels=labels,
        backend=BackendOptions(
            providers=providers, threads=threads, device=device, allow_other_gpu=allow_other_gpu
        ),
        workers=workers,
        max_frames=frames,
        realtime=realtime,
        reconnect=Reconnect(enabled=reconnect, timeout=reconnect_timeout),
        loop=loop,
        synthetic_size=parse_hw(synthetic_size) if synthetic_size else None,
        card_file=card_file,
        workdir=workdir,
        prefer=backend,
        own_process=True,  # no OpenCV pool beside a CPU backend
        say=_say,  # the live view's URL goes to stderr, stdout stays the report
    )
    execute(plan.open(), json_out=json_out)


def execute(run: OpenRun, *, json_out: bool) -> None:
    """Run an opened plan to its end, report it (tables, or JSON with --json; the --report file) and
    exit with the run's status."""
    from edgeseg.cli import print_error
    from edgeseg.cli.run_streams import print_streams
    from edgeseg.errors import ExitCode, SourceLost
    from edgeseg.signals import StopOnce

    plan = run.plan
    with StopOnce() as signals:  # a second Ctrl-C or SIGTERM cannot cut the report short
        failure: Exception | None = None
        try:
            try:
                _run_with_status(run.driver, plan.max_frames, quiet=json_out)
            except Exception as exc:  # an output or stage failed: what was saved is still reported
                failure = exc
            finally:
                signals.finalising()
        except KeyboardInterrupt:
            pass  # it arrived just as the run ended: the run is complete, finish it as such
        stats = run.stats
        nothing_ran = not run.driver.streamed or not stats.processed
        if failure is not None and not isinstance(failure, SourceLost) and nothing_ran:
            raise failure  # nothing ran or no frame made it (bad input): the one line says it all
        result = run.report()
        _warn_without_ground_truth(result, plan)
        tables = [print_streams] if len(plan.sources) > 1 else []
        report_failed = publish_report(
            result.to_dict(), run.card.classes, report=plan.outputs.report, json_out=json_out, tables=tables
        )
        if not json_out and failure is None:
            _say_written(**plan.outputs.written())
    if failure is not None:
        raise failure
    if report_failed is not None:
        raise report_failed
    if stats.exit_code != ExitCode.OK:
        if not stats.interrupted:
            print_error(result.ended)
        raise typer.Exit(stats.exit_code)


def _warn_without_ground_truth(result: RunReport, plan: RunPlan) -> None:
    """Ground truth was asked for but no frame found its own: say so (the report has no mIoU)."""
    from edgeseg.console import warn

    if not result.stats.processed:
        return
    if result.labels is not None and result.labels.matched == 0:
        warn(f"no frame name matched a label file in {plan.labels}; no mIoU (see --labels help)")
    topics = [s["labels_topic"] for s in plan.sources if isinstance(s, dict) and s.get("labels_topic")]
    if topics and not any(d.get("labelled") for d in result.sources):
        warn(f"no frame's header stamp matched a message on {topics[0]}; no mIoU")


def publish_report(
    result: dict[str, Any],
    classes: list[str],
    *,
    report: Path | None,
    json_out: bool,
    tables: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> Exception | None:
    """Write the report file and print the report (tables, or JSON with --json). If the report's own
    path fails, the report goes to standard output instead and the failure is returned to raise."""
    from edgeseg.atomic import write_json
    from edgeseg.console import print_json
    from edgeseg.errors import OutputFailed

    failed = None
    if report is not None:
        try:
            write_json(report, result)
        except OutputFailed as exc:
            failed = OutputFailed(f"{exc}; the report went to standard output instead")
    if json_out or failed:
        print_json(result)  # on a full disk the console (journal) still gets the report
        return failed
    print_report(result, classes)
    for extra in tables:
        extra(result)
    if report is not None:
        from edgeseg.console import console

        console.print(f"report written to {report}")
    return None


def _say_written(**outputs: Path | None) -> None:
    """Where each output went (a `{stream}` name stands for one file per stream)."""
    from edgeseg.console import console

    for option, path in outputs.items():
        if path is not None and (path.exists() or "{stream}" in str(path)):
            console.print(f"wrote {path} (--{option.replace('_', '-')})", highlight=False)


def _say(line: str) -> None:
    from edgeseg.console import err_console

    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


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
            lengths = [frames or source.length for source in pipe.sources]
            total = sum(lengths) if all(lengths) else None
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
