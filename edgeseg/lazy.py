"""Lazy imports of heavy or optional dependencies (torch, onnxsim, tensorrt, cuda bindings).

`require("torch")` imports on first use and turns a missing package into one line naming the
`edgeseg[extra]` to install, so `edgeseg --help` and the robot-side runtime never pay for them.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# module name -> (pip extra, what it is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("train", "PyTorch models, training and export"),
    "torchvision": ("train", "torchvision backbones"),
    "albumentations": ("train", "training augmentations"),
    "onnxsim": ("export", "ONNX simplification"),
    "onnxslim": ("export", "ONNX simplification (onnxslim)"),
    "onnxconverter_common": ("export", "FP16 conversion"),
    "matplotlib": ("plots", "PNG plots"),
    "tensorrt": ("tensorrt", "TensorRT engines"),
    "pycuda": ("tensorrt", "CUDA memory for TensorRT"),
    "cuda": ("tensorrt", "CUDA memory for TensorRT (cuda-python)"),
    "psutil": ("all", "memory statistics"),
    "rosbags": ("ros", "ROS 2 bags (rosbag2: MCAP and SQLite)"),
    "segmentation_models_pytorch": ("smp", "segmentation_models_pytorch models (smp:ARCH)"),
    "timm": ("smp", "timm encoders"),
    "transformers": ("hf", "Hugging Face models (hf:FOLDER)"),
    "safetensors": ("hf", "safetensors weights files"),
    "pydensecrf": ("crf", "the dense CRF (pydensecrf2)"),
}


def require(module: str, *, purpose: str | None = None) -> ModuleType:
    """Import `module` or raise a one-line MissingDependencyError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        from edgeseg.errors import MissingDependencyError

        top = module.split(".")[0]
        extra, default_purpose = EXTRAS.get(top, ("all", top))
        why = purpose or default_purpose
        raise MissingDependencyError(
            f"{top} is needed for {why} but is not installed ({exc.msg}); "
            f"install it with: pip install 'edgeseg[{extra}]'"
        ) from exc


def available(module: str) -> bool:
    """True if `module` can be imported (without importing it when it is already known absent)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
