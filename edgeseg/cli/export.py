"""`edgeseg export MODEL`: PyTorch -> ONNX with metadata, parity check and a TensorRT op report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli import export_options as e
from edgeseg.cli.options import classes_option, json_option, workdir_option
from edgeseg.errors import EdgesegError

_STATUS_STYLE = {"ok": "green", "warning": "yellow", "error": "bold red"}


def _print_report(result: Any) -> None:
    from edgeseg.console import console, fmt, new_table

    trt = result.trt
    if trt is not None:
        t = new_table("TensorRT compatibility (onnx-tensorrt parser)")
        t.add_column("op")
        t.add_column("count", justify="right")
        t.add_column("status")
        t.add_column("note", overflow="fold")
        for op, count, status, note in trt.table_rows():
            style = _STATUS_STYLE[status]
            t.add_row(op, str(count), f"[{style}]{status}[/]", note)
        console.print(t)
    p = result.parity
    if p is not None:
        verdict = "[green]pass[/]" if p.passed else "[bold red]FAIL[/]"
        console.print(
            f"parity (PyTorch vs ONNX Runtime, {p.scenes} generated scenes, {p.pixels:,} px): "
            f"argmax agreement {p.agreement:.4%} (need >= {p.threshold:.1%}), "
            f"max |diff| {p.max_abs_diff_text()}, output {p.output_dtype} -> {verdict}",
            highlight=False,
        )
    s = new_table("export", show_header=False)
    s.add_column("key")
    s.add_column("value", overflow="fold")
    card = result.card
    rows = [
        ("onnx", str(result.path) if result.written else f"{result.path} (not written)"),
        ("card", str(result.card_path) if result.written else "-"),
        ("source", result.source),
        ("input", _input_row(card)),
        (
            "output",
            card.output
            + (f" ({card.extra['export'].get('labels_dtype')})" if card.output == "labels" else ""),
        ),
        ("opset / exporter", f"{result.opset} / {result.exporter}"),
        ("simplifier", result.simplifier or f"none ({result.simplify_note or 'disabled'})"),
        ("nodes", f"{result.nodes_exported} exported -> {result.nodes_final} final"),
        ("ops", ", ".join(f"{k}x{v}" for k, v in result.op_counts.items())),
        ("classes", f"{card.num_classes}: {', '.join(card.classes)}"),
        ("time", f"{fmt(result.seconds)} s"),
    ]
    for k, v in rows:
        s.add_row(k, v)
    console.print(s)


def export_command(
    model: str = e.model(),
    weights: Path | None = e.weights(),
    backbone: str | None = e.backbone(),
    option: list[str] | None = e.option(),
    num_classes: int | None = e.num_classes(),
    classes: str | None = classes_option(),
    height: int | None = e.height(),
    width: int | None = e.width(),
    dynamic: bool = e.dynamic(),
    dynamic_hw: bool = e.dynamic_hw(),
    input_size: str | None = e.input_size(),
    opset: int = e.opset(),
    output: str = e.output(),
    labels_dtype: str = e.labels_dtype(),
    simplify: bool = e.simplify(),
    simplifier: str = e.simplifier(),
    fp16: bool = e.fp16(),
    allow_trt_errors: bool = e.allow_trt_errors(),
    parity_scenes: int = e.parity_scenes(),
    name: str | None = e.name(),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option(),
) -> None:
    """Export MODEL to <workdir>/<name>/<name>.onnx (+ .card.json), check parity and TensorRT op support."""
    from edgeseg.cli.progress import steps
    from edgeseg.console import print_json
    from edgeseg.export.onnx_export import ExportCheckError, export_onnx, resolve_source
    from edgeseg.output_checks import check_apart
    from edgeseg.workspace import check_name, export_path, writable_workdir

    if name is not None:
        check_name(name)
    if simplifier not in ("auto", "onnxsim", "onnxslim"):
        raise EdgesegError(f"--simplifier must be auto, onnxsim or onnxslim, got {simplifier!r}")
    choice = _choice(backbone, option, num_classes, classes, height, width)
    stated = _stated_size(input_size, dynamic_hw)
    root = writable_workdir(workdir)
    n_steps = 4 + int(fp16)  # export, simplify, TensorRT report, parity (+ FP16)
    with steps(n_steps, f"loading {model}") as on_step:
        source = resolve_source(model, root=root, weights=weights, choice=choice)
        if source.random_weights:
            with on_step.paused():
                _warn_random_weights(source)
        out = export_path(root, name or source.card.model)
        check_apart([("the export", out)], [("MODEL", model), ("--weights", weights), ("--classes", classes)])
        try:
            result = export_onnx(
                source.net, out, source.card, height=height, width=width, dynamic=dynamic, dynamic_hw=dynamic_hw,
                inference_size=stated,
                opset=opset, output=output, simplify=(True if simplifier == "auto" else simplifier) if simplify else False,
                labels_dtype=labels_dtype,  # type: ignore[arg-type]
                parity_scenes=parity_scenes, allow_trt_errors=allow_trt_errors, source=source.description,
                checkpoint_sha256=source.checkpoint_sha256, on_step=on_step,
            )  # fmt: skip
        except ExportCheckError as exc:
            on_step.bar.stop()
            if json_out:
                print_json({**exc.result.to_dict(), "error": str(exc)})
            else:
                _print_report(exc.result)
            raise
        fp16_info = fp16_parity = None
        if fp16:
            from edgeseg.export.fp16 import Fp16Check, write_fp16

            on_step("converting to FP16 and checking it against FP32 on ONNX Runtime")
            fp16_path, fp16_parity = write_fp16(result.path, check=Fp16Check(num_scenes=parity_scenes))
            fp16_info = {"path": str(fp16_path), **fp16_parity.to_dict()}
    _show(result, fp16_info, fp16_parity, json_out)


def _stated_size(text: str | None, dynamic_hw: bool) -> tuple[int, int] | None:
    """`--input-size HxW`: the inference size a --dynamic-hw export states (a fixed export has one size)."""
    if text is None:
        return None
    from edgeseg.card import MIN_INPUT_SIDE
    from edgeseg.cli.options import parse_hw

    if not dynamic_hw:
        raise EdgesegError(
            "--input-size states the inference size of a --dynamic-hw export; a fixed export runs at "
            "--height x --width (give those instead)"
        )
    return parse_hw(text, minimum=MIN_INPUT_SIDE)


def _input_row(card: Any) -> str:
    """The export table's input row: the batch axis and the spatial axes, each fixed or dynamic."""
    h, w = card.input_size
    batch = "N" if card.dynamic_batch else "1"
    if card.dynamic:
        return f"{batch}x3xHxW (dynamic; frames resized to {h}x{w}, the stated inference size)"
    return f"{batch}x3x{h}x{w}"


def _warn_random_weights(source: Any) -> None:
    from edgeseg.console import warn

    fix = (
        "Pass your trained weights with --weights."
        if "import" in source.card.extra
        else f"Train first (`edgeseg train {source.card.model}`) or pass --weights."
    )
    warn(
        f"NO TRAINED WEIGHTS for {source.card.model!r} ({source.description}): exporting "
        f"RANDOM weights. The ONNX will run but predict garbage. {fix}"
    )


def _show(result: Any, fp16_info: dict | None, fp16_parity: Any, json_out: bool) -> None:
    """The export's report (table or JSON), TensorRT's warnings and the FP16 copy's parity."""
    from edgeseg.console import console, print_json, warn

    if json_out:
        print_json({**result.to_dict(), "fp16": fp16_info})
        return
    _print_report(result)
    for w in result.trt.warnings if result.trt else []:
        warn(f"TensorRT: {w}")
    if fp16_info and fp16_parity:
        console.print(
            f"FP16 copy: {fp16_info['path']} (argmax agreement with FP32 on ONNX Runtime "
            f"{fp16_parity.agreement:.4%}, max |diff| {fp16_parity.max_abs_diff_text()})",
            highlight=False,
        )
    if result.trt and result.trt.errors:
        warn(f"written despite {len(result.trt.errors)} TensorRT error(s) (--allow-trt-errors)")


def _choice(
    backbone: str | None,
    option: list[str] | None,
    num_classes: int | None,
    classes: str | None,
    height: int | None,
    width: int | None,
) -> Any:
    """The structure flags as a ModelChoice (the same -o parsing as `edgeseg train`)."""
    from edgeseg.cli.options import parse_classes, parse_options
    from edgeseg.models.choice import ModelChoice

    names = palette = None
    if classes is not None:
        count, names, palette = parse_classes(classes)
        if names is None:
            if num_classes is not None and num_classes != count:
                raise EdgesegError(f"--classes {count} and --num-classes {num_classes} disagree")
            num_classes = count
    return ModelChoice(
        backbone=backbone,
        options=parse_options(option),
        num_classes=num_classes,
        classes=names,
        palette=palette,
        input_size=(height, width) if height or width else None,
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
