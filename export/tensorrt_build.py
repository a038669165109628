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
    describe_profile,
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


def calibration_shape(card: ModelCard) -> list[int]:
    """The shape the implicit calibrator feeds: one frame at the card's input size (`get_batch_size` 1)."""
    return [1, 3, *card.input_size]


def _check_calibration_shape(profiles: dict[str, dict[str, list[int]]], card: ModelCard) -> None:
    """The calibration profile (one shape: TensorRT calibrates at its OPT, pyCoreDoc.h
    set_calibration_profile) is the calibrator's batch, which the optimization profile must take."""
    batch = calibration_shape(card)
    for name, s in profiles.items():
        if not all(a <= b <= c for a, b, c in zip(s["min"], batch, s["max"])) or len(s["min"]) != len(batch):
            raise EdgesegError(
                f"the implicit calibrator feeds {'x'.join(map(str, batch))} batches (the card's input size) "
                f"but input {name!r} takes {'x'.join(map(str, s['min']))} to {'x'.join(map(str, s['max']))}; "
                f"give a profile that includes {'x'.join(map(str, batch))} for a --legacy-calibrator build"
            )


def _flag_bits(enum: Any, names: list[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << int(getattr(enum, name))
    return bits


# ------------------------------------------------------------------------------------------ steps
# build_engine is a chain of small steps in the manner of Polygraphy's loaders (NetworkFromOnnxPath,
# CreateConfig, EngineBytesFromNetwork, SaveEngine): each takes what the previous one made.
@dataclass
class OnnxSource:
    """The ONNX as this TensorRT will read it, with the plan and profiles decided from it."""

    path: Path
    data: bytes
    card: ModelCard
    graph: GraphInfo
    plan: BuildPlan
    profiles: dict[str, dict[str, list[int]]]


@dataclass
class ParsedNetwork:
    """NetworkFromOnnxPath's result: the builder, the parsed network and the logger that saw it."""

    builder: Any
    network: Any
    parser: Any
    logger: Any


def read_onnx(
    trt: Any, onnx_path: Path, options: EngineOptions, card: ModelCard | None
) -> tuple[OnnxSource, TrtFeatures]:
    """Read the ONNX, edit it for this TensorRT (export/tensorrt_onnx.py), and plan the build."""
    import onnx

    from edgeseg.export.tensorrt_onnx import prepare_for_tensorrt

    features = detect(trt)
    onnx_path = Path(onnx_path)
    data = onnx_path.read_bytes()
    try:
        model = onnx.load_from_string(data)  # external weights stay on disk; the parser reads them by path
    except Exception as exc:  # onnx raises DecodeError / ValidationError variants
        raise EdgesegError(f"{onnx_path} is not a valid ONNX file: {first_line(exc)}") from None
    card = card or card_of(model)
    graph = inspect_onnx(model)
    edited, notes = prepare_for_tensorrt(model, features, graph.has_qdq, graph.fp16_graph, onnx_path.parent)
    if notes:
        data = edited.SerializeToString()
        graph = inspect_onnx(edited)
    plan = plan_build(features, graph, options)
    plan.notes.extend(notes)
    profiles = profile_shapes(graph, options, card)
    plan.notes.extend(describe_profile(profiles))
    if plan.legacy_int8:
        _check_calibration_shape(profiles, card)
    return OnnxSource(onnx_path, data, card, graph, plan, profiles), features


def network_from_onnx(trt: Any, source: OnnxSource) -> ParsedNetwork:
    """Builder + network + parser; parses with the file's path so externally stored weights are found
    (pyOnnxDoc.h: the path is "only required if the model has externally stored weights")."""
    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_flag_bits(trt.NetworkDefinitionCreationFlag, source.plan.network_flags))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.data, str(source.path.resolve())):
        errors = parser_errors(parser, source.graph) or logger.errors()[-1:] or ["unknown parser failure"]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise EdgesegError(f"TensorRT could not parse {source.path.name}: {'; '.join(errors[:3])}{more}")
    return ParsedNetwork(builder, network, parser, logger)


def create_config(
    trt: Any, parsed: ParsedNetwork, source: OnnxSource, options: EngineOptions, progress: Progress | None
) -> tuple[Any, bool]:
    """The builder config: memory pool, flags, optimization level, timing cache, profiles, DLA.
    Returns (config, whether the timing cache file was reused)."""
    builder = parsed.builder
    config = builder.create_builder_config()
    if options.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mib) << 20)
    for name in source.plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in source.plan.preview_features:  # plan_build chose them only where they exist (8.6)
        if hasattr(trt, "PreviewFeature") and hasattr(trt.PreviewFeature, "PROFILE_SHARING_0806"):
            config.set_preview_feature(getattr(trt.PreviewFeature, name), True)
    if options.optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(options.optimization_level)  # plan_build checked 8.6+
    _, cache_reused, cache_note = _attach_timing_cache(config, options.timing_cache)
    if cache_note:
        source.plan.notes.append(cache_note)
        if progress is not None:
            progress(cache_note, 0, 0)
    _add_profiles(builder, config, source)
    if options.dla_core is not None:
        _use_dla(trt, builder, config, options.dla_core)
    return config, cache_reused


def _add_profiles(builder: Any, config: Any, source: OnnxSource) -> None:
    """The dynamic inputs' min/opt/max, once per concurrent context where TensorRT 8.5 needs it."""
    if not source.profiles:
        return
    for _ in range(source.plan.profiles):
        profile = builder.create_optimization_profile()
        for name, s in source.profiles.items():
            profile.set_shape(name, s["min"], s["opt"], s["max"])
        if config.add_optimization_profile(profile) < 0:
            raise EdgesegError(f"TensorRT rejected the optimization profile {source.profiles}")


def _use_dla(trt: Any, builder: Any, config: Any, core: int) -> None:
    cores = int(builder.num_DLA_cores)
    if core >= cores:
        raise EdgesegError(
            f"--dla-core {core} requested but this device has {cores} DLA core(s) (DLA exists on Jetson Xavier/Orin)"
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(core)


def attach_calibrator(
    trt: Any, parsed: ParsedNetwork, config: Any, source: OnnxSource, options: EngineOptions, cuda: Any
) -> Any:
    """The implicit-INT8 calibrator (and, for dynamic inputs, its calibration profile), or None."""
    if not source.plan.legacy_int8:
        return None
    if options.calibration_batches is None:
        raise EdgesegError("--legacy-calibrator needs calibration data (--calib-data)")
    if not hasattr(config, "int8_calibrator"):
        raise EdgesegError(f"TensorRT {trt.__version__} has no int8_calibrator; drop --legacy-calibrator")
    if source.profiles and hasattr(config, "set_calibration_profile"):
        # dynamic inputs: TensorRT calibrates at one shape, the calibration profile's OPT (pyCore
        # docstring); it is the calibrator's batch, a frame at the card's size (the optimization
        # profile's OPT is tuned for several streams' batches)
        builder = parsed.builder
        calib_profile = builder.create_optimization_profile()
        shape = calibration_shape(source.card)
        for name in source.profiles:
            calib_profile.set_shape(name, shape, shape, shape)
        if not config.set_calibration_profile(calib_profile):
            raise EdgesegError(f"TensorRT rejected the calibration profile {source.profiles}")
    calibrator = _make_calibrator(trt, options.calibration_batches(), options.calibration_cache, cuda)
    config.int8_calibrator = calibrator
    return calibrator


def save_engine(
    serialized: Any,
    engine_path: Path,
    source: OnnxSource,
    options: EngineOptions,
    facts: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:
    """Write the engine, then its sidecar (both atomically); returns (sidecar, what it says)."""
    from edgeseg.atomic import write_bytes, write_json

    sidecar = sidecar_path(engine_path)
    # an older build's sidecar must not describe the new engine if the process dies between the two
    # writes: without one the engine is refused with a clear message instead of trusted with stale facts
    sidecar.unlink(missing_ok=True)
    write_bytes(engine_path, bytes(serialized))
    plan = source.plan
    info = {
        "format": SIDECAR_FORMAT,
        "engine": engine_path.name,
        "card": source.card.replace(precision=options.precision).to_dict(),
        "tensorrt_version": facts["tensorrt_version"],
        "gpu": facts["gpu"],
        "precision": options.precision,
        "network_flags": plan.network_flags,
        "builder_flags": plan.builder_flags,
        "preview_features": plan.preview_features,
        "profiles": source.profiles,
        "optimization_profiles": plan.profiles if source.profiles else 0,
        "workers": options.workers,
        "profile_sharing": facts["profile_sharing"],
        "dla_core": options.dla_core,
        "gpu_fallback": options.gpu_fallback if options.dla_core is not None else None,
        "version_compatible": options.version_compatible,
        "builder_optimization_level": options.optimization_level,
        "timing_cache": str(options.timing_cache) if options.timing_cache else None,
        "timing_cache_reused": facts["timing_cache_reused"],
        "legacy_calibrator": plan.legacy_int8,
        "calibration_batches": facts["calibration_batches"],
        "onnx": source.path.name,
        "onnx_sha256": sha256_file(source.path),
        "build_seconds": facts["build_seconds"],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": plan.notes,
    }
    write_json(sidecar, info)
    return sidecar, info


def save_timing_cache(config: Any, path: Path | None) -> None:
    """After the sidecar, so a cache problem never costs the engine its card; get_timing_cache() is None
    when no cache is attached (pyCore docstring)."""
    from edgeseg.atomic import write_bytes

    if path is not None and config.get_timing_cache() is not None:
        write_bytes(path, bytes(config.get_timing_cache().serialize()))


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
    from edgeseg.lazy import require
    from edgeseg.runtime.cuda_mem import open_cuda

    trt = require("tensorrt", purpose="building TensorRT engines")
    if cuda is None:  # open (and close) our own CUDA binding for the GPU identity and the calibrator
        cuda = open_cuda()
        try:
            return build_engine(onnx_path, engine_path, options, card=card, cuda=cuda, progress=progress)
        finally:
            cuda.close()
    engine_path = Path(engine_path)
    gpu = cuda.device_info()
    source, features = read_onnx(trt, Path(onnx_path), options, card)
    parsed = network_from_onnx(trt, source)
    config, cache_reused = create_config(trt, parsed, source, options, progress)
    calibrator = attach_calibrator(trt, parsed, config, source, options, cuda)
    start = time.perf_counter()
    try:
        serialized = _run_builder(
            trt, parsed.builder, parsed.network, config, features, progress, engine_path.name
        )
    finally:
        if calibrator is not None:
            calibrator.free()
    seconds = time.perf_counter() - start
    if serialized is None:
        errors = parsed.logger.errors()
        why = errors[-1] if errors else "see the TensorRT log"
        raise EdgesegError(f"TensorRT build failed for {source.path.name}: {why}")
    facts = {
        "tensorrt_version": features.version,
        "gpu": gpu.to_dict(),
        "profile_sharing": features.contexts_share_profiles or bool(source.plan.preview_features),
        "timing_cache_reused": cache_reused,
        "calibration_batches": getattr(calibrator, "seen", None),
        "build_seconds": round(seconds, 3),
    }
    sidecar, info = save_engine(serialized, engine_path, source, options, facts)
    save_timing_cache(config, options.timing_cache)
    return EngineResult(engine_path, sidecar, seconds, source.plan, info)


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
