"""`edgeseg demo`: the whole chain on the built-in scenes, one table at the end."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli.options import (
    COUNT,
    calib_images_option,
    eval_images_option,
    json_option,
    max_miou_drop_option,
    threads_per_backend_option,
)


def demo_command(
    quick: bool = typer.Option(
        False, "--quick", help="Start from the shipped default model instead of training."
    ),
    out: Path = typer.Option(Path("edgeseg-demo"), help="Folder for the video, plots, artifacts and report."),
    epochs: int = typer.Option(8, **COUNT, help="Training epochs (ignored with --quick)."),
    train_images: int = typer.Option(
        320,
        **COUNT,
        help="Scenes to generate; ~88% (the folder's train split) train the net (ignored with --quick).",
    ),
    frames: int = typer.Option(60, **COUNT, help="Synthetic frames streamed through each artifact."),
    threads: int = threads_per_backend_option(),
    max_miou_drop: float = max_miou_drop_option(),
    calib_images: int = calib_images_option(),
    eval_images: int = eval_images_option(),
    json_out: bool = json_option(),
) -> None:
    """Generate scenes, train, export, make FP16/INT8, stream each, and compare them in one table."""
    from edgeseg import demo as lib
    from edgeseg import machine
    from edgeseg.cli.progress import progress_bars
    from edgeseg.console import console, err_console, print_json, table
    from edgeseg.output_checks import check_writable

    check_writable(out, "--out", folder=True)
    cfg = lib.DemoConfig(
        out=out, quick=quick, epochs=epochs, train_images=train_images, frames=frames, threads=threads,
        max_miou_drop=max_miou_drop, calib_images=calib_images, eval_images=eval_images,
    )  # fmt: skip

    def say(message: str) -> None:
        err_console.print(f"[bold cyan]demo[/] {message}")

    with progress_bars(enabled=not json_out) as progress:
        result = lib.run_demo(cfg, say, progress)
    if json_out:
        print_json(result.to_dict())
        return
    console.print(table("edgeseg demo: held-out synthetic stream", lib.COLUMNS, lib.table_rows(result)))
    console.print(f"[dim]measured on {machine.summary(threads)}[/]", highlight=False)
    saved = [result.video, *result.plots, out / "report.json"]
    console.print(f"finished in {result.seconds:.0f} s; saved in [bold]{out}/[/]: " + ", ".join(
        p.name for p in saved if p is not None
    ))  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
