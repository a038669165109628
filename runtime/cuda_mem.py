"""CUDA memory for the TensorRT backend behind one small interface: cuda-python or pycuda.

NVIDIA's current samples use cuda-python (`cuda.bindings.runtime`, formerly `cuda.cudart`); Jetson
projects often use pycuda. The backend only needs: device buffers, pinned host buffers, async copies,
streams, events, and the GPU's identity (name, compute capability, SM count, memory, UUID: engine
provenance). `open_cuda()` picks whichever binding is installed (cuda-python first).

Contexts: both bindings work in the device's primary context, the one the CUDA runtime (and so
TensorRT) uses. cuda-python's runtime API selects it per thread with cudaSetDevice; pycuda retains it
(`Device.retain_primary_context()`, never `make_context()`, which would give every worker its own
time-sliced context and memory) and pushes it onto whichever thread uses it: `current()` makes it
current for one block on the calling thread and pops exactly what it pushed, so any thread (a ROS
callback) may call in. `close()` releases it (`detach()`).

Waiting: events are created with the blocking-sync flag (cudaEventBlockingSync / pycuda
event_flags.BLOCKING_SYNC), so a thread waiting for a result sleeps instead of spinning a CPU core
(without it cudaEventSynchronize busy-waits: CUDA runtime API); `synchronize(stream)` waits on such an
event too.

"No GPU" is a normal condition here, not a crash: cuda-python is installed as a torch dependency on
machines without a driver, so its calls return cudaErrorNoDevice / cudaErrorInsufficientDriver.
Those become `GpuUnavailableError`, one line, so callers can fall back (e.g. `edgeseg build
--target tensorrt` writes the hand-off ONNX instead).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import importlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, first_line

# cudaError_t names that mean "there is no usable GPU here" rather than a bug.
NO_GPU_ERRORS = frozenset(
    {
        "cudaErrorNoDevice",
        "cudaErrorInsufficientDriver",
        "cudaErrorInitializationError",
        "cudaErrorCallRequiresNewerDriver",
        "cudaErrorSystemDriverMismatch",
        "cudaErrorCompatNotSupportedOnDevice",
        "cudaErrorDevicesUnavailable",
    }
)


class GpuUnavailableError(EdgesegError):
    """No CUDA device or driver (or no CUDA binding): GPU work cannot run on this machine."""


class CudaError(EdgesegError):
    """A CUDA call failed on a machine that does have a GPU."""


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: TensorRT engines only run on the GPU model they were built for. Orin
    AGX, NX and Nano all report compute capability 8.7; SM count and memory tell the modules apart."""

    name: str
    compute_capability: tuple[int, int]
    total_memory: int = 0
    sm_count: int | None = None
    uuid: str | None = None  # "GPU-xxxxxxxx-..." where the binding gives it (cuda-python; not pycuda)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}",
            "total_memory": self.total_memory,
            "sm_count": self.sm_count,
            "uuid": self.uuid,
        }


def format_uuid(raw: bytes) -> str | None:
    """16 UUID bytes -> nvidia-smi's "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (None if all zero)."""
    if len(raw) != 16 or not any(raw):
        return None
    h = raw.hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class DeviceBuffer:
    ptr: int
    nbytes: int
    handle: Any = None  # the binding's own object (pycuda DeviceAllocation), kept alive here


@dataclass
class HostBuffer:
    """A pinned (page-locked) host array: async copies from/to it really are asynchronous."""

    array: np.ndarray
    ptr: int
    handle: Any = None


class CudaMemory(abc.ABC):
    """The few CUDA operations the TensorRT backend needs, whichever Python binding provides them."""

    name: str = "cuda"

    @abc.abstractmethod
    def device_info(self) -> DeviceInfo: ...

    @abc.abstractmethod
    def alloc_device(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> HostBuffer: ...

    @abc.abstractmethod
    def memcpy_htod_async(
        self, dst: DeviceBuffer, src: HostBuffer, stream: Any, nbytes: int | None = None
    ): ...

    @abc.abstractmethod
    def memcpy_dtoh_async(
        self, dst: HostBuffer, src: DeviceBuffer, stream: Any, nbytes: int | None = None
    ): ...

    @abc.abstractmethod
    def create_stream(self) -> Any: ...

    @abc.abstractmethod
    def stream_handle(self, stream: Any) -> int:
        """The raw cudaStream_t as an int, what TensorRT's execute_async_v3 takes."""

    def synchronize(self, stream: Any) -> None:
        """Wait for `stream` without spinning: a blocking-sync event recorded on it, then waited on."""
        event = self.create_event()
        try:
            self.record_event(event, stream)
            self.event_synchronize(event)
        finally:
            self.free(event)

    @abc.abstractmethod
    def create_event(self) -> Any:
        """An event whose waiters block (sleep) instead of spinning."""

    @abc.abstractmethod
    def record_event(self, event: Any, stream: Any) -> None: ...

    @abc.abstractmethod
    def event_synchronize(self, event: Any) -> None: ...

    @abc.abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float: ...

    @abc.abstractmethod
    def free(self, obj: DeviceBuffer | HostBuffer | Any) -> None:
        """Free a device buffer, pinned buffer, stream or event."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the primary context (pycuda) or nothing (cuda-python)."""

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """The device's primary context current on the calling thread for the block (re-entrant)."""
        yield

    def activate(self) -> None:  # noqa: B027 - optional hook
        """Keep the context current on the calling thread until `deactivate` (a worker thread's loop)."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        """Undo activate on the calling thread."""


def _nbytes(n: int | None, a: int, b: int) -> int:
    size = min(a, b) if n is None else int(n)
    if size > a or size > b:
        raise CudaError(f"copy of {size} bytes does not fit buffers of {a} and {b} bytes")
    return size


class CudaPythonMemory(CudaMemory):
    """cuda-python runtime API (`cuda.bindings.runtime`, or the older `cuda.cudart`)."""

    name = "cuda-python"

    def __init__(self, device: int = 0, module: Any = None) -> None:
        self.rt = module if module is not None else _import_cudart()
        count = self._check(self.rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if int(count) <= device:
            raise GpuUnavailableError(f"CUDA device {device} not found ({count} device(s) visible)")
        self._check(self.rt.cudaSetDevice(device), "cudaSetDevice")
        self.device = device
        self._threads = threading.local()
        self._threads.ready = True

    def _err_name(self, err: Any) -> str:
        name = getattr(err, "name", None)
        if name:
            return str(name)
        res = self.rt.cudaGetErrorName(err)
        return res[1].decode() if isinstance(res, tuple) and isinstance(res[1], bytes) else str(err)

    def _check(self, result: Any, call: str) -> Any:
        """cuda-python returns (err, *values); raise on err, return the value(s)."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self._err_name(err)
            if name in NO_GPU_ERRORS:
                raise GpuUnavailableError(f"no usable CUDA GPU: {call} returned {name}")
            raise CudaError(f"CUDA call {call} failed: {name}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        if not getattr(self._threads, "ready", False):  # the runtime's current device is per thread
            self._check(self.rt.cudaSetDevice(self.device), "cudaSetDevice")
            self._threads.ready = True
        yield

    def activate(self) -> None:
        with self.current():
            pass

    def device_info(self) -> DeviceInfo:
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        raw = prop.name
        name = raw.split(b"\0")[0].decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        uuid = getattr(getattr(prop, "uuid", None), "bytes", b"")
        return DeviceInfo(
            name,
            (int(prop.major), int(prop.minor)),
            int(getattr(prop, "totalGlobalMem", 0)),
            int(prop.multiProcessorCount) if hasattr(prop, "multiProcessorCount") else None,
            format_uuid(bytes(uuid)) if uuid else None,
        )

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(int(nbytes)), "cudaMalloc")
        return DeviceBuffer(int(ptr), int(nbytes))

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> HostBuffer:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        ptr = int(self._check(self.rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(ptr)
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        return HostBuffer(array, ptr)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, dst.nbytes, src.array.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, n, kind, stream), "cudaMemcpyAsync(HtoD)")

    def memcpy_dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, src.nbytes, dst.array.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, n, kind, stream), "cudaMemcpyAsync(DtoH)")

    def create_stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def create_event(self) -> Any:
        flags = self.rt.cudaEventBlockingSync
        return self._check(self.rt.cudaEventCreateWithFlags(flags), "cudaEventCreateWithFlags")

    def record_event(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_synchronize(self, event: Any) -> None:
        self._check(self.rt.cudaEventSynchronize(event), "cudaEventSynchronize")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def free(self, obj: Any) -> None:
        if isinstance(obj, DeviceBuffer):
            self._check(self.rt.cudaFree(obj.ptr), "cudaFree")
        elif isinstance(obj, HostBuffer):
            self._check(self.rt.cudaFreeHost(obj.ptr), "cudaFreeHost")
        elif type(obj).__name__ == "cudaEvent_t":
            self._check(self.rt.cudaEventDestroy(obj), "cudaEventDestroy")
        else:
            self._check(self.rt.cudaStreamDestroy(obj), "cudaStreamDestroy")


class PyCudaMemory(CudaMemory):
    """pycuda driver API in the device's primary context, made current per use on any thread.

    pycuda's rules (src/cpp/cuda.hpp): contexts are current per thread; `Context.pop()` pops whatever is
    on top of the calling thread's stack; memory is freed with its context current. So every use runs
    inside `current()`, which pushes the primary context only if it is not already on top and pops
    only what it pushed (and refuses to pop a context someone else left on top)."""

    name = "pycuda"

    def __init__(self, device: int = 0, module: Any = None) -> None:
        self.drv = module if module is not None else importlib.import_module("pycuda.driver")
        try:
            self.drv.init()
            count = self.drv.Device.count()
        except self.drv.Error as exc:
            raise GpuUnavailableError(f"no usable CUDA GPU: pycuda: {first_line(exc)}") from None
        if count <= device:
            raise GpuUnavailableError(f"CUDA device {device} not found ({count} device(s) visible)")
        self.dev = self.drv.Device(device)
        self.ctx = self._call("retain_primary_context", self.dev.retain_primary_context)
        self._threads = threading.local()  # per thread: did each activate() push?

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.drv.Error as exc:
            raise CudaError(f"CUDA call {what} failed: {first_line(exc)}") from None

    def _on_top(self) -> bool:
        top = self.drv.Context.get_current()
        return top is not None and self.ctx is not None and top == self.ctx

    def _push(self) -> bool:
        """Make the primary context current here; True if this call pushed it."""
        if self.ctx is None:
            raise CudaError("CUDA memory used after close()")
        if self._on_top():
            return False
        self._call("Context.push", self.ctx.push)
        return True

    def _pop(self) -> None:
        if not self._on_top():
            raise CudaError(
                "another CUDA context is current on this thread: something pushed a context and did not pop "
                "it, so edgeseg's cannot be popped safely"
            )
        self._call("Context.pop", self.drv.Context.pop)

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        pushed = self._push()
        try:
            yield
        finally:
            if pushed:
                self._pop()

    def activate(self) -> None:
        pushes = self._threads.__dict__.setdefault("pushes", [])
        pushes.append(self._push())

    def deactivate(self) -> None:
        pushes = self._threads.__dict__.get("pushes")
        if not pushes:
            raise CudaError("deactivate() without activate() on this thread")
        if pushes.pop():
            self._pop()

    def device_info(self) -> DeviceInfo:
        major, minor = self.dev.compute_capability()
        attr = getattr(getattr(self.drv, "device_attribute", None), "MULTIPROCESSOR_COUNT", None)
        sms = int(self._call("get_attribute", self.dev.get_attribute, attr)) if attr is not None else None
        return DeviceInfo(str(self.dev.name()), (int(major), int(minor)), int(self.dev.total_memory()), sms)

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        with self.current():
            alloc = self._call("mem_alloc", self.drv.mem_alloc, max(int(nbytes), 1))
        return DeviceBuffer(int(alloc), int(nbytes), alloc)

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> HostBuffer:
        with self.current():
            array = self._call("pagelocked_empty", self.drv.pagelocked_empty, tuple(shape), np.dtype(dtype))
        return HostBuffer(array, int(array.ctypes.data), array)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, dst.nbytes, src.array.nbytes)
        view = src.array.reshape(-1).view(np.uint8)[:n]
        with self.current():
            self._call("memcpy_htod_async", self.drv.memcpy_htod_async, dst.ptr, view, stream)

    def memcpy_dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, src.nbytes, dst.array.nbytes)
        view = dst.array.reshape(-1).view(np.uint8)[:n]
        with self.current():
            self._call("memcpy_dtoh_async", self.drv.memcpy_dtoh_async, view, src.ptr, stream)

    def create_stream(self) -> Any:
        with self.current():
            return self._call("Stream", self.drv.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def create_event(self) -> Any:
        with self.current():
            return self._call("Event", self.drv.Event, self.drv.event_flags.BLOCKING_SYNC)

    def record_event(self, event: Any, stream: Any) -> None:
        with self.current():
            self._call("Event.record", event.record, stream)

    def event_synchronize(self, event: Any) -> None:
        with self.current():
            self._call("Event.synchronize", event.synchronize)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        with self.current():
            return float(self._call("Event.time_since", end.time_since, start))

    def free(self, obj: Any) -> None:
        with self.current():
            if isinstance(obj, DeviceBuffer) and obj.handle is not None:
                self._call("DeviceAllocation.free", obj.handle.free)
            elif isinstance(obj, HostBuffer):
                base = obj.handle.base if obj.handle is not None else None
                if base is not None and hasattr(base, "free"):
                    self._call("HostAllocation.free", base.free)
        # pycuda streams and events are released by garbage collection

    def close(self) -> None:
        """Release the primary context. pycuda releases it when `detach()` runs on the thread that
        retained it or where it is current; from any other thread pycuda keeps it until exit."""
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx is not None:
            self._call("Context.detach", ctx.detach)


def _import_cudart() -> Any:
    """cuda-python's runtime module: `cuda.bindings.runtime` (12.6+) or `cuda.cudart` (older)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("cuda-python is not installed")


BINDINGS = {"cuda-python": CudaPythonMemory, "pycuda": PyCudaMemory}


def available_bindings() -> list[str]:
    """Installed CUDA bindings, preferred first (cuda-python, then pycuda)."""
    from edgeseg.lazy import available

    found = []
    if available("cuda.bindings") or available("cuda.cudart"):
        found.append("cuda-python")
    if available("pycuda"):
        found.append("pycuda")
    return found


def open_cuda(prefer: str | None = None, device: int = 0) -> CudaMemory:
    """The CUDA memory interface from `prefer` ('cuda-python' | 'pycuda') or whichever is installed.

    Raises GpuUnavailableError when no binding is installed or no GPU/driver is usable.
    """
    if prefer is not None and prefer not in BINDINGS:
        raise EdgesegError(f"unknown CUDA binding {prefer!r}; choose one of {', '.join(BINDINGS)}")
    installed = available_bindings()
    order = [prefer] if prefer else installed
    if not order or (prefer and prefer not in installed):
        from edgeseg.lazy import JETSON_HINTS, on_jetson

        how = (
            JETSON_HINTS["cuda"]
            if on_jetson()
            else "install it with: pip install 'edgeseg[tensorrt]' (cuda-python) or pip install pycuda"
        )
        raise GpuUnavailableError(f"no CUDA Python binding{' ' + prefer if prefer else ''} installed; {how}")
    last: GpuUnavailableError | None = None
    for name in order:
        try:
            return BINDINGS[name](device)
        except GpuUnavailableError as exc:
            last = exc
    assert last is not None
    raise last


def gpu_info(prefer: str | None = None) -> DeviceInfo | None:
    """The current GPU's name and compute capability, or None when there is no usable GPU."""
    try:
        mem = open_cuda(prefer)
    except GpuUnavailableError:
        return None
    try:
        return mem.device_info()
    finally:
        mem.close()
