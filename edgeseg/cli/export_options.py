"""The options of `edgeseg export`, one definition each (the command's signature lists them in --help
order). Options other commands share (--classes, --workdir, --json) live in options.py."""

from __future__ import annotations

from typing import Any

import typer

from edgeseg.cli.options import SIDE


def model() -> Any:
    return typer.Argument(
        ...,
        help="Registry name (e.g. fcn8s), an edgeseg checkpoint (.pt), or an import: torchvision:NAME, "
        "smp:ARCH, hf:FOLDER, python:MODULE:CALLABLE (see docs/models.md).",
    )


def weights() -> Any:
    return typer.Option(
        None,
        "--weights",
        help="Weights for MODEL: edgeseg checkpoint, state_dict (.pt/.pth, read with weights_only) or .safetensors.",
    )


def backbone() -> Any:
    return typer.Option(
        None, "--backbone", "--encoder", help="Backbone of a zoo model, or the encoder of smp:ARCH."
    )


def option() -> Any:
    return typer.Option(
        None,
        "--option",
        "-o",
        help="Model option key=value (repeatable; for python: the callable's arguments).",
    )


def num_classes() -> Any:
    return typer.Option(
        None, "--num-classes", min=1, help="Classes of a net without weights (with weights: read from them)."
    )


def height() -> Any:
    return typer.Option(
        None,
        "--height",
        **SIDE,
        help="Input height.",
        show_default="the checkpoint's or hf folder's, else 512",
    )


def width() -> Any:
    return typer.Option(
        None,
        "--width",
        **SIDE,
        help="Input width.",
        show_default="the checkpoint's or hf folder's, else 1024",
    )


def dynamic() -> Any:
    return typer.Option(
        False, "--dynamic", help="Dynamic batch (several streams batch their frames); H x W stay fixed."
    )


def dynamic_hw() -> Any:
    return typer.Option(
        False,
        "--dynamic-hw",
        help="Dynamic height and width too. Frames are still resized to a stated inference size "
        "(--input-size, else --height x --width); `run --input-size HxW` picks another, `run --native-size` "
        "runs each frame at its own size (slower on large frames, accuracy follows the size).",
    )


def input_size() -> Any:
    return typer.Option(
        None,
        "--input-size",
        help="With --dynamic-hw: the inference size HxW written in the card, which frames are resized to.",
        show_default="--height x --width",
    )


def opset() -> Any:
    return typer.Option(17, "--opset", help="ONNX opset (TensorRT 8.5/8.6 parse up to 17, 10.x up to 20).")


def output() -> Any:
    return typer.Option("logits", "--output", help="logits (NxCxHxW float) or labels (in-graph ArgMax).")


def labels_dtype() -> Any:
    return typer.Option(
        "int32",
        "--labels-dtype",
        help="Class-map dtype for --output labels: int32 (every TensorRT builds it) or uint8 (ONNX Runtime only).",
    )


def simplify() -> Any:
    return typer.Option(True, "--simplify/--no-simplify", help="Simplify the graph after export.")


def simplifier() -> Any:
    return typer.Option(
        "auto",
        "--simplifier",
        help="auto (onnxsim, + onnxslim on static graphs if smaller), onnxsim, onnxslim.",
    )


def fp16() -> Any:
    return typer.Option(False, "--fp16", help="Also write <name>.fp16.onnx (FP16 graph, FP32 I/O).")


def allow_trt_errors() -> Any:
    return typer.Option(False, "--allow-trt-errors", help="Write the ONNX even if TensorRT would reject ops.")


def parity_scenes() -> Any:
    return typer.Option(3, "--parity-scenes", min=1, help="Generated scenes for the parity check.")


def name() -> Any:
    return typer.Option(None, "--name", help="Export name.", show_default="the model name")
