"""Inference backends sharing one interface (`Backend`), chosen by the artifact's file type.

.onnx            -> ONNX Runtime (CPU, or CUDA/TensorRT execution providers when present)
.engine / .plan  -> TensorRT
.pt / .pth       -> PyTorch checkpoint (reference; imports torch lazily)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends.base import Backend

# file suffix -> (module, class) ; imported only when used
_BY_SUFFIX: dict[str, tuple[str, str]] = {
    ".onnx": ("edgeseg.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    ".engine": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    ".plan": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    ".trt": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    ".pt": ("edgeseg.runtime.backends.torch", "TorchBackend"),
    ".pth": ("edgeseg.runtime.backends.torch", "TorchBackend"),
}


def load_backend(artifact: str | Path, **options: Any) -> Backend:
    """Open `artifact` with the backend its file type calls for."""
    path = Path(artifact)
    if not path.exists():
        raise EdgesegError(f"artifact not found: {path}")
    if path.is_dir():
        raise EdgesegError(f"expected a model file (.onnx, .engine, .pt), got a directory: {path}")
    entry = _BY_SUFFIX.get(path.suffix.lower())
    if entry is None:
        raise EdgesegError(
            f"don't know how to run {path.name}: expected one of {', '.join(sorted(_BY_SUFFIX))}"
        )
    module_name, class_name = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise EdgesegError(
                f"the backend for {path.suffix} files is not available in this build"
            ) from None
        raise
    return getattr(module, class_name)(path, **options)


__all__ = ["Backend", "load_backend"]
