"""What machine a measurement came from: CPU, cores, GPU, library versions.

Benchmarks and reports carry this so a figure is never separated from the hardware that produced it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from functools import lru_cache

_LIBRARIES = ("numpy", "opencv-python-headless", "onnx", "onnxruntime", "torch", "tensorrt", "edgeseg")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    """First GPU's name via nvidia-smi (no CUDA import); None on a machine without one."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    name = out.stdout.strip().splitlines()
    return name[0] if out.returncode == 0 and name else None


@lru_cache(maxsize=1)
def describe() -> dict:
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }
