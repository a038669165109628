"""What a TensorRT build will do, decided without TensorRT: the user's engine options, the facts of the
ONNX graph that matter, the flags `plan_build` chooses for the installed TensorRT's features, the
optimization-profile shapes, and the commands that finish a build on the device (the hand-off).

Precision lives in the ONNX (an FP16 graph, or Q/DQ nodes for INT8: see calib/), because TensorRT 11
accepts nothing else; `plan_build` turns (features, graph, options) into network-creation flags and
builder flags by feature, never by version string. Everything here is pure and tested on any machine.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.export.tensorrt_features import TrtFeatures

PRECISIONS = ("fp32", "fp16", "int8")


# ------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class EngineOptions:
    """What the user asked for, checked once when made (change one with `dataclasses.replace`);
    `plan_build` decides how the installed TensorRT expresses it."""

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
    workers: int = 1  # execution contexts that will run the engine at once (profiles on TensorRT 8.5)
    max_batch: int | None = None  # dynamic-batch profile: batch 1..N, tuned for N (None: ENGINE_MAX_BATCH)
    legacy_calibrator: bool = False  # implicit INT8 (8.6/10.x only), from an FP32 graph
    calibration_cache: Path | None = None
    calibration_batches: Callable[[], Iterable[np.ndarray]] | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EdgesegError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.dla_core is not None and self.dla_core < 0:
            raise EdgesegError(f"--dla-core must be 0 or more, got {self.dla_core}")
        if self.workers < 1:
            raise EdgesegError(f"--workers must be 1 or more, got {self.workers}")
        if self.max_batch is not None and self.max_batch < 1:
            raise EdgesegError(f"--max-batch must be 1 or more, got {self.max_batch}")
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise EdgesegError(f"--workspace must be a positive number of MiB, got {self.workspace_mib}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise EdgesegError(f"--builder-optimization-level must be 0..5, got {self.optimization_level}")
        given = [s for s in (self.min_shape, self.opt_shape, self.max_shape) if s is not None]
        if given and len(given) != 3:
            raise EdgesegError("give all three of --min-shape, --opt-shape, --max-shape (or none)")
        if given:
            check_profile(self.min_shape, self.opt_shape, self.max_shape)  # type: ignore[arg-type]
            if self.max_batch is not None:
                raise EdgesegError(
                    "--max-batch or --min/--opt/--max-shape: the shapes already give the batch"
                )
        if self.dla_core is not None and (self.max_batch or 1) > 1:
            raise EdgesegError(
                "DLA takes one shape per optimization profile (NvInferRuntime.h, setDimensions): a DLA engine "
                "runs batches of 1; drop --max-batch or --dla-core"
            )
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
    """NVIDIA's rules for one input's profile (IOptimizationProfile::setDimensions in NvInferRuntime.h):
    the three shapes have one rank and min <= opt <= max on every axis."""
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
    uint8_labels: bool = False  # ArgMax -> Cast(UINT8): TensorRT builds it only as INT32 (tensorrt_onnx)

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

    from edgeseg.export.tensorrt_onnx import uint8_casts

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
        uint8_labels=bool(uint8_casts(model)),
    )


# ------------------------------------------------------------------------------------------ plan
@dataclass
class BuildPlan:
    """Flag choices for one build, by name, so they can be shown, recorded and tested."""

    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    legacy_int8: bool = False
    profiles: int = 1  # identical optimization profiles to add (one per worker on TensorRT 8.5)
    preview_features: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "network_flags": self.network_flags,
            "builder_flags": self.builder_flags,
            "preview_features": self.preview_features,
            "profiles": self.profiles,
            "notes": self.notes,
        }


def plan_build(features: TrtFeatures, graph: GraphInfo, options: EngineOptions) -> BuildPlan:
    """Choose flags by feature, not version. Raises EdgesegError when the request cannot be expressed
    (before any TensorRT object exists, so a refusal costs nothing)."""
    plan = BuildPlan()
    if features.explicit_batch_flag and not features.explicit_batch_default:
        plan.network_flags.append("EXPLICIT_BATCH")  # 8.x: ONNX networks need an explicit batch axis

    want = options.precision
    dla = options.dla_core is not None
    if want == "int8" and not graph.has_qdq and not options.legacy_calibrator:
        raise EdgesegError(
            "INT8 engines are built from a Q/DQ ONNX (made by `edgeseg build --int8`); this graph has no "
            "QuantizeLinear/DequantizeLinear nodes (or pass --legacy-calibrator on TensorRT 8.5-10.x)"
        )
    if want == "fp16" and not graph.fp16_graph and not features.fp16_flag:
        raise EdgesegError(
            f"TensorRT {features.version} is strongly typed: FP16 must be in the ONNX graph; "
            "build from the FP16 ONNX (edgeseg build --fp16 writes it)"
        )
    if options.version_compatible and not features.version_compatible:
        raise EdgesegError(f"TensorRT {features.version} cannot build version-compatible engines (8.6+)")
    if options.optimization_level is not None and not features.optimization_level:
        raise EdgesegError(f"TensorRT {features.version} has no builder optimization level (8.6+)")
    if dla and graph.has_qdq and not features.int8_flag:
        raise EdgesegError(
            f"INT8 on DLA is not available with TensorRT {features.version}: TensorRT 11 has no implicit "
            "calibrator and edgeseg does not put a Q/DQ graph on DLA; build --fp16 for DLA"
        )
    if dla and graph.has_qdq:
        raise EdgesegError(
            "DLA runs no Q/DQ (explicitly quantized) network before TensorRT 11: its layers would fall back "
            "to the GPU; build INT8 for DLA from the FP32 ONNX with the implicit calibrator: "
            f"edgeseg build MODEL.onnx --target tensorrt --int8 --legacy-calibrator --dla-core {options.dla_core}"
        )

    if options.legacy_calibrator:
        if not (features.legacy_calibrator and features.int8_flag):
            what = "INT8 on DLA is not available: " if dla else ""
            raise EdgesegError(
                f"{what}TensorRT {features.version} removed implicit INT8 calibration "
                "(IInt8EntropyCalibrator2, BuilderFlag.INT8); "
                + (
                    "build --fp16 for DLA"
                    if dla
                    else "drop --legacy-calibrator to build from the Q/DQ ONNX instead"
                )
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
        if dla:
            plan.notes.append("DLA runs INT8 only through the implicit calibrator before TensorRT 11")
    elif (
        features.strongly_typed
        and not (dla and features.fp16_flag)  # DLA before 11: documented only with BuilderFlag.FP16
        and (graph.annotated or not (features.fp16_flag or features.int8_flag))
    ):
        plan.network_flags.append("STRONGLY_TYPED")  # the graph's types are the precision
    else:
        if graph.has_qdq:
            if not features.int8_flag:
                raise EdgesegError(
                    f"TensorRT {features.version} cannot build a Q/DQ network (no INT8 support)"
                )
            plan.builder_flags.append("INT8")  # 8.x: Q/DQ networks need the INT8 flag
        if (want == "fp16" or graph.fp16_graph or graph.has_qdq) and features.fp16_flag:
            plan.builder_flags.append("FP16")

    if dla:
        if options.gpu_fallback:
            plan.builder_flags.append("GPU_FALLBACK")
        if graph.precision == "fp32" and not plan.legacy_int8 and "FP16" not in plan.builder_flags:
            plan.notes.append("DLA runs only FP16/INT8 layers; an FP32 graph will fall back to the GPU")
    if options.version_compatible:
        plan.builder_flags.append("VERSION_COMPATIBLE")
    _plan_contexts(plan, features, graph, options)
    return plan


def _plan_contexts(plan: BuildPlan, features: TrtFeatures, graph: GraphInfo, options: EngineOptions) -> None:
    """Profiles for `options.workers` concurrent execution contexts on a dynamic-shape engine.

    NvInferRuntime.h (8.5.2, 8.6.1): each context in concurrent use needs its own optimization profile,
    so 8.5 gets one identical profile per worker; 8.6 lets contexts share one with
    PreviewFeature.PROFILE_SHARING_0806 set at build time; 10.x gives every context profile 0.
    """
    if options.workers < 2 or not graph.dynamic_inputs() or features.contexts_share_profiles:
        return
    if features.profile_sharing_preview:
        plan.preview_features.append("PROFILE_SHARING_0806")
        plan.notes.append(f"{options.workers} workers share one optimization profile (PROFILE_SHARING_0806)")
    else:
        plan.profiles = options.workers
        plan.notes.append(
            f"one optimization profile per worker ({options.workers}): TensorRT 8.5 shares none"
        )


def _fixed(d: int | str) -> bool:
    return isinstance(d, int) and d > 0


def spatial_range(side: int) -> tuple[int, int]:
    """The smallest and largest side a dynamic-H/W profile takes around a stated side: half of it (at
    least MIN_INPUT_SIDE) to twice it rounded up to the stride, so `run --native-size` frames up to
    twice the stated size fit after padding, and `run --input-size` may choose within."""
    from edgeseg.card import MAX_INPUT_SIDE, MIN_INPUT_SIDE
    from edgeseg.preprocess import STRIDE

    return max(MIN_INPUT_SIDE, side // 2), min(MAX_INPUT_SIDE, -(-2 * side // STRIDE) * STRIDE)


def default_profile(
    dims: tuple[int | str, ...], card: ModelCard, options: EngineOptions
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """min/opt/max for an input the user gave no shapes for, from what edgeseg's runtime will send:
    - a dynamic batch: 1..N tuned for N (N = --max-batch, else ENGINE_MAX_BATCH): several streams
      batch one frame each, a single stream sends 1;
    - dynamic height/width: around the card's stated inference size (`spatial_range`), tuned for it;
      fixed axes keep their size, and a spatial axis the export fixed stays at it;
    - on DLA all three are the one shape (NvInferRuntime.h setDimensions: "If run on DLA, minimum,
      optimum, and maximum dimensions must to be the same"): batch 1 at the stated size."""
    from edgeseg.defaults import ENGINE_MAX_BATCH

    h, w = card.input_size
    dla = options.dla_core is not None
    n = 1 if dla else options.max_batch or ENGINE_MAX_BATCH
    want: list[tuple[int, int, int]] = []
    for axis, d in enumerate(dims):
        if _fixed(d):
            want.append((int(d), int(d), int(d)))  # type: ignore[arg-type]
        elif axis == 0:
            want.append((1, n, n))
        elif axis in (2, 3) and len(dims) == 4:
            side = h if axis == 2 else w
            lo, hi = (side, side) if dla else spatial_range(side)
            want.append((lo, side, hi))
        else:  # a dynamic channel axis (a foreign file): the image's 3 channels
            want.append((3, 3, 3))
    lo_s, opt_s, hi_s = (tuple(t[k] for t in want) for k in range(3))
    return lo_s, opt_s, hi_s


def describe_profile(profiles: dict[str, dict[str, list[int]]]) -> list[str]:
    """One line per input: the batch range and the spatial range, as the build reports them."""
    lines = []
    for name, s in profiles.items():
        lo, opt, hi = s["min"], s["opt"], s["max"]
        parts = []
        for axis, label in ((0, "batch"), (2, "height"), (3, "width")):
            if axis >= len(lo):
                continue
            if lo[axis] == hi[axis]:
                parts.append(f"{label} {lo[axis]}")
            else:
                parts.append(f"{label} {lo[axis]}..{hi[axis]} (tuned for {opt[axis]})")
        lines.append(f"profile of {name}: {', '.join(parts)}")
    return lines


def profile_shapes(
    graph: GraphInfo, options: EngineOptions, card: ModelCard
) -> dict[str, dict[str, list[int]]]:
    """min/opt/max per dynamic input: the user's, else `default_profile` (what the runtime will send)."""
    dynamic = graph.dynamic_inputs()
    if not dynamic:
        if options.min_shape is not None or options.max_batch is not None:
            what = "--max-batch needs" if options.max_batch is not None else "--min/--opt/--max-shape need"
            raise EdgesegError(f"{what} an ONNX with dynamic axes (export with --dynamic)")
        return {}
    shapes = {}
    for name, dims in dynamic.items():
        if options.max_batch is not None and _fixed(dims[0]):
            raise EdgesegError(
                f"--max-batch needs a dynamic batch axis, but input {name!r} has batch {dims[0]} "
                "(export with --dynamic)"
            )
        if options.min_shape is not None:
            lo, opt, hi = options.min_shape, options.opt_shape, options.max_shape
        else:
            lo, opt, hi = default_profile(dims, card, options)
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
        if options.dla_core is not None and not tuple(lo) == tuple(opt) == tuple(hi):
            raise EdgesegError(
                "DLA takes one shape per optimization profile (NvInferRuntime.h setDimensions: min, opt and "
                f"max must be the same on DLA); give --min/--opt/--max-shape equal, got {lo}, {opt}, {hi}"
            )
        shapes[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    return shapes


# ------------------------------------------------------------------------------------------ hand-off
HANDOFF_LABELS = {
    "edgeseg": "any TensorRT: also writes the sidecar `edgeseg run` checks",
    "trtexec_8": "TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0)",
    "trtexec_8_6": "TensorRT 8.6 (JetPack 6.0)",
    "trtexec_10": "TensorRT 10.x (JetPack 6.1 / 6.2)",
    "trtexec_11": "TensorRT 11.x",
}
# trtexec options 8.5's trtexec rejects as unknown (8.5.2 samples/common/sampleOptions.cpp)
TRTEXEC_SINCE_8_6 = ("--versionCompatible", "--builderOptimizationLevel")


@dataclass
class Handoff:
    """An engine build left for the target device (no TensorRT or GPU here): the folder to copy there,
    the TensorRT-ready ONNX in it, the engine it becomes, and the commands that finish the job, run in
    the copied folder (ours, and trtexec's for each TensorRT version it is valid for)."""

    reason: str
    onnx: Path
    engine: Path
    precision: str
    commands: dict[str, str]
    folder: Path = Path(".")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": "handoff",
            "reason": self.reason,
            "folder": str(self.folder),
            "onnx": str(self.onnx),
            "engine": str(self.engine),
            "precision": self.precision,
            "commands": self.commands,
            "labels": {k: HANDOFF_LABELS[k] for k in self.commands},
            "notes": self.notes,
            "exit_code": int(ExitCode.NEEDS_DEVICE),
        }


def _build_flags(
    options: EngineOptions, profiles: dict[str, dict[str, list[int]]], calib_data: str | None
) -> tuple[list[str], list[str], list[str]]:
    """The same build said twice: the edgeseg line's options and trtexec's, and notes (a file to copy
    along, one profile per trtexec engine)."""
    ours: list[str] = []
    common: list[str] = []
    notes: list[str] = []
    dla = options.dla_core is not None
    if options.legacy_calibrator:  # otherwise the ready ONNX carries its precision: no --fp16/--int8 again
        ours += ["--int8", "--legacy-calibrator"]
        if calib_data and calib_data.split(":")[0] != "synth":
            ours += ["--calib-data", Path(calib_data).name]
            notes.append(f"copy the calibration data {calib_data} into the folder too")
    if options.workspace_mib:
        ours += ["--workspace", str(options.workspace_mib)]
        common.append(f"--memPoolSize=workspace:{options.workspace_mib}")
    if options.timing_cache:
        cache = Path(options.timing_cache).name
        ours += ["--timing-cache", cache]
        common.append(f"--timingCacheFile={cache}")
    if dla:
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
    if options.max_batch is not None:
        ours += ["--max-batch", str(options.max_batch)]
    if options.workers > 1:
        ours += ["--workers", str(options.workers)]
        if profiles:
            notes.append(
                f"a trtexec engine has one optimization profile: on TensorRT 8.5/8.6 it serves one worker; "
                f"the edgeseg line builds it for {options.workers}"
            )
    if options.version_compatible:
        ours.append("--version-compatible")
        common.append("--versionCompatible")
    if options.optimization_level is not None:
        ours += ["--builder-optimization-level", str(options.optimization_level)]
        common.append(f"--builderOptimizationLevel={options.optimization_level}")
    return ours, common, notes


def _trtexec_lines(common: list[str], graph: GraphInfo, dla: bool, notes: list[str]) -> dict[str, str]:
    """trtexec lines per TensorRT version for a file that carries its precision (see
    `handoff_commands`); what a version cannot build goes to `notes`."""
    commands: dict[str, str] = {}
    weak = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[graph.precision]
    if graph.has_qdq and graph.fp16_graph:
        notes.append(
            "TensorRT 8.5/8.6: use the edgeseg line; trtexec there would read this file's FP16 Q/DQ scales "
            "as FP32 (the edgeseg build widens the file for 8.x first)"
        )
    elif any(opt.split("=")[0] in TRTEXEC_SINCE_8_6 for opt in common):
        commands["trtexec_8_6"] = shlex.join(["trtexec", *common, *weak])
        notes.append(
            "no TensorRT 8.5 line: its trtexec rejects --versionCompatible and --builderOptimizationLevel "
            "(both 8.6+)"
        )
    else:
        commands["trtexec_8"] = shlex.join(["trtexec", *common, *weak])
    if dla:
        commands["trtexec_10"] = shlex.join(["trtexec", *common, *(weak or ["--fp16"])])
        notes.append("DLA on TensorRT 11 needs 11.4.1 or later on JetPack 7.2.2+ (AGX Orin)")
    else:
        typed = ["--stronglyTyped"] if graph.annotated else []
        commands["trtexec_10"] = shlex.join(["trtexec", *common, *typed])
    commands["trtexec_11"] = shlex.join(["trtexec", *common])
    if dla and graph.precision == "fp32":
        notes.append("on DLA, TensorRT 11 runs an FP32 graph on the GPU: build --fp16 for DLA")
    return commands


def handoff_commands(
    ready_onnx: Path,
    engine_path: Path,
    options: EngineOptions,
    profiles: dict[str, dict[str, list[int]]],
    graph: GraphInfo,
    *,
    calib_data: str | None = None,
) -> tuple[dict[str, str], list[str]]:
    """The commands that finish the build on the device, with paths relative to the ONNX's folder (the
    one the user copies), each trtexec line named for the TensorRT versions it is valid for, and notes
    on the lines left out and why.

    - 8.5/8.6 are weakly typed: precision by --fp16 / --int8 --fp16. One line serves both unless it
      needs an option 8.5's trtexec does not know (--versionCompatible, --builderOptimizationLevel):
      then the line is named for 8.6 only and a note says why 8.5 has none.
    - 10.x: --stronglyTyped for an annotated graph, except on DLA (documented weakly typed with --fp16
      before 11).
    - 11.x removed --fp16, --int8 and the calibrators; every network is strongly typed (its
      --stronglyTyped is a deprecated no-op, so it is left out).
    - An implicit-INT8 (calibrator) build has no trtexec line: trtexec only reads a calibration cache,
      and the cache exists only after the edgeseg line has calibrated on the device.
    """
    name = Path(ready_onnx).name
    dla = options.dla_core is not None
    ours_flags, trtexec_flags, notes = _build_flags(options, profiles, calib_data)
    ours = ["edgeseg", "build", name, "--target", "tensorrt", *ours_flags]
    common = [f"--onnx={name}", f"--saveEngine={Path(engine_path).name}", *trtexec_flags]
    commands = {"edgeseg": shlex.join(ours)}
    if options.legacy_calibrator:
        notes.append(
            "no trtexec line: trtexec only reads a calibration cache, which the edgeseg line writes "
            f"({Path(engine_path).stem.split('.')[0]}.int8-legacy.calib) when it calibrates on the device"
        )
        notes.append("TensorRT 11 has no implicit calibrator: on 11.x build INT8 without --dla-core")
        return commands, notes

    if graph.uint8_labels:
        notes.append(
            "no trtexec line: this file's labels are cast to UINT8, which TensorRT does not build from ArgMax's "
            "INT32; the edgeseg line builds them as INT32 (or export --labels-dtype int32)"
        )
        return commands, notes
    commands.update(_trtexec_lines(common, graph, dla, notes))
    return commands, notes
