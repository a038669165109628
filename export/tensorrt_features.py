"""What the installed TensorRT can do, detected from its Python API (never from version strings).

One code path serves TensorRT 8.5 / 8.6 (JetPack 5.1 ships 8.5.2, JetPack 6.0 ships 8.6.2), 10.x
(JetPack 6.1/6.2 ship 10.3) and 11.x. The API moved:
  - 8.5: as 8.6 below, without BuilderFlag.VERSION_COMPATIBLE, IBuilderConfig.builder_optimization_level
    and IRuntime.engine_host_code_allowed (all three added in 8.6: NVIDIA/TensorRT tags 8.5.2/8.5.3
    bind none of them in python/src).
  - 8.6: implicit batch is the default, so ONNX networks need NetworkDefinitionCreationFlag.EXPLICIT_BATCH;
    precision comes from BuilderFlag.FP16 / INT8 (a Q/DQ network needs INT8 set); no progress monitor.
  - 10.x: explicit batch is the default (EXPLICIT_BATCH is a deprecated no-op); STRONGLY_TYPED makes the
    builder honour the ONNX graph's types (FP16 graph, Q/DQ), and then FP16/INT8 flags must not be set;
    IProgressMonitor exists; implicit-INT8 calibrators are deprecated but present.
  - 11.x: strongly typed only; BuilderFlag.FP16/INT8, EXPLICIT_BATCH, the calibrators and
    set_calibration_profile are gone.

`TRT_API` lists every TensorRT name edgeseg touches; tests/test_tensorrt_api.py checks it against the
names extracted from NVIDIA's bindings wheels: names marked REQUIRED must exist in every supported
version, names marked GUARDED are only used behind `hasattr`/`getattr(..., default)`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

REQUIRED = "required"
GUARDED = "guarded"

# name -> (how we use it, where it lives). The test parses our sources and fails if a TensorRT
# attribute we access is missing here, or a GUARDED one is accessed without a hasattr/getattr guard.
TRT_API: dict[str, tuple[str, str]] = {
    # module level
    "ILogger": (REQUIRED, "trt.ILogger (subclassed to capture build errors)"),
    "Builder": (REQUIRED, "trt.Builder"),
    "Runtime": (REQUIRED, "trt.Runtime (also read for its properties by detect)"),
    "IBuilderConfig": (REQUIRED, "trt.IBuilderConfig (read for its properties by detect)"),
    "OnnxParser": (REQUIRED, "trt.OnnxParser"),
    "NetworkDefinitionCreationFlag": (REQUIRED, "trt.NetworkDefinitionCreationFlag"),
    "BuilderFlag": (REQUIRED, "trt.BuilderFlag"),
    "MemoryPoolType": (REQUIRED, "trt.MemoryPoolType"),
    "WORKSPACE": (REQUIRED, "MemoryPoolType.WORKSPACE"),
    "DeviceType": (REQUIRED, "trt.DeviceType"),
    "DLA": (REQUIRED, "DeviceType.DLA"),
    "GPU_FALLBACK": (REQUIRED, "BuilderFlag.GPU_FALLBACK"),
    "VERSION_COMPATIBLE": (GUARDED, "BuilderFlag.VERSION_COMPATIBLE (8.6+; absent on JetPack 5.1's 8.5)"),
    "TensorIOMode": (REQUIRED, "trt.TensorIOMode"),
    "INPUT": (REQUIRED, "TensorIOMode.INPUT"),
    "nptype": (REQUIRED, "trt.nptype (DataType -> numpy)"),
    "EXPLICIT_BATCH": (GUARDED, "NetworkDefinitionCreationFlag.EXPLICIT_BATCH (gone in 11)"),
    "STRONGLY_TYPED": (GUARDED, "NetworkDefinitionCreationFlag.STRONGLY_TYPED (10+)"),
    "FP16": (GUARDED, "BuilderFlag.FP16 (gone in 11)"),
    "INT8": (GUARDED, "BuilderFlag.INT8 (gone in 11)"),
    "IProgressMonitor": (GUARDED, "trt.IProgressMonitor (10+)"),
    "IInt8EntropyCalibrator2": (GUARDED, "trt.IInt8EntropyCalibrator2 (gone in 11)"),
    # builder / network / config / profile / parser
    "create_network": (REQUIRED, "IBuilder.create_network"),
    "create_builder_config": (REQUIRED, "IBuilder.create_builder_config"),
    "create_optimization_profile": (REQUIRED, "IBuilder.create_optimization_profile"),
    "build_serialized_network": (REQUIRED, "IBuilder.build_serialized_network"),
    "num_DLA_cores": (REQUIRED, "IBuilder.num_DLA_cores"),
    "set_flag": (REQUIRED, "IBuilderConfig.set_flag"),
    "set_memory_pool_limit": (REQUIRED, "IBuilderConfig.set_memory_pool_limit"),
    "create_timing_cache": (REQUIRED, "IBuilderConfig.create_timing_cache"),
    "set_timing_cache": (REQUIRED, "IBuilderConfig.set_timing_cache"),
    "get_timing_cache": (REQUIRED, "IBuilderConfig.get_timing_cache"),
    "serialize": (REQUIRED, "ITimingCache.serialize"),
    "default_device_type": (REQUIRED, "IBuilderConfig.default_device_type"),
    "DLA_core": (REQUIRED, "IBuilderConfig.DLA_core"),
    "add_optimization_profile": (REQUIRED, "IBuilderConfig.add_optimization_profile"),
    "builder_optimization_level": (GUARDED, "IBuilderConfig.builder_optimization_level (8.6+)"),
    "set_shape": (REQUIRED, "IOptimizationProfile.set_shape"),
    "parse": (REQUIRED, "OnnxParser.parse"),
    "num_errors": (REQUIRED, "OnnxParser.num_errors"),
    "get_error": (REQUIRED, "OnnxParser.get_error"),
    "desc": (REQUIRED, "ParserError.desc"),
    "node": (REQUIRED, "ParserError.node (index)"),
    "node_name": (GUARDED, "ParserError.node_name (10+)"),
    "int8_calibrator": (GUARDED, "IBuilderConfig.int8_calibrator (gone in 11)"),
    "set_calibration_profile": (GUARDED, "IBuilderConfig.set_calibration_profile (gone in 11)"),
    "progress_monitor": (GUARDED, "IBuilderConfig.progress_monitor (10+)"),
    # runtime
    "deserialize_cuda_engine": (REQUIRED, "IRuntime.deserialize_cuda_engine"),
    "engine_host_code_allowed": (GUARDED, "IRuntime.engine_host_code_allowed (8.6+)"),
    "init_libnvinfer_plugins": (REQUIRED, "trt.init_libnvinfer_plugins (before deserializing)"),
    "num_optimization_profiles": (REQUIRED, "ICudaEngine.num_optimization_profiles"),
    "set_optimization_profile_async": (REQUIRED, "IExecutionContext.set_optimization_profile_async"),
    "PreviewFeature": (GUARDED, "trt.PreviewFeature"),
    "PROFILE_SHARING_0806": (
        GUARDED,
        "PreviewFeature.PROFILE_SHARING_0806 (8.6; default on in 10.x, gone in 11)",
    ),
    "set_preview_feature": (REQUIRED, "IBuilderConfig.set_preview_feature"),
    "create_execution_context": (REQUIRED, "ICudaEngine.create_execution_context"),
    "num_io_tensors": (REQUIRED, "ICudaEngine.num_io_tensors"),
    "get_tensor_name": (REQUIRED, "ICudaEngine.get_tensor_name"),
    "get_tensor_mode": (REQUIRED, "ICudaEngine.get_tensor_mode"),
    "get_tensor_dtype": (REQUIRED, "ICudaEngine.get_tensor_dtype"),
    "get_tensor_shape": (REQUIRED, "ICudaEngine/IExecutionContext.get_tensor_shape"),
    "get_tensor_profile_shape": (REQUIRED, "ICudaEngine.get_tensor_profile_shape"),
    "set_input_shape": (REQUIRED, "IExecutionContext.set_input_shape"),
    "set_tensor_address": (REQUIRED, "IExecutionContext.set_tensor_address"),
    "execute_async_v3": (REQUIRED, "IExecutionContext.execute_async_v3"),
}


@dataclass(frozen=True)
class TrtFeatures:
    """Capabilities of one TensorRT install, read off its API."""

    version: str
    explicit_batch_flag: bool  # NetworkDefinitionCreationFlag.EXPLICIT_BATCH exists
    explicit_batch_default: bool  # networks are explicit-batch without the flag (10+)
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists
    fp16_flag: bool  # BuilderFlag.FP16 exists
    int8_flag: bool  # BuilderFlag.INT8 exists
    legacy_calibrator: bool  # IInt8EntropyCalibrator2 + IBuilderConfig.int8_calibrator
    progress_monitor: bool  # IProgressMonitor (real build progress)
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE (8.6+)
    optimization_level: bool = True  # IBuilderConfig.builder_optimization_level (8.6+)
    engine_host_code: bool = True  # IRuntime.engine_host_code_allowed (8.6+)
    calibration_profile: bool = True  # IBuilderConfig.set_calibration_profile (8.5-10.x)
    contexts_share_profiles: bool = False  # every new execution context gets profile 0 (10+)
    profile_sharing_preview: bool = False  # PreviewFeature.PROFILE_SHARING_0806 (8.6 only)
    convtranspose_weight_axis: int = 1  # the per-channel axis of ConvTranspose INT8 weights (0 before 10.2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def detect(trt: Any) -> TrtFeatures:
    """Feature flags of the `tensorrt` module `trt`, by hasattr only.

    Explicit batch became the default in the same release that introduced strong typing (10.0), so a
    STRONGLY_TYPED flag tells us EXPLICIT_BATCH is no longer needed even where it still exists.
    """
    ncf = trt.NetworkDefinitionCreationFlag
    flags = trt.BuilderFlag
    strongly = hasattr(ncf, "STRONGLY_TYPED")
    config_cls = getattr(trt, "IBuilderConfig", None)
    runtime_cls = getattr(trt, "Runtime", None)
    preview = getattr(trt, "PreviewFeature", None)
    version = str(getattr(trt, "__version__", "unknown"))
    return TrtFeatures(
        version=version,
        explicit_batch_flag=hasattr(ncf, "EXPLICIT_BATCH"),
        explicit_batch_default=strongly,
        strongly_typed=strongly,
        fp16_flag=hasattr(flags, "FP16"),
        int8_flag=hasattr(flags, "INT8"),
        legacy_calibrator=hasattr(trt, "IInt8EntropyCalibrator2"),
        progress_monitor=hasattr(trt, "IProgressMonitor"),
        version_compatible=hasattr(flags, "VERSION_COMPATIBLE"),
        optimization_level=config_cls is None or hasattr(config_cls, "builder_optimization_level"),
        engine_host_code=runtime_cls is not None and hasattr(runtime_cls, "engine_host_code_allowed"),
        calibration_profile=config_cls is None or hasattr(config_cls, "set_calibration_profile"),
        # 10.0 made profile sharing the default (the release that brought STRONGLY_TYPED, as above)
        contexts_share_profiles=strongly,
        profile_sharing_preview=not strongly
        and preview is not None
        and hasattr(preview, "PROFILE_SHARING_0806"),
        convtranspose_weight_axis=convtranspose_weight_axis(version),
    )


def convtranspose_weight_axis(version: str) -> int:
    """The ONNX axis along which this TensorRT reads per-channel ConvTranspose weight scales.

    No API name marks the change, so this one fact is read from the version: NVIDIA's sources say the
    8.x deconvolution kernels quantize ConvTranspose weights per input channel (NVIDIA/TensorRT#2380,
    #1694), which is axis 0 of ONNX's [C, K/g, kh, kw], and NVIDIA's pytorch-quantization quantizes them
    on axis 0 up to TensorRT 10.1 and on axis 1 (per output channel) from 10.2. `make gpu-check` reports
    an FCN engine's INT8 agreement so a real GPU can confirm it.
    """
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
    if len(parts) < 2:
        return 1
    return 0 if tuple(parts) < (10, 2) else 1
