"""Which runtime runs an artifact when `--backend` does not say: the CPU rule, owned here (measured in
docs/runtime.md, "Which runtime runs an ONNX file"). Below base.py and the package, so both use it."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.artifacts import backend_for, backends_for, variant_of


@dataclass(frozen=True)
class Choice:
    """Which runtime runs an artifact, and why (shown in `edgeseg run`'s report)."""

    backend: str
    reason: str


def choose_backend(path: str | Path, options: Any = None) -> Choice:
    """The runtime for `path` (`options`: its BackendOptions) when `--backend` does not name one: the one rule, measured in
    docs/runtime.md ("Which runtime runs an ONNX file"). An ONNX on the CPU goes to OpenVINO when it is
    installed (it ran every edgeseg file it can read faster than ONNX Runtime), except the QOperator
    INT8 form, which OpenVINO cannot read, and except when `--providers` asks ONNX Runtime for a GPU."""
    providers = options.providers if options is not None else "cpu"
    device = str((options.device if options is not None else None) or "cpu").lower()
    runs = backends_for(path)
    if "openvino" not in runs:
        return Choice(backend_for(path), "the file type's runtime")
    if providers not in (None, "cpu"):
        return Choice("onnxruntime", f"--providers {providers} asks for ONNX Runtime")
    if device.startswith("cuda"):
        return Choice("onnxruntime", "--device cuda is not an OpenVINO device (ONNX Runtime: --providers)")
    if variant_of(path) == "int8-cpu":
        return Choice("onnxruntime", "the QOperator INT8 form is ONNX Runtime's; OpenVINO cannot read it")
    if importlib.util.find_spec("openvino") is None:
        return Choice("onnxruntime", "OpenVINO is not installed (pip install 'edgeseg[openvino]')")
    return Choice("openvino", "installed and faster than ONNX Runtime on this file's kind on a CPU")


def describe_choice(path: str | Path, options: Any) -> Choice:
    """The runtime that runs `path` under `options`, with the reason, for reports."""
    if options.backend:
        return Choice(options.backend, "--backend")
    return choose_backend(path, options)
