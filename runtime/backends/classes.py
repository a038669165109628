"""Which Backend class runs a file: the backend name (from `edgeseg.artifacts`) -> its module and
class, imported on first use. Below both base.py (whose BackendLoader opens the class) and the
package's __init__, so neither imports the other."""

from __future__ import annotations

import importlib
from pathlib import Path

from edgeseg.artifacts import backend_for, backends_for
from edgeseg.errors import EdgesegError

# backend name -> (module, class); imported only when used
CLASSES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("edgeseg.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "openvino": ("edgeseg.runtime.backends.openvino", "OpenVINOBackend"),
    "tensorrt": ("edgeseg.runtime.backends.tensorrt", "TensorRTBackend"),
    "torch": ("edgeseg.runtime.backends.torch", "TorchBackend"),
}


def backend_class(path: str | Path, backend: str | None = None) -> type:
    """The Backend class that runs `path` (`backend`: a named one that runs its file type; None: the
    file type's default), imported on first use."""
    name = backend or backend_for(path)
    if name not in CLASSES:
        raise EdgesegError(f"unknown backend {name!r}; choose one of {', '.join(CLASSES)}")
    runs = backends_for(path)
    if name not in runs:
        backend_for(path)  # an unknown file type: its own message
        raise EdgesegError(f"the {name} backend does not run {Path(path).name}; {' or '.join(runs)} does")
    module_name, class_name = CLASSES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise EdgesegError(
                f"the backend for {Path(path).suffix} files is not available in this build"
            ) from None
        raise
    return getattr(module, class_name)
