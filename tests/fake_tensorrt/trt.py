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
  8. Several execution contexts on a dynamic-shape engine (include/NvInferRuntime.h 8.5.2 and 8.6.1,
     ICudaEngine::createExecutionContext and IExecutionContext::setOptimizationProfileAsync: "If the
     engine has dynamic shapes, the first execution context created will call setOptimizationProfile(0)
     implicitly. For other execution contexts, setOptimizationProfile() must be called with unique
     profile index"): on 8.x the first context gets profile 0 and every later one -1, so its
     set_input_shape and execute_async_v3 fail until set_optimization_profile_async gives it a profile
     no live context holds. 8.6 with `PreviewFeature.PROFILE_SHARING_0806` set at build time (NvInfer.h
     8.6.1 kPROFILE_SHARING_0806) and 10.x (where that feature is "on and can not be changed") give
     every context profile 0 and let contexts share it. A static-shape engine has no such rule.
  9. No UINT8 from an integer type: "kUINT8 conversions are not supported for {kINT8, kINT32, kBOOL}"
     (DataType::kUINT8 in NvInferRuntimeCommon.h 8.5.2/8.6.1, NvInferRuntimeBase.h 10.3.0); ArgMax
     becomes TopK with INT32 indices (onnx-tensorrt 8.5-GA onnx2trt_utils.cpp argMinMaxHelper), so
     ArgMax -> Cast(UINT8) fails. The fake refuses such a Cast at parse time, naming the node, on every
     version (the 11.x headers are assumed to keep the rule; the wording of the error is invented).
 10. Plugins: an engine holding a plugin layer deserializes only in a process whose plugin registry has
     the creator: `trt.init_libnvinfer_plugins(logger, "")` registers them (Polygraphy
     backend/trt/loader.py and jetson-inference c/tensorNet.cpp call it before deserializing); building
     registers them for the build's own process only. Each fake module is one process.
     InstanceNormalization is imported as the InstanceNormalization_TRT plugin on 8.x (onnx-tensorrt
     8.5/8.6 builtin_op_importers.cpp, unless OnnxParserFlag.NATIVE_INSTANCENORM).
 11. External weights: the parser reads externally stored weights relative to the model's path,
     given to `parse(model, path)` or `parse_from_file(path)` (python/docstrings/parsers/pyOnnxDoc.h
     8.5.2: "path: The path to the model file. Only required if the model has externally stored
     weights"); without it, they are looked for relative to the working directory and the parse fails.
 12. ConvTranspose INT8 weights on 8.x: the 8.x deconvolution kernels read per-channel weight scales
     per INPUT channel, axis 0 of ONNX's [C, K/g, kh, kw] (NVIDIA/TensorRT#2380 and #1694; NVIDIA
     pytorch-quantization uses axis 0 up to 10.1 and axis 1 from 10.2). Real 8.x would misread axis-1
     scales silently when C == K (FCN's upsampling); the fake refuses them at parse time (stricter).
 13. Freeing TensorRT objects with pycuda: an execution context, engine or runtime destroyed on a
     thread where no CUDA context is current frees its device memory outside any context
     (NVIDIA/TensorRT#1632: "Cuda Runtime (invalid device context)" from del context/engine/runtime
     after pycuda's context is gone; pycuda src/cpp/cuda.hpp scoped_context_activation). With the
     pycuda fake, each such destruction is listed in `FakeGpu.out_of_context_frees`.
 14. Optimization profiles (include/NvInferRuntime.h, IOptimizationProfile, 8.5.2 and main): setDimensions
     returns false on an inconsistency it can see, e.g. a rank that differs from a shape already set for
     the input, and the Python `set_shape` raises RuntimeError then ("Shape provided for opt is
     inconsistent with other shapes.", python/src/infer/pyCore.cpp opt_profile_set_shape);
     `isValid()` checks min <= opt <= max on every axis, and IBuilderConfig::addOptimizationProfile
     (include/NvInfer.h) returns -1 for a profile that is not valid. At run time "a runtime error will
     be raised if the input tensor dimensions fall outside the valid range for this profile" (the
     IOptimizationProfile class comment): the fake's `set_input_shape` returns False (logging an ERROR,
     wording invented) for a shape outside the context's profile.
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
    "InstanceNormalization",
}  # fmt: skip
PLUGIN_OPS_8 = {"InstanceNormalization": "InstanceNormalization_TRT"}  # behaviour 10 (8.x importers)
NO_UINT8_FROM = (
    "INT64",
    "INT32",
    "INT8",
    "BOOL",
)  # behaviour 9 (INT64: ArgMax's ONNX type, INT32 in TensorRT)


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


def _external_weights_error(proto: Any, path: str | None) -> str | None:
    """Behaviour 11: load externally stored weights relative to `path` (else the working directory)."""
    import os

    from onnx import TensorProto
    from onnx.external_data_helper import load_external_data_for_model

    external = [t for t in proto.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return None
    base = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    for t in external:
        location = {e.key: e.value for e in t.external_data}.get("location", "")
        if not os.path.isfile(os.path.join(base, location)):
            return f"Failed to open file: {location}"
    load_external_data_for_model(proto, base)
    return None


def _uint8_casts(proto: Any) -> list[tuple[int, Any, str]]:
    """Behaviour 9: (index, node, source type) of every Cast to UINT8 from an integer type."""
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    types_of = {t.name: t.data_type for t in inferred.graph.initializer}
    for vi in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        types_of[vi.name] = vi.type.tensor_type.elem_type
    bad = []
    for i, node in enumerate(inferred.graph.node):
        if node.op_type == "Cast" and any(
            a.name == "to" and a.i == TensorProto.UINT8 for a in node.attribute
        ):
            src = TensorProto.DataType.Name(types_of.get(node.input[0], 0))
            if src in NO_UINT8_FROM:
                bad.append((i, node, src))
    return bad


def _convtranspose_weight_axes(proto: Any) -> list[tuple[int, Any, int]]:
    """Behaviour 12: (index, node, axis) of every ConvTranspose whose weights are dequantized per channel."""
    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    dims = {t.name: list(t.dims) for t in graph.initializer}
    dims.update({n.output[0]: list(n.attribute[0].t.dims) for n in graph.node if n.op_type == "Constant"})
    found = []
    for i, node in enumerate(graph.node):
        dq = producers.get(node.input[1]) if node.op_type == "ConvTranspose" and len(node.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        if int(np.prod(dims.get(dq.input[1], [1]) or [1])) > 1:
            found.append((i, node, next((a.i for a in dq.attribute if a.name == "axis"), 1)))
    return found


def make_fake_trt(version: str, gpu: FakeGpu) -> types.ModuleType:  # noqa: C901 - one module factory
    names = load_names(version)
    major = version.split(".")[0]
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # (what, detail) records for tests
    trt.last_build = {}
    trt.plugins_registered = False  # behaviour 10: this "process" has the plugin creators

    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        record("init_libnvinfer_plugins", namespace)
        trt.plugins_registered = True
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins

    def freed(kind: str) -> None:  # behaviour 13
        current = gpu.current_context
        if current is not None and current() is None:
            gpu.out_of_context_frees.append(kind)

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
    trt.PreviewFeature = _enum(
        "PreviewFeature",
        ["FASTER_DYNAMIC_SHAPES_0805", "DISABLE_EXTERNAL_TACTIC_SOURCES_FOR_CORE_0805", "PROFILE_SHARING_0806"],
        names, major,
    )  # fmt: skip
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
            self._plugins: list[str] = []

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

        def parse_from_file(self, model: str) -> bool:
            record("parse_from_file", model)
            with open(model, "rb") as f:
                return self.parse(f.read(), model)

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
            missing = _external_weights_error(proto, path)  # behaviour 11
            if missing is not None:
                self._errors.append(ParserError(missing))
                return False
            for i, node, src in _uint8_casts(proto):  # behaviour 9
                self._errors.append(
                    ParserError(
                        f"Unsupported cast from {src} to UINT8: UINT8 conversions are supported only from "
                        "FLOAT/HALF",
                        i, node.name, node.op_type,
                    )
                )  # fmt: skip
            if self._errors:
                return False
            for i, node, axis in _convtranspose_weight_axes(proto) if major == "8" else []:  # behaviour 12
                if axis != 0:
                    self._errors.append(
                        ParserError(
                            f"ConvTranspose per-channel weight scales on axis {axis}: TensorRT 8.x reads them "
                            "per input channel (axis 0) (FAKE: stricter, the real parser misreads them)",
                            i, node.name, node.op_type,
                        )
                    )  # fmt: skip
            if self._errors:
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
            self.network._model = proto.SerializeToString()  # with any external weights loaded
            self.network._ops = [n.op_type for n in proto.graph.node]
            plugins = [PLUGIN_OPS_8[op] for op in self.network._ops if major == "8" and op in PLUGIN_OPS_8]
            self.network._plugins = sorted(set(plugins))
            if plugins:
                trt.plugins_registered = True  # the parser registers them for its own (build) process
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
            for label, shape in (("min", min), ("opt", opt), ("max", max)):  # behaviour 14
                if len(tuple(shape)) != len(tuple(min)):
                    raise RuntimeError(f"Shape provided for {label} is inconsistent with other shapes.")
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
            self._preview: set[str] = set()
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

        def set_preview_feature(self, feature: Any, enable: bool) -> None:
            record("set_preview_feature", (feature.name, bool(enable)))
            (self._preview.add if enable else self._preview.discard)(feature.name)

        def get_preview_feature(self, feature: Any) -> bool:
            return feature.name in self._preview

        def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
            record("set_calibration_profile", dict(profile._shapes))
            self._calibration_profile = profile
            return True

        def get_calibration_profile(self) -> IOptimizationProfile | None:
            return self._calibration_profile

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            for mn, opt, mx in profile._shapes.values():  # behaviour 14: isValid() or -1
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
                "profile_sharing": major != "8" or "PROFILE_SHARING_0806" in config._preview,  # behaviour 8
                "plugins": network._plugins,
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
        def __init__(self, header: dict[str, Any], model: bytes, logger: Any = None) -> None:
            self._h, self._model, self._logger = header, model, logger
            self._io = [(n, s, d, "INPUT") for n, s, d in header["inputs"]]
            self._io += [(n, s, d, "OUTPUT") for n, s, d in header["outputs"]]
            self._session = None
            self._holders: dict[int, int] = {}  # id(context) -> its profile (behaviour 8)
            self._contexts_made = 0

        def _dynamic(self) -> bool:
            return any(-1 in s for _, s, _, m in self._io if m == "INPUT")

        def _shared_profiles(self) -> bool:
            return bool(self._h.get("profile_sharing", major != "8"))

        def __del__(self) -> None:
            freed("ICudaEngine")

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
            ctx = IExecutionContext(self)
            first = self._contexts_made == 0
            self._contexts_made += 1
            # behaviour 8: profile 0 for the first context (every context where profiles are shared)
            ctx._profile = 0 if first or not self._dynamic() or self._shared_profiles() else -1
            if ctx._profile >= 0:
                self._holders[id(ctx)] = ctx._profile
            return ctx

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
            self._profile = 0

        def __del__(self) -> None:
            self.engine._holders.pop(id(self), None)
            freed("IExecutionContext")

        @property
        def active_optimization_profile(self) -> int:
            return self._profile

        def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
            record("set_optimization_profile_async", profile_index)
            engine = self.engine
            if not 0 <= profile_index < engine.num_optimization_profiles:
                log(engine._logger, "ERROR", f"Profile index {profile_index} is out of range")
                return False
            taken = any(i == profile_index and k != id(self) for k, i in engine._holders.items())
            if taken and engine._dynamic() and not engine._shared_profiles():  # behaviour 8
                log(
                    engine._logger,
                    "ERROR",
                    f"Profile {profile_index} has been chosen by another IExecutionContext. Use another "
                    "profileIndex or destroy the IExecutionContext that use this profile.",
                )
                return False
            self._profile = profile_index
            engine._holders[id(self)] = profile_index
            return True

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            _, fixed, _, _ = self.engine._find(name)
            if len(shape) != len(fixed) or any(f != -1 and f != s for f, s in zip(fixed, shape)):
                return False
            if self._profile < 0:  # behaviour 8
                log(self.engine._logger, "ERROR", "No optimization profile has been set on this context")
                return False
            if self.engine._h["profiles"]:
                mn, _, mx = self.engine._h["profiles"][self._profile][name]
                if not all(a <= s <= b for a, s, b in zip(mn, shape, mx)):  # behaviour 14
                    log(
                        self.engine._logger,
                        "ERROR",
                        f"{name}: dimensions {list(shape)} are outside the profile",
                    )
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
            if self._profile < 0:  # behaviour 8: enqueueV3 fails until a profile is set
                log(self.engine._logger, "ERROR", "IExecutionContext has no optimization profile set")
                return False
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

        def __del__(self) -> None:
            freed("Runtime")

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
            missing = [p for p in header.get("plugins", []) if not trt.plugins_registered]
            if missing:  # behaviour 10
                log(
                    self.logger,
                    "ERROR",
                    f"getPluginCreator could not find plugin: {missing[0]} version: 1 (plugin registry empty: "
                    "call init_libnvinfer_plugins first)",
                )
                return None
            dla_core = None
            if header.get("dla_layers"):
                dla_core = self.DLA_core if 0 <= self.DLA_core < gpu.dla_cores else 0  # behaviour 3
            record("deserialize_cuda_engine", {"dla_core": dla_core})
            return ICudaEngine(header, model, self.logger)

    trt.Runtime = _prune(Runtime, names, keep=("logger",))
    return trt
