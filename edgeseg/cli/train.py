"""`edgeseg train MODEL --data PATH`: train (or resume) a segmentation net; torchrun-aware."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli.options import (
    COUNT,
    NON_NEGATIVE,
    SEED,
    SIDE,
    THREADS,
    finite,
    json_option,
    parse_options,
    workdir_option,
)


def train_command(
    model: str = typer.Argument(..., help="Model name from `edgeseg models` (e.g. fcn8s)."),
    data: str = typer.Option(..., "--data", "-d", help="Dataset: folder (plain/VOC/Cityscapes) or synth:N."),
    val_data: str | None = typer.Option(
        None, "--val-data", help="Validation data.", show_default="the held-out split"
    ),
    epochs: int | None = typer.Option(None, "--epochs", "-e", **COUNT, help="Epochs.", show_default="30"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", **COUNT, help="Batch size per process.", show_default="8"
    ),
    lr: float | None = typer.Option(
        None, "--lr", parser=finite(above=0), help="Peak learning rate.", show_default="sgd 0.01, adamw 1e-3"
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd or adamw.", show_default="sgd"),
    schedule: str | None = typer.Option(None, "--schedule", help="poly or cosine.", show_default="poly"),
    warmup: int | None = typer.Option(
        None, "--warmup", **NON_NEGATIVE, help="Linear warm-up iterations.", show_default="0"
    ),
    weight_decay: float | None = typer.Option(
        None,
        "--weight-decay",
        parser=finite(at_least=0),
        help="Weight decay.",
        show_default="sgd 1e-4, adamw 1e-2",
    ),
    height: int | None = typer.Option(
        None, "--height", **SIDE, help="Input/crop height recorded in the card.", show_default="192"
    ),
    width: int | None = typer.Option(
        None, "--width", **SIDE, help="Input/crop width recorded in the card.", show_default="384"
    ),
    crop: str | None = typer.Option(
        None,
        "--crop",
        help="Random training crops HxW from the input-size image.",
        show_default="the input size",
    ),
    backbone: str | None = typer.Option(None, "--backbone", help="Backbone (see `edgeseg models`)."),
    option: list[str] | None = typer.Option(None, "--option", "-o", help="Model option key=value."),
    weights: str | None = typer.Option(None, "--weights", help="Initial weights for the model/backbone."),
    no_augment: bool = typer.Option(False, "--no-augment", help="No random scale/crop/flip/colour."),
    seed: int | None = typer.Option(None, "--seed", **SEED, help="Random seed.", show_default="0"),
    workers: int = typer.Option(0, "--workers", **NON_NEGATIVE, help="DataLoader worker processes."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N."),
    no_amp: bool = typer.Option(False, "--no-amp", help="Disable mixed precision on CUDA."),
    threads: int | None = typer.Option(None, "--threads", **THREADS, help="CPU threads for torch."),
    val_limit: int | None = typer.Option(
        None, "--val-limit", **COUNT, help="Validate on the first N images only."
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Run dir or its last.pt to continue in place, or 'auto'; another checkpoint continues in a new run dir.",
    ),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option("a summary"),
) -> None:
    """Train MODEL on --data; best/last checkpoints go to <workdir>/train/MODEL/<run>/."""
    from edgeseg.lazy import require

    torch = require("torch")
    from edgeseg import workspace
    from edgeseg.cli.options import parse_hw
    from edgeseg.cli.progress import progress_bars
    from edgeseg.training import train
    from edgeseg.training.header import size_origin

    workspace.writable_workdir(workdir)
    if threads:
        torch.set_num_threads(threads)
    kwargs = parse_options(option)
    if backbone:
        kwargs["backbone"] = backbone
    given = {
        "model": model, "data": data, "val_data": val_data, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "optimizer": optimizer, "schedule": schedule, "warmup_iters": warmup,
        "weight_decay": weight_decay, "height": height, "width": width, "seed": seed,
        "crop": parse_hw(crop) if crop else None,
        "model_kwargs": kwargs or None, "weights": weights, "augment": False if no_augment else None,
        "workers": workers, "device": device, "amp": not no_amp, "val_limit": val_limit,
    }  # fmt: skip
    cfg, resume_path = _config(given, resume, workdir)
    with progress_bars(enabled=not json_out) as progress:
        origin = size_origin(
            explicit=height is not None or width is not None, resumed=resume_path is not None
        )
        result = train(
            cfg,
            workdir=workdir,
            resume=resume_path,
            progress=progress,
            log=_log(json_out),
            size_origin=origin,
        )
    if not result.is_main:
        return
    _report(result, json_out)


def _config(given: dict[str, Any], resume: str | None, workdir: Path | None) -> tuple[Any, Path | None]:
    """The TrainConfig: the options given, or with --resume the run's own config with the options
    given on top; and the checkpoint resumed from."""
    from edgeseg import workspace
    from edgeseg.training import TrainConfig, config_for_resume, find_resume

    if not resume:
        return TrainConfig(**{k: v for k, v in given.items() if v is not None}), None
    resume_path = find_resume(resume, workspace.workdir(workdir), given["model"])
    return config_for_resume(resume_path, given), resume_path


def _log(quiet: bool) -> Any:
    """One line per epoch on stderr (the per-step bar is the progress callback's)."""
    if quiet:
        return None
    from edgeseg.console import err_console

    return lambda line: err_console.print(line, highlight=False, soft_wrap=True)  # one line per fact


def _report(result: Any, json_out: bool) -> None:
    from edgeseg.console import console, print_json, table

    if json_out:
        print_json(result.to_dict())
        return
    metrics = result.best_metrics or result.metrics
    if metrics is not None:
        from edgeseg.evaluate import summary_rows

        console.print(
            table(
                f"validation, best epoch {result.best_epoch}: mIoU {metrics.miou:.4f}",
                ["class", "IoU", "accuracy"],
                summary_rows(metrics, result.classes),
            )
        )
        if metrics.absent:
            names = ", ".join(result.classes[i] for i in metrics.absent)
            console.print(f"absent from validation data (excluded from mIoU): {names}")
    console.print(f"best: {result.best}\nlast: {result.last}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
