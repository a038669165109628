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

from edgeseg.cli import run_options as o
from edgeseg.cli.options import (
    allow_other_gpu_option,
    alpha_option,
    backend_option,
    card_option,
    device_option,
    input_size_option,
    json_option,
    model_option,
    native_size_option,
    providers_option,
    report_option,
    threads_option,
    workdir_option,
)
from edgeseg.cli.run_options import DEFAULT_SYNTHETIC_FRAMES

if TYPE_CHECKING:
    from edgeseg.runtime.plan import OpenRun, RunPlan
    from edgeseg.runtime.report import RunReport


def run_command(
    model: str | None = model_option(),
    card_file: Path | None = card_option(),
    allow_other_gpu: bool = allow_other_gpu_option(),
    backend: str | None = backend_option(),
    providers: str = providers_option(),
    threads: int | None = threads_option(),
    workers: int | None = o.workers(),
    device: str = device_option(),
    camera: list[int] | None = o.camera(),
    video: list[Path] | None = o.video(),
    images: list[str] | None = o.images(),
    url: list[str] | None = o.url(),
    gst: list[str] | None = o.gst(),
    synthetic: int = o.synthetic(),
    frames: int | None = o.frames(),
    loop: bool = o.loop(),
    realtime: bool = o.realtime(),
    synthetic_size: str | None = o.synthetic_size(),
    input_size: str | None = input_size_option(),
    native_size: bool = native_size_option(),
    labels: Path | None = o.labels(),
    show: bool = o.show(),
    serve: str | None = o.serve(),
    save: Path | None = o.save(),
    save_masks: Path | None = o.save_masks(),
    log: Path | None = o.log(),
    tile: bool = o.tile(),
    mode: str = o.mode(),
    alpha: float = alpha_option(),
    legend: bool = o.legend(),
    reconnect: bool = o.reconnect(),
    reconnect_timeout: float = o.reconnect_timeout(),
    report: Path | None = report_option(),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option("the final report"),
    bag: list[Path] | None = o.bag(),
    topic: str | None = o.topic(),
    labels_topic: str | None = o.labels_topic(),
    save_bag: Path | None = o.save_bag(),
    save_bag_overlay: bool = o.save_bag_overlay(),
    bag_storage: str = o.bag_storage(),
) -> None:
    """Stream frames through a model: FPS, latency p50/p95/p99, dropped frames, live mIoU."""
    from edgeseg.cli.options import parse_hw, parse_inference_size
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
        backend_options=BackendOptions(
            backend=backend,
            providers=providers,
            threads=threads,
            device=device,
            allow_other_gpu=allow_other_gpu,
            input_size=parse_inference_size(input_size, native_size),
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
            result, run.card.classes, report=plan.outputs.report, json_out=json_out, tables=tables
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
    if topics and not result.labelled:
        warn(f"no frame's header stamp matched a message on {topics[0]}; no mIoU")


def publish_report(
    result: RunReport,
    classes: list[str],
    *,
    report: Path | None,
    json_out: bool,
    tables: Sequence[Callable[[RunReport], None]] = (),
) -> Exception | None:
    """Write the report file and print the report (tables, or JSON with --json). If the report's own
    path fails, the report goes to standard output instead and the failure is returned to raise."""
    from edgeseg.atomic import write_json
    from edgeseg.console import print_json
    from edgeseg.errors import OutputFailed

    failed = None
    if report is not None:
        try:
            write_json(report, result.to_dict())
        except OutputFailed as exc:
            failed = OutputFailed(
                f"{exc}; the report went to standard output instead", exit_code=exc.exit_code
            )
    if json_out or failed:
        print_json(result.to_dict())  # on a full disk the console (journal) still gets the report
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
    from edgeseg.runtime.multistream import STREAM_FIELD

    for option, path in outputs.items():
        if path is not None and (path.exists() or STREAM_FIELD in str(path)):
            console.print(f"wrote {path} (--{option.replace('_', '-')})", highlight=False)


def _say(line: str) -> None:
    from edgeseg.console import err_console

    err_console.print(line, highlight=False, markup=False, soft_wrap=True)


def _run_with_status(pipe: Any, frames: int | None, *, quiet: bool) -> Any:
    """Run the pipeline with a transient rich progress/status line on stderr."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeseg.console import err_console

    if quiet:
        return pipe.run()
    if not err_console.is_terminal:
        return pipe.run(_log_lines(err_console))
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


LOG_STATUS_INTERVAL_S = 30.0  # off a terminal: a status line this often (a journal, not a redraw)


def _log_lines(console: Any) -> Any:
    """The status for logs: a plain line every LOG_STATUS_INTERVAL_S, none for a run shorter than that
    (its report follows at once), so a long run off a terminal is not silent until it ends."""
    import time

    last = [time.monotonic()]

    def status(stats: Any) -> None:
        now = time.monotonic()
        if now - last[0] >= LOG_STATUS_INTERVAL_S:
            last[0] = now
            console.print(stats.status_line(), highlight=False, markup=False, soft_wrap=True)

    return status


def print_report(report: RunReport, classes: list[str]) -> None:
    """Final rich tables: throughput and latency, per-stage percentiles, gaps, mIoU and per-class IoU."""
    from edgeseg.console import console, table
    from edgeseg.metrics import defined

    stats, workers = report.stats, report.workers
    e2e = stats.latency.summary()
    name = report.artifact.name if report.artifact is not None else report.card.model
    title = (
        f"{name} on {report.source_kind} ({report.backend_name}"
        f"{f', {workers} inference workers' if workers > 1 else ''})"
    )
    rows: list[list[Any]] = [
        ["frames processed", stats.processed],
        ["frames dropped", stats.dropped],
        ["FPS (end-to-end)", stats.fps],
        ["FPS (after first frame)", stats.steady_fps],
        ["latency p50 ms (capture to result)", e2e["p50"]],
        ["latency p95 ms", e2e["p95"]],
        ["latency p99 ms", e2e["p99"]],
    ]
    cpu = stats.cpu()
    if cpu:
        busy = f"{cpu.process_ms_per_frame:.2f} ({cpu.cores_busy:.2f} of {cpu.cores} cores busy)"
        rows.append(["CPU ms per frame (all threads)", busy])
    metrics = stats.metrics()
    if metrics is not None:
        rows += [["mIoU", defined(metrics.miou)], ["pixel accuracy", defined(metrics.pixel_accuracy)]]
    if stats.interrupted:
        rows.append(["interrupted", "yes"])
    console.print(table(title, ["metric", "value"], rows))
    _print_notes(report)
    stage_cpu = cpu.stage_ms_per_frame if cpu else {}
    stage_rows = [
        [stage, s["p50"], s["p95"], s["p99"], s["mean"], stage_cpu.get(stage)]
        for stage, s in ((stage, r.summary()) for stage, r in stats.stages.items())
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
    if stats.gaps:
        gap_rows = [
            [i + 1, g.start_s, g.duration_s, g.attempts, "yes" if g.recovered else "no"]
            for i, g in enumerate(stats.gaps)
        ]
        console.print(table("source gaps", ["gap", "at s", "length s", "attempts", "recovered"], gap_rows))
    if metrics is not None:
        names = stats.classes or [str(i) for i in range(len(metrics.iou))]
        iou = {n: defined(v) for n, v in zip(names, metrics.iou)}
        console.print(table("per-class IoU", ["class", "IoU"], [[c, iou.get(c)] for c in classes]))


def _print_notes(report: RunReport) -> None:
    """The lines under the first table: the size frames ran at, the runtime and why, file sources."""
    from edgeseg.console import console
    from edgeseg.preprocess import inference_size

    if report.card.dynamic:  # a fixed model has one size; a dynamic one says which
        how = inference_size(report.card)["how"]
        console.print(f"[dim]frames: {how} (--input-size HxW, --native-size)[/]", highlight=False)
    rule = report.runtime
    if rule:
        other = "" if rule.reason == "--backend" else " (--backend names another)"
        console.print(f"[dim]runtime: {rule.backend}, {rule.reason}{other}; docs/runtime.md[/]")
    if not report.stats.live:
        console.print(
            "[dim]file source: frames are read ahead to keep inference busy, so latency includes "
            "queueing; --realtime replays at the file's frame rate like a camera[/]"
        )


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
