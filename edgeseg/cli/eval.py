"""`edgeseg eval [ARTIFACT] --data PATH`: mIoU of a checkpoint, ONNX model or engine, one code path."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeseg.cli.options import (
    allow_other_gpu_option,
    backend_option,
    card_option,
    device_option,
    input_size_option,
    json_option,
    native_size_option,
    providers_option,
    threads_option,
    workdir_option,
)


def eval_command(
    artifact: str | None = typer.Argument(
        None,
        help="A .pt/.onnx/.engine file or a model name (newest training run, else its export).",
        show_default="the newest export in the workspace, else the shipped model",
    ),
    card_file: Path | None = card_option(),
    allow_other_gpu: bool = allow_other_gpu_option(),
    data: str | None = typer.Option(
        None,
        "--data",
        "-d",
        help="Dataset: folder or synth:N.",
        show_default="held-out synth scenes for a street-scene model",
    ),
    split: str | None = typer.Option(None, "--split", help="Dataset split (e.g. val) where it has splits."),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate the first N images only."),
    providers: str = providers_option(),
    backend: str | None = backend_option(),
    device: str = device_option(),
    threads: int | None = threads_option(),
    input_size: str | None = input_size_option(),
    native_size: bool = native_size_option(),
    plots: Path | None = typer.Option(None, "--plots", help="Write per-class IoU and confusion PNGs here."),
    crf: bool = typer.Option(
        False,
        "--crf",
        help="Refine every prediction with DeepLab's dense CRF (CPU post-processing; "
        "pip install 'edgeseg\\[crf]').",  # \[: rich would read [crf] as markup
    ),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option(),
) -> None:
    """Evaluate ARTIFACT on --data: mIoU, pixel accuracy, mean class accuracy, per-class IoU."""
    from edgeseg import workspace
    from edgeseg.artifacts import read_card
    from edgeseg.cli.options import parse_inference_size
    from edgeseg.cli.progress import progress_bars
    from edgeseg.data import open_dataset
    from edgeseg.defaults import DEFAULT_EVAL_DATA
    from edgeseg.errors import EdgesegError
    from edgeseg.evaluate import confusion
    from edgeseg.preprocess import inference_size
    from edgeseg.runtime.backends import BackendOptions
    from edgeseg.runtime.segmenter import Segmenter

    if limit is not None and limit < 1:
        raise EdgesegError(f"--limit must be at least 1, got {limit}")
    size = parse_inference_size(input_size, native_size)
    crf_params = None
    if crf:
        from edgeseg.crf import CRFParams, require_crf

        require_crf()  # a missing library is one line before any model loads
        crf_params = CRFParams()
    if plots is not None:
        from edgeseg.output_checks import check_writable

        check_writable(plots, "--plots", folder=True)  # before minutes of evaluation, not after
    path = workspace.find_artifact(
        artifact, workspace.workdir(workdir), backend=backend, checkpoint_first=True
    )
    if plots is not None:
        from edgeseg.output_checks import check_apart

        check_apart(
            [("--plots", plots / name) for name in ("per_class_iou.png", "confusion_matrix.png")],
            [("ARTIFACT", path), ("--card", card_file), ("--data", data)],
            inside={"--plots"},
        )
    if data is None:
        if artifact not in (None, "default"):
            raise EdgesegError("pass --data PATH (a dataset folder or synth:N) to evaluate on")
        data = DEFAULT_EVAL_DATA
    options = BackendOptions(
        backend=backend,
        providers=providers,
        device=device,
        threads=threads,
        card=read_card(path, card_file) if card_file else None,
        allow_other_gpu=allow_other_gpu,
        input_size=size,  # a --dynamic-hw model at another size, or each image's own
    )
    segmenter = Segmenter(path, options)
    dataset = open_dataset(data, split=split)
    n = min(limit, len(dataset)) if limit else len(dataset)
    with progress_bars(enabled=not json_out) as progress:
        cm = confusion(segmenter, dataset, indices=range(n), progress=progress, crf=crf_params)
    metrics = cm.compute()
    classes = list(dataset.classes)
    written = []
    if plots is not None:
        from edgeseg import plots as plotting

        written.append(plotting.iou_bars(metrics, classes, plots / "per_class_iou.png", dataset.palette))
        written.append(plotting.confusion_matrix(cm.matrix, classes, plots / "confusion_matrix.png"))
    ran = {**segmenter.backend.describe(), "inference_size": inference_size(segmenter.card)}
    dynamic = segmenter.card.dynamic
    segmenter.close()
    _report(path, data, n, metrics, classes, written, json_out, cm.matrix.tolist(), crf_params, ran, dynamic)


def _report(path, data, n, metrics, classes, written, json_out, matrix, crf_params, ran, dynamic) -> None:
    from edgeseg.console import console, print_json, table
    from edgeseg.evaluate import summary_rows

    if json_out:
        print_json(
            {
                "artifact": str(path),
                "backend": ran,
                "data": data,
                "images": n,
                "crf": crf_params.to_dict() if crf_params else None,
                **metrics.to_dict(classes),
                "confusion": matrix,
                "plots": [str(p) for p in written],
            }
        )
        return
    console.print(
        table(
            f"{path.name} on {data} ({n} images, {ran['backend']}{', dense CRF' if crf_params else ''})",
            ["metric", "value"],
            [
                ["mIoU", metrics.miou],
                ["pixel accuracy", metrics.pixel_accuracy],
                ["mean class accuracy", metrics.mean_class_accuracy],
            ],
        )
    )
    console.print(table("per class", ["class", "IoU", "accuracy"], summary_rows(metrics, classes)))
    if metrics.absent:
        names = ", ".join(classes[i] for i in metrics.absent)
        console.print(f"absent from both prediction and ground truth, excluded from mIoU: {names}")
    if dynamic:  # accuracy follows the size a --dynamic-hw model ran at: say which (as run does)
        how = ran["inference_size"]["how"]
        console.print(f"[dim]images: {how} (--input-size HxW, --native-size)[/]", highlight=False)
    for p in written:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
