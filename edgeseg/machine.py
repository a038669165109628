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

_LIBRARIES = (
    "numpy",
    "opencv-python-headless",
    "onnx",
    "onnxruntime",
    "openvino",
    "torch",
    "tensorrt",
    "edgeseg",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_vector_isa() -> str:
    """The widest x86 vector extension INT8 kernels use here ("AVX-512 VNNI", "AVX-512", "AVX2", ...):
    CPU INT8 speed and even its rounding differ between them, so every CPU figure names it."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((set(ln.split(":", 1)[1].split()) for ln in fh if ln.startswith("flags")), set())
    except OSError:
        flags = set()
    for flag, name in (
        ("avx512_vnni", "AVX-512 VNNI"),
        ("avx512f", "AVX-512"),
        ("avx_vnni", "AVX2 + AVX-VNNI"),
        ("avx2", "AVX2"),
    ):
        if flag in flags:
            return name
    return platform.machine()


def summary(threads: int | None = None) -> str:
    """One line naming the machine a figure came from, e.g. `AMD EPYC (AVX-512 VNNI), 2 cores, no GPU`."""
    d = describe()
    line = f"{d['cpu']} ({d['isa']}), {d['cores']} cores, GPU: {d['gpu'] or 'none'}"
    return line + (f"; {threads} threads" if threads else "")


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
        "isa": cpu_vector_isa(),
        "cores": os.cpu_count(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
    }
