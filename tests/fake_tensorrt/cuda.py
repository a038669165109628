"""FAKE CUDA for tests: cuda-python's runtime module and pycuda's driver module without a GPU.

"Device memory" is ordinary host memory (ctypes buffers at real addresses), so copies really move
bytes and the fake TensorRT engine can read its input from, and write its output to, the addresses
the backend gave it. Everything runs synchronously: async copies complete before returning, events
are always reached. What is faithful: the call signatures and return conventions ((err, value)
tuples for cuda-python, exceptions for pycuda), error codes when there is no device, and refusal of
unknown or freed pointers (the real driver would fault). Nothing here measures GPU behaviour.

Behaviours reproduced from NVIDIA's and pycuda's sources (tests rely on each):
  - Busy-waiting: a host thread waiting on an event created without the blocking-sync flag spins a CPU
    core ("If the cudaEventBlockingSync flag has not been set, then the CPU thread will busy-wait until
    the event has been completed by the device": cuda-python's `cudaEventSynchronize` docstring, the
    CUDA runtime API text; pycuda's `Event(flags)` passes `event_flags.BLOCKING_SYNC` to cuEventCreate,
    src/cpp/cuda.hpp `class event`). Stream synchronisation under the default schedule spins as well
    (cudaDeviceScheduleAuto spins when there are fewer active contexts than cores, as on a Jetson).
    Each spinning wait adds one to `FakeGpu.spin_waits`.
  - pycuda contexts (inducer/pycuda src/cpp/cuda.hpp): `Device.make_context()` creates a NEW context
    and pushes it on the calling thread (`FakeGpu.contexts_created` counts them: each one is a
    separate, time-sliced context with its own memory on a Jetson); `retain_primary_context()` returns
    the device's primary context WITHOUT pushing it; the context stack is per thread
    (`boost::thread_specific_ptr<context_stack>`); `Context.pop()` is static and pops whatever is on top
    of the calling thread's stack ("cannot pop non-current context" when it is empty);
    `Context.get_current()` is the top of the calling thread's stack; `detach()` releases the context
    only when it is current on the calling thread or the calling thread made it (otherwise it does
    nothing: "leaked out-of-thread context"); memory allocations need a current context and freeing
    one from a thread where its context is not current and that did not make it raises "cannot
    activate out-of-thread context" (`scoped_context_activation`).
  - Device identity: cuda-python's `cudaDeviceProp` has `multiProcessorCount`, `totalGlobalMem` and
    `uuid` (`cudaUUID_t`, `.bytes`); pycuda has `Device.get_attribute(MULTIPROCESSOR_COUNT)` and
    `total_memory()` but no UUID.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FakeGpu:
    """The simulated machine: devices present, live allocations, and a log of calls."""

    name: str = "Orin (fake)"
    cc: tuple[int, int] = (8, 7)
    sm_count: int = 16  # Orin AGX 64 GB: 16 SMs; Orin NX 16 GB / Orin Nano 8 GB: 8
    total_memory: int = 8 << 30
    uuid: bytes = bytes(range(16))
    devices: int = 1
    driver_ok: bool = True
    allocations: dict[int, ctypes.Array] = field(default_factory=dict)
    pinned: dict[int, ctypes.Array] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    streams: int = 0
    dla_cores: int = 0  # Xavier/Orin have 2; desktop GPUs 0
    spin_waits: int = 0  # host waits that busy-wait a CPU core (no blocking-sync flag)
    contexts_created: int = 0  # pycuda make_context(): a separate CUDA context each
    primary_retains: int = 0  # pycuda retain_primary_context() not yet released by detach()
    # pycuda only: the calling thread's current context (None: none current); set by the pycuda fake.
    # cuda-python's runtime API makes the primary context current by itself, so it leaves this unset.
    current_context: Any = None
    out_of_context_frees: list[str] = field(default_factory=list)  # TensorRT objects freed without one

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
    def __init__(self, handle: int, flags: int = 0) -> None:
        self._h = handle
        self.flags = flags
        self.recorded = False

    def __int__(self) -> int:
        return self._h


@dataclass
class cudaUUID_t:  # noqa: N801
    bytes: bytes


@dataclass
class cudaDeviceProp:  # noqa: N801
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int  # noqa: N815
    multiProcessorCount: int  # noqa: N815
    uuid: cudaUUID_t


cudaEventDefault, cudaEventBlockingSync, cudaEventDisableTiming = 0, 1, 2
cudaDeviceScheduleBlockingSync = 4


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
        prop = cudaDeviceProp(
            gpu.name.encode() + b"\0\0",
            gpu.cc[0],
            gpu.cc[1],
            gpu.total_memory,
            gpu.sm_count,
            cudaUUID_t(gpu.uuid),
        )
        return (ok, prop)

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
        if not (start.recorded and end.recorded) or (start.flags | end.flags) & cudaEventDisableTiming:
            return (cudaError_t.cudaErrorInvalidValue, None)
        return (ok, 0.0)

    device_flags = {"flags": 0}

    def set_device_flags(flags):
        device_flags["flags"] = int(flags)
        return (ok,)

    def event_sync(event):
        if not event.flags & cudaEventBlockingSync:
            gpu.spin_waits += 1
        return (ok,)

    def stream_sync(stream):
        if not device_flags["flags"] & cudaDeviceScheduleBlockingSync:
            gpu.spin_waits += 1
        return (ok,)

    impl = {
        "cudaSetDevice": set_device,
        "cudaGetDeviceProperties": props,
        "cudaMalloc": lambda n: (ok, gpu.alloc(n, gpu.allocations)),
        "cudaMallocHost": lambda n: (ok, gpu.alloc(n, gpu.pinned)),
        "cudaFree": free(gpu.allocations),
        "cudaFreeHost": free(gpu.pinned),
        "cudaMemcpyAsync": memcpy,
        "cudaStreamCreate": stream_create,
        "cudaStreamSynchronize": stream_sync,
        "cudaSetDeviceFlags": set_device_flags,
        "cudaStreamDestroy": lambda s: (ok,),
        "cudaEventCreate": lambda: (ok, cudaEvent_t(id(object()))),
        "cudaEventCreateWithFlags": lambda flags: (ok, cudaEvent_t(id(object()), int(flags))),
        "cudaEventRecord": event_record,
        "cudaEventSynchronize": event_sync,
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
    m.cudaEventDefault, m.cudaEventBlockingSync = cudaEventDefault, cudaEventBlockingSync
    m.cudaEventDisableTiming = cudaEventDisableTiming
    m.cudaDeviceScheduleBlockingSync = cudaDeviceScheduleBlockingSync
    return m


_NO_VALUE = {
    "cudaSetDevice",
    "cudaFree",
    "cudaFreeHost",
    "cudaMemcpyAsync",
    "cudaStreamSynchronize",
    "cudaSetDeviceFlags",
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

    local = threading.local()  # pycuda's context stack is per thread (thread_specific_ptr)

    def stack() -> list:
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    def current():
        return stack()[-1] if stack() else None

    gpu.current_context = current

    def need_context(what: str):
        ctx = current()
        if ctx is None or not ctx.valid:
            raise LogicError(f"{what} failed: invalid device context")
        return ctx

    class Context:
        def __init__(self, primary: bool) -> None:
            self.primary = primary
            self.valid = True
            self.thread = threading.get_ident()  # the thread that made it (detach, out-of-thread rules)
            self.handle = 0x7000 if primary else 0x7100 + gpu.contexts_created

        def __eq__(self, other: object) -> bool:  # pycuda compares the CUcontext handles
            return isinstance(other, Context) and other.handle == self.handle

        __hash__ = object.__hash__

        def push(self):
            gpu.calls.append("Context.push")
            if not self.valid:
                raise LogicError("cuCtxPushCurrent failed: invalid device context")
            stack().append(self)

        @staticmethod
        def pop():
            gpu.calls.append("Context.pop")
            if not stack():
                raise LogicError(
                    "context::pop failed: invalid device context - cannot pop non-current context"
                )
            stack().pop()

        @staticmethod
        def get_current():
            return current()

        def detach(self):
            gpu.calls.append("Context.detach")
            if not self.valid:
                raise LogicError(
                    "context::detach failed: invalid device context - cannot detach from invalid context"
                )
            active = current() is self
            if not active and self.thread != threading.get_ident():
                return  # cuda.hpp: out-of-thread and not current -> nothing is released
            self.valid = False
            if self.primary:
                gpu.primary_retains -= 1
            if active:
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
            return gpu.total_memory

        def get_attribute(self, attr):
            if attr == device_attribute.MULTIPROCESSOR_COUNT:
                return gpu.sm_count
            raise LogicError("cuDeviceGetAttribute failed: invalid value")

        def make_context(self, flags=0):
            gpu.calls.append("make_context")
            gpu.contexts_created += 1
            ctx = Context(primary=False)
            stack().append(ctx)
            return ctx

        def retain_primary_context(self):
            gpu.calls.append("retain_primary_context")
            gpu.primary_retains += 1
            return Context(primary=True)  # not pushed (cuda.hpp: retain only)

    class device_attribute:  # noqa: N801 - pycuda's name
        MULTIPROCESSOR_COUNT = 16

    class event_flags:  # noqa: N801 - pycuda's name (CUevent_flags)
        DEFAULT, BLOCKING_SYNC, DISABLE_TIMING, INTERPROCESS = 0, 1, 2, 4

    class DeviceAllocation:
        def __init__(self, nbytes):
            self.ctx = need_context("cuMemAlloc")
            self.ptr = gpu.alloc(nbytes, gpu.allocations)

        def __int__(self):
            return self.ptr

        def free(self):
            if current() != self.ctx:  # scoped_context_activation
                if not self.ctx.valid:
                    raise LogicError("cannot activate dead context")
                if self.ctx.thread != threading.get_ident():
                    raise LogicError("cannot activate out-of-thread context")
            if gpu.allocations.pop(self.ptr, None) is None:
                raise LogicError("cuMemFree failed: invalid value")

    class Stream:
        def __init__(self, flags=0):
            need_context("cuStreamCreate")
            gpu.streams += 1
            self.handle = 0x6000 + gpu.streams

        def synchronize(self):
            gpu.calls.append("Stream.synchronize")
            gpu.spin_waits += 1  # the default schedule spins (see module docstring)

    class Event:
        def __init__(self, flags=0):
            need_context("cuEventCreate")
            self.flags = int(flags)
            self.recorded = False

        def record(self, stream=None):
            self.recorded = True
            return self

        def synchronize(self):
            if not self.flags & event_flags.BLOCKING_SYNC:
                gpu.spin_waits += 1
            return self

        def time_since(self, other):
            if (
                not (self.recorded and other.recorded)
                or (self.flags | other.flags) & event_flags.DISABLE_TIMING
            ):
                raise LogicError("cuEventElapsedTime failed: invalid handle")
            return 0.0

    class HostAllocation:
        """The `.base` of a pagelocked array, with `free()` (pycuda's HostAllocation, context-bound)."""

        def __init__(self, ptr: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
            self.ctx, self.ptr = need_context("cuMemHostAlloc"), ptr
            self.__array_interface__ = {
                "shape": tuple(shape),
                "typestr": dtype.str,
                "data": (ptr, False),
                "version": 3,
            }

        def free(self):
            if current() != self.ctx and self.ctx.thread != threading.get_ident():
                raise LogicError("cannot activate out-of-thread context")
            if gpu.pinned.pop(self.ptr, None) is None:
                raise LogicError("cuMemFreeHost failed: invalid value")

    def pagelocked_empty(shape, dtype):
        need_context("cuMemHostAlloc")
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        ptr = gpu.alloc(nbytes, gpu.pinned)
        return np.asarray(HostAllocation(ptr, tuple(shape), dtype))

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
    m.device_attribute, m.event_flags = device_attribute, event_flags
    m.mem_alloc = DeviceAllocation
    m.pagelocked_empty = pagelocked_empty
    m.memcpy_htod_async, m.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return m
