"""OpenVINO backend: runs edgeseg's ONNX files (FP32, FP16, Q/DQ INT8) on Intel's runtime, on the CPU
(any x86 with AVX2 or better) and, where the drivers are present, an Intel GPU or NPU, or AUTO.

OpenVINO reads the ONNX itself (no conversion step, no IR files), so the card comes from the file's
metadata as for every ONNX artifact. One compiled model serves every worker: `spawn()` hands out
another infer request on it instead of compiling again, so several workers or streams hold one copy
of the weights. With one worker the model compiles with the LATENCY hint (one CPU stream, every
thread on each frame); with several (`streams`), the THROUGHPUT hint with that many CPU streams, each
request running on its own stream (docs.openvino.ai, "High-level Performance Hints").

OpenVINO cannot read the QOperator INT8 form (`.int8.cpu.onnx`, per-channel QLinearConv); that file
stays with ONNX Runtime, and an attempt here is one clear line.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import card_from_metadata
from edgeseg.errors import EdgesegError, first_line
from edgeseg.lazy import require
from edgeseg.runtime.backends.base import (
    Backend,
    BackendOptions,
    card_fitting_graph,
    check_fixed_axes,
    given_options,
)
from edgeseg.runtime.workers import available_cores

DEVICES = ("cpu", "gpu", "npu", "auto")  # --device values; OpenVINO names them in capitals
_CORE: list[Any] = []  # the process's one ov.Core (see shared_core)
_CORE_LOCK = threading.Lock()


def shared_core() -> Any:
    """The process's one `ov.Core`, made on first use and kept until the process ends.

    Why one: each Core's CPU plugin gives the thread that creates it an alternate signal stack of its
    own and, when that Core goes, frees it and puts back the stack it found there. Cores that go in
    another order than they came (a model closed while a newer one lives on) leave the thread on
    freed memory, and the next signal it takes (Ctrl-C, SIGTERM: Python's handlers run on the
    alternate stack) kills the process with SIGSEGV instead of stopping it cleanly (measured with
    OpenVINO 2026.4; tests/test_openvino_backend.py). A Core that is never freed never frees a stack
    in use; compile settings are passed per compile_model call, so sharing it changes nothing else."""
    ov = require("openvino")
    with _CORE_LOCK:
        if not _CORE:
            _CORE.append(ov.Core())
        return _CORE[0]


def openvino_device(requested: str | None) -> str:
    """`--device` (cpu, gpu, gpu.1, npu, auto) -> the OpenVINO device name, if this machine has it."""
    require("openvino")  # a missing OpenVINO is its one line, before the device name is judged
    name = (requested or "cpu").upper()
    if name.split(".")[0].lower() not in DEVICES:
        raise EdgesegError(f"OpenVINO runs on {', '.join(DEVICES)}; got --device {requested}")
    if name == "AUTO":
        return name
    available = shared_core().available_devices  # e.g. ["CPU", "GPU.0", "GPU.1", "NPU"]
    if name in available or any(d.split(".")[0] == name for d in available):
        return name
    raise EdgesegError(
        f"OpenVINO has no {name} device on this machine (available: {', '.join(available)}); "
        "an Intel GPU or NPU needs its driver installed"
    )


@dataclass
class _Compiled:
    """One compiled model, shared by the backend that compiled it and every backend it spawned."""

    model: Any
    device: str
    hint: str
    streams: int
    precision: str | None = None  # what the device computes in (bf16 for FP16 files on AVX-512 BF16)
    pinned: bool | None = None  # CPU: inference threads pinned to cores (pins_threads)
    users: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def release(self) -> bool:
        """One user fewer; True when it was the last (the compiled model may go)."""
        with self.lock:
            self.users -= 1
            return self.users <= 0


class OpenVINOBackend(Backend):
    name = "openvino"
    OPTIONS = ("device", "threads", "card", "streams")

    def __init__(
        self,
        path: str | Path,
        options: BackendOptions | None = None,
        *,
        model: bytes | None = None,
        _shared: _Compiled | None = None,
        _request: Any = None,
    ) -> None:
        """`model`: the serialized ONNX itself, for a model not written anywhere (the INT8 gate's
        candidates; `card` then comes with it); `path` then only names it."""
        self.path = Path(path)
        self._model = model
        self.options = options = given_options(options)
        metadata, opset = _read_header(self.path, model)
        if opset > _newest_opset():
            ov = require("openvino")
            raise EdgesegError(
                f"{self.path.name}: it uses ONNX opset {opset}, and OpenVINO {ov.__version__.split('-')[0]} "
                f"reads up to opset {_newest_opset()}; export it with an older --opset"
            )
        self.card = options.card or card_from_metadata(self.path, metadata)
        self._compiled = _shared or self._compile(
            options.device, options.threads, max(1, options.streams or 1)
        )
        compiled = self._compiled.model
        if len(compiled.inputs) != 1:
            raise EdgesegError(
                f"{self.path.name} has {len(compiled.inputs)} inputs; edgeseg models take one image"
            )
        shape = compiled.inputs[0].get_partial_shape()
        self.input_shape: list[int | str] = [
            d.get_length() if d.is_static else f"dim{i}" for i, d in enumerate(shape)
        ]
        self.card = card_fitting_graph(self.card, self.input_shape)
        output = compiled.outputs[0]
        rank = output.get_partial_shape().rank
        if rank.is_static and rank.get_length() not in (3, 4):  # known before the first frame
            name = output.get_any_name() if output.get_names() else "0"
            dims = [d.get_length() if d.is_static else "?" for d in output.get_partial_shape()]
            raise EdgesegError(
                f"{self.path.name}: output {name!r} {dims} is not a segmentation output "
                "(N x C x H x W logits or N x H x W labels): is it a classifier?"
            )
        # one request per CPU stream of the compiled model: the model's own backend makes them all (one
        # thread may keep every stream busy through submit/result), and each spawn() takes one of them
        # over for the thread that drives it (workers, several streams' request pool), so N threads on
        # N streams hold N requests, not N on the first backend and one more per spawn
        if _request is not None:
            self._requests = [_request]
        else:
            count = 1 if _shared is not None else self._compiled.streams
            self._requests = [compiled.create_infer_request() for _ in range(count)]
        self.max_in_flight = len(self._requests)
        self._pending: deque[Any] = deque()
        self._free = deque(self._requests)
        self._closed = False

    def _compile(self, device: str | None, threads: int | None, streams: int) -> _Compiled:
        ov = require("openvino")
        import openvino.properties.hint as hints

        name = openvino_device(device)
        core = shared_core()
        try:
            model = core.read_model(self._model if self._model is not None else str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError/OVError with a multi-line report
            raise EdgesegError(f"OpenVINO cannot read {self.path}: {_short(exc)}") from None
        hint = hints.PerformanceMode.THROUGHPUT if streams > 1 else hints.PerformanceMode.LATENCY
        config: dict[str, Any] = {hints.performance_mode: hint}
        if self.card.precision == "fp32":
            # an FP32 file runs in FP32: OpenVINO's CPU plugin would otherwise compute in bfloat16 on
            # CPUs with AVX-512 BF16 or AMX (its default there), which changes the results and made
            # most of its FP32 speed-up here (docs/runtime.md); the FP16 file is the way to ask for it
            config[hints.inference_precision] = ov.Type.f32
        if name.startswith("CPU"):
            import openvino.properties as props

            if streams > 1:
                config[props.num_streams] = streams
            if threads:
                # per worker, as for ONNX Runtime's sessions: the model's streams share them all
                config[props.inference_num_threads] = int(threads) * streams
            if not pins_threads(threads, streams):
                config[hints.enable_cpu_pinning] = False
        try:
            compiled = core.compile_model(model, name, config)
        except Exception as exc:
            raise EdgesegError(
                f"OpenVINO cannot compile {self.path.name} for {name}: {_short(exc)}"
            ) from None
        try:
            precision = compiled.get_property(hints.inference_precision).get_type_name()
        except Exception:  # noqa: BLE001 - a device that does not report it
            precision = None
        try:
            pinned = bool(compiled.get_property(hints.enable_cpu_pinning)) if name.startswith("CPU") else None
        except Exception:  # noqa: BLE001 - a device that does not report it
            pinned = None
        hint_name = "throughput" if streams > 1 else "latency"
        return _Compiled(compiled, name, hint_name, streams, precision, pinned)

    # --- inference ---------------------------------------------------------------------------------
    def check_shape(self, shape: tuple[int, ...]) -> None:
        check_fixed_axes(self.path, self.input_shape, shape)

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        if self._pending:
            raise EdgesegError("run() called with batches in flight; call result() first")
        self.submit_impl(batch)
        return self.result()

    def submit_impl(self, batch: np.ndarray) -> None:
        if not self._free:
            raise EdgesegError(f"{self.max_in_flight} batch(es) already in flight; call result() first")
        request = self._free.popleft()
        try:
            # the batch itself as the input tensor (shared memory, no copy), not `start_async({0: batch})`:
            # that copies into the request's own tensor through OpenVINO's Python data dispatcher, and two
            # threads doing so at once on requests of one compiled model (several streams, a request
            # each) deadlocked there in about half of the runs (OpenVINO 2026.4, reproduced in a
            # two-thread loop); with shared tensors none did (tests/test_openvino_backend.py)
            tensor = require("openvino").Tensor(
                np.ascontiguousarray(batch, dtype=np.float32), shared_memory=True
            )
            request.set_input_tensor(tensor)
            request.start_async()
        except Exception as exc:
            self._free.appendleft(request)
            raise EdgesegError(f"OpenVINO failed on {self.path.name}: {_short(exc)}") from None
        self._pending.append((request, tensor))  # the tensor (and the batch it wraps) lives until result()

    def result(self) -> np.ndarray:
        if not self._pending:
            raise EdgesegError("result() called with nothing submitted")
        request, _tensor = self._pending.popleft()
        try:
            request.wait()
            # copied out: the request's output buffer is reused by its next inference
            return np.array(request.get_output_tensor(0).data, copy=True)
        except Exception as exc:
            raise EdgesegError(f"OpenVINO failed on {self.path.name}: {_short(exc)}") from None
        finally:
            self._free.append(request)

    @property
    def batch_limits(self) -> tuple[int, int | None]:
        """A dynamic batch axis takes any batch; a fixed one exactly its size."""
        first = self.input_shape[0] if self.input_shape else 1
        return (first, first) if isinstance(first, int) and first > 0 else (1, None)

    # --- more workers ------------------------------------------------------------------------------
    def spawn(self) -> Backend:
        """Another infer request on the same compiled model (one copy of the weights): with the
        THROUGHPUT hint each request runs on its own CPU stream. One of this backend's idle requests is
        handed over while it has more than one (its own in-flight limit goes down by one); past the
        model's streams the spawn makes a request of its own, which waits for a free stream."""
        with self._compiled.lock:
            self._compiled.users += 1
        request = None
        if len(self._free) > 1:
            request = self._free.pop()
            self._requests.remove(request)
            self.max_in_flight = len(self._requests)
        return OpenVINOBackend(
            self.path, self.options.replace(card=self.card), _shared=self._compiled, _request=request
        )

    @property
    def computes_on_cpu(self) -> bool:
        return self._compiled.device.startswith("CPU") or self._compiled.device == "AUTO"

    def close(self) -> None:
        for request, _tensor in self._pending:
            request.wait()
        self._pending.clear()
        self._requests = []
        self._free.clear()
        if not self._closed:
            self._closed = True
            if self._compiled.release():
                self._compiled.model = None  # the last user: the compiled model (its weights) goes

    def describe(self) -> dict:
        info = {**super().describe(), "device": self._compiled.device, "hint": self._compiled.hint}
        if self._compiled.precision:
            info["inference_precision"] = self._compiled.precision
        if self._compiled.streams > 1:
            info["streams"] = self._compiled.streams
        if self._compiled.pinned is not None:
            info["cpu_pinning"] = self._compiled.pinned
        return info


def pins_threads(threads: int | None, streams: int, cores: int | None = None) -> bool:
    """Whether OpenVINO may pin its inference threads to cores (its CPU default on Linux): only when
    they take every core this process may use. Asked for fewer, the process shares the machine, and
    OpenVINO pins from the first allowed core in every process alike: two `--threads 1` processes
    both ran on core 0 while core 1 idled (measured: docs/benchmarks.md; Intel's knowledge-base
    article 000058227 describes the same for CPU_BIND_THREAD, the older name of this setting)."""
    return not threads or int(threads) * streams >= (cores or available_cores())


def _read_header(path: Path, model: bytes | None) -> tuple[dict[str, str], int]:
    """The file's metadata (its card) and its ONNX opset, read without its external weights."""
    onnx = require("onnx")
    try:
        proto = (
            onnx.load_from_string(model)
            if model is not None
            else onnx.load(str(path), load_external_data=False)
        )
    except Exception as exc:  # protobuf DecodeError, OSError
        raise EdgesegError(f"{path} is not a valid ONNX model: {first_line(exc)}") from None
    opset = max((int(i.version) for i in proto.opset_import if i.domain in ("", "ai.onnx")), default=0)
    return {p.key: p.value for p in proto.metadata_props}, opset


def _newest_opset() -> int:
    """The newest ONNX opset the onnx package beside OpenVINO defines (OpenVINO's ONNX reader follows
    onnx releases; a newer opset's operators may mean something it does not know)."""
    return int(require("onnx").defs.onnx_opset_version())


def _short(exc: BaseException) -> str:
    """OpenVINO's errors carry a C++ source trail; the lines after it say what went wrong, joined into
    one line (an ONNX operator it has no conversion rule for is named three lines below "FrontEnd API
    failed with OpConversionFailure:", after "Model wasn't fully converted." and "Summary:")."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check '")) and ".cpp:" not in ln]
    said = [ln.lstrip("- ").strip() for ln in useful if ln != "Summary:"]
    return " ".join(said or lines or [first_line(exc)])[:300]
