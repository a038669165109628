"""FAKE CUDA for tests: cuda-python's runtime module and pycuda's driver module without a GPU.

"Device memory" is ordinary host memory (ctypes buffers at real addresses), so copies really move
bytes and the fake TensorRT engine can read its input from, and write its output to, the addresses
the backend gave it. Everything runs synchronously: async copies complete before returning, events
are always reached. What is faithful: the call signatures and return conventions ((err, value)
tuples for cuda-python, exceptions for pycuda), error codes when there is no device, and refusal of
unknown or freed pointers (the real driver would fault). Nothing here measures GPU behaviour.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import types
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FakeGpu:
    """The simulated machine: devices present, live allocations, and a log of calls."""

    name: str = "Orin (fake)"
    cc: tuple[int, int] = (8, 7)
    devices: int = 1
    driver_ok: bool = True
    allocations: dict[int, ctypes.Array] = field(default_factory=dict)
    pinned: dict[int, ctypes.Array] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    streams: int = 0
    dla_cores: int = 0  # Xavier/Orin have 2; desktop GPUs 0

    def alloc(self, nbytes: int, table: dict[int, ctypes.Array]) -> int:
        buf = (ctypes.c_ubyte * max(int(nbytes), 1))()
        ptr = ctypes.addressof(buf)
        table[ptr] = buf
        return ptr

    def owner(self, ptr: int, nbytes: int) -> bool:
        """True if [ptr, ptr+nbytes) lies inside one live allocation (device or pinned)."""
        for table in (self.allocations, self.pinned):
            for base, buf in table.items():
                if base <= ptr and ptr + nbytes <= base + ctypes.sizeof(buf):
                    return True
        return False

    def read(self, ptr: int, nbytes: int) -> bytes:
        if not self.owner(ptr, nbytes):
            raise RuntimeError(f"fake GPU: illegal memory access at {ptr:#x} ({nbytes} bytes)")
        return ctypes.string_at(ptr, nbytes)

    def write(self, ptr: int, data: bytes) -> None:
        if not self.owner(ptr, len(data)):
            raise RuntimeError(f"fake GPU: illegal memory access at {ptr:#x} ({len(data)} bytes)")
        ctypes.memmove(ptr, data, len(data))

    def live(self) -> int:
        return len(self.allocations) + len(self.pinned)


# ------------------------------------------------------------------------------ cuda-python
class cudaError_t(enum.IntEnum):  # noqa: N801 - mirrors cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInitializationError = 3
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorIllegalAddress = 700


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._h = handle

    def __int__(self) -> int:
        return self._h


class cudaEvent_t:  # noqa: N801
    def __init__(self, handle: int) -> None:
        self._h = handle
        self.recorded = False

    def __int__(self) -> int:
        return self._h


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int  # noqa: N815


def make_cudart(gpu: FakeGpu) -> types.ModuleType:
    """A module with cuda-python's runtime calls used by edgeseg, backed by `gpu`."""
    m = types.ModuleType("cuda.bindings.runtime")
    ok = cudaError_t.cudaSuccess

    def ready() -> cudaError_t | None:
        if not gpu.driver_ok:
            return cudaError_t.cudaErrorInsufficientDriver
        if gpu.devices == 0:
            return cudaError_t.cudaErrorNoDevice
        return None

    def call(name, fn):
        def wrapped(*args):
            gpu.calls.append(name)
            err = ready()
            if err is not None:
                return (err, None) if name not in _NO_VALUE else (err,)
            return fn(*args)

        return wrapped

    def get_device_count():
        gpu.calls.append("cudaGetDeviceCount")
        err = ready()
        return (err, 0) if err is not None else (ok, gpu.devices)

    def set_device(dev):
        return (ok,) if dev < gpu.devices else (cudaError_t.cudaErrorInvalidDevice,)

    def props(dev):
        if dev >= gpu.devices:
            return (cudaError_t.cudaErrorInvalidDevice, None)
        return (ok, cudaDeviceProp(gpu.name.encode() + b"\0\0", gpu.cc[0], gpu.cc[1], 8 << 30))

    def memcpy(dst, src, nbytes, kind, stream):
        if not isinstance(stream, cudaStream_t):
            return (cudaError_t.cudaErrorInvalidValue,)
        if not (gpu.owner(int(src), nbytes) and gpu.owner(int(dst), nbytes)):
            return (cudaError_t.cudaErrorIllegalAddress,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (ok,)

    def free(table):
        def f(ptr):
            if int(ptr) not in table:
                return (cudaError_t.cudaErrorInvalidValue,)
            del table[int(ptr)]
            return (ok,)

        return f

    def stream_create():
        gpu.streams += 1
        return (ok, cudaStream_t(0x5000 + gpu.streams))

    def event_record(event, stream):
        event.recorded = True
        return (ok,)

    def elapsed(start, end):
        if not (start.recorded and end.recorded):
            return (cudaError_t.cudaErrorInvalidValue, None)
        return (ok, 0.0)

    impl = {
        "cudaSetDevice": set_device,
        "cudaGetDeviceProperties": props,
        "cudaMalloc": lambda n: (ok, gpu.alloc(n, gpu.allocations)),
        "cudaMallocHost": lambda n: (ok, gpu.alloc(n, gpu.pinned)),
        "cudaFree": free(gpu.allocations),
        "cudaFreeHost": free(gpu.pinned),
        "cudaMemcpyAsync": memcpy,
        "cudaStreamCreate": stream_create,
        "cudaStreamSynchronize": lambda s: (ok,),
        "cudaStreamDestroy": lambda s: (ok,),
        "cudaEventCreate": lambda: (ok, cudaEvent_t(id(object()))),
        "cudaEventRecord": event_record,
        "cudaEventSynchronize": lambda e: (ok,),
        "cudaEventDestroy": lambda e: (ok,),
        "cudaEventElapsedTime": elapsed,
    }
    for name, fn in impl.items():
        setattr(m, name, call(name, fn))
    m.cudaGetDeviceCount = get_device_count
    m.cudaGetErrorName = lambda err: (ok, cudaError_t(err).name.encode())
    m.cudaError_t = cudaError_t
    m.cudaMemcpyKind = cudaMemcpyKind
    m.cudaStream_t = cudaStream_t
    m.cudaEvent_t = cudaEvent_t
    return m


_NO_VALUE = {
    "cudaSetDevice",
    "cudaFree",
    "cudaFreeHost",
    "cudaMemcpyAsync",
    "cudaStreamSynchronize",
    "cudaStreamDestroy",
    "cudaEventRecord",
    "cudaEventSynchronize",
    "cudaEventDestroy",
}


# ------------------------------------------------------------------------------ pycuda
def make_pycuda_driver(gpu: FakeGpu) -> types.ModuleType:
    """A module with the pycuda.driver calls edgeseg uses, backed by `gpu`."""
    m = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    class RuntimeError_(Error):
        pass

    state = {"init": False}

    def init():
        gpu.calls.append("init")
        if not gpu.driver_ok:
            raise RuntimeError_("cuInit failed: no CUDA-capable device is detected")
        state["init"] = True

    local = threading.local()  # pycuda contexts are current per thread, like CUDA driver contexts

    def stack() -> list:
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    def need_context(what: str) -> None:
        if not stack():
            raise LogicError(f"{what} failed: invalid device context")

    class Context:
        def push(self):
            gpu.calls.append("Context.push")
            stack().append(self)

        @staticmethod
        def pop():
            gpu.calls.append("Context.pop")
            if not stack():
                raise LogicError("cuCtxPopCurrent failed: invalid device context")
            stack().pop()

    class Device:
        def __init__(self, i):
            if not state["init"]:
                raise LogicError("cuDeviceGet failed: initialization error")
            if i >= gpu.devices:
                raise LogicError("cuDeviceGet failed: invalid device ordinal")

        @staticmethod
        def count():
            if not state["init"]:
                raise LogicError("cuDeviceGetCount failed: initialization error")
            return gpu.devices

        def name(self):
            return gpu.name

        def compute_capability(self):
            return gpu.cc

        def total_memory(self):
            return 8 << 30

        def make_context(self):
            gpu.calls.append("make_context")
            ctx = Context()
            stack().append(ctx)
            return ctx

    class DeviceAllocation:
        def __init__(self, nbytes):
            need_context("cuMemAlloc")
            self.ptr = gpu.alloc(nbytes, gpu.allocations)

        def __int__(self):
            return self.ptr

        def free(self):
            if gpu.allocations.pop(self.ptr, None) is None:
                raise LogicError("cuMemFree failed: invalid value")

    class Stream:
        def __init__(self):
            gpu.streams += 1
            self.handle = 0x6000 + gpu.streams

        def synchronize(self):
            gpu.calls.append("Stream.synchronize")

    class Event:
        def __init__(self):
            self.recorded = False

        def record(self, stream=None):
            self.recorded = True
            return self

        def synchronize(self):
            return self

        def time_since(self, other):
            if not (self.recorded and other.recorded):
                raise LogicError("cuEventElapsedTime failed: invalid handle")
            return 0.0

    def pagelocked_empty(shape, dtype):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        ptr = gpu.alloc(nbytes, gpu.pinned)
        arr = np.frombuffer(gpu.pinned[ptr], dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        return arr

    def _ptr(x):
        return int(x) if not isinstance(x, np.ndarray) else int(x.ctypes.data)

    def memcpy_htod_async(dest, src, stream=None):
        gpu.calls.append("memcpy_htod_async")
        need_context("cuMemcpyHtoDAsync")
        if not isinstance(stream, Stream):
            raise LogicError("memcpy_htod_async: stream required")
        gpu.write(_ptr(dest), np.ascontiguousarray(src).tobytes())

    def memcpy_dtoh_async(dest, src, stream=None):
        gpu.calls.append("memcpy_dtoh_async")
        need_context("cuMemcpyDtoHAsync")
        if not isinstance(stream, Stream):
            raise LogicError("memcpy_dtoh_async: stream required")
        data = gpu.read(_ptr(src), dest.nbytes)
        dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, dtype=np.uint8)

    m.Error, m.LogicError, m.RuntimeError = Error, LogicError, RuntimeError_
    m.init, m.Device, m.Stream, m.Event, m.Context = init, Device, Stream, Event, Context
    m.mem_alloc = DeviceAllocation
    m.pagelocked_empty = pagelocked_empty
    m.memcpy_htod_async, m.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return m
