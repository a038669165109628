"""Parsers for option values that several commands share."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeseg.card import MAX_INPUT_SIDE, MIN_INPUT_SIDE
from edgeseg.defaults import CALIB_IMAGES, GATE_IMAGES, MAX_MIOU_DROP, MAX_SEED, MAX_THREADS
from edgeseg.errors import EdgesegError

# Ranges every command shares, declared once: Typer turns a value outside them into one line naming
# the option (exit 2), before any work.
SIDE = {"min": MIN_INPUT_SIDE, "max": MAX_INPUT_SIDE}  # an image or input height/width in pixels
COUNT = {"min": 1}  # images, frames, epochs, iterations, items
THREADS = {"min": 1, "max": MAX_THREADS}
SEED = {"min": 0, "max": MAX_SEED}
NON_NEGATIVE = {"min": 0}


def finite(
    *, above: float | None = None, at_least: float | None = None, at_most: float | None = None
) -> Callable[[Any], float]:
    """A Typer `parser` for a float option: a finite number (never nan or inf, which compare false
    with every bound and slipped past the old checks) within the given bounds."""
    import typer

    def parse(value: Any) -> float:
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise typer.BadParameter(f"{value!r} is not a number") from None
        if not math.isfinite(x):
            raise typer.BadParameter(f"{value} is not a finite number")
        if above is not None and x <= above:
            raise typer.BadParameter(f"{value} must be greater than {above:g}")
        if at_least is not None and x < at_least:
            raise typer.BadParameter(f"{value} must be at least {at_least:g}")
        if at_most is not None and x > at_most:
            raise typer.BadParameter(f"{value} must be at most {at_most:g}")
        return x

    parse.__name__ = "float"  # the metavar Typer shows in --help
    return parse


def parse_hw(text: str, minimum: int = 16, maximum: int = MAX_INPUT_SIDE) -> tuple[int, int]:
    """'256x512' -> (256, 512), or one clear error (both sides within minimum..maximum)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgesegError(f"expected HxW such as 256x512, got {text!r}") from None
    if h < minimum or w < minimum:
        raise EdgesegError(f"size must be at least {minimum}x{minimum}, got {text}")
    if h > maximum or w > maximum:
        raise EdgesegError(f"size must be at most {maximum}x{maximum}, got {text}")
    return h, w


def input_size_option() -> Any:
    """`--input-size HxW` (run, eval, bench, ros2): another inference size for a model exported with
    --dynamic-hw (BackendOptions.input_size, which stream() and Segmenter take alike)."""
    import typer

    return typer.Option(
        None,
        "--input-size",
        help="Resize frames to HxW: a model exported with --dynamic-hw takes other sizes than its stated one.",
        show_default="the size in the model's card",
    )


def native_size_option() -> Any:
    """`--native-size` (run, eval, bench, ros2): each frame at its own size, for a model exported with
    --dynamic-hw (BackendOptions.input_size="native")."""
    import typer

    return typer.Option(
        False,
        "--native-size",
        help="A model exported with --dynamic-hw: run each frame at its own size (padded to a multiple of "
        "32) instead of resizing it; cost and accuracy then follow the frame's size.",
    )


def parse_inference_size(text: str | None, native: bool) -> tuple[int, int] | str | None:
    """--input-size HxW or --native-size as an inference size (edgeseg.preprocess.at_inference_size):
    one of them, or neither."""
    from edgeseg.preprocess import NATIVE

    if text is not None and native:
        raise EdgesegError("--input-size resizes frames, --native-size runs them at their own size: give one")
    if native:
        return NATIVE
    return parse_hw(text, minimum=MIN_INPUT_SIDE) if text is not None else None


def model_option() -> Any:
    """`--model`, the artifact or export a streaming command runs (run, ros2), found as
    `workspace.find_artifact` finds it."""
    import typer

    return typer.Option(
        None,
        "--model",
        "-m",
        help="Artifact (.onnx/.engine/.pt) or exported model name (NAME or NAME.VARIANT).",
        show_default="the newest export in the workspace, else the shipped model",
    )


def card_option() -> Any:
    """`--card CARD.json`, for every command that reads an artifact made elsewhere."""
    import typer

    return typer.Option(
        None, "--card", help="Model card JSON for an artifact made elsewhere (`edgeseg card` writes one)."
    )


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """`-o key=value` model options; values parsed as JSON when possible (numbers, booleans, lists)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EdgesegError(f"model option {pair!r} must look like key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_classes(text: str) -> tuple[int, list[str] | None, list[tuple[int, int, int]] | None]:
    """`--classes FILE|N`: (count, names, colours); a number gives only the count.

    FILE is a classes.txt (one name per line, optionally `name R G B`) or a classes.json, the formats
    of the plain dataset folder (edgeseg/data/plain.py).
    """
    if text.strip().isdigit():
        n = int(text)
        if n < 1:
            raise EdgesegError(f"--classes must name at least one class, got {text}")
        return n, None, None
    from edgeseg.data.plain import read_class_list

    names, palette = read_class_list(Path(text).expanduser())
    return len(names), names, palette


def classes_option() -> Any:
    """`--classes FILE|N` (`parse_classes`), for commands that name a net's classes (export, card)."""
    import typer

    return typer.Option(
        None, "--classes", help="Class names: a classes.txt/classes.json file, or a count N (class_0 ...)."
    )


def threads_option() -> Any:
    """`--threads`, the CPU threads a model runs on, for commands that run one (run, eval, ros2)."""
    import typer

    return typer.Option(
        None,
        "--threads",
        **THREADS,
        help="CPU threads for inference (with --workers, shared by the workers).",
        show_default="all cores",
    )


def threads_per_backend_option() -> Any:
    """`--threads` of bench and demo, which measure each artifact in turn with the same threads."""
    import typer

    return typer.Option(2, "--threads", **THREADS, help="CPU threads per backend.")


def allow_other_gpu_option() -> Any:
    """`--allow-other-gpu`, for commands that run a TensorRT engine."""
    import typer

    return typer.Option(
        False,
        "--allow-other-gpu",
        help="TensorRT: run an engine built on another module of the same GPU (same name and compute "
        "capability, other SM count or memory, e.g. Orin AGX vs NX).",
    )


def workdir_option() -> Any:
    """`--workdir`, where every command finds the previous one's output."""
    import typer

    return typer.Option(
        None, "--workdir", help="Workspace folder.", show_default="$EDGESEG_WORKDIR, else ./edgeseg-work"
    )


def backend_option() -> Any:
    """`--backend`: which runtime runs the artifact, and the file type picked when the model is a name."""
    import typer

    return typer.Option(
        None,
        "--backend",
        help="Run on this backend (onnxruntime or openvino: .onnx, tensorrt: .engine, torch: .pt); with "
        "--model a name or omitted, a file of its type is picked.",
        show_default="the file type's; an .onnx on the CPU: the rule in docs/runtime.md",
    )


def providers_option() -> Any:
    """`--providers`, for commands that run ONNX files."""
    import typer

    return typer.Option("cpu", "--providers", help="ONNX Runtime providers: cpu or auto.")


def device_option() -> Any:
    """`--device`, for commands that run PyTorch checkpoints or OpenVINO."""
    import typer

    return typer.Option(
        "cpu",
        "--device",
        help="PyTorch checkpoints: cpu, cuda, auto; OpenVINO: cpu, gpu, npu, auto (the Intel devices present).",
    )


def json_option(what: str = "the result") -> Any:
    """`--json`: print `what` as JSON on standard output instead of tables."""
    import typer

    return typer.Option(False, "--json", help=f"Print {what} as JSON.")


def report_option() -> Any:
    """`--report FILE`, for commands that stream (run, ros2)."""
    import typer

    return typer.Option(None, "--report", help="Write the final report as JSON.")


def alpha_option() -> Any:
    """`--alpha`, the overlay's opacity, for commands that draw one (run, ros2)."""
    import typer

    return typer.Option(0.5, "--alpha", parser=finite(at_least=0, at_most=1), help="Overlay opacity, 0..1.")


# The INT8 accuracy gate's options, for every command that builds INT8 (build, demo)
def calib_images_option() -> Any:
    """`--calib-images N`: how many images calibrate INT8."""
    import typer

    return typer.Option(CALIB_IMAGES, "--calib-images", **COUNT, help="Calibration images (stratified).")


def eval_images_option() -> Any:
    """`--eval-images N`: generated held-out scenes the gate scores on."""
    import typer

    return typer.Option(
        GATE_IMAGES,
        "--eval-images",
        **COUNT,
        help="Generated held-out scenes (synth) for the INT8 accuracy gate.",
    )


def max_miou_drop_option() -> Any:
    """`--max-miou-drop`: the INT8 gate's limit, in mIoU points."""
    import typer

    return typer.Option(
        MAX_MIOU_DROP, "--max-miou-drop", parser=finite(at_least=0), help="Allowed INT8 mIoU loss in points."
    )
