"""`edgeseg bench`: the whole chain side by side on the same frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli.options import (
    SIDE,
    allow_other_gpu_option,
    card_option,
    input_size_option,
    json_option,
    native_size_option,
    providers_option,
    threads_per_backend_option,
    workdir_option,
)


def bench_command(
    model: str = typer.Argument(
        None, help="Exported model name or .onnx path.", show_default="the newest export"
    ),
    card_file: Path = card_option(),
    allow_other_gpu: bool = allow_other_gpu_option(),
    checkpoint: Path = typer.Option(
        None,
        help="PyTorch checkpoint for the eager baseline.",
        show_default="the model's newest training run",
    ),
    data: str = typer.Option(
        "synth:16",
        help="Frames: synth[:N] or a dataset folder (mIoU where its labels are the model's classes), "
        "or images/a video without labels (speed only).",
    ),
    height: int = typer.Option(
        None, **SIDE, help="Frame height for generated data.", show_default="the model's input"
    ),
    width: int = typer.Option(
        None, **SIDE, help="Frame width for generated data.", show_default="the model's input"
    ),
    input_size: str | None = input_size_option(),
    native_size: bool = native_size_option(),
    threads: int = threads_per_backend_option(),
    warmup: int = typer.Option(3, help="Untimed runs before measuring."),
    iterations: int = typer.Option(30, help="Timed frames per artifact."),
    providers: str = providers_option(),
    markdown: Path = typer.Option(None, help="Also write the table as Markdown here."),
    plot: Path = typer.Option(None, help="Also write an FPS-vs-mIoU PNG here."),
    json_out: bool = json_option(),
    workdir: Path = workdir_option(),
) -> None:
    """Compare PyTorch eager, ONNX Runtime FP32/FP16/INT8 and TensorRT artifacts of one model."""
    from edgeseg import bench as lib
    from edgeseg import machine, workspace
    from edgeseg.artifacts import read_card
    from edgeseg.cli.options import parse_inference_size
    from edgeseg.console import console, print_json, table
    from edgeseg.errors import EdgesegError
    from edgeseg.output_checks import check_apart, check_writable
    from edgeseg.preprocess import at_inference_size, inference_size

    cfg = lib.BenchConfig(
        data=data,
        height=height,
        width=width,
        threads=threads,
        warmup=warmup,
        iterations=iterations,
        providers=providers,
        input_size=parse_inference_size(input_size, native_size),
        allow_other_gpu=allow_other_gpu,
    )
    for option, path in (("--markdown", markdown), ("--plot", plot)):
        if path is not None:
            check_writable(path, option)  # before the measurements, not after
    if checkpoint is not None and not checkpoint.is_file():
        raise EdgesegError(f"--checkpoint {checkpoint} is not a file")
    root = workspace.workdir(workdir)
    base = workspace.require_export(root, model)
    ckpt = checkpoint or lib.default_checkpoint(root, base)
    check_apart(
        [("--markdown", markdown), ("--plot", plot)],
        [("MODEL", base), ("--checkpoint", ckpt), ("--card", card_file), ("--data", data)],
        inside={"--markdown", "--plot"},
    )
    given = read_card(base, card_file) if card_file else None
    artifacts = lib.discover(base, ckpt, given)
    # the frames are opened once before any measurement: bad --data fails here, and data without
    # ground truth of the model's classes is said once (speed rows only), not as an error per row
    # and a size the model cannot run at is one line before any row runs
    card = at_inference_size(given or read_card(base), cfg.input_size)
    no_miou = lib.open_frames(cfg, card).no_miou
    if not json_out:
        _say_what_runs(base, len(artifacts), data, no_miou, card, ckpt, root)

    def progress(art: lib.Artifact) -> None:
        if not json_out:
            console.print(f"  measuring [cyan]{art.label}[/] ({art.path.name})")

    results = lib.run_bench(artifacts, cfg, progress)
    desc = machine.describe()
    _write_extras(results, markdown, plot)
    failed = lib.nothing_measured(results)
    if json_out:
        print_json({**lib.to_json(results, cfg, desc, no_miou), "inference_size": inference_size(card)})
    else:
        console.print(table(f"edgeseg bench: {base.name}", lib.COLUMNS, lib.rows(results)))
        console.print(f"[dim]{machine.summary(threads)}[/]", highlight=False)
        for written in (markdown, plot):
            if written:
                console.print(f"wrote {written}", highlight=False)
    if failed is not None:
        raise failed


def _say_what_runs(
    base: Path, count: int, data: str, no_miou: str | None, card: Any, ckpt: Path | None, root: Path
) -> None:
    """The lines before the measurements: what is measured on what, and what the table will lack."""
    from edgeseg import workspace
    from edgeseg.console import console
    from edgeseg.preprocess import inference_size

    console.print(f"[bold]benchmarking[/] {count} artifacts of {base.name} on {data}")
    if no_miou:
        console.print(f"[dim]no mIoU: {no_miou}[/]", highlight=False)
    if card.dynamic:  # a fixed model has one size; a --dynamic-hw one says which (as run does)
        console.print(f"[dim]frames: {inference_size(card)['how']}[/]", highlight=False)
    if ckpt is None:
        console.print(
            f"[dim]no training checkpoint of {base.name} found (looked in {workspace.root_of(base)} "
            f"and {root}): no PyTorch eager row; pass --checkpoint FILE for one[/]"
        )


def _write_extras(results: list[Any], markdown: Path | None, plot: Path | None) -> None:
    """--markdown and --plot, each written whole under its name."""
    from edgeseg import bench as lib

    if markdown:
        from edgeseg.atomic import atomic_open

        with atomic_open(markdown, "w") as fh:
            fh.write(lib.to_markdown(results))
    if plot:
        lib.plot(results, plot)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
