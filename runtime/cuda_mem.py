"""CUDA memory for the TensorRT backend behind one small interface: cuda-python or pycuda.

NVIDIA's current samples use cuda-python (`cuda.bindings.runtime`, formerly `cuda.cudart`); Jetson
projects often use pycuda. The backend only needs: device buffers, pinned host buffers, async copies,
one stream, events, and the GPU's name and compute capability (for engine provenance checks).
`open_cuda()` picks whichever binding is installed (cuda-python first).

"No GPU" is a normal condition here, not a crash: cuda-python is installed as a torch dependency on
machines without a driver, so its calls return cudaErrorNoDevice / cudaErrorInsufficientDriver.
Those become `GpuUnavailableError`, one line, so callers can fall back (e.g. `edgeseg build
--target tensorrt` writes the hand-off ONNX instead).
"""

from __future__ import annotations

import abc
import ctypes
import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError

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
    """What an engine is tied to: TensorRT engines only run on the GPU model they were built for."""

    name: str
    compute_capability: tuple[int, int]
    total_memory: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}",
            "total_memory": self.total_memory,
        }


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

    @abc.abstractmethod
    def synchronize(self, stream: Any) -> None: ...

    @abc.abstractmethod
    def create_event(self) -> Any: ...

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
        """Release the context (pycuda) or nothing (cuda-python uses the primary context)."""

    def activate(self) -> None:  # noqa: B027 - optional hook
        """Make this binding usable from the calling thread (pycuda contexts are thread-bound)."""

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

    def activate(self) -> None:
        self._check(self.rt.cudaSetDevice(self.device), "cudaSetDevice")  # device choice is per thread

    def device_info(self) -> DeviceInfo:
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device), "cudaGetDeviceProperties")
        raw = prop.name
        name = raw.split(b"\0")[0].decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        return DeviceInfo(name, (int(prop.major), int(prop.minor)), int(getattr(prop, "totalGlobalMem", 0)))

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

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def create_event(self) -> Any:
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

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
    """pycuda driver API, with its own context (pushed here, popped by close())."""

    name = "pycuda"

    def __init__(self, device: int = 0, module: Any = None) -> None:
        self.drv = module if module is not None else importlib.import_module("pycuda.driver")
        try:
            self.drv.init()
            count = self.drv.Device.count()
        except self.drv.Error as exc:
            raise GpuUnavailableError(f"no usable CUDA GPU: pycuda: {_first_line(exc)}") from None
        if count <= device:
            raise GpuUnavailableError(f"CUDA device {device} not found ({count} device(s) visible)")
        self.dev = self.drv.Device(device)
        self.ctx = self.dev.make_context()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.drv.Error as exc:
            raise CudaError(f"CUDA call {what} failed: {_first_line(exc)}") from None

    def device_info(self) -> DeviceInfo:
        major, minor = self.dev.compute_capability()
        return DeviceInfo(str(self.dev.name()), (int(major), int(minor)), int(self.dev.total_memory()))

    def alloc_device(self, nbytes: int) -> DeviceBuffer:
        alloc = self._call("mem_alloc", self.drv.mem_alloc, max(int(nbytes), 1))
        return DeviceBuffer(int(alloc), int(nbytes), alloc)

    def alloc_pinned(self, shape: tuple[int, ...], dtype: np.dtype | type) -> HostBuffer:
        array = self._call("pagelocked_empty", self.drv.pagelocked_empty, tuple(shape), np.dtype(dtype))
        return HostBuffer(array, int(array.ctypes.data), array)

    def memcpy_htod_async(self, dst: DeviceBuffer, src: HostBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, dst.nbytes, src.array.nbytes)
        view = src.array.reshape(-1).view(np.uint8)[:n]
        self._call("memcpy_htod_async", self.drv.memcpy_htod_async, dst.ptr, view, stream)

    def memcpy_dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, stream: Any, nbytes: int | None = None):
        n = _nbytes(nbytes, src.nbytes, dst.array.nbytes)
        view = dst.array.reshape(-1).view(np.uint8)[:n]
        self._call("memcpy_dtoh_async", self.drv.memcpy_dtoh_async, view, src.ptr, stream)

    def create_stream(self) -> Any:
        return self._call("Stream", self.drv.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        self._call("Stream.synchronize", stream.synchronize)

    def create_event(self) -> Any:
        return self._call("Event", self.drv.Event)

    def record_event(self, event: Any, stream: Any) -> None:
        self._call("Event.record", event.record, stream)

    def event_synchronize(self, event: Any) -> None:
        self._call("Event.synchronize", event.synchronize)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("Event.time_since", end.time_since, start))

    def free(self, obj: Any) -> None:
        if isinstance(obj, DeviceBuffer) and obj.handle is not None:
            self._call("DeviceAllocation.free", obj.handle.free)
        elif isinstance(obj, HostBuffer):
            base = obj.handle.base if obj.handle is not None else None
            if base is not None and hasattr(base, "free"):
                self._call("HostAllocation.free", base.free)
        # pycuda streams and events are released by garbage collection

    def activate(self) -> None:
        """pycuda's context is current only in the thread that made it: push it onto this thread."""
        if self.ctx is not None:
            self._call("Context.push", self.ctx.push)

    def deactivate(self) -> None:
        if self.ctx is not None:
            self._call("Context.pop", self.drv.Context.pop)

    def close(self) -> None:
        if getattr(self, "ctx", None) is not None:
            self.ctx.pop()
            self.ctx = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
        raise GpuUnavailableError(
            f"no CUDA Python binding{' ' + prefer if prefer else ''} installed; "
            "install it with: pip install 'edgeseg[tensorrt]' (cuda-python) or pip install pycuda"
        )
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
