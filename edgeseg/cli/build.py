"""`edgeseg build [MODEL]`: FP16 / calibrated, mIoU-gated INT8 artifacts for ONNX Runtime or TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgeseg.cli import build_options as b
from edgeseg.cli.options import (
    calib_images_option,
    card_option,
    eval_images_option,
    json_option,
    max_miou_drop_option,
    workdir_option,
)


def _print_report(report: Any) -> None:
    from edgeseg.console import console, table

    def size(n: int) -> str:
        return f"{n / 1e6:.2f} MB" if n else "-"

    if report.stats is not None:
        d = report.stats.describe()
        console.print(
            f"calibration: {d['method']} on {d.get('images')} image(s) from {d.get('spec')} "
            f"(seed {d.get('seed')}), {d['tensors']} tensors, "
            + ("[green]reused from cache[/]" if d["from_cache"] else f"cached in {d['cache']}"),
            highlight=False,
        )
    ref = (
        "ground truth" if report.reference == "labels" else "FP32 predictions (no labels for this class set)"
    )
    rows = [
        [
            r.artifact.name,
            r.precision,
            size(r.size_bytes),
            _fraction(r.miou),
            None if r.precision == "fp32" or r.drop is None else f"{r.drop:+.2f}",
            None if r.agreement is None else f"{100 * r.agreement:.2f}%",
            r.note,
        ]
        for r in report.rows
    ]
    t = table(
        f"build: {report.model.name} (eval {report.eval_spec}, vs {ref})",
        ["artifact", "precision", "size", "mIoU", "drop (points)", "argmax agree", "note"],
        rows,
    )
    t.columns[0].min_width = min(
        40, max(len(r.artifact.name) for r in report.rows)
    )  # names must stay readable
    t.columns[-1].overflow = "fold"
    console.print(t)
    scored = {}
    for r in report.rows:
        if r.runtime:
            scored.setdefault(r.runtime, []).append(r.precision)
    if scored:
        on = "; ".join(f"{rt}: {', '.join(p)}" for rt, p in scored.items())
        console.print(
            f"[dim]scored with {on} (docs/int8.md: which runtime scores which file)[/]", highlight=False
        )
    if report.gates:
        classes = report.card.classes
        cols = ["class", "FP32 IoU"] + [f"INT8 {g.form} IoU" for g in report.gates]
        per_class = []
        for i, name in enumerate(classes):
            fp = report.gates[0].fp32.iou[i]
            per_class.append([name, _iou(fp)] + [_iou(g.int8.iou[i]) for g in report.gates])
        console.print(table("per-class IoU", cols, per_class))
        for g in report.gates:
            if g.attempts and len(g.attempts) > 1 or not g.passed:
                steps = [
                    [
                        len(a.excluded),
                        ", ".join(a.excluded[-1:]) or "-",
                        _fraction(a.miou),
                        f"{a.drop_points:+.2f}",
                        a.passed,
                    ]
                    for a in g.attempts
                ]
                console.print(
                    table(
                        f"fallback ({g.form}): layers moved back to float, most sensitive first",
                        ["# float", "added", "mIoU", "drop (points)", "within limit"],
                        steps,
                    )
                )


def _fraction(miou: float | None) -> str | None:
    """mIoU as every command shows it (0..1); the gate's drop stays in points (1 point = 0.01)."""
    return None if miou is None else f"{miou:.4f}"


def _iou(x: float) -> str | None:
    return None if x != x else f"{x:.3f}"


def build_command(
    model: str | None = b.model(),
    target: str = b.target(),
    fp16: bool = b.fp16(),
    int8: bool = b.int8(),
    int8_forms: str = b.int8_forms(),
    calib_data: str | None = b.calib_data(),
    calib_images: int = calib_images_option(),
    calib_method: str = b.calib_method(),
    calib_seed: int = b.calib_seed(),
    calib_cache: Path | None = b.calib_cache(),
    eval_data: str | None = b.eval_data(),
    eval_images: int = eval_images_option(),
    max_miou_drop: float = max_miou_drop_option(),
    max_fallback_layers: int | None = b.max_fallback_layers(),
    cpu_format: str = b.cpu_format(),
    qdq_engine: str = b.qdq_engine(),
    threads: int | None = b.threads(),
    card_file: Path | None = card_option(),
    # --- TensorRT options (BuildOptions.engine) ---
    workspace: int | None = b.workspace(),
    timing_cache: Path | None = b.timing_cache(),
    dla_core: int | None = b.dla_core(),
    min_shape: str | None = b.min_shape(),
    opt_shape: str | None = b.opt_shape(),
    max_shape: str | None = b.max_shape(),
    version_compatible: bool = b.version_compatible(),
    builder_optimization_level: int | None = b.builder_optimization_level(),
    legacy_calibrator: bool = b.legacy_calibrator(),
    workers: int = b.workers(),
    max_batch: int | None = b.max_batch(),
    workdir: Path | None = workdir_option(),
    json_out: bool = json_option(),
) -> None:
    """Build FP16 / INT8 artifacts beside the export; INT8 is gated on measured mIoU (--max-miou-drop)."""
    from edgeseg.build import build
    from edgeseg.cli.progress import progress_bars
    from edgeseg.workspace import build_lock, require_export
    from edgeseg.workspace import workdir as resolve_workdir

    engine = None
    if target == "tensorrt":
        engine = b.engine_options(
            fp16=fp16, int8=int8, workspace=workspace, timing_cache=timing_cache, dla_core=dla_core,
            min_shape=min_shape, opt_shape=opt_shape, max_shape=max_shape,
            version_compatible=version_compatible, builder_optimization_level=builder_optimization_level,
            legacy_calibrator=legacy_calibrator, workers=workers, max_batch=max_batch,
        )  # fmt: skip
    opts = b.build_options(
        target=target, fp16=fp16, int8=int8, int8_forms=int8_forms, calib_data=calib_data,
        calib_images=calib_images, calib_method=calib_method, calib_seed=calib_seed, calib_cache=calib_cache,
        eval_data=eval_data, eval_images=eval_images, max_miou_drop=max_miou_drop,
        max_fallback_layers=max_fallback_layers, cpu_format=cpu_format, qdq_engine=qdq_engine,
        threads=threads, card_file=card_file, engine=engine,
    )  # fmt: skip
    onnx_path = require_export(resolve_workdir(workdir), model)
    _check_paths(onnx_path, opts, card_file)
    with build_lock(onnx_path.parent), progress_bars(enabled=not json_out) as progress:
        result = build(onnx_path, opts, progress=progress)
    _show(result, json_out, target)


def _check_paths(onnx_path: Path, opts: Any, card_file: Path | None) -> None:
    """Before any work: the statistics cache overwrites no input, and the artifacts' folder (beside
    the export) is writable."""
    from edgeseg.output_checks import check_apart, check_writable

    check_apart(
        [("--calib-cache", opts.calib_cache)],
        [
            ("MODEL", onnx_path),
            ("--card", card_file),
            ("--calib-data", opts.calib_data),
            ("--eval-data", opts.eval_data),
        ],
        inside={"--calib-cache"},
    )
    check_writable(onnx_path.parent, f"the folder of {onnx_path.name}", folder=True)


def _show(result: Any, json_out: bool, target: str) -> None:
    """Print what the build made (table or JSON), then exit as its outcome says: the gate's failure,
    the hand-off to the device, or success."""
    from edgeseg.console import print_json
    from edgeseg.errors import ExitCode

    if result.rows:
        if json_out and target == "onnxruntime":  # TensorRT prints the engine or hand-off instead
            print_json(result.to_dict())
        elif not json_out:
            _print_report(result)
    if result.failure is not None:
        raise result.failure
    if result.handoff is not None:
        if json_out:
            print_json(result.handoff.to_dict())
        else:
            _print_handoff(result.handoff)
        raise typer.Exit(ExitCode.NEEDS_DEVICE)
    if result.engine is not None:
        if json_out:
            info = result.engine.info
            print_json(
                {
                    **info,
                    "status": "built",
                    "engine": str(result.engine.engine),
                    "sidecar": str(result.engine.sidecar),
                }
            )
        else:
            _print_engine(result.engine.info, result.engine.engine)


def _print_handoff(handoff: Any) -> None:
    from edgeseg.console import console
    from edgeseg.errors import ExitCode
    from edgeseg.export.tensorrt_plan import HANDOFF_LABELS

    console.print(f"[bold yellow]{handoff.reason}[/]: the engine must be built on the target device.")
    console.print(
        f"Copy {handoff.folder} (it holds {handoff.onnx.name}, the TensorRT-ready {handoff.precision} ONNX) "
        "to the device, with edgeseg or trtexec installed; in that folder run one of:",
        highlight=False,
        soft_wrap=True,
    )
    for key, command in handoff.commands.items():
        console.print(f"  {command}    [dim]# {HANDOFF_LABELS[key]}[/]", highlight=False, soft_wrap=True)
    for note in handoff.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False, soft_wrap=True)
    console.print(
        f"[dim]exit code {int(ExitCode.NEEDS_DEVICE)}: nothing failed, the engine build is pending on the device[/]"
    )


def _print_engine(info: dict[str, Any], engine: Path) -> None:
    import json

    from edgeseg.console import console, table

    rows = [
        ["engine", str(engine)],
        ["TensorRT", info["tensorrt_version"]],
        ["GPU", f"{info['gpu']['name']} (sm {info['gpu']['compute_capability']})"],
        ["precision", info["precision"]],
        ["network flags", ", ".join(info["network_flags"]) or "-"],
        ["builder flags", ", ".join(info["builder_flags"]) or "-"],
        ["profiles", json.dumps(info["profiles"]) if info["profiles"] else "static"],
        ["DLA core", info["dla_core"]],
        [
            "timing cache",
            f"{info['timing_cache']} ({'reused' if info['timing_cache_reused'] else 'new'})"
            if info["timing_cache"]
            else None,
        ],
        ["build time (s)", info["build_seconds"]],
    ]
    console.print(table("TensorRT engine", ["", "value"], rows))
    for note in info["notes"]:
        console.print(f"[dim]note: {note}[/]")


def register(app: typer.Typer) -> None:
    app.command("build")(build_command)
