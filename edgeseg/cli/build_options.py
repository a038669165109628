"""The options of `edgeseg build`, one definition each (the command's signature lists them in --help
order), and the two objects they become: `BuildOptions` (what to build) with its `EngineOptions`
(TensorRT). Options other commands share (--card, --workdir, --json and the INT8 gate's --calib-images,
--eval-images, --max-miou-drop, which `edgeseg demo` takes too) live in options.py."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from edgeseg.cli.options import NON_NEGATIVE, THREADS
from edgeseg.defaults import CPU_INT8_FORMAT, ENGINE_MAX_BATCH

if TYPE_CHECKING:
    from edgeseg.build import BuildOptions
    from edgeseg.export.tensorrt_plan import EngineOptions


def model() -> Any:
    return typer.Argument(None, help="Export name, .onnx path, or nothing for the newest export.")


def target() -> Any:
    return typer.Option("onnxruntime", "--target", help="onnxruntime (CPU artifacts) or tensorrt (engine).")


def fp16() -> Any:
    return typer.Option(False, "--fp16", help="Write an FP16 graph (FP32 I/O).")


def int8() -> Any:
    return typer.Option(False, "--int8", help="Calibrate and write mIoU-gated INT8 artifacts.")


def int8_forms() -> Any:
    return typer.Option(
        "cpu,qdq", "--int8-forms", help="onnxruntime target: cpu (ORT U8S8) and/or qdq (TensorRT-form Q/DQ)."
    )


def calib_data() -> Any:
    return typer.Option(
        None,
        "--calib-data",
        help="synth, dataset folder, video file, or quoted image glob.",
        show_default="synth for a street-scene model, else required",
    )


def calib_method() -> Any:
    return typer.Option("entropy", "--calib-method", help="entropy, minmax or percentile.")


def calib_seed() -> Any:
    return typer.Option(0, "--calib-seed", help="Seed of the calibration image selection.")


def calib_cache() -> Any:
    return typer.Option(
        None, "--calib-cache", help="Statistics cache.", show_default="<model>.calib.json beside the model"
    )


def eval_data() -> Any:
    return typer.Option(
        None,
        "--eval-data",
        help="Held-out data for the gate: synth[:N] or a dataset folder.",
        show_default="synth for a street-scene model, else the calibration data",
    )


def max_fallback_layers() -> Any:
    return typer.Option(
        None,
        "--max-fallback-layers",
        **NON_NEGATIVE,
        help="Stop falling back after this many float layers.",
        show_default="all",
    )


def cpu_format() -> Any:
    return typer.Option(CPU_INT8_FORMAT, "--cpu-format", help="CPU INT8 format: qoperator or qdq.")


def qdq_engine() -> Any:
    return typer.Option(
        "auto",
        "--qdq-engine",
        help="TensorRT-form placement: auto (ModelOpt if installed), onnxruntime, modelopt.",
    )


def threads() -> Any:
    return typer.Option(None, "--threads", **THREADS, help="ONNX Runtime threads for evaluation.")


# --- TensorRT (EngineOptions) ----------------------------------------------------------------------
def workspace() -> Any:
    return typer.Option(None, "--workspace", min=1, help="TensorRT: builder workspace in MB.")


def timing_cache() -> Any:
    return typer.Option(None, "--timing-cache", help="TensorRT: timing cache file.")


def dla_core() -> Any:
    return typer.Option(None, "--dla-core", **NON_NEGATIVE, help="TensorRT: build for this DLA core.")


def min_shape() -> Any:
    return typer.Option(None, "--min-shape", help="TensorRT: min input shape, e.g. 1x3x256x512.")


def opt_shape() -> Any:
    return typer.Option(None, "--opt-shape", help="TensorRT: optimal input shape.")


def max_shape() -> Any:
    return typer.Option(None, "--max-shape", help="TensorRT: max input shape.")


def version_compatible() -> Any:
    return typer.Option(False, "--version-compatible", help="TensorRT: version-compatible.")


def builder_optimization_level() -> Any:
    return typer.Option(
        None, "--builder-optimization-level", min=0, max=5, help="TensorRT: builder optimization level (0-5)."
    )


def legacy_calibrator() -> Any:
    return typer.Option(
        False, "--legacy-calibrator", help="TensorRT 8.6/10.x: implicit INT8 calibrator instead of Q/DQ."
    )


def workers() -> Any:
    return typer.Option(
        1,
        "--workers",
        help="TensorRT: workers that will run a dynamic-shape engine at once (8.5 needs a profile each).",
    )


def max_batch() -> Any:
    return typer.Option(
        None,
        "--max-batch",
        min=1,
        help="TensorRT, an ONNX exported with --dynamic: the most streams that batch their frames (the "
        "profile takes batches 1..N, tuned for N).",
        show_default=f"{ENGINE_MAX_BATCH}",
    )


# --- options -> objects ----------------------------------------------------------------------------
def engine_options(
    *,
    fp16: bool,
    int8: bool,
    workspace: int | None,
    timing_cache: Path | None,
    dla_core: int | None,
    min_shape: str | None,
    opt_shape: str | None,
    max_shape: str | None,
    version_compatible: bool,
    builder_optimization_level: int | None,
    legacy_calibrator: bool,
    workers: int,
    max_batch: int | None = None,
) -> EngineOptions:
    """The TensorRT options (`--target tensorrt`), checked when made (EngineOptions)."""
    from edgeseg.export.tensorrt_plan import EngineOptions, parse_shape

    return EngineOptions(
        precision="int8" if int8 else "fp16" if fp16 else "fp32", workspace_mib=workspace,
        timing_cache=timing_cache, dla_core=dla_core, min_shape=parse_shape(min_shape),
        opt_shape=parse_shape(opt_shape), max_shape=parse_shape(max_shape),
        version_compatible=version_compatible, optimization_level=builder_optimization_level,
        legacy_calibrator=legacy_calibrator, workers=workers, max_batch=max_batch,
    )  # fmt: skip


def build_options(
    *, int8_forms: str, card_file: Path | None, engine: EngineOptions | None, **options: Any
) -> BuildOptions:
    """`BuildOptions` from the command's values, checked when made, so an option mistake fails before
    the workspace is looked at. `engine`: the TensorRT options (`engine_options`), None for `--target
    onnxruntime`; `options`: BuildOptions' other fields, by name."""
    from edgeseg.build import BuildOptions
    from edgeseg.card import ModelCard

    return BuildOptions(
        forms=tuple(f.strip() for f in int8_forms.split(",") if f.strip()),
        card=ModelCard.load_json(card_file) if card_file else None,
        engine=engine,
        **options,
    )
