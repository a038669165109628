"""TensorRT backend: runs a serialized engine with the tensor-name API (TensorRT 8.5+ / 10.x / 11.x).

Before deserializing, the engine's sidecar (`<engine>.json`, written by `edgeseg build --target
tensorrt`) is checked against this machine: an engine only runs on the TensorRT version and GPU model
it was built for, and a mismatch gets a one-line message asking for a rebuild instead of a crash or
silent garbage. Memory goes through `edgeseg.runtime.cuda_mem` (cuda-python or pycuda).

Double buffering: two slots, each with pinned host and device buffers for input and output, share one
CUDA stream. `submit(batch)` copies the batch into the free slot's pinned buffer and enqueues
upload -> execute_async_v3 -> download, then returns without waiting; `result()` waits for the oldest
slot. So while the GPU runs frame n, the host is already preprocessing and staging frame n+1 into the
other slot (and its upload is queued right behind inference n on the stream). `run_pipelined(batches)`
keeps two frames in flight; `run(batch)` is the plain synchronous call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import load_sidecar, sidecar_path
from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.runtime.cuda_mem import CudaMemory, DeviceBuffer, HostBuffer, open_cuda

SLOTS = 2


def check_compatible(
    info: dict[str, Any], trt_version: str, gpu_name: str, gpu_cc: tuple[int, int], engine_file: Path
) -> None:
    """Refuse an engine built for another TensorRT version or GPU (engines are not portable)."""
    problems = []
    built_version = str(info.get("tensorrt_version", "?"))
    if built_version != trt_version and not info.get("version_compatible"):
        problems.append(f"TensorRT {built_version} (this machine has {trt_version})")
    gpu = info.get("gpu") or {}
    cc = f"{gpu_cc[0]}.{gpu_cc[1]}"
    if gpu.get("name") != gpu_name or str(gpu.get("compute_capability")) != cc:
        problems.append(
            f"GPU {gpu.get('name')} sm {gpu.get('compute_capability')} (this is {gpu_name} sm {cc})"
        )
    if problems:
        onnx = info.get("onnx") or "MODEL.onnx"
        raise EdgesegError(
            f"engine {engine_file.name} was built for {' and '.join(problems)}; engines are not portable, "
            f"rebuild it on this device: edgeseg build {onnx} --target tensorrt"
        )


@dataclass
class _Slot:
    host_in: HostBuffer
    host_out: HostBuffer
    dev_in: DeviceBuffer
    dev_out: DeviceBuffer
    done: Any  # CUDA event recorded after the download
    out_shape: tuple[int, ...] = ()
    busy: bool = False


class TensorRTBackend(Backend):
    name = "tensorrt"
    OPTIONS = ("card", "cuda")
    max_in_flight = SLOTS

    def __init__(
        self,
        path: str | Path,
        *,
        card: ModelCard | None = None,
        cuda: str | CudaMemory | None = None,
        check_compat: bool = True,
    ) -> None:
        self.path = Path(path)
        self.options = BackendOptions(card=card, cuda=cuda if isinstance(cuda, str) else None)
        self.trt = require("tensorrt", purpose="running TensorRT engines")
        self.info = load_sidecar(self.path)
        if self.info is None and card is None:
            raise EdgesegError(
                f"no sidecar {sidecar_path(self.path).name} beside {self.path.name}: cannot tell which model, "
                "TensorRT and GPU it was built for; rebuild with `edgeseg build --target tensorrt`"
            )
        self.card = card or ModelCard.from_dict(self.info["card"])  # type: ignore[index]
        self._owns_mem = not isinstance(cuda, CudaMemory)
        self.mem: CudaMemory = cuda if isinstance(cuda, CudaMemory) else open_cuda(cuda)
        self.gpu = self.mem.device_info()
        self.slots: list[_Slot] = []
        self.stream = None
        try:
            if check_compat and self.info is not None:
                check_compatible(
                    self.info,
                    str(self.trt.__version__),
                    self.gpu.name,
                    self.gpu.compute_capability,
                    self.path,
                )
            self._load()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _load(self) -> None:
        trt = self.trt
        logger = _Logger.make(trt)
        self.runtime = trt.Runtime(logger)
        engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            why = logger.last_error() or "deserialization failed"
            raise EdgesegError(
                f"cannot load TensorRT engine {self.path.name}: {why} (corrupt file or another TensorRT version; "
                "rebuild it with `edgeseg build --target tensorrt`)"
            )
        self.engine = engine
        self.context = engine.create_execution_context()
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1 or not outputs:
            raise EdgesegError(
                f"{self.path.name} has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 image in"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.extra_outputs = outputs[1:]
        self.in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        self.out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))
        self.engine_shape = tuple(int(d) for d in engine.get_tensor_shape(self.input_name))
        if any(d < 0 for d in self.engine_shape):
            lo, opt, hi = (
                tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(self.input_name, 0)
            )
            self.profile = (lo, opt, hi)
        else:
            self.profile = (self.engine_shape,) * 3
        max_in = self.profile[2]
        self._set_shape(max_in)
        max_out = self.context.get_tensor_shape(self.output_name)
        out_count = int(np.prod(max_out))
        in_count = int(np.prod(max_in))
        self.stream = self.mem.create_stream()
        self._extra_buffers = [
            self.mem.alloc_device(
                int(np.prod(self.context.get_tensor_shape(n)))
                * np.dtype(trt.nptype(engine.get_tensor_dtype(n))).itemsize
            )
            for n in self.extra_outputs
        ]
        for n, buf in zip(self.extra_outputs, self._extra_buffers):
            self.context.set_tensor_address(n, buf.ptr)
        for _ in range(SLOTS):
            self.slots.append(
                _Slot(
                    host_in=self.mem.alloc_pinned((in_count,), self.in_dtype),
                    host_out=self.mem.alloc_pinned((out_count,), self.out_dtype),
                    dev_in=self.mem.alloc_device(in_count * self.in_dtype.itemsize),
                    dev_out=self.mem.alloc_device(out_count * self.out_dtype.itemsize),
                    done=self.mem.create_event(),
                )
            )
        self._current: tuple[int, ...] | None = None
        self._next = 0
        self._pending: deque[int] = deque()

    def _set_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Bind the input shape (dynamic engines) and return the output shape it implies."""
        lo, _, hi = self.profile
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            raise EdgesegError(
                f"{self.path.name} accepts input shapes {list(lo)}..{list(hi)}, got {list(shape)}; "
                "rebuild with --min-shape/--opt-shape/--max-shape covering it"
            )
        if not self.context.set_input_shape(self.input_name, tuple(shape)):
            raise EdgesegError(f"TensorRT rejected input shape {list(shape)} for {self.path.name}")
        return tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))

    # ------------------------------------------------------------------ inference
    def submit(self, batch: np.ndarray) -> int:
        """Stage `batch` in the free slot and enqueue upload, inference and download; returns the slot."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise EdgesegError(f"expected an N x 3 x H x W batch, got {batch.shape}")
        slot_index = self._next
        slot = self.slots[slot_index]
        if slot.busy:
            raise EdgesegError(f"{SLOTS} batches already in flight; call result() before submitting more")
        shape = tuple(int(d) for d in batch.shape)
        out_shape = self._set_shape(shape) if shape != self._current else self._out_shape
        self._current, self._out_shape = shape, out_shape
        n_in = int(np.prod(shape))
        n_out = int(np.prod(out_shape))
        slot.host_in.array[:n_in] = batch.reshape(-1)  # casts to the engine's input dtype
        slot.out_shape = out_shape
        ctx, mem, stream = self.context, self.mem, self.stream
        mem.memcpy_htod_async(slot.dev_in, slot.host_in, stream, nbytes=n_in * self.in_dtype.itemsize)
        ctx.set_tensor_address(self.input_name, slot.dev_in.ptr)
        ctx.set_tensor_address(self.output_name, slot.dev_out.ptr)
        if not ctx.execute_async_v3(mem.stream_handle(stream)):
            raise EdgesegError(
                f"TensorRT failed to enqueue {self.path.name} (execute_async_v3 returned False)"
            )
        mem.memcpy_dtoh_async(slot.host_out, slot.dev_out, stream, nbytes=n_out * self.out_dtype.itemsize)
        mem.record_event(slot.done, stream)
        slot.busy = True
        self._pending.append(slot_index)
        self._next = (slot_index + 1) % SLOTS
        return slot_index

    def result(self) -> np.ndarray:
        """Wait for the oldest submitted batch and return its output (a fresh array)."""
        if not self._pending:
            raise EdgesegError("result() called with nothing submitted")
        slot = self.slots[self._pending.popleft()]
        self.mem.event_synchronize(slot.done)
        n_out = int(np.prod(slot.out_shape))
        out = slot.host_out.array[:n_out].reshape(slot.out_shape).copy()
        slot.busy = False
        return out

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._pending:
            raise EdgesegError("run() while pipelined batches are pending; collect them with result() first")
        self.submit(batch)
        return self.result()

    def run_pipelined(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Outputs in order, with up to two batches in flight (staging n+1 while n runs)."""
        for batch in batches:
            if len(self._pending) == SLOTS:
                yield self.result()
            self.submit(batch)
        while self._pending:
            yield self.result()

    # ------------------------------------------------------------------ threads
    def activate(self) -> None:
        """Called by the streaming pipeline on its inference thread: bind the CUDA context there."""
        self.mem.activate()

    def deactivate(self) -> None:
        self.mem.deactivate()

    # ------------------------------------------------------------------ housekeeping
    @property
    def computes_on_cpu(self) -> bool:
        return False  # the GPU infers; OpenCV may use every core for decoding and drawing

    def describe(self) -> dict:
        d = {
            **super().describe(),
            "tensorrt": str(self.trt.__version__),
            "gpu": self.gpu.to_dict(),
            "cuda_binding": self.mem.name,
            "input_profile": [list(s) for s in self.profile],
        }
        if self.info:
            d["dla_core"] = self.info.get("dla_core")
        return d

    def close(self) -> None:
        mem = getattr(self, "mem", None)
        if mem is None:
            return
        if self.stream is not None:
            mem.synchronize(self.stream)
        for slot in self.slots:
            for obj in (slot.host_in, slot.host_out, slot.dev_in, slot.dev_out, slot.done):
                mem.free(obj)
        for buf in getattr(self, "_extra_buffers", []):
            mem.free(buf)
        if self.stream is not None:
            mem.free(self.stream)
        self.slots, self.stream = [], None
        self.context = self.engine = None
        if self._owns_mem:
            mem.close()
        self.mem = None  # type: ignore[assignment]


class _Logger:
    """An ILogger keeping error messages, so a failed deserialization is explained in one line."""

    @staticmethod
    def make(trt: Any) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                if "ERROR" in str(severity).upper():
                    self.errors.append(str(msg).strip().splitlines()[0] if str(msg).strip() else "")

            def last_error(self) -> str:
                return self.errors[-1] if self.errors else ""

        return Logger()
