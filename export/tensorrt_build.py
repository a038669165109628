"""Build a TensorRT engine from edgeseg's precision-annotated ONNX, on TensorRT 8.5/8.6, 10.x and 11.x.

`build_engine` is a library function: it parses the ONNX, applies the flags `plan_build` chose
(export/tensorrt_plan.py), runs the builder (Ctrl-C cancels it cleanly through the progress monitor)
and writes the engine atomically with a sidecar `<engine>.json` (model card, TensorRT version, GPU,
precision, profile shapes, DLA core, ONNX sha256) that the runtime checks before running the engine.
It reports progress through a callback and raises EdgesegError; it never prints. Needs tensorrt and
a GPU; `tensorrt_unavailable_reason` says why not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import sidecar_path
from edgeseg.card import ModelCard, sha256_file
from edgeseg.errors import EdgesegError, MissingDependencyError, first_line
from edgeseg.export.graph import card_of
from edgeseg.export.tensorrt_features import TrtFeatures, detect
from edgeseg.export.tensorrt_plan import (
    BuildPlan,
    EngineOptions,
    GraphInfo,
    inspect_onnx,
    plan_build,
    profile_shapes,
)
from edgeseg.progress import Progress

SIDECAR_FORMAT = "edgeseg-engine/1"


@dataclass
class EngineResult:
    engine: Path
    sidecar: Path
    seconds: float
    plan: BuildPlan
    info: dict[str, Any]


def _make_logger(trt: Any) -> Any:
    """An ILogger that keeps messages, so a failed build can say why in one line."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity: Any, msg: str) -> None:  # called by TensorRT
            self.messages.append((str(severity), str(msg)))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if "ERROR" in s.upper()]

    return _Logger()


def parser_errors(trt_parser: Any, graph: GraphInfo) -> list[str]:
    """'node <name> (<op>): <desc>' per parser error; node names come from TensorRT 10+ or our graph."""
    out = []
    for i in range(trt_parser.num_errors):
        err = trt_parser.get_error(i)
        index = int(err.node())
        name = err.node_name() if hasattr(err, "node_name") else ""
        if not name and 0 <= index < len(graph.node_names):
            name = graph.node_names[index]
        op = graph.node_ops[index] if 0 <= index < len(graph.node_ops) else ""
        where = f"node {name} ({op})" if name else "model"
        out.append(f"{where}: {err.desc()}")
    return out


def _make_progress_monitor(trt: Any, progress: Progress | None, cancel: threading.Event) -> Any:
    """An IProgressMonitor (TensorRT 10+) that reports build phases to `progress`.

    `cancel` set -> step_complete returns False and TensorRT abandons the build. TensorRT calls the
    monitor from several builder threads at once (NvInfer.h: "must be thread-safe"), so one lock keeps
    the phase table and the progress callback (a terminal bar) to one thread at a time.
    """

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.labels: dict[str, str] = {}  # a nested phase is indented under its parent
            self.lock = threading.Lock()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self.lock:
                self.steps[phase_name] = max(num_steps, 1)
                self.labels[phase_name] = f"{'  ' if parent_phase else ''}{phase_name}"
                if progress is not None:
                    progress(self.labels[phase_name], 0, self.steps[phase_name])

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self.lock:
                total = self.steps.get(phase_name)
                if progress is not None and total is not None:
                    progress(self.labels[phase_name], min(step + 1, total), total)
            return not cancel.is_set()  # False cancels the build

        def phase_finish(self, phase_name: str) -> None:
            with self.lock:
                total = self.steps.pop(phase_name, None)
                label = self.labels.pop(phase_name, phase_name)
                if progress is not None and total is not None:
                    progress(label, total, total)

    return _Monitor()


def _make_calibrator(trt: Any, batches: Iterable[np.ndarray], cache: Path | None, cuda: Any) -> Any:
    """Legacy implicit-INT8 entropy calibrator (TensorRT 8.5-10.x), fed preprocessed NCHW batches.

    Its pinned and device buffers and its stream are the caller's to release with `free()` once the
    builder has returned (the config keeps the calibrator alive until then)."""
    from edgeseg.atomic import write_bytes

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches: Iterator[np.ndarray] = iter(batches)
            self.device = None
            self.host = None
            self.stream = cuda.create_stream()
            self.seen = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self.host is None or self.host.array.shape != batch.shape:
                self.free_buffers()
                self.host = cuda.alloc_pinned(batch.shape, np.float32)
                self.device = cuda.alloc_device(batch.nbytes)
            self.host.array[...] = batch
            cuda.memcpy_htod_async(self.device, self.host, self.stream)
            cuda.synchronize(self.stream)
            self.seen += 1
            return [self.device.ptr] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                write_bytes(cache, bytes(data))

        def free_buffers(self) -> None:
            for buf in (self.host, self.device):
                if buf is not None:
                    cuda.free(buf)
            self.host = self.device = None

        def free(self) -> None:
            self.free_buffers()
            if self.stream is not None:
                cuda.free(self.stream)
                self.stream = None

    return _Calibrator()


def _source_opset(model: Any) -> int | None:
    """The opset of the export a Q/DQ file was made from, as its own card records it."""
    try:
        return card_of(model).extra.get("int8", {}).get("source_opset")
    except EdgesegError:
        return None


def _check_calibration_shape(profiles: dict[str, dict[str, list[int]]], card: ModelCard) -> None:
    """The calibrator feeds batches at the card's input size; TensorRT calibrates at the profile's OPT."""
    batch = [1, 3, *card.input_size]
    for name, s in profiles.items():
        if list(s["opt"]) != batch:
            raise EdgesegError(
                f"the implicit calibrator feeds {'x'.join(map(str, batch))} batches (the card's input size) "
                f"but input {name!r} has --opt-shape {'x'.join(map(str, s['opt']))}; give --opt-shape "
                f"{'x'.join(map(str, batch))} for a --legacy-calibrator build"
            )


def _flag_bits(enum: Any, names: list[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << int(getattr(enum, name))
    return bits


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    options: EngineOptions,
    *,
    card: ModelCard | None = None,
    cuda: Any = None,
    progress: Progress | None = None,
) -> EngineResult:
    """Build and write `engine_path` (+ sidecar) from `onnx_path`. Needs tensorrt and a GPU."""
    import onnx

    from edgeseg.atomic import write_bytes, write_json
    from edgeseg.lazy import require
    from edgeseg.runtime.cuda_mem import open_cuda

    trt = require("tensorrt")
    if cuda is None:  # open (and close) our own CUDA binding for the GPU identity and the calibrator
        cuda = open_cuda()
        try:
            return build_engine(onnx_path, engine_path, options, card=card, cuda=cuda, progress=progress)
        finally:
            cuda.close()
    gpu = cuda.device_info()
    features = detect(trt)
    data = Path(onnx_path).read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError / ValidationError variants
        raise EdgesegError(f"{onnx_path} is not a valid ONNX file: {first_line(exc)}") from None
    card = card or card_of(model)
    graph = inspect_onnx(model)
    if graph.has_qdq and graph.fp16_graph and not features.strongly_typed:
        # TensorRT 8.x reads Q/DQ scales as FP32 (onnx-tensorrt 8.6 QuantDequantLinearHelper) and builds
        # weakly typed with INT8+FP16 flags anyway: give it the graph with FP32 float parts
        from edgeseg.export.fp16 import widen_to_fp32

        model = widen_to_fp32(model, _source_opset(model))
        data = model.SerializeToString()
        graph = inspect_onnx(model)
        plan_note = "Q/DQ graph widened to FP32 float parts for TensorRT 8.x's parser (FP16 by BuilderFlag)"
    else:
        plan_note = ""
    plan = plan_build(features, graph, options)
    if plan_note:
        plan.notes.append(plan_note)
    profiles = profile_shapes(graph, options, card)
    if plan.legacy_int8:
        _check_calibration_shape(profiles, card)

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, plan.network_flags))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = parser_errors(parser, graph) or logger.errors()[-1:] or ["unknown parser failure"]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise EdgesegError(f"TensorRT could not parse {Path(onnx_path).name}: {'; '.join(errors[:3])}{more}")

    config = builder.create_builder_config()
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if options.optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.optimization_level)  # plan_build checked 8.6+

    timing_cache, cache_reused, cache_note = _attach_timing_cache(config, options.timing_cache)
    if cache_note:
        plan.notes.append(cache_note)
        if progress is not None:
            progress(cache_note, 0, 0)

    profile = None
    if profiles:
        profile = builder.create_optimization_profile()
        for name, s in profiles.items():
            profile.set_shape(name, s["min"], s["opt"], s["max"])
        if config.add_optimization_profile(profile) < 0:
            raise EdgesegError(f"TensorRT rejected the optimization profile {profiles}")

    if options.dla_core is not None:
        cores = int(builder.num_DLA_cores)
        if options.dla_core >= cores:
            raise EdgesegError(
                f"--dla-core {options.dla_core} requested but this device has {cores} DLA core(s) "
                "(DLA exists on Jetson Xavier/Orin)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(options.dla_core)

    calibrator = None
    if plan.legacy_int8:
        if options.calibration_batches is None:
            raise EdgesegError("--legacy-calibrator needs calibration data (--calib-data)")
        if not hasattr(config, "int8_calibrator"):
            raise EdgesegError(
                f"TensorRT {features.version} has no int8_calibrator; drop --legacy-calibrator"
            )
        if profile is not None and hasattr(config, "set_calibration_profile"):
            # dynamic inputs: TensorRT calibrates at one shape, the profile's OPT (pyCore docstring)
            calib_profile = builder.create_optimization_profile()
            for name, s in profiles.items():
                calib_profile.set_shape(name, s["opt"], s["opt"], s["opt"])
            if not config.set_calibration_profile(calib_profile):
                raise EdgesegError(f"TensorRT rejected the calibration profile {profiles}")
        calibrator = _make_calibrator(trt, options.calibration_batches(), options.calibration_cache, cuda)
        config.int8_calibrator = calibrator

    start = time.perf_counter()
    try:
        serialized = _run_builder(trt, builder, network, config, features, progress, Path(engine_path).name)
    finally:
        if calibrator is not None:
            calibrator.free()
    seconds = time.perf_counter() - start
    if serialized is None:
        why = logger.errors()[-1] if logger.errors() else "see the TensorRT log"
        raise EdgesegError(f"TensorRT build failed for {Path(onnx_path).name}: {why}")

    engine_path = Path(engine_path)
    sidecar = sidecar_path(engine_path)
    # an older build's sidecar must not describe the new engine if the process dies between the two
    # writes: without one the engine is refused with a clear message instead of trusted with stale facts
    sidecar.unlink(missing_ok=True)
    write_bytes(engine_path, bytes(serialized))
    info = {
        "format": SIDECAR_FORMAT,
        "engine": engine_path.name,
        "card": card.replace(precision=options.precision).to_dict(),
        "tensorrt_version": features.version,
        "gpu": gpu.to_dict(),
        "precision": options.precision,
        "network_flags": plan.network_flags,
        "builder_flags": plan.builder_flags,
        "profiles": profiles,
        "dla_core": options.dla_core,
        "gpu_fallback": options.gpu_fallback if options.dla_core is not None else None,
        "version_compatible": options.version_compatible,
        "builder_optimization_level": options.optimization_level,
        "timing_cache": str(options.timing_cache) if options.timing_cache else None,
        "timing_cache_reused": cache_reused,
        "legacy_calibrator": plan.legacy_int8,
        "calibration_batches": getattr(calibrator, "seen", None),
        "onnx": Path(onnx_path).name,
        "onnx_sha256": sha256_file(onnx_path),
        "build_seconds": round(seconds, 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": plan.notes,
    }
    write_json(sidecar, info)
    # after the sidecar, so a cache problem never costs the engine its card; get_timing_cache() is None
    # when no cache is attached (pyCore docstring)
    if options.timing_cache is not None and config.get_timing_cache() is not None:
        write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return EngineResult(engine_path, sidecar, seconds, plan, info)


def _attach_timing_cache(config: Any, path: Path | None) -> tuple[Any, bool, str]:
    """Load `path` (if it exists) into the config's timing cache: (cache, reused, note).

    `set_timing_cache(cache, ignore_mismatch=False)` returns False for a cache timed on another device
    (pyCore docstring); such a cache is replaced by a fresh one, and the note says so in one line.
    """
    blob = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    try:
        cache = config.create_timing_cache(blob)
    except Exception:  # pybind raises TypeError/RuntimeError when the cache cannot be deserialized
        cache = None
    if cache is None:
        raise EdgesegError(f"timing cache {path} is corrupt or from another TensorRT version; delete it")
    if config.set_timing_cache(cache, False):  # ignore_mismatch=False: never time with a foreign cache
        return cache, bool(blob), ""
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise EdgesegError("TensorRT refused a new, empty timing cache")
    note = (
        f"timing cache {Path(path).name} was made on another GPU or TensorRT build: building with a "
        "fresh cache, which replaces it"
    )
    return fresh, False, note


def _run_builder(
    trt: Any,
    builder: Any,
    network: Any,
    config: Any,
    features: TrtFeatures,
    progress: Progress | None,
    label: str,
):
    """build_serialized_network, reporting real phases where TensorRT has a progress monitor (10+).

    With a monitor, Ctrl-C only sets a flag that the monitor's step_complete turns into a clean
    cancellation by TensorRT (a Python exception raised inside the C++ callback would not be); the
    interrupt is re-raised once the builder has returned.
    """
    import signal

    cancel = threading.Event()
    if progress is not None:
        progress(f"building {label} (TensorRT {features.version})", 0, 0)
    previous = None
    if features.progress_monitor and hasattr(config, "progress_monitor"):
        config.progress_monitor = _make_progress_monitor(trt, progress, cancel)
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if cancel.is_set():
        raise KeyboardInterrupt
    return serialized


def tensorrt_unavailable_reason(cuda_prefer: str | None = None) -> str | None:
    """Why an engine cannot be built here (no tensorrt / no GPU), or None when it can."""
    from edgeseg.lazy import require
    from edgeseg.runtime.cuda_mem import gpu_info

    try:
        require("tensorrt")
    except MissingDependencyError:
        return "TensorRT is not installed here"
    if gpu_info(cuda_prefer) is None:
        return "no usable CUDA GPU here"
    return None
