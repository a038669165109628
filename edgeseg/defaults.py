"""The shipped default model (package data in `edgeseg/assets/`), so `edgeseg run` and `edgeseg eval`
work out of the box. See docs/default-model.md for how it was trained and how well it does."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edgeseg.errors import EdgesegError

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_STEM = "edgeseg-default"
# held-out generated scenes (the generator's evaluation seed, never used in training)
DEFAULT_EVAL_DATA = "synth:100"
# INT8: images calibrated on, and held-out scenes the accuracy gate scores (build and demo alike)
CALIB_IMAGES = 32
GATE_IMAGES = 16

_SUFFIX = {"onnx": ".onnx", "pt": ".pt"}


def default_model_path(kind: Literal["onnx", "pt"] = "onnx") -> Path:
    """Path of the shipped default model as ONNX (runtime, torch-free) or as an edgeseg checkpoint."""
    if kind not in _SUFFIX:
        raise EdgesegError(f"unknown default model kind {kind!r} (onnx, pt)")
    path = ASSETS / f"{DEFAULT_MODEL_STEM}{_SUFFIX[kind]}"
    if not path.is_file():
        raise EdgesegError(
            f"the default model ({path.name}) is not part of this installation; "
            "reinstall edgeseg or pass a model file"
        )
    return path
