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
    "openvino": ("openvino", "the OpenVINO backend"),
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
            f"{top} is needed for {why} but is not installed ({exc.msg}); {install_hint(top, extra)}"
        ) from exc


# On a Jetson, TensorRT's Python bindings exist only for the system Python, from JetPack's apt packages
# (NVIDIA's PyPI wheels are for desktops): the `tensorrt` extra is not the way there.
JETSON_HINTS = {
    "tensorrt": "on a Jetson it comes with JetPack: sudo apt install python3-libnvinfer (system Python; a venv "
    "needs --system-site-packages), see docs/tensorrt.md",
    "pycuda": "on a Jetson: pip install pycuda (with JetPack's CUDA in PATH), or cuda-python matching its CUDA",
    "cuda": "on a Jetson: pip install cuda-python==<JetPack's CUDA major>.* (or pycuda)",
}


def on_jetson() -> bool:
    """A Jetson (L4T) board: NVIDIA's L4T release file exists."""
    from pathlib import Path

    return Path("/etc/nv_tegra_release").exists()


def install_hint(top: str, extra: str) -> str:
    """How to install `top`: the pip extra, or JetPack's way on a Jetson."""
    if top in JETSON_HINTS and on_jetson():
        return JETSON_HINTS[top]
    return f"install it with: pip install 'edgeseg[{extra}]'"


def available(module: str) -> bool:
    """True if `module` can be imported (without importing it when it is already known absent)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
