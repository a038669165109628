"""FAKE `tensorrt` modules for TensorRT 8.5.2, 8.6.1, 10.3.0 and 11.4, for tests on machines without a GPU.

`make_fake_trt(version, gpu)` builds a module whose classes expose only the members whose names
appear in that version's list extracted from NVIDIA's bindings wheel (tests/data/tensorrt/), so
code touching an API that version lacks gets AttributeError exactly as with the real module. The
flat lists cannot say *which class* owns a name, so the class layout below follows NVIDIA's API
docs, and QUALIFIED_ABSENT records owner-level removals a flat list cannot show (`INT8` survives in
11.x as DataType.INT8 but BuilderFlag.INT8 is gone).

Behaviour copied from the real library (what tests rely on):
  - parse() returns False and records errors with node index (and node_name on 10+) for unsupported
    ops, bad protobuf, or an implicit-batch network on 8.6;
  - build_serialized_network() returns None (after logging an ERROR) for: FP16/INT8 flags on a
    strongly typed network, a Q/DQ network without INT8 on a weakly typed network, dynamic inputs
    without an optimization profile, a DLA core that does not exist, INT8 without a calibrator or Q/DQ;
  - deserialize_cuda_engine() returns None for corrupt data or an engine from another version.
What is invented: the engine "plan" (a header + the ONNX bytes), the timing-cache format, and
execution: execute_async_v3 runs the stored ONNX with ONNX Runtime on CPU, reading its input from
and writing its output to the fake "device" pointers (see cuda.py), so results are real numbers.

Behaviours taken from NVIDIA's sources, each one a way the real library refuses or degrades what a
careless caller does (NVIDIA/TensorRT paths; pyCoreDoc.h is python/docstrings/infer/pyCoreDoc.h):
  1. Version-compatible engines: `Runtime.deserialize_cuda_engine` refuses an engine built with
     BuilderFlag.VERSION_COMPATIBLE unless `runtime.engine_host_code_allowed = True` (pyCoreDoc.h
     IRuntime: "Whether this runtime is allowed to deserialize engines that contain host executable
     code (Default: False)"; Polygraphy backend/trt/loader.py sets it "to deserialize version
     compatible engines"; samples/common/sampleEngines.cpp calls setEngineHostCodeAllowed(true) for
     them). Such an engine loads in a newer runtime of the same major version; any other version
     mismatch fails. 8.5 has no engine_host_code_allowed and no VERSION_COMPATIBLE.
  2. Timing caches: the serialized cache carries the device it was timed on;
     `set_timing_cache(cache, ignore_mismatch=False)` returns False (and logs an error) for a cache
     from another device, and the config then has no cache: `get_timing_cache()` is None
     (pyCoreDoc.h set_timing_cache: "A failure will be reported if the CUDA device property in the
     provided cache is different from current environment", returns a bool; get_timing_cache:
     "or `None` if no timing cache is set"; include/NvInfer.h setTimingCache).
  3. DLA: the DLA core an engine runs on is `runtime.DLA_core` at deserialization (NvInferRuntime.h
     IRuntime::setDLACore, "Defaults to -1"; trtexec sets it before deserializing). With the default
     the fake runs DLA layers on core 0 (the issue's reading; NVIDIA does not spell it out).
     Explicitly quantized (Q/DQ) networks do not run on DLA before TensorRT 11: their layers fall
     back to the GPU (DLA chapter of the 8.x developer guide, "DLA does not support Explicit
     Quantization"; NVIDIA/TensorRT#2222 "DLA doesn't support QAT yet ... if you convert it to
     implicit quantization, it would work with DLA"; NVIDIA/Model-Optimizer#1661 "DLA still only
     supports IQ"). Strongly typed DLA builds are documented only from 11.4.1 (TensorRT 11.4.1 release
     notes: "Strongly typed networks for DLA"); the fake keeps strongly typed layers off DLA before
     11 (NOT verified: the conservative reading of the documentation). TensorRT 11.0-11.4.0 has no DLA
     on Jetson ("DLA was unavailable in TensorRT 11.0 through 11.3 ... 11.4.0 supported DLA only on
     Windows on ARM", Working with DLA, 11.4.1): a DLA build on the 11.4.0 fake fails.
  4. Implicit INT8 calibration of a network with dynamic inputs needs
     `config.set_calibration_profile(profile)` (pyCoreDoc.h set_calibration_profile: "Calibration
     optimization profile must be set if int8 calibration is used to set scales for a network with
     runtime dimensions"; "MIN and MAX values will be overwritten by OPT"; Polygraphy
     backend/trt/config.py sets it; NVIDIA/TensorRT#3933). Without it the build fails (the wording of
     the fake's error is invented). Calibration batches are read at the profile's OPT shape.
  5. Strongly typed networks run every tensor in the type the graph gives it (NetworkDefinition
     CreationFlag.STRONGLY_TYPED docstring: "every tensor in the network has a data type defined in
     the network"): the float layers of a Q/DQ graph whose float parts are FP32 run in FP32.
     `last_build["fp32_layers"]` names them. On a weakly typed network with BuilderFlag.FP16 TensorRT
     may pick FP16 for any float layer (the list is empty).
  6. TensorRT 8.5/8.6's ONNX parser reads Q/DQ scales as float32 (onnx/onnx-tensorrt release/8.6-GA
     builtin_op_importers.cpp, QuantDequantLinearHelper: `static_cast<float const*>(scale.values)`),
     so an FP16 scale would be misread silently; the fake turns that silent corruption into a parse
     error (stricter than the real parser, so a test can see it).
  7. IProgressMonitor is called from several builder threads at once (include/NvInfer.h: "The
     implementation of IProgressMonitor must be thread-safe so that it can be called from multiple
     internal threads"): the fake reports its per-thread timing phases from two threads.
What the fake cannot show: speed, numerics of reduced precision (it runs the ONNX as given with ONNX
Runtime), and anything NVIDIA does not document.
"""

from __future__ import annotations

import json
import types
from typing import Any

import numpy as np

from fake_tensorrt.cuda import FakeGpu
from fake_tensorrt.names import NameList, load_names

MAGIC = b"FAKETRT1"
QUALIFIED_ABSENT = {"11": {("BuilderFlag", "INT8"), ("BuilderFlag", "FP16")}}
SUPPORTED_OPS = {
    "Conv", "ConvTranspose", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Mul", "Add", "Sub",
    "Div", "Concat", "Resize", "MaxPool", "AveragePool", "GlobalAveragePool", "BatchNormalization",
    "QuantizeLinear", "DequantizeLinear", "ArgMax", "Cast", "Identity", "Reshape", "Transpose",
    "Softmax", "Pad", "Slice", "Shape", "Gather", "Unsqueeze", "Squeeze", "Constant", "ReduceMean",
}  # fmt: skip


class _Member(int):
    """An enum value: an int (so `1 << int(flag)` works) with a name (so str() looks like pybind's)."""

    def __new__(cls, owner: str, name: str, value: int) -> _Member:
        obj = super().__new__(cls, value)
        obj.owner, obj.name = owner, name
        return obj

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"

    __repr__ = __str__


def _enum(owner: str, members: list[str], names: NameList, major: str) -> type:
    absent = QUALIFIED_ABSENT.get(major, set())
    attrs = {
        m: _Member(owner, m, i) for i, m in enumerate(members) if m in names and (owner, m) not in absent
    }
    return type(owner, (), attrs)


def _prune(cls: type, names: NameList, keep: tuple[str, ...] = ()) -> type:
    """Delete the public members of `cls` whose names this TensorRT version does not have."""
    for attr in list(vars(cls)):
        if attr.startswith("_") or attr in keep:
            continue
        if attr not in names:
            delattr(cls, attr)
    return cls


def _onnx_type_to_dt(trt: Any, elem_type: int) -> Any:
    from onnx import TensorProto

    table = {
        TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF", TensorProto.INT32: "INT32",
        TensorProto.INT64: "INT64", TensorProto.UINT8: "UINT8", TensorProto.INT8: "INT8", TensorProto.BOOL: "BOOL",
    }  # fmt: skip
    return getattr(trt.DataType, table[elem_type])


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
NON_COMPUTE = {"Cast", "Shape", "Constant", "Identity", "Reshape", "Squeeze", "Unsqueeze", "Gather", "Slice"}
DLA_OPS = {"Conv", "ConvTranspose", "Relu", "Clip", "Sigmoid", "Add", "Mul", "Sub", "MaxPool", "AveragePool",
           "Concat", "Resize", "BatchNormalization", "Softmax"}  # fmt: skip


def _float_types(proto: Any) -> list[tuple[str, str, str]]:
    """(node name, op, element type of its first float input) per compute node, from shape inference."""
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    types_of = {t.name: t.data_type for t in inferred.graph.initializer}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types_of[vi.name] = vi.type.tensor_type.elem_type
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            types_of[node.output[0]] = node.attribute[0].t.data_type
    names = {TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF"}
    out = []
    for i, node in enumerate(inferred.graph.node):
        if node.op_type in QDQ_OPS or node.op_type in NON_COMPUTE:
            continue
        kinds = [names[types_of[x]] for x in node.input if types_of.get(x) in names]
        if kinds:
            out.append((node.name or f"{node.op_type}_{i}", node.op_type, kinds[0]))
    return out


def _scale_types(proto: Any) -> list[int]:
    """Element types of the scale inputs of every Q/DQ node."""
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t.data_type for n in proto.graph.node if n.op_type == "Constant"}
    return [
        inits.get(n.input[1], consts.get(n.input[1], 1)) for n in proto.graph.node if n.op_type in QDQ_OPS
    ]


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def make_fake_trt(version: str, gpu: FakeGpu) -> types.ModuleType:  # noqa: C901 - one module factory
    names = load_names(version)
    major = version.split(".")[0]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # (what, detail) records for tests
    trt.last_build = {}

    def record(what: str, detail: Any = None) -> None:
        trt.calls.append((what, detail))

    trt.NetworkDefinitionCreationFlag = _enum(
        "NetworkDefinitionCreationFlag",
        ["EXPLICIT_BATCH", "EXPLICIT_PRECISION", "STRONGLY_TYPED"],
        names,
        major,
    )
    trt.BuilderFlag = _enum(
        "BuilderFlag",
        ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "TF32", "VERSION_COMPATIBLE",
         "EXCLUDE_LEAN_RUNTIME", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"],
        names, major,
    )  # fmt: skip
    trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], names, major)
    trt.DeviceType = _enum("DeviceType", ["GPU", "DLA"], names, major)
    trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], names, major)
    trt.DataType = _enum(
        "DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8", "BF16", "INT64"], names, major
    )

    severity = type("Severity", (), {})
    for i, level in enumerate(["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]):
        setattr(severity, level, _Member("Severity", level, i))

    class ILogger:
        Severity = severity

        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:  # overridden by users
            pass

    trt.ILogger = _prune(ILogger, names, keep=("Severity", "log"))

    def log(logger: Any, sev: str, msg: str) -> None:
        if logger is not None:
            logger.log(getattr(severity, sev), msg)

    np_types = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
                "UINT8": np.uint8, "INT64": np.int64}  # fmt: skip

    def nptype(dt: Any) -> type:
        return np_types[dt.name]

    trt.nptype = nptype
    trt.volume = lambda shape: int(np.prod(list(shape), dtype=np.int64))

    # ------------------------------------------------------------------ network, parser
    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            ncf = trt.NetworkDefinitionCreationFlag
            self._flags = flags
            self._strong = hasattr(ncf, "STRONGLY_TYPED") and bool(flags & (1 << int(ncf.STRONGLY_TYPED)))
            if major == "11":
                self._strong = True  # 11.x: every network is strongly typed
            self._explicit = major != "8" or bool(flags & (1 << int(ncf.EXPLICIT_BATCH)))
            self._inputs: list[ITensor] = []
            self._outputs: list[ITensor] = []
            self._model: bytes | None = None
            self._ops: list[str] = []
            self._float_types: list[tuple[str, str, str]] = []

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        def get_input(self, i: int) -> ITensor:
            return self._inputs[i]

        @property
        def num_outputs(self) -> int:
            return len(self._outputs)

        @property
        def num_layers(self) -> int:
            return len(self._ops)

    class ParserError:
        def __init__(self, desc: str, node: int = -1, node_name: str = "", op: str = "") -> None:
            self._desc, self._node, self._name, self._op = desc, node, node_name, op

        def desc(self) -> str:
            return self._desc

        def code(self) -> int:
            return 8

        def node(self) -> int:
            return self._node

        def node_name(self) -> str:
            return self._name

        def node_operator(self) -> str:
            return self._op

    _prune(ParserError, names)

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self.network, self.logger = network, logger
            self._errors: list[ParserError] = []

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, i: int) -> ParserError:
            return self._errors[i]

        def clear_errors(self) -> None:
            self._errors.clear()

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            record("parse", len(model))
            if not self.network._explicit:
                self._errors.append(
                    ParserError("network must have an explicit batch dimension (EXPLICIT_BATCH)")
                )
                return False
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception:
                self._errors.append(ParserError("Failed to parse ONNX model from the given buffer"))
                return False
            ok = True
            for i, node in enumerate(proto.graph.node):
                if node.op_type not in SUPPORTED_OPS:
                    ok = False
                    self._errors.append(
                        ParserError(
                            f"No importer registered for op: {node.op_type}", i, node.name, node.op_type
                        )
                    )
            if not ok:
                return False
            if major == "8" and any(t != 1 for t in _scale_types(proto)):  # behaviour 6
                self._errors.append(
                    ParserError(
                        "Q/DQ scale must be FLOAT: TensorRT 8.x reads scales as float32 (FAKE: stricter)"
                    )
                )
                return False
            init = {t.name for t in proto.graph.initializer}
            for vi in proto.graph.input:
                if vi.name in init:
                    continue
                dims = tuple(
                    d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
                )
                self.network._inputs.append(
                    ITensor(vi.name, dims, _onnx_type_to_dt(trt, vi.type.tensor_type.elem_type))
                )
            for vi in proto.graph.output:
                dims = tuple(
                    d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
                )
                self.network._outputs.append(
                    ITensor(vi.name, dims, _onnx_type_to_dt(trt, vi.type.tensor_type.elem_type))
                )
            self.network._model = bytes(model)
            self.network._ops = [n.op_type for n in proto.graph.node]
            self.network._float_types = _float_types(proto)
            return True

    trt.OnnxParser = _prune(OnnxParser, names, keep=("network", "logger"))

    # ------------------------------------------------------------------ config, profile, timing cache
    here = [gpu.name, list(gpu.cc), gpu.sm_count]  # the device properties a timing cache is tied to

    class ITimingCache:
        def __init__(self, entries: dict[str, float], device: list | None = None) -> None:
            self._entries = dict(entries)
            self._device = device if device is not None else here

        def serialize(self) -> bytes:
            return b"FAKETC2" + json.dumps({"device": self._device, "entries": self._entries}).encode()

        def combine(self, other: ITimingCache, ignore_mismatch: bool) -> bool:
            self._entries.update(other._entries)
            return True

        def reset(self) -> bool:
            self._entries.clear()
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TRT names
            record("set_shape", (input, tuple(min), tuple(opt), tuple(max)))
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

        def get_shape(self, input: str) -> list[tuple[int, ...]]:  # noqa: A002
            return list(self._shapes.get(input, ()))

    trt.IOptimizationProfile = _prune(IOptimizationProfile, names)

    settable = ("default_device_type", "DLA_core", "builder_optimization_level", "int8_calibrator",
                "progress_monitor", "hardware_compatibility_level")  # fmt: skip
    config_absent = {a for a in settable if a not in names}

    class IBuilderConfig:
        # pybind properties live on the class (so `hasattr(trt.IBuilderConfig, name)` works as on the real
        # module); the defaults are set per instance below
        default_device_type = DLA_core = builder_optimization_level = int8_calibrator = None
        progress_monitor = hardware_compatibility_level = None

        def __init__(self, logger: Any = None) -> None:
            self._logger = logger
            self._calibration_profile: IOptimizationProfile | None = None
            self._flags: set[str] = set()
            self._pools: dict[str, int] = {}
            self._cache: ITimingCache | None = None
            self._profiles: list[IOptimizationProfile] = []
            defaults = {"default_device_type": trt.DeviceType.GPU, "DLA_core": -1, "builder_optimization_level": 3,
                        "int8_calibrator": None, "progress_monitor": None, "hardware_compatibility_level": 0}  # fmt: skip
            for key, value in defaults.items():
                if key not in config_absent:
                    setattr(self, key, value)

        def __setattr__(self, key: str, value: Any) -> None:
            if key in config_absent:  # a pybind class rejects attributes it does not define
                raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{key}'")
            object.__setattr__(self, key, value)

        def set_flag(self, flag: Any) -> None:
            record("set_flag", flag.name)
            self._flags.add(flag.name)

        def clear_flag(self, flag: Any) -> None:
            self._flags.discard(flag.name)

        def get_flag(self, flag: Any) -> bool:
            return flag.name in self._flags

        def set_memory_pool_limit(self, pool: Any, size: int) -> None:
            record("set_memory_pool_limit", (pool.name, size))
            self._pools[pool.name] = int(size)

        def create_timing_cache(self, serialized: bytes) -> ITimingCache:
            data = bytes(serialized)
            if not data:
                return ITimingCache({})
            if not data.startswith(b"FAKETC2"):
                raise TypeError("createTimingCache: invalid timing cache (pybind11 factory returned nullptr)")
            blob = json.loads(data[7:])
            return ITimingCache(blob["entries"], blob["device"])

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            record("set_timing_cache", len(cache._entries))
            if cache._device != here and not ignore_mismatch:  # behaviour 2
                log(self._logger, "ERROR", "Timing cache was created on a device with different properties")
                return False
            self._cache = cache
            return True

        def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
            record("set_calibration_profile", dict(profile._shapes))
            self._calibration_profile = profile
            return True

        def get_calibration_profile(self) -> IOptimizationProfile | None:
            return self._calibration_profile

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            for mn, opt, mx in profile._shapes.values():
                if not (len(mn) == len(opt) == len(mx)) or not all(
                    a <= b <= c for a, b, c in zip(mn, opt, mx)
                ):
                    return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self._profiles)

    trt.IBuilderConfig = _prune(IBuilderConfig, names)

    if "IInt8EntropyCalibrator2" in names and major != "11":

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    if "IProgressMonitor" in names:

        class IProgressMonitor:
            def __init__(self) -> None:
                pass

        trt.IProgressMonitor = IProgressMonitor

    # ------------------------------------------------------------------ builder
    class Builder:
        def __init__(self, logger: Any) -> None:
            if gpu.devices == 0 or not gpu.driver_ok:
                raise TypeError("pybind11::init(): factory function returned nullptr (no CUDA device)")
            self.logger = logger
            record("Builder", version)

        @property
        def num_DLA_cores(self) -> int:  # noqa: N802 - TRT name
            return gpu.dla_cores

        @property
        def platform_has_fast_fp16(self) -> bool:
            return gpu.cc >= (5, 3)

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            ncf = trt.NetworkDefinitionCreationFlag
            set_names = [
                n for n in vars(ncf) if not n.startswith("_") and flags & (1 << int(getattr(ncf, n)))
            ]
            record("create_network", sorted(set_names))
            if "EXPLICIT_BATCH" in set_names and major != "8":
                log(self.logger, "WARNING", "EXPLICIT_BATCH is deprecated and has no effect")
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig(self.logger)

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def _fail(self, msg: str) -> None:
            log(self.logger, "ERROR", msg)
            trt.last_build = {"error": msg}

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> bytes | None:
            record("build_serialized_network", sorted(config._flags))
            if network._model is None:
                return self._fail("Network must have at least one output")
            flags = config._flags
            qdq = "QuantizeLinear" in network._ops
            if network._strong and flags & {"FP16", "INT8", "BF16"}:
                return self._fail(
                    "Builder flags FP16/INT8/BF16 are not allowed with a strongly typed network"
                )
            if qdq and not network._strong and "INT8" not in flags:
                return self._fail("Network has Q/DQ layers but BuilderFlag::kINT8 is not set")
            dynamic = [t for t in network._inputs if -1 in t.shape]
            covered = {n for p in config._profiles for n in p._shapes}
            for t in dynamic:
                if t.name not in covered:
                    return self._fail(
                        "Network has dynamic or shape inputs, but no optimization profile has been defined."
                    )
            for p in config._profiles:
                for t in network._inputs:
                    if t.name in p._shapes:
                        for shape in p._shapes[t.name]:
                            fixed_ok = all(d == -1 or d == s for d, s in zip(t.shape, shape))
                            if len(shape) != len(t.shape) or not fixed_ok:
                                return self._fail(
                                    f"profile shape {shape} does not match input {t.name} {t.shape}"
                                )
            dla = getattr(config, "default_device_type", None) == trt.DeviceType.DLA
            dla_layers = 0
            if dla:
                if major == "11":  # behaviour 3: no DLA on Jetson in 11.0-11.4.0
                    return self._fail("DLA is not supported by this TensorRT release on this platform")
                if not 0 <= config.DLA_core < gpu.dla_cores:
                    return self._fail(f"DLA core {config.DLA_core} is not available ({gpu.dla_cores} cores)")
                reduced = bool(flags & {"FP16", "INT8"}) and not network._strong and not qdq
                if reduced:
                    dla_layers = sum(1 for op in network._ops if op in DLA_OPS)
                if dla_layers < sum(1 for op in network._ops if op not in QDQ_OPS and op not in NON_COMPUTE):
                    if "GPU_FALLBACK" not in flags:
                        return self._fail(
                            "Some layers cannot run on DLA (FP32, strongly typed or Q/DQ) and GPU fallback is disabled"
                        )
                    log(self.logger, "WARNING", "Layers cannot run on DLA, falling back to GPU")
            calib_stats = None
            if "INT8" in flags and not qdq:
                calibrator = getattr(config, "int8_calibrator", None)
                if calibrator is None:
                    return self._fail("Calibration failure: INT8 without a calibrator or Q/DQ layers")
                calib_profile = getattr(config, "_calibration_profile", None)
                if dynamic and (
                    calib_profile is None or any(t.name not in calib_profile._shapes for t in dynamic)
                ):
                    return self._fail(  # behaviour 4 (wording invented)
                        "Calibration profile is not set for a network with dynamic input shapes"
                    )
                calib_stats = self._calibrate(calibrator, network, calib_profile)
            if network._strong:  # behaviour 5
                fp32_layers = [name for name, _, kind in network._float_types if kind == "FLOAT"]
            elif "FP16" in flags:
                fp32_layers = []
            else:
                fp32_layers = [name for name, _, _ in network._float_types]
            cache = config._cache
            keys = [f"{op}:{i}:{sorted(flags)}" for i, op in enumerate(network._ops)]
            hits = sum(1 for k in keys if cache is not None and k in cache._entries)
            if not self._time_layers(config, keys, cache):
                return self._fail("Build cancelled by the progress monitor")
            trt.last_build = {
                "timing_cache_hits": hits,
                "timing_cache_misses": len(keys) - hits,
                "calibration": calib_stats,
                "dla_layers": dla_layers,
                "fp32_layers": fp32_layers,
            }
            profiles = [
                {n: [list(s) for s in shapes] for n, shapes in p._shapes.items()} for p in config._profiles
            ]
            header = {
                "version": version,
                "gpu": [gpu.name, list(gpu.cc)],
                "flags": sorted(flags),
                "strongly_typed": network._strong,
                "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
                "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
                "profiles": profiles,
                "dla_core": config.DLA_core if dla else None,
                "dla_layers": dla_layers,
                "version_compatible": "VERSION_COMPATIBLE" in flags,
            }
            return MAGIC + json.dumps(header).encode() + b"\n" + network._model

        def _time_layers(self, config: IBuilderConfig, keys: list[str], cache: Any) -> bool:
            """Layer timing on two builder threads, each reporting its own phase (behaviour 7)."""
            import threading

            monitor = getattr(config, "progress_monitor", None)
            if monitor is not None:
                monitor.phase_start("Building engine", None, 2)
            halves = [keys[0::2], keys[1::2]]
            cancelled = threading.Event()
            together = threading.Barrier(2)

            def worker(k: int) -> None:
                phase = f"Timing layers ({k + 1}/2)"
                together.wait()  # both builder threads report at the same time
                if monitor is not None:
                    monitor.phase_start(phase, "Building engine", max(len(halves[k]), 1))
                for step, key in enumerate(halves[k]):
                    if cache is not None:
                        cache._entries.setdefault(key, 0.01)
                    if monitor is not None and not monitor.step_complete(phase, step):
                        cancelled.set()
                        break
                if monitor is not None:
                    monitor.phase_finish(phase)

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if monitor is not None:
                if not cancelled.is_set():
                    monitor.step_complete("Building engine", 1)
                monitor.phase_finish("Building engine")
            return not cancelled.is_set()

        def _calibrate(self, calibrator: Any, network: INetworkDefinition, profile: Any) -> dict[str, Any]:
            cached = calibrator.read_calibration_cache()
            if cached:
                return {"from_cache": True, "batches": 0}
            names_in = [t.name for t in network._inputs]
            first = network._inputs[0]
            if profile is not None and first.name in profile._shapes:
                shape = list(profile._shapes[first.name][1])  # OPT (MIN and MAX are overwritten by it)
            else:
                shape = [d if d > 0 else 1 for d in first.shape]
            nbytes = int(np.prod(shape)) * 4
            batches, absmax = 0, 0.0
            while (ptrs := calibrator.get_batch(names_in)) is not None:
                data = np.frombuffer(gpu.read(int(ptrs[0]), nbytes), dtype=np.float32)
                absmax = max(absmax, float(np.abs(data).max()))
                batches += 1
            calibrator.write_calibration_cache(json.dumps({"input_absmax": absmax}).encode())
            return {"from_cache": False, "batches": batches}

    trt.Builder = _prune(Builder, names, keep=("logger",))

    # ------------------------------------------------------------------ runtime, engine, context
    class ICudaEngine:
        def __init__(self, header: dict[str, Any], model: bytes) -> None:
            self._h, self._model = header, model
            self._io = [(n, s, d, "INPUT") for n, s, d in header["inputs"]]
            self._io += [(n, s, d, "OUTPUT") for n, s, d in header["outputs"]]
            self._session = None

        def _find(self, name: str) -> tuple[str, list[int], str, str]:
            for entry in self._io:
                if entry[0] == name:
                    return entry
            raise RuntimeError(f"unknown tensor {name}")

        @property
        def num_io_tensors(self) -> int:
            return len(self._io)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0]

        def get_tensor_mode(self, name: str) -> Any:
            return getattr(trt.TensorIOMode, self._find(name)[3])

        def get_tensor_dtype(self, name: str) -> Any:
            return getattr(trt.DataType, self._find(name)[2])

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._find(name)[1])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            shapes = self._h["profiles"][profile_index][name]
            return [tuple(s) for s in shapes]

        @property
        def num_optimization_profiles(self) -> int:
            return max(1, len(self._h["profiles"]))

        @property
        def device_memory_size(self) -> int:
            return 1 << 20

        def create_execution_context(self) -> IExecutionContext:
            record("create_execution_context", None)
            return IExecutionContext(self)

        def serialize(self) -> bytes:
            return MAGIC + json.dumps(self._h).encode() + b"\n" + self._model

        def _ort(self) -> Any:
            if self._session is None:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                opts.log_severity_level = 3
                self._session = ort.InferenceSession(self._model, opts, providers=["CPUExecutionProvider"])
            return self._session

    trt.ICudaEngine = _prune(ICudaEngine, names, keep=())

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self._shapes: dict[str, tuple[int, ...]] = {
                n: tuple(s) for n, s, _, m in engine._io if m == "INPUT" and -1 not in s
            }
            self._addr: dict[str, int] = {}
            self._out_shapes: dict[tuple, dict[str, tuple[int, ...]]] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            _, fixed, _, _ = self.engine._find(name)
            if len(shape) != len(fixed) or any(f != -1 and f != s for f, s in zip(fixed, shape)):
                return False
            if self.engine._h["profiles"]:
                mn, _, mx = self.engine._h["profiles"][0][name]
                if not all(a <= s <= b for a, s, b in zip(mn, shape, mx)):
                    return False
            self._shapes[name] = shape
            return True

        def _resolve(self) -> dict[str, tuple[int, ...]] | None:
            inputs = [n for n, _, _, m in self.engine._io if m == "INPUT"]
            if any(n not in self._shapes for n in inputs):
                return None
            key = tuple(self._shapes[n] for n in inputs)
            if key not in self._out_shapes:
                sess = self.engine._ort()
                feeds = {
                    n: np.zeros(self._shapes[n], dtype=nptype(self.engine.get_tensor_dtype(n)))
                    for n in inputs
                }
                outs = sess.run(None, feeds)
                self._out_shapes[key] = {o.name: tuple(v.shape) for o, v in zip(sess.get_outputs(), outs)}
            return self._out_shapes[key]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            _, fixed, _, mode = self.engine._find(name)
            if mode == "INPUT":
                return self._shapes.get(name, tuple(fixed))
            resolved = self._resolve()
            return resolved[name] if resolved else tuple(fixed)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            self.engine._find(name)
            self._addr[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            record("execute_async_v3", stream_handle)
            if not isinstance(stream_handle, int):
                raise TypeError("execute_async_v3(): incompatible function arguments (stream_handle: int)")
            resolved = self._resolve()
            missing = [n for n, *_ in self.engine._io if n not in self._addr]
            if resolved is None or missing:
                return False
            feeds = {}
            for n, _, d, m in self.engine._io:
                if m == "INPUT":
                    dtype = np.dtype(np_types[d])
                    shape = self._shapes[n]
                    raw = gpu.read(self._addr[n], int(np.prod(shape)) * dtype.itemsize)
                    feeds[n] = np.frombuffer(raw, dtype=dtype).reshape(shape)
            sess = self.engine._ort()
            for out, value in zip(sess.get_outputs(), sess.run(None, feeds)):
                gpu.write(self._addr[out.name], np.ascontiguousarray(value).tobytes())
            return True

    trt.IExecutionContext = _prune(IExecutionContext, names, keep=("engine",))

    runtime_absent = {a for a in ("engine_host_code_allowed", "DLA_core") if a not in names}

    class Runtime:
        DLA_core = -1  # NvInferRuntime.h IRuntime::setDLACore: "Defaults to -1"
        engine_host_code_allowed = False  # pyCoreDoc.h: "(Default: False)"; absent before 8.6

        def __init__(self, logger: Any) -> None:
            if gpu.devices == 0 or not gpu.driver_ok:
                raise TypeError("pybind11::init(): factory function returned nullptr (no CUDA device)")
            self.logger = logger
            record("Runtime", version)

        def __setattr__(self, key: str, value: Any) -> None:
            if key in runtime_absent:  # a pybind class rejects attributes it does not define
                raise AttributeError(f"'tensorrt.Runtime' object has no attribute '{key}'")
            object.__setattr__(self, key, value)

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            if not data.startswith(MAGIC) or b"\n" not in data:
                log(
                    self.logger,
                    "ERROR",
                    "1: [stdArchiveReader.cpp::StdArchiveReader] Serialization assertion magicTagRead failed",
                )
                return None
            head, model = data[len(MAGIC) :].split(b"\n", 1)
            try:
                header = json.loads(head)
            except ValueError:
                log(self.logger, "ERROR", "Serialization assertion failed: corrupt header")
                return None
            built = str(header.get("version"))
            compatible = header.get("version_compatible", False)
            newer_same_major = built.split(".")[0] == major and _vkey(built) <= _vkey(version)
            if built != version and not (compatible and newer_same_major):
                log(
                    self.logger,
                    "ERROR",
                    f"Serialization assertion stdVersionRead == kSERIALIZATION_VERSION failed (engine from {built})",
                )
                return None
            if compatible and not getattr(self, "engine_host_code_allowed", False):  # behaviour 1
                log(
                    self.logger,
                    "ERROR",
                    "Cannot deserialize an engine with host executable code (version-compatible engine): "
                    "set IRuntime::setEngineHostCodeAllowed(true)",
                )
                return None
            dla_core = None
            if header.get("dla_layers"):
                dla_core = self.DLA_core if 0 <= self.DLA_core < gpu.dla_cores else 0  # behaviour 3
            record("deserialize_cuda_engine", {"dla_core": dla_core})
            return ICudaEngine(header, model)

    trt.Runtime = _prune(Runtime, names, keep=("logger",))
    return trt
