"""Inference backends sharing one contract (`Backend`), chosen by the artifact's file type
(`edgeseg.artifacts.BACKEND_SUFFIXES` owns the table):

.onnx                   -> ONNX Runtime (CPU, or CUDA/TensorRT execution providers when present),
                           or OpenVINO (CPU, Intel GPU/NPU; `edgeseg[openvino]`); `choose_backend`
.engine / .plan / .trt  -> TensorRT
.pt / .pth              -> PyTorch checkpoint (reference; imports torch lazily)
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.runtime.backends.base import Backend, BackendLoader, BackendOptions, given_options
from edgeseg.runtime.backends.choice import Choice, choose_backend, describe_choice
from edgeseg.runtime.backends.classes import backend_class


def load_backend(artifact: str | Path, options: BackendOptions | None = None) -> Backend:
    """Open `artifact` with the backend `options` name, else the one its file type calls for."""
    return BackendLoader(Path(artifact), given_options(options))()


__all__ = [
    "Backend",
    "BackendLoader",
    "BackendOptions",
    "Choice",
    "backend_class",
    "choose_backend",
    "describe_choice",
    "load_backend",
]
