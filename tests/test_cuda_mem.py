"""The CUDA memory interface against fake cuda-python and fake pycuda (no GPU here), and the real
cuda-python install's "no GPU" behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from fake_tensorrt.cuda import FakeGpu
from fake_tensorrt.install import hide_cuda, install_cuda

from edgeseg.errors import EdgesegError
from edgeseg.runtime import cuda_mem
from edgeseg.runtime.cuda_mem import CudaError, GpuUnavailableError, open_cuda


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_round_trip_through_device_memory(monkeypatch, binding):
    gpu = FakeGpu(name="Xavier (fake)", cc=(7, 2))
    install_cuda(monkeypatch, gpu, binding)
    mem = open_cuda()
    assert mem.name == binding
    info = mem.device_info()
    assert info.name == "Xavier (fake)" and info.compute_capability == (7, 2)
    assert info.to_dict()["compute_capability"] == "7.2"

    src = mem.alloc_pinned((2, 3, 4), np.float32)
    dst = mem.alloc_pinned((2, 3, 4), np.float32)
    assert src.array.shape == (2, 3, 4) and src.array.dtype == np.float32
    src.array[...] = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    dev = mem.alloc_device(src.array.nbytes)
    stream = mem.create_stream()
    assert isinstance(mem.stream_handle(stream), int)
    start, end = mem.create_event(), mem.create_event()
    mem.record_event(start, stream)
    mem.memcpy_htod_async(dev, src, stream)
    mem.memcpy_dtoh_async(dst, dev, stream)
    mem.record_event(end, stream)
    mem.synchronize(stream)
    mem.event_synchronize(end)
    assert mem.elapsed_ms(start, end) >= 0.0
    np.testing.assert_array_equal(dst.array, src.array)
    for obj in (dev, src, dst, stream, start, end):
        mem.free(obj)
    mem.close()
    assert dev.ptr not in gpu.allocations


def test_partial_copy_and_oversize_copy_refused(monkeypatch):
    install_cuda(monkeypatch, FakeGpu(), "cuda-python")
    mem = open_cuda()
    host = mem.alloc_pinned((8,), np.uint8)
    host.array[:] = np.arange(8)
    dev = mem.alloc_device(4)
    stream = mem.create_stream()
    mem.memcpy_htod_async(dev, host, stream, nbytes=4)
    back = mem.alloc_pinned((8,), np.uint8)
    mem.memcpy_dtoh_async(back, dev, stream, nbytes=4)
    assert back.array[:4].tolist() == [0, 1, 2, 3]
    with pytest.raises(CudaError, match="does not fit"):
        mem.memcpy_htod_async(dev, host, stream, nbytes=8)


def test_freed_pointer_is_an_error_like_the_driver(monkeypatch):
    install_cuda(monkeypatch, FakeGpu(), "cuda-python")
    mem = open_cuda()
    dev = mem.alloc_device(16)
    mem.free(dev)
    with pytest.raises(CudaError, match="cudaFree failed: cudaErrorInvalidValue"):
        mem.free(dev)


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
@pytest.mark.parametrize(
    "gpu", [FakeGpu(devices=0), FakeGpu(driver_ok=False)], ids=["no-device", "no-driver"]
)
def test_no_gpu_is_a_clean_one_line_error(monkeypatch, binding, gpu):
    install_cuda(monkeypatch, gpu, binding)
    with pytest.raises(GpuUnavailableError) as err:
        open_cuda()
    assert "\n" not in str(err.value)
    assert cuda_mem.gpu_info() is None


def test_picks_whichever_binding_is_installed(monkeypatch):
    install_cuda(monkeypatch, FakeGpu(), "pycuda")
    assert cuda_mem.available_bindings() == ["pycuda"]
    assert open_cuda().name == "pycuda"
    with pytest.raises(GpuUnavailableError, match="no CUDA Python binding cuda-python installed"):
        open_cuda("cuda-python")
    with pytest.raises(EdgesegError, match="unknown CUDA binding"):
        open_cuda("opencl")


def test_no_binding_at_all(monkeypatch):
    hide_cuda(monkeypatch)
    assert cuda_mem.available_bindings() == []
    with pytest.raises(GpuUnavailableError, match="pip install 'edgeseg\\[tensorrt\\]'"):
        open_cuda()


def test_real_cuda_python_without_gpu_reports_no_gpu():
    """This machine has cuda-bindings (a torch dependency) but no driver: that must read as 'no GPU'."""
    if "cuda-python" not in cuda_mem.available_bindings():
        pytest.skip("cuda-python not installed")
    try:
        mem = open_cuda("cuda-python")
    except GpuUnavailableError as exc:
        assert "no usable CUDA GPU" in str(exc) or "not found" in str(exc)
    else:  # a real GPU: the interface must work for real
        info = mem.device_info()
        assert info.name and info.compute_capability[0] >= 5
        mem.close()


def test_cuda_python_calls_exist_in_the_installed_bindings():
    """Every `self.rt.<name>` in CudaPythonMemory exists in the real cuda-python here (API drift check)."""
    import ast
    from pathlib import Path

    if "cuda-python" not in cuda_mem.available_bindings():
        pytest.skip("cuda-python not installed")
    rt = cuda_mem._import_cudart()
    tree = ast.parse(Path(cuda_mem.__file__).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "rt"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    assert {"cudaMalloc", "cudaMemcpyAsync", "cudaStreamCreate", "cudaEventElapsedTime"} <= used
    missing = sorted(n for n in used if not hasattr(rt, n))
    assert not missing, f"cuda-python {rt.__name__} lacks {missing}"
    assert hasattr(rt.cudaMemcpyKind, "cudaMemcpyHostToDevice")
    for name in cuda_mem.NO_GPU_ERRORS:
        assert hasattr(rt.cudaError_t, name), name


def test_pycuda_context_is_thread_bound_and_every_call_binds_it(monkeypatch):
    """Like the real driver, a pycuda context current on one thread is not current on another; the memory
    interface pushes the primary context wherever it is used and pops exactly what it pushed."""
    import sys
    import threading

    gpu = FakeGpu()
    install_cuda(monkeypatch, gpu, "pycuda")
    drv = sys.modules["pycuda.driver"]
    mem = open_cuda()
    errors: list[BaseException] = []
    left: list = []

    def raw() -> None:  # pycuda itself, on a thread where no context is current
        try:
            drv.mem_alloc(16)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    def through_interface(activate: bool) -> None:
        try:
            if activate:
                mem.activate()
            buf = mem.alloc_device(16)
            mem.free(buf)
            if activate:
                mem.deactivate()
            left.append(drv.Context.get_current())
        except BaseException as exc:
            errors.append(exc)

    for target, args in ((raw, ()), (through_interface, (False,)), (through_interface, (True,))):
        t = threading.Thread(target=target, args=args)
        t.start()
        t.join()
    assert len(errors) == 1 and "invalid device context" in str(errors[0])
    assert left == [None, None] and drv.Context.get_current() is None
    mem.close()
    assert gpu.primary_retains == 0 and gpu.contexts_created == 0


def test_pycuda_never_pops_a_context_it_did_not_push(monkeypatch):
    """`Context.pop()` pops whatever is on top of the thread's stack (pycuda cuda.hpp); a library that
    pushed its own context in between must get it back, and we say what happened instead."""
    import sys

    install_cuda(monkeypatch, FakeGpu(), "pycuda")
    drv = sys.modules["pycuda.driver"]
    mem = open_cuda()
    mem.activate()
    theirs = drv.Device(0).make_context()  # another library pushes its own context and keeps it
    with pytest.raises(CudaError, match="another CUDA context is current on this thread"):
        mem.deactivate()
    assert drv.Context.get_current() is theirs
    drv.Context.pop()
    drv.Context.pop()
    mem.close()


@pytest.mark.parametrize("binding", ["cuda-python", "pycuda"])
def test_device_identity_tells_modules_apart(monkeypatch, binding):
    gpu = FakeGpu(name="Orin", cc=(8, 7), sm_count=8, total_memory=16 << 30, uuid=bytes(range(16)))
    install_cuda(monkeypatch, gpu, binding)
    info = open_cuda().device_info()
    assert info.sm_count == 8 and info.total_memory == 16 << 30
    assert info.uuid == ("GPU-00010203-0405-0607-0809-0a0b0c0d0e0f" if binding == "cuda-python" else None)
