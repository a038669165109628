"""Put the fakes in `sys.modules` for one test (via pytest's monkeypatch), so edgeseg's lazy imports
(`edgeseg.lazy.require("tensorrt")`, `importlib.import_module("cuda.bindings.runtime")`) find them."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import pytest

from fake_tensorrt.cuda import FakeGpu, make_cudart, make_pycuda_driver


def _package(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    mod.__path__ = []
    return mod


def install_cuda(monkeypatch: pytest.MonkeyPatch, gpu: FakeGpu, binding: str = "cuda-python") -> None:
    """Make `binding` ('cuda-python' or 'pycuda') importable as the fake, and hide the other one."""
    if binding == "cuda-python":
        rt = make_cudart(gpu)
        rt.__spec__ = importlib.machinery.ModuleSpec("cuda.bindings.runtime", None)
        cuda_pkg, bindings_pkg = _package("cuda"), _package("cuda.bindings")
        bindings_pkg.runtime = rt
        cuda_pkg.bindings = bindings_pkg
        for name, mod in {
            "cuda": cuda_pkg,
            "cuda.bindings": bindings_pkg,
            "cuda.bindings.runtime": rt,
        }.items():
            monkeypatch.setitem(sys.modules, name, mod)
        monkeypatch.setitem(sys.modules, "pycuda", None)  # import -> ImportError, find_spec -> ValueError
    elif binding == "pycuda":
        drv = make_pycuda_driver(gpu)
        drv.__spec__ = importlib.machinery.ModuleSpec("pycuda.driver", None)
        pkg = _package("pycuda")
        pkg.driver = drv
        monkeypatch.setitem(sys.modules, "pycuda", pkg)
        monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
        for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
            monkeypatch.setitem(sys.modules, name, None)
    else:
        raise ValueError(binding)


def hide_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither CUDA binding importable (a robot with only onnxruntime installed)."""
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)


def install_trt(
    monkeypatch: pytest.MonkeyPatch, version: str, gpu: FakeGpu | None = None, binding: str = "cuda-python"
) -> types.ModuleType:
    """Fake TensorRT `version` plus fake CUDA on the same fake GPU; returns the fake module."""
    from fake_tensorrt.trt import make_fake_trt

    gpu = gpu or FakeGpu()
    install_cuda(monkeypatch, gpu, binding)
    trt = make_fake_trt(version, gpu)
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.gpu = gpu
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def hide_trt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
