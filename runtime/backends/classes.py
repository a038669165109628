"""Which Backend class runs a file: the backend name (from `edgeseg.artifacts`) -> its module and
class, imported on first use. Below both base.py (whose BackendLoader opens the class) and the
package's __init__, so neither imports the other."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgeseg.artifacts import backend_for
from edgeseg.errors import EdgesegError

# backend name -> (module, class); imported only when used
CLASSES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("edgeseg.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("edgeseg.runtime.backends.torch", "TorchBackend"),
}


def backend_class(path: str | Path) -> type:
    """The Backend class that runs `path`, imported on first use."""
    module_name, class_name = CLASSES[backend_for(path)]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise EdgesegError(
                f"the backend for {Path(path).suffix} files is not available in this build"
            ) from None
        raise
    return getattr(module, class_name)
