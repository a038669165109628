"""TensorRT backend: runs a serialized engine with the tensor-name API (TensorRT 8.5+ / 10.x / 11.x).

Before deserializing, the engine's sidecar (`<engine>.json`, written by `edgeseg build --target
tensorrt`) is checked against this machine: an engine only runs on the TensorRT version and GPU module
it was built for (name, compute capability, SM count, memory: Orin AGX/NX/Nano share sm 8.7), and a
mismatch gets a one-line message asking for a rebuild (or `--allow-other-gpu`) instead of a crash or
silent garbage. An engine without a sidecar (made by trtexec) loads with a warning, its card from
`--card` or the ONNX beside it. The runtime is prepared as trtexec and Polygraphy prepare it: plugins
registered (`init_libnvinfer_plugins`), `DLA_core` from the sidecar, and `engine_host_code_allowed` for
version-compatible engines and for engines without a sidecar (a `trtexec --versionCompatible` engine
carries no sidecar to say so; Polygraphy allows host code whenever it loads). Memory goes
through `edgeseg.runtime.cuda_mem` (cuda-python or pycuda), every call inside `mem.current()`, so any
thread may call `run` (a ROS callback) without knowing about CUDA contexts.

Workers: `spawn()` gives another worker its own IExecutionContext, stream and buffers on the SAME
deserialized ICudaEngine (one copy of the weights); the engine, runtime and CUDA binding are released
when the last backend sharing them closes, inside the device's context (pycuda: TensorRT frees device
memory when they are destroyed). On a dynamic-shape engine each context in concurrent use needs its own
optimization profile on TensorRT 8.5/8.6 (NvInferRuntime.h): unless the engine shares profiles (8.6 built
with PROFILE_SHARING_0806, or 10+), each worker takes a free profile index (`edgeseg build --workers N`
builds N), and one more worker than profiles is refused in one line.

Double buffering: two slots, each with pinned host and device buffers for input and output, share one
CUDA stream. `submit(batch)` copies the batch into the free slot's pinned buffer and enqueues
upload -> execute_async_v3 -> download, then returns without waiting; `result()` waits for the oldest
slot. So while the GPU runs frame n, the host is already preprocessing and staging frame n+1 into the
other slot (and its upload is queued right behind inference n on the stream). `run_pipelined(batches)`
keeps two frames in flight; `run(batch)` is the plain synchronous call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import load_sidecar, read_card
from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line
from edgeseg.lazy import require
from edgeseg.runtime.backends.base import Backend, BackendOptions, given_options
from edgeseg.runtime.cuda_mem import CudaMemory, DeviceBuffer, DeviceInfo, HostBuffer, open_cuda

SLOTS = 2
MEMORY_TOLERANCE = 0.1  # the same module reports the same memory; Orin 8/16/32/64 GB differ far more


def _describe_gpu(name: Any, cc: Any, sms: Any) -> str:
    return f"{name} sm {cc}" + (f" with {sms} SMs" if sms else "")


def check_compatible(
    info: dict[str, Any],
    trt_version: str,
    gpu: DeviceInfo,
    engine_file: Path,
    *,
    allow_other_gpu: bool = False,
) -> None:
    """Refuse an engine built for another TensorRT version or GPU module (engines are not portable).

    The module is name + compute capability + SM count + memory: Orin AGX, NX and Nano share sm 8.7.
    The UUID is recorded but not compared: another board of the same module runs the engine fine.
    `allow_other_gpu` accepts another module of the same name and compute capability.
    """
    problems = []
    built_version = str(info.get("tensorrt_version", "?"))
    if built_version != trt_version and not info.get("version_compatible"):
        problems.append(f"TensorRT {built_version} (this machine has {trt_version})")
    built = info.get("gpu") or {}
    cc = f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    here = _describe_gpu(gpu.name, cc, gpu.sm_count)
    there = _describe_gpu(built.get("name"), built.get("compute_capability"), built.get("sm_count"))
    if built.get("name") != gpu.name or str(built.get("compute_capability")) != cc:
        problems.append(f"GPU {there} (this is {here})")
    elif not allow_other_gpu and _other_module(built, gpu):
        problems.append(
            f"GPU {there}, {built.get('total_memory', 0) / 2**30:.0f} GiB (this is {here}, "
            f"{gpu.total_memory / 2**30:.0f} GiB: another module of the same family; --allow-other-gpu "
            "runs it anyway)"
        )
    if problems:
        onnx = info.get("onnx") or "MODEL.onnx"
        raise EdgesegError(
            f"engine {engine_file.name} was built for {' and '.join(problems)}; engines are not portable, "
            f"rebuild it on this device: edgeseg build {onnx} --target tensorrt"
        )


def _other_module(built: dict[str, Any], gpu: DeviceInfo) -> bool:
    sms = built.get("sm_count")
    if sms is not None and gpu.sm_count is not None and int(sms) != gpu.sm_count:
        return True
    memory = int(built.get("total_memory") or 0)
    return bool(memory and gpu.total_memory) and abs(memory - gpu.total_memory) > MEMORY_TOLERANCE * memory


class _SharedEngine:
    """One deserialized engine (with its runtime and CUDA binding) shared by the backends of several
    workers; released when the last of them closes."""

    def __init__(
        self, trt: Any, mem: CudaMemory, owns_mem: bool, runtime: Any, engine: Any, shares_profiles: bool
    ) -> None:
        self.trt, self.mem, self.owns_mem = trt, mem, owns_mem
        self.runtime, self.engine = runtime, engine
        self.shares_profiles = shares_profiles
        self.users = 1
        self.profiles_taken: set[int] = set()
        self.lock = threading.Lock()

    def claim_profile(self, engine_file: Path) -> int:
        """The optimization profile for a new context: 0 where contexts share profiles, else a free one."""
        if self.shares_profiles:
            return 0
        count = int(self.engine.num_optimization_profiles)
        with self.lock:
            free = [i for i in range(count) if i not in self.profiles_taken]
            if not free:
                raise EdgesegError(
                    f"{engine_file.name} has {count} optimization profile{'s' if count != 1 else ''} and TensorRT "
                    f"{self.trt.__version__} gives each concurrent worker on a dynamic-shape engine its own: "
                    f"rebuild it with `edgeseg build ... --target tensorrt --workers {count + 1}` or run fewer workers"
                )
            self.profiles_taken.add(free[0])
            return free[0]

    def release_profile(self, index: int | None) -> None:
        with self.lock:
            self.profiles_taken.discard(index)  # type: ignore[arg-type]

    def join(self) -> None:
        with self.lock:
            if self.users == 0:
                raise EdgesegError("the TensorRT engine was already released")
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            last = self.users == 0
        if last:
            try:
                with self.mem.current():  # TensorRT frees device memory as they go: inside the context
                    self.engine = None  # release order: engine, then runtime, then CUDA
                    self.runtime = None
            finally:
                if self.owns_mem:
                    self.mem.close()


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
    OPTIONS = ("card", "cuda", "allow_other_gpu")
    max_in_flight = SLOTS

    def __init__(
        self,
        path: str | Path,
        options: BackendOptions | None = None,
        *,
        check_compat: bool = True,
        _shared: _SharedEngine | None = None,
    ) -> None:
        self.path = Path(path)
        self.options = options = given_options(options)
        card = options.card
        self.slots: list[_Slot] = []
        self.stream = None
        self._shared: _SharedEngine | None = None
        if _shared is not None:  # another worker on an engine already loaded (spawn)
            _shared.join()
            self._shared, self.trt, self.mem = _shared, _shared.trt, _shared.mem
            self.info, self.card, self.gpu = None, card, None
        else:
            self.trt = require("tensorrt", purpose="running TensorRT engines")
            self.info = load_sidecar(self.path)
            self.card = card or read_card(self.path)  # no sidecar: --card, a card JSON or the ONNX beside it
            if self.info is None:
                from edgeseg.console import warn

                warn(
                    f"{self.path.name} has no sidecar (built by trtexec?): model card from {_card_source(self.path, card)}; "
                    "its TensorRT version and GPU are not checked, and host code is allowed (a --versionCompatible "
                    "engine carries its runtime): load only engines you built"
                )
            mem = self.mem = open_cuda(options.cuda)  # this backend's; the workers it spawns share it
            try:
                self.gpu = mem.device_info()
                if check_compat and self.info is not None:
                    check_compatible(
                        self.info,
                        str(self.trt.__version__),
                        self.gpu,
                        self.path,
                        allow_other_gpu=options.allow_other_gpu,
                    )
                with mem.current():
                    runtime, engine = self._deserialize()
            except BaseException:
                mem.close()
                raise
            self._shared = _SharedEngine(self.trt, mem, True, runtime, engine, self._shares_profiles())
        self.runtime, self.engine = self._shared.runtime, self._shared.engine
        try:
            with self.mem.current():
                self._setup()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _deserialize(self) -> tuple[Any, Any]:
        """A runtime prepared as trtexec prepares it, and the engine deserialized by it."""
        trt = self.trt
        logger = _Logger.make(trt)
        # plugin layers deserialize only with their creators registered in this process (Polygraphy's
        # loader and jetson-inference's tensorNet.cpp register them first)
        trt.init_libnvinfer_plugins(logger, "")
        runtime = trt.Runtime(logger)
        info = self.info or {}
        if info.get("dla_core") is not None:
            runtime.DLA_core = int(info["dla_core"])  # the core it was built for (the default is not it)
        host_code = (
            info.get("version_compatible") or self.info is None
        )  # no sidecar: trtexec may have built it so
        if host_code and hasattr(runtime, "engine_host_code_allowed"):
            runtime.engine_host_code_allowed = True  # a version-compatible engine embeds its lean runtime
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            why = logger.last_error() or "deserialization failed"
            raise EdgesegError(
                f"cannot load TensorRT engine {self.path.name}: {why} (corrupt file or another TensorRT version; "
                "rebuild it with `edgeseg build --target tensorrt`)"
            )
        return runtime, engine

    def _shares_profiles(self) -> bool:
        """Do all contexts of this engine use profile 0 at once? The sidecar says how it was built;
        without one, TensorRT 10+ shares (every new context gets profile 0) and 8.x does not."""
        if self.info is not None and "profile_sharing" in self.info:
            return bool(self.info["profile_sharing"])
        # 10.0 made sharing the default, the release that brought STRONGLY_TYPED (tensorrt_features.detect)
        return hasattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    def _create_context(self) -> None:
        """This worker's stream and execution context, on its own optimization profile where needed."""
        trt, engine = self.trt, self.engine
        self.stream = self.mem.create_stream()
        self.profile_index: int | None = None
        self.context = engine.create_execution_context()
        inputs = [
            engine.get_tensor_name(i)
            for i in range(engine.num_io_tensors)
            if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.INPUT
        ]
        if not any(any(int(d) < 0 for d in engine.get_tensor_shape(n)) for n in inputs):
            return  # a static-shape engine: no profile to choose
        assert self._shared is not None
        index = self._shared.claim_profile(self.path)
        self.profile_index = index
        # only the first context of an 8.x engine gets profile 0 by itself: every context says which it uses
        if not self.context.set_optimization_profile_async(index, self.mem.stream_handle(self.stream)):
            raise EdgesegError(f"TensorRT refused optimization profile {index} of {self.path.name}")
        self.mem.synchronize(self.stream)

    def _setup(self) -> None:
        """This worker's execution context, stream, and buffers sized for the largest profile shape."""
        trt, engine = self.trt, self.engine
        self._create_context()
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
                tuple(int(d) for d in s)
                for s in engine.get_tensor_profile_shape(self.input_name, self.profile_index or 0)
            )
            self.profile = (lo, opt, hi)
        else:
            self.profile = (self.engine_shape,) * 3
        max_in = self.profile[2]
        self._set_shape(max_in)
        max_out = self.context.get_tensor_shape(self.output_name)
        out_count = int(np.prod(max_out))
        in_count = int(np.prod(max_in))
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

    def spawn(self) -> TensorRTBackend:
        """Another worker on the same deserialized engine: its own execution context, stream, buffers."""
        if self._shared is None or self.engine is None:
            raise EdgesegError("spawn() on a closed TensorRT backend")
        other = TensorRTBackend(self.path, self.options.replace(card=self.card), _shared=self._shared)
        other.info, other.gpu, other.options = self.info, self.gpu, self.options
        return other

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """A shape outside the engine's optimization profile is refused here, in words, before TensorRT
        sees it (NvInferRuntime.h, IOptimizationProfile: "A runtime error will be raised if the input
        tensor dimensions fall outside the valid range for this profile")."""
        lo, _, hi = self.profile
        if len(shape) != len(lo):
            raise EdgesegError(f"{self.path.name} takes rank-{len(lo)} input, got {list(shape)}")
        if not lo[0] <= shape[0] <= hi[0]:
            takes = f"{lo[0]}" if lo[0] == hi[0] else f"{lo[0]} to {hi[0]}"
            fix = (
                f"for more streams rebuild it with `edgeseg build ... --target tensorrt --max-batch {shape[0]}`"
                if shape[0] > hi[0]
                else "rebuild it with a profile from batch 1 (`edgeseg build ... --target tensorrt --max-batch N`)"
            )
            raise EdgesegError(
                f"{self.path.name} takes batches of {takes} frames (its optimization profile), got {shape[0]}; {fix}"
            )
        if not all(a <= s <= b for a, s, b in zip(lo[1:], shape[1:], hi[1:])):
            size = "x".join(map(str, shape[2:]))
            if tuple(lo[2:]) == tuple(hi[2:]):
                takes = "x".join(map(str, lo[2:]))
                raise EdgesegError(f"{self.path.name} takes {takes} frames only, got {size}")
            raise EdgesegError(
                f"{self.path.name} takes frames from {'x'.join(map(str, lo[2:]))} to {'x'.join(map(str, hi[2:]))} "
                f"(its optimization profile), got {size}; run with --input-size within that range, or rebuild "
                "with --min-shape/--opt-shape/--max-shape covering it"
            )

    def _set_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Bind the input shape (dynamic engines) and return the output shape it implies; the shape was
        checked once, by the base class's `check_batch` (or is the profile's own, when opening)."""
        if not self.context.set_input_shape(self.input_name, tuple(shape)):
            raise EdgesegError(f"TensorRT rejected input shape {list(shape)} for {self.path.name}")
        return tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))

    # ------------------------------------------------------------------ inference
    def submit_impl(self, batch: np.ndarray) -> None:
        """Stage `batch` in the free slot and enqueue upload, inference and download."""
        with self.mem.current():
            self._stage(batch)

    def _stage(self, batch: np.ndarray) -> int:
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
        self.mem.event_synchronize(slot.done)  # a blocking-sync event: the thread sleeps, not spins
        n_out = int(np.prod(slot.out_shape))
        out = slot.host_out.array[:n_out].reshape(slot.out_shape).copy()
        slot.busy = False
        return out

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        if self._pending:
            raise EdgesegError("run() while pipelined batches are pending; collect them with result() first")
        self.submit_impl(batch)
        return self.result()

    def run_pipelined(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Outputs in order, with up to two batches in flight (staging n+1 while n runs)."""
        for batch in batches:
            if len(self._pending) == SLOTS:
                yield self.result()
            self.submit(batch)
        while self._pending:
            yield self.result()

    @property
    def batch_limits(self) -> tuple[int, int | None]:
        """The optimisation profile's batch range (a static engine: its one batch size)."""
        lo, _, hi = self.profile
        return (lo[0], hi[0])

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
            "gpu": self.gpu.to_dict() if self.gpu is not None else None,
            "cuda_binding": self.mem.name,
            "input_profile": [list(s) for s in self.profile],
        }
        if self.info:
            d["dla_core"] = self.info.get("dla_core")
        return d

    def close(self) -> None:
        """Free this worker's buffers, stream and context; the last worker also releases the engine,
        the runtime and (if it opened it) the CUDA binding."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        mem = shared.mem
        try:
            with mem.current():
                for slot in self.slots:
                    if slot.busy:
                        mem.event_synchronize(slot.done)
                for slot in self.slots:
                    for obj in (slot.host_in, slot.host_out, slot.dev_in, slot.dev_out, slot.done):
                        mem.free(obj)
                for buf in getattr(self, "_extra_buffers", []):
                    mem.free(buf)
                self.context = None  # destroyed here, inside the context (it frees device memory)
                if self.stream is not None:
                    mem.free(self.stream)
        finally:
            self.slots, self.stream, self._extra_buffers = [], None, []
            self.context = self.engine = self.runtime = None
            shared.release_profile(getattr(self, "profile_index", None))
            shared.leave()


def _card_source(engine: Path, card: ModelCard | None) -> str:
    from edgeseg.artifacts import card_path, onnx_beside_engine

    if card is not None:
        return "--card"
    if card_path(engine).is_file():
        return card_path(engine).name
    onnx = onnx_beside_engine(engine)
    return onnx.name if onnx is not None else "?"


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
                    self.errors.append(first_line(str(msg)))

            def last_error(self) -> str:
                return self.errors[-1] if self.errors else ""

        return Logger()
