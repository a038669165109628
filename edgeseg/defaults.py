"""The one table of defaults that more than one command, option or function shares, and the shipped
default model (package data in `edgeseg/assets/`), so `edgeseg run` and `edgeseg eval` work out of the
box (docs/default-model.md says how it was trained and how well it does).

A default lives here and nowhere else: options, dataclass fields and function parameters name these
constants (tests/test_architecture.py fails when one of them is written as a literal elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from edgeseg.errors import EdgesegError

ASSETS = Path(__file__).resolve().parent / "assets"
# CPU threads and inference workers a command may ask for: more than any CPU has cores (each is an OS
# thread or a model copy; 100000 spent minutes creating threads before the first frame)
MAX_THREADS = 1024
MAX_WORKERS = 64
# a random seed: what every generator takes (torch.manual_seed overflows past 64 bits)
MAX_SEED = 2**32 - 1
# the lowest frame rate a generated video is written at: OpenCV's FFmpeg writer refuses 0.001 fps or
# less in every container edgeseg writes (mp4v, MJPG, VP80; measured with OpenCV 5.1)
MIN_VIDEO_FPS = 0.01
DEFAULT_MODEL_STEM = "edgeseg-default"
# held-out generated scenes (the generator's evaluation seed, never used in training)
DEFAULT_EVAL_DATA = "synth:100"
# INT8: images calibrated on, and held-out scenes the accuracy gate scores (build and demo alike)
CALIB_IMAGES = 32
GATE_IMAGES = 16
# INT8: the most mIoU an INT8 artifact may lose against FP32, in points (1 point = 0.01 mIoU)
MAX_MIOU_DROP = 1.0
# CPU INT8 format: QOperator measured fastest on ONNX Runtime's x86 kernels (docs/int8.md)
CPU_INT8_FORMAT = "qoperator"
# TensorRT: the largest batch a dynamic-batch engine's profile takes unless --max-batch says (the
# multi-stream runtime sends one frame per stream, so this many streams batch fully)
ENGINE_MAX_BATCH = 4

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
