"""Build TensorRT engines from edgeseg's precision-annotated ONNX, on TensorRT 8.6, 10.x and 11.x.

Precision lives in the ONNX (an FP16 graph, or Q/DQ nodes for INT8: see calib/), because TensorRT 11
accepts nothing else. `plan_build` turns (installed TensorRT's features, the graph, the options) into
network-creation flags and builder flags; `build_engine` runs the builder and writes the engine
atomically with a sidecar `<engine>.json` (model card, TensorRT version, GPU, precision, profile
shapes, DLA core, ONNX sha256) that the runtime checks before running the engine.

Without TensorRT or a GPU, `build_from_cli` stops right before the engine: it writes the TensorRT-ready
ONNX and prints the commands that finish the job on the device, then returns EXIT_NEEDS_DEVICE (3).
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.card import ModelCard, sha256_file
from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.export.graph import card_of
from edgeseg.export.tensorrt_features import TrtFeatures, detect
from edgeseg.runtime.backends.tensorrt import sidecar_path

EXIT_NEEDS_DEVICE = 3  # `edgeseg build --target tensorrt` on a machine without TensorRT or a GPU
SIDECAR_FORMAT = "edgeseg-engine/1"
PRECISIONS = ("fp32", "fp16", "int8")


# ------------------------------------------------------------------------------------------ options
@dataclass
class EngineOptions:
    """What the user asked for; `plan_build` decides how the installed TensorRT expresses it."""

    precision: str = "fp32"  # what the ONNX graph carries: fp32 | fp16 (FP16 graph) | int8 (Q/DQ)
    workspace_mib: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    min_shape: tuple[int, ...] | None = None
    opt_shape: tuple[int, ...] | None = None
    max_shape: tuple[int, ...] | None = None
    version_compatible: bool = False
    optimization_level: int | None = None
    legacy_calibrator: bool = False  # implicit INT8 (8.6/10.x only), from an FP32 graph
    calibration_cache: Path | None = None
    calibration_batches: Callable[[], Iterable[np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgesegError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.dla_core is not None and self.dla_core < 0:
            raise EdgesegError(f"--dla-core must be 0 or more, got {self.dla_core}")
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise EdgesegError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise EdgesegError(f"--builder-optimization-level must be 0..5, got {self.optimization_level}")
        given = [s for s in (self.min_shape, self.opt_shape, self.max_shape) if s is not None]
        if given and len(given) != 3:
            raise EdgesegError("give all three of --min-shape, --opt-shape, --max-shape (or none)")
        if given:
            check_profile(self.min_shape, self.opt_shape, self.max_shape)  # type: ignore[arg-type]
        if self.legacy_calibrator and self.precision != "int8":
            raise EdgesegError("--legacy-calibrator is an INT8 option; add --int8")


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """'1x3x256x512' (or '1,3,256,512') -> (1, 3, 256, 512)."""
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise EdgesegError(f"bad shape {text!r}: expected NxCxHxW, e.g. 1x3x256x512") from None
    if len(dims) != 4 or min(dims) < 1:
        raise EdgesegError(f"bad shape {text!r}: expected four positive dimensions NxCxHxW")
    return dims


def check_profile(lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> None:
    if not (len(lo) == len(opt) == len(hi)):
        raise EdgesegError(f"profile shapes differ in rank: min {lo}, opt {opt}, max {hi}")
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise EdgesegError(f"profile shapes must satisfy min <= opt <= max per axis: {lo}, {opt}, {hi}")


# ------------------------------------------------------------------------------------------ graph
@dataclass(frozen=True)
class GraphInfo:
    """What the ONNX carries that decides the build: annotations, inputs and their dynamic axes."""

    has_qdq: bool
    fp16_graph: bool
    inputs: dict[str, tuple[int | str, ...]]
    node_names: tuple[str, ...]
    node_ops: tuple[str, ...]

    @property
    def annotated(self) -> bool:
        return self.has_qdq or self.fp16_graph

    @property
    def precision(self) -> str:
        return "int8" if self.has_qdq else "fp16" if self.fp16_graph else "fp32"

    def dynamic_inputs(self) -> dict[str, tuple[int | str, ...]]:
        return {n: s for n, s in self.inputs.items() if any(not isinstance(d, int) or d < 1 for d in s)}


def inspect_onnx(model: Any) -> GraphInfo:
    """Read the build-relevant facts of an onnx.ModelProto."""
    from onnx import TensorProto

    graph = model.graph
    ops = tuple(n.op_type for n in graph.node)
    fp16 = any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer) or any(
        n.op_type == "Cast" and any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in n.attribute)
        for n in graph.node
    )
    init = {t.name for t in graph.initializer}
    inputs = {}
    for vi in graph.input:
        if vi.name in init:
            continue
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in vi.type.tensor_type.shape.dim
        )
        inputs[vi.name] = dims
    return GraphInfo(
        has_qdq="QuantizeLinear" in ops or "DequantizeLinear" in ops,
        fp16_graph=fp16,
        inputs=inputs,
        node_names=tuple(n.name or f"{n.op_type}_{i}" for i, n in enumerate(graph.node)),
        node_ops=ops,
    )


# ------------------------------------------------------------------------------------------ plan
@dataclass
class BuildPlan:
    """Flag choices for one build, by name, so they can be shown, recorded and tested."""

    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    legacy_int8: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"network_flags": self.network_flags, "builder_flags": self.builder_flags, "notes": self.notes}


def plan_build(features: TrtFeatures, graph: GraphInfo, options: EngineOptions) -> BuildPlan:
    """Choose flags by feature, not version. Raises EdgesegError when the request cannot be expressed."""
    plan = BuildPlan()
    if features.explicit_batch_flag and not features.explicit_batch_default:
        plan.network_flags.append("EXPLICIT_BATCH")  # 8.x: ONNX networks need an explicit batch axis

    want = options.precision
    if want == "int8" and not graph.has_qdq and not options.legacy_calibrator:
        raise EdgesegError(
            "INT8 engines are built from a Q/DQ ONNX (made by `edgeseg build --int8`); this graph has no "
            "QuantizeLinear/DequantizeLinear nodes (or pass --legacy-calibrator on TensorRT 8.6/10.x)"
        )
    if want == "fp16" and not graph.fp16_graph and not features.fp16_flag:
        raise EdgesegError(
            f"TensorRT {features.version} is strongly typed: FP16 must be in the ONNX graph; "
            "build from the FP16 ONNX (edgeseg build --fp16 writes it)"
        )

    if options.legacy_calibrator:
        if not (features.legacy_calibrator and features.int8_flag):
            raise EdgesegError(
                f"TensorRT {features.version} removed implicit INT8 calibration (IInt8EntropyCalibrator2, "
                "BuilderFlag.INT8); drop --legacy-calibrator to build from the Q/DQ ONNX instead"
            )
        if graph.has_qdq:
            raise EdgesegError(
                "--legacy-calibrator needs the FP32 ONNX, but this graph already has Q/DQ nodes"
            )
        plan.legacy_int8 = True
        plan.builder_flags.append("INT8")
        if features.fp16_flag:
            plan.builder_flags.append("FP16")  # let layers that stay out of INT8 run in FP16
        plan.notes.append("implicit INT8 with an entropy calibrator (deprecated since TensorRT 10.1)")
    elif features.strongly_typed and (graph.annotated or not (features.fp16_flag or features.int8_flag)):
        plan.network_flags.append("STRONGLY_TYPED")  # the graph's types are the precision
    else:
        if graph.has_qdq:
            if not features.int8_flag:
                raise EdgesegError(
                    f"TensorRT {features.version} cannot build a Q/DQ network (no INT8 support)"
                )
            plan.builder_flags.append("INT8")  # 8.6: Q/DQ networks need the INT8 flag
        if (want == "fp16" or graph.fp16_graph or graph.has_qdq) and features.fp16_flag:
            plan.builder_flags.append("FP16")

    if options.dla_core is not None:
        if options.gpu_fallback:
            plan.builder_flags.append("GPU_FALLBACK")
        if graph.precision == "fp32" and not plan.legacy_int8 and "FP16" not in plan.builder_flags:
            plan.notes.append("DLA runs only FP16/INT8 layers; an FP32 graph will fall back to the GPU")
    if options.version_compatible:
        if not features.version_compatible:
            raise EdgesegError(f"TensorRT {features.version} cannot build version-compatible engines (8.6+)")
        plan.builder_flags.append("VERSION_COMPATIBLE")
    return plan


# ------------------------------------------------------------------------------------------ build
@dataclass
class BuildResult:
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


def _make_progress_monitor(trt: Any, progress: Any, cancel: Any = None) -> Any:
    """An IProgressMonitor (TensorRT 10+) that mirrors build phases into rich progress bars.

    `cancel` (a threading.Event) set -> step_complete returns False and TensorRT abandons the build.
    """

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.tasks: dict[str, Any] = {}
            self.phases: list[str] = []

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            indent = "  " if parent_phase else ""
            self.tasks[phase_name] = progress.add_task(f"{indent}{phase_name}", total=max(num_steps, 1))
            self.phases.append(phase_name)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in self.tasks:
                progress.update(self.tasks[phase_name], completed=step + 1)
            return not (cancel is not None and cancel.is_set())  # False cancels the build

        def phase_finish(self, phase_name: str) -> None:
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                progress.remove_task(task)

    return _Monitor()


def _make_calibrator(trt: Any, batches: Iterable[np.ndarray], cache: Path | None, cuda: Any) -> Any:
    """Legacy implicit-INT8 entropy calibrator (TensorRT 8.6/10.x), fed preprocessed NCHW batches."""
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

    return _Calibrator()


def _flag_bits(enum: Any, names: list[str]) -> int:
    bits = 0
    for name in names:
        bits |= 1 << int(getattr(enum, name))
    return bits


def _profile_shapes(
    graph: GraphInfo, options: EngineOptions, card: ModelCard
) -> dict[str, dict[str, list[int]]]:
    """min/opt/max per dynamic input: the user's, else the card's input size at batch 1."""
    dynamic = graph.dynamic_inputs()
    if not dynamic:
        if options.min_shape is not None:
            raise EdgesegError(
                "--min/--opt/--max-shape need an ONNX with dynamic axes (export with --dynamic)"
            )
        return {}
    shapes = {}
    for name, dims in dynamic.items():
        if options.min_shape is not None:
            lo, opt, hi = options.min_shape, options.opt_shape, options.max_shape
        else:
            h, w = card.input_size
            fixed = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)
            default = (1, 3, h, w)
            lo = opt = hi = tuple(f if f is not None else default[i] for i, f in enumerate(fixed))
        assert lo is not None and opt is not None and hi is not None
        if len(lo) != len(dims):
            raise EdgesegError(
                f"input {name!r} has rank {len(dims)} but the profile shapes have rank {len(lo)}"
            )
        for i, d in enumerate(dims):
            if isinstance(d, int) and d > 0 and not (lo[i] == opt[i] == hi[i] == d):
                raise EdgesegError(
                    f"input {name!r} axis {i} is fixed at {d}; the profile gives {lo[i]}/{opt[i]}/{hi[i]}"
                )
        shapes[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    return shapes


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    options: EngineOptions,
    *,
    card: ModelCard | None = None,
    cuda: Any = None,
    show_progress: bool = True,
) -> BuildResult:
    """Build and write `engine_path` (+ sidecar) from `onnx_path`. Needs tensorrt and a GPU."""
    import onnx

    from edgeseg.atomic import write_bytes, write_json
    from edgeseg.lazy import require
    from edgeseg.runtime.cuda_mem import open_cuda

    trt = require("tensorrt")
    if cuda is None:  # open (and close) our own CUDA binding for the GPU identity and the calibrator
        cuda = open_cuda()
        try:
            return build_engine(
                onnx_path, engine_path, options, card=card, cuda=cuda, show_progress=show_progress
            )
        finally:
            cuda.close()
    gpu = cuda.device_info()
    features = detect(trt)
    data = Path(onnx_path).read_bytes()
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # onnx raises DecodeError / ValidationError variants
        raise EdgesegError(f"{onnx_path} is not a valid ONNX file: {str(exc).splitlines()[0]}") from None
    card = card or card_of(model)
    graph = inspect_onnx(model)
    plan = plan_build(features, graph, options)
    profiles = _profile_shapes(graph, options, card)

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
    if options.optimization_level is not None:
        if not hasattr(config, "builder_optimization_level"):
            raise EdgesegError(f"TensorRT {features.version} has no builder optimization level (8.6+)")
        config.builder_optimization_level = int(options.optimization_level)

    cache_blob = b""
    if options.timing_cache is not None and Path(options.timing_cache).is_file():
        cache_blob = Path(options.timing_cache).read_bytes()
    try:
        timing_cache = config.create_timing_cache(cache_blob)
    except Exception:  # pybind raises TypeError/RuntimeError when the cache cannot be deserialized
        timing_cache = None
    if timing_cache is None:
        raise EdgesegError(
            f"timing cache {options.timing_cache} is corrupt or from another TensorRT version; delete it"
        )
    config.set_timing_cache(timing_cache, False)  # ignore_mismatch=False: a foreign cache is not used

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
        calibrator = _make_calibrator(trt, options.calibration_batches(), options.calibration_cache, cuda)
        if not hasattr(config, "int8_calibrator"):
            raise EdgesegError(
                f"TensorRT {features.version} has no int8_calibrator; drop --legacy-calibrator"
            )
        config.int8_calibrator = calibrator

    start = time.perf_counter()
    serialized = _run_builder(trt, builder, network, config, features, show_progress, engine_path.name)
    seconds = time.perf_counter() - start
    if serialized is None:
        why = logger.errors()[-1] if logger.errors() else "see the TensorRT log"
        raise EdgesegError(f"TensorRT build failed for {Path(onnx_path).name}: {why}")

    engine_path = Path(engine_path)
    write_bytes(engine_path, bytes(serialized))
    if options.timing_cache is not None:
        write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
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
        "timing_cache_reused": bool(cache_blob),
        "legacy_calibrator": plan.legacy_int8,
        "calibration_batches": getattr(calibrator, "seen", None),
        "onnx": Path(onnx_path).name,
        "onnx_sha256": sha256_file(onnx_path),
        "build_seconds": round(seconds, 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notes": plan.notes,
    }
    sidecar = sidecar_path(engine_path)
    write_json(sidecar, info)
    return BuildResult(engine_path, sidecar, seconds, plan, info)


def _run_builder(
    trt: Any, builder: Any, network: Any, config: Any, features: TrtFeatures, show: bool, label: str
):
    """build_serialized_network under a spinner with elapsed time, plus real phases where TRT reports them.

    With a progress monitor (10+), Ctrl-C only sets a flag that the monitor's step_complete turns into
    a clean cancellation by TensorRT (a Python exception raised inside the C++ callback would not be);
    the interrupt is re-raised once the builder has returned.
    """
    import signal
    import threading

    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeseg.console import err_console

    cancel = threading.Event()
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=not show) as progress:
        progress.add_task(f"building {label} (TensorRT {features.version})", total=None)
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


# ------------------------------------------------------------------------------------------ hand-off
def handoff_commands(
    ready_onnx: Path, engine_path: Path, options: EngineOptions, profiles: dict[str, dict[str, list[int]]]
) -> dict[str, str]:
    """The commands that finish the build on the device: ours, and trtexec for 10.x/11.x and 8.6."""
    ours = ["edgeseg", "build", str(ready_onnx), "--target", "tensorrt"]
    common = [f"--onnx={ready_onnx}", f"--saveEngine={engine_path}"]
    if options.legacy_calibrator:  # otherwise the ready ONNX carries its precision: no --fp16/--int8 again
        ours += ["--int8", "--legacy-calibrator"]
    if options.workspace_mib:
        ours += ["--workspace", str(options.workspace_mib)]
        common.append(f"--memPoolSize=workspace:{options.workspace_mib}")
    if options.timing_cache:
        ours += ["--timing-cache", str(options.timing_cache)]
        common.append(f"--timingCacheFile={options.timing_cache}")
    if options.dla_core is not None:
        ours += ["--dla-core", str(options.dla_core)]
        common.append(f"--useDLACore={options.dla_core}")
        if options.gpu_fallback:
            common.append("--allowGPUFallback")
    for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
        if profiles:
            common.append(
                flag + "=" + ",".join(f"{n}:{'x'.join(map(str, s[key]))}" for n, s in profiles.items())
            )
    if options.min_shape is not None:
        for key in ("min", "opt", "max"):
            ours += [f"--{key}-shape", "x".join(map(str, getattr(options, f"{key}_shape")))]
    if options.version_compatible:
        ours.append("--version-compatible")
        common.append("--versionCompatible")
    if options.optimization_level is not None:
        ours += ["--builder-optimization-level", str(options.optimization_level)]
        common.append(f"--builderOptimizationLevel={options.optimization_level}")
    if options.legacy_calibrator:  # implicit INT8: weakly typed on both, scales from the calibration cache
        cache = [f"--calib={options.calibration_cache}"] if options.calibration_cache else []
        trt8 = trt10 = ["trtexec", *common, "--int8", "--fp16", *cache]
        return {
            "edgeseg": shlex.join(ours),
            "trtexec_10_11": shlex.join(trt10),
            "trtexec_8_6": shlex.join(trt8),
        }
    trt10 = ["trtexec", *common] + (["--stronglyTyped"] if options.precision != "fp32" else [])
    trt8 = ["trtexec", *common] + {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[
        options.precision
    ]
    return {
        "edgeseg": shlex.join(ours),
        "trtexec_10_11": shlex.join(trt10),
        "trtexec_8_6": shlex.join(trt8),
    }


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


def to_fp16_onnx(src: Path, dst: Path) -> Path:
    """The FP16 graph TensorRT 10/11 build strongly typed (float32 inputs/outputs kept for the runtime)."""
    from edgeseg.export.fp16 import to_fp16

    return Path(to_fp16(src, dst))


def _ready_onnx(onnx_path: Path, precision: str, qdq_onnx: Path | None, legacy: bool) -> tuple[Path, str]:
    """The TensorRT-ready ONNX for `precision` and the precision it really carries."""
    import onnx

    if precision == "int8" and not legacy:
        if qdq_onnx is None:
            graph = inspect_onnx(onnx.load(str(onnx_path), load_external_data=False))
            if not graph.has_qdq:
                raise EdgesegError(
                    "--int8 for TensorRT needs the Q/DQ ONNX; none was produced for this build"
                )
            return onnx_path, "int8"
        return Path(qdq_onnx), "int8"
    graph = inspect_onnx(onnx.load(str(onnx_path), load_external_data=False))
    if graph.annotated and precision in ("fp32", graph.precision):
        return onnx_path, graph.precision  # already annotated (e.g. copied to the device): build as is
    if precision == "fp16":
        dst = onnx_path.with_name(f"{onnx_path.stem}.trt-fp16.onnx")
        return to_fp16_onnx(onnx_path, dst), "fp16"
    return onnx_path, precision


def build_from_cli(
    onnx_path: Path,
    *,
    precision: str,
    qdq_onnx: Path | None,
    workdir: Path,
    options: dict[str, Any],
    json_output: bool,
) -> int:
    """`edgeseg build --target tensorrt`: build the engine here, or prepare the hand-off. Returns the exit code.

    options: workspace (MiB), timing_cache, dla_core, gpu_fallback, min_shape/opt_shape/max_shape
    ('1x3x256x512'), version_compatible, builder_optimization_level, legacy_calibrator,
    calibration_cache, calib_data, calib_images, calib_seed, output (engine path), cuda.
    """
    from edgeseg.console import console, print_json, table

    onnx_path = Path(onnx_path)
    legacy = bool(options.get("legacy_calibrator"))
    ready, graph_precision = _ready_onnx(onnx_path, precision, qdq_onnx, legacy)
    opts = EngineOptions(
        precision=graph_precision,
        workspace_mib=options.get("workspace"),
        timing_cache=Path(options["timing_cache"]) if options.get("timing_cache") else None,
        dla_core=options.get("dla_core"),
        gpu_fallback=bool(options.get("gpu_fallback", True)),
        min_shape=parse_shape(options.get("min_shape")),
        opt_shape=parse_shape(options.get("opt_shape")),
        max_shape=parse_shape(options.get("max_shape")),
        version_compatible=bool(options.get("version_compatible")),
        optimization_level=options.get("builder_optimization_level"),
        legacy_calibrator=legacy,
        calibration_cache=Path(options["calibration_cache"]) if options.get("calibration_cache") else None,
    )
    variant = (
        graph_precision
        + ("-legacy" if legacy else "")
        + (f"-dla{opts.dla_core}" if opts.dla_core is not None else "")
    )
    base = onnx_path.stem.split(".")[0]
    engine_file = (
        Path(options["output"]) if options.get("output") else onnx_path.with_name(f"{base}.{variant}.engine")
    )
    if legacy:
        opts.calibration_cache = opts.calibration_cache or engine_file.with_name(f"{base}.int8-legacy.calib")
        opts.calibration_batches = _calibration_batches(ready, options)

    reason = tensorrt_unavailable_reason(options.get("cuda"))
    if reason is not None:
        import onnx

        model = onnx.load(str(ready), load_external_data=False)
        profiles = _profile_shapes(inspect_onnx(model), opts, card_of(model))
        cmds = handoff_commands(ready, engine_file, opts, profiles)
        report = {
            "status": "handoff",
            "reason": reason,
            "onnx": str(ready),
            "engine": str(engine_file),
            "precision": graph_precision,
            "commands": cmds,
            "exit_code": EXIT_NEEDS_DEVICE,
        }
        if json_output:
            print_json(report)
        else:
            console.print(f"[bold yellow]{reason}[/]: the engine must be built on the target device.")
            console.print(f"TensorRT-ready ONNX ({graph_precision}): [bold]{ready}[/]")
            console.print("Copy it to the device (with edgeseg installed) and run one of:")
            console.print(f"  {cmds['edgeseg']}", highlight=False, soft_wrap=True)
            console.print(
                f"  {cmds['trtexec_10_11']}    [dim]# TensorRT 10.x / 11.x[/]",
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                f"  {cmds['trtexec_8_6']}    [dim]# TensorRT 8.6 (JetPack 5)[/]",
                highlight=False,
                soft_wrap=True,
            )
            console.print(
                f"[dim]exit code {EXIT_NEEDS_DEVICE}: nothing failed, the engine build is pending on the device[/]"
            )
        return EXIT_NEEDS_DEVICE

    from edgeseg.runtime.cuda_mem import open_cuda

    cuda = open_cuda(options.get("cuda"))
    try:
        result = build_engine(ready, engine_file, opts, cuda=cuda, show_progress=not json_output)
    finally:
        cuda.close()
    info = result.info
    if json_output:
        print_json({**info, "status": "built", "engine": str(result.engine), "sidecar": str(result.sidecar)})
    else:
        rows = [
            ["engine", str(result.engine)],
            ["TensorRT", info["tensorrt_version"]],
            ["GPU", f"{info['gpu']['name']} (sm {info['gpu']['compute_capability']})"],
            ["precision", info["precision"]],
            ["network flags", ", ".join(info["network_flags"]) or "-"],
            ["builder flags", ", ".join(info["builder_flags"]) or "-"],
            ["profiles", json.dumps(info["profiles"]) if info["profiles"] else "static"],
            ["DLA core", info["dla_core"]],
            [
                "timing cache",
                f"{info['timing_cache']} ({'reused' if info['timing_cache_reused'] else 'new'})"
                if info["timing_cache"]
                else None,
            ],
            ["build time (s)", info["build_seconds"]],
        ]
        console.print(table("TensorRT engine", ["", "value"], rows))
        for note in info["notes"]:
            console.print(f"[dim]note: {note}[/]")
    return 0


def _calibration_batches(onnx_path: Path, options: dict[str, Any]) -> Callable[[], Iterable[np.ndarray]]:
    """Preprocessed calibration inputs from calib's data selection (same preprocessing as the runtime)."""

    def batches() -> Iterable[np.ndarray]:
        import onnx

        from edgeseg.calib.data import open_calibration

        card = card_of(onnx.load(str(onnx_path), load_external_data=False))
        calib = open_calibration(
            options.get("calib_data"),
            card,
            n=int(options.get("calib_images") or 64),
            seed=int(options.get("calib_seed") or 0),
        )
        return calib.batches(card)

    return batches
