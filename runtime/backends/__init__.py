"""Inference backends sharing one contract (`Backend`), chosen by the artifact's file type
(`edgeseg.artifacts.BACKEND_SUFFIXES` owns the table):

.onnx                   -> ONNX Runtime (CPU, or CUDA/TensorRT execution providers when present)
.engine / .plan / .trt  -> TensorRT
.pt / .pth              -> PyTorch checkpoint (reference; imports torch lazily)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgeseg.artifacts import backend_for
from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends.base import Backend, BackendLoader, BackendOptions

# backend name -> (module, class); imported only when used
_CLASSES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("edgeseg.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("edgeseg.runtime.backends.torch", "TorchBackend"),
}


def backend_class(path: str | Path) -> type[Backend]:
    """The Backend class that runs `path`, imported on first use."""
    module_name, class_name = _CLASSES[backend_for(path)]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise EdgesegError(
                f"the backend for {Path(path).suffix} files is not available in this build"
            ) from None
        raise
    return getattr(module, class_name)


def load_backend(artifact: str | Path, **options: Any) -> Backend:
    """Open `artifact` with the backend its file type calls for (options: see BackendOptions)."""
    return BackendLoader(Path(artifact), BackendOptions.from_kwargs(options))()


__all__ = ["Backend", "BackendLoader", "BackendOptions", "backend_class", "load_backend"]
