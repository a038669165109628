"""The two INT8 artifacts, both made from one `CalibrationStats`:

- TensorRT form `<name>.int8.qdq.onnx`: symmetric S8S8 Q/DQ placed by TensorRT's rules. With NVIDIA
  ModelOpt installed (`modelopt.onnx.quantization`, NVIDIA's reference placement) it places the Q/DQ and
  our ranges reach it as a TensorRT calibration cache (its scales replace whatever it measured);
  otherwise onnxruntime's QDQ quantizer plus the passes in `edgeseg.calib.qdq_rules`. Its float
  (non-quantized) parts are FP16 and its I/O FP32, as ModelOpt writes with high_precision_dtype="fp16":
  TensorRT 10/11 build it strongly typed, where FP32 float parts would run Resize, Concat and the
  full-resolution upsample in FP32 (export/fp16.py `convert_qdq_fp16`; TensorRT 8.x widens it back).
- CPU form `<name>.int8.cpu.onnx`: what ONNX Runtime's x86 kernels run fastest (U8 activations,
  S8 per-channel weights; format chosen by measurement, see docs/int8.md), with ops that get slower
  in INT8 on CPU (depthwise convs, transposed convs) left in FP32.

The precomputed ranges reach `quantize_static` through its `calibration_cache_path` (written to a
temporary file in onnxruntime's own format), so no calibration inference runs here.

`make_form` returns the quantized model in memory, its card stamped in, and writes nothing: the gate
scores it there and writes it once, under its final name, when it passes (`QuantizedArtifact.save`).
The per-form `quantize_*` functions make and write in one call.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from edgeseg.artifacts import INT8_FORMS, card_path
from edgeseg.atomic import atomic_path, scratch_dir
from edgeseg.calib import qdq_rules
from edgeseg.calib.activation_ranges import CalibrationStats, quiet_ort_logging
from edgeseg.calib.data import CalibrationSet
from edgeseg.calib.trt_cache import write_trt_cache
from edgeseg.card import ModelCard
from edgeseg.defaults import CPU_INT8_FORMAT
from edgeseg.errors import EdgesegError, InternalError, first_line
from edgeseg.export.graph import inline_constant_identities, opset_version, set_card
from edgeseg.lazy import available, require

QDQ_ENGINES = ("auto", "onnxruntime", "modelopt")
MODELOPT = "modelopt.onnx.quantization"
CPU_FORMATS = ("qdq", "qoperator")
# Ops worth running in INT8 on ONNX Runtime's CPU kernels; everything else stays FP32.
# Relu/Clip are listed so the quantizer folds them into the producer's output range instead of
# wrapping them in DQ -> Relu -> Q.
CPU_OP_TYPES = [
    "Conv", "MatMul", "Gemm", "Add", "Concat", "MaxPool", "GlobalAveragePool", "AveragePool", "Relu", "Clip",
]  # fmt: skip


@dataclass
class QuantizedArtifact:
    form: str  # qdq | cpu
    path: Path  # where it is (or, until saved, will be) written
    excluded: list[str] = field(default_factory=list)  # nodes kept in float on purpose
    details: dict[str, Any] = field(default_factory=dict)  # "card": its INT8 card, and what was done
    model: onnx.ModelProto | None = field(default=None, repr=False)  # the graph, its card stamped in

    @property
    def card(self) -> ModelCard:
        return self.details["card"]

    def with_card(self, card: ModelCard) -> None:
        """Give the in-memory model another card (e.g. with the gate's verdict) before it is saved."""
        set_card(self.model, card)
        self.details["card"] = card

    def save(self) -> QuantizedArtifact:
        """Write the model and its card JSON to `path`, atomically: the model's one write."""
        save_with_card(self.model, self.path, self.card)
        return self


def load_model(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a broken one is a one-line EdgesegError, not a protobuf traceback.
    Weights behind Identity nodes (a foreign torch.onnx.export) are inlined for the quantizers."""
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"ONNX file not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        first = first_line(exc)
        raise EdgesegError(f"{path.name} is not a valid ONNX model ({first[:160]}); re-export it") from None
    inline_constant_identities(model)
    return model


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes stable names: exclusion lists and reports refer to nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def quantizable_nodes(model: onnx.ModelProto, form: str) -> list[str]:
    """Nodes the gate may move back to float, in graph order.

    TensorRT form: the weighted ops (only their inputs carry Q/DQ). CPU form: every op it runs in INT8,
    Concat/Add/pools included, since a QLinearConcat fed an outlier activation loses as much as a conv;
    Relu/Clip are left out because they are folded into their producer's range.
    """
    if form == "cpu":
        skip = set(cpu_slow_nodes(model))
        ops = set(CPU_OP_TYPES) - {"Relu", "Clip"}
    else:
        skip = set(qdq_rules.nodes_fed_by(model))
        ops = set(qdq_rules.WEIGHTED_OPS)
    return [n.name for n in model.graph.node if n.op_type in ops and n.name not in skip]


def cpu_slow_nodes(model: onnx.ModelProto) -> list[str]:
    """Depthwise and transposed convolutions: slower in INT8 than FP32 on ORT's x86 kernels."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    slow = []
    for node in model.graph.node:
        if node.op_type == "ConvTranspose":
            slow.append(node.name)
        elif node.op_type == "Conv" and len(node.input) > 1:
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            w = shapes.get(node.input[1])
            if group > 1 and w is not None and w[1] == 1:
                slow.append(node.name)
    return slow


def _check_ort() -> None:
    from onnxruntime.quantization import quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise EdgesegError(
            "this onnxruntime cannot quantize from precomputed ranges (quantize_static has no "
            "calibration_cache_path); upgrade with: pip install -U onnxruntime"
        )


def _run_quantize_static(model: onnx.ModelProto, stats: CalibrationStats, out: Path, **kwargs: Any) -> None:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    _check_ort()
    # quantize_static writes about three copies of the model to $TMPDIR (shape-inferred, optimized, output)
    with scratch_dir("edgeseg-quant-", room_needed=3 * model.ByteSize()) as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(stats.tensors_data(), cache)
        with quiet_ort_logging():
            try:
                quantize_static(
                    model,
                    str(out),
                    calibration_data_reader=None,
                    calibrate_method=stats.ort_method(),
                    calibration_cache_path=str(cache),
                    **kwargs,
                )
            except EdgesegError:
                raise
            except Exception as exc:
                first = first_line(exc)
                raise InternalError(f"INT8 quantization failed: {first[:200]}") from None


def _stamp(model: onnx.ModelProto, card: ModelCard, info: dict[str, Any]) -> ModelCard:
    """Stamp the INT8 card into the quantized model's metadata (in memory)."""
    new_card = card.replace(precision="int8", extra={**card.extra, "int8": info})
    set_card(model, new_card)
    return new_card


def save_with_card(model: onnx.ModelProto, target: Path, card: ModelCard) -> ModelCard:
    set_card(model, card)
    with atomic_path(target) as tmp:
        onnx.save(model, str(tmp))
    card.save_json(card_path(target))
    return card


def quantize_tensorrt_form(
    model_path: Path, card: ModelCard, stats: CalibrationStats, target: Path, **kw: Any
) -> QuantizedArtifact:
    """`make_tensorrt_form`, written to `target`."""
    return make_tensorrt_form(model_path, card, stats, target, **kw).save()


def make_tensorrt_form(
    model_path: Path,
    card: ModelCard,
    stats: CalibrationStats,
    target: Path,
    *,
    exclude: list[str] | None = None,
    engine: str = "auto",
    calib: CalibrationSet | None = None,
) -> QuantizedArtifact:
    """Symmetric S8S8 Q/DQ by TensorRT's placement rules, in memory; raises if it breaks a rule.

    `engine`: "auto" (ModelOpt when installed, else onnxruntime), "onnxruntime" or "modelopt".
    `calib` feeds ModelOpt's own (overridden) calibration pass; random inputs are used without it.
    """
    if engine not in QDQ_ENGINES:
        raise EdgesegError(f"unknown Q/DQ engine {engine!r}; choose {', '.join(QDQ_ENGINES)}")
    use_modelopt = engine == "modelopt" or (engine == "auto" and available(MODELOPT))
    model = name_nodes(load_model(model_path))
    auto = qdq_rules.nodes_fed_by(model)
    excluded = sorted(set(exclude or []))
    if use_modelopt:
        return _modelopt_tensorrt_form(model, card, stats, target, excluded, auto, calib)
    from onnxruntime.quantization import QuantFormat, QuantType

    with scratch_dir("edgeseg-qdq-") as tmp:
        out = Path(tmp) / "qdq.onnx"
        _run_quantize_static(
            model,
            stats,
            out,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(qdq_rules.WEIGHTED_OPS),
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(set(excluded) | set(auto)),
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "OpTypesToExcludeOutputQuantization": list(qdq_rules.WEIGHTED_OPS),
                "QuantizeBias": False,  # TensorRT keeps bias in float and folds it into the kernel
                "QDQKeepRemovableActivations": True,
            },
        )
        q = onnx.load(str(out))
        dropped = qdq_rules.drop_qdq_beside(q)
        residual = qdq_rules.add_residual_qdq(q, stats.ranges)
        report = qdq_rules.check_tensorrt_rules(q)
        if not report.ok:
            raise InternalError(f"TensorRT Q/DQ placement broke a rule: {report.violations[0]}")
        source_opset = opset_version(q)
        q = _fp16_float_parts(q)
        info = {
            "form": "tensorrt-qdq",
            "engine": "onnxruntime",
            "float_parts": "fp16",
            "source_opset": source_opset,
            "scheme": "S8S8 symmetric, per-channel weights, per-tensor activations",
            "calibration": stats.describe(),
            "excluded_nodes": excluded,
            "float_by_rule": auto,
            "quantized_weighted_ops": report.quantized_weighted_ops,
            "residual_qdq": residual,
            "dropped_pairs": dropped,
        }
    new_card = _stamp(q, card, info)
    return QuantizedArtifact("qdq", target, excluded=excluded, details={"card": new_card, **info}, model=q)


def _modelopt_tensorrt_form(
    model: onnx.ModelProto,
    card: ModelCard,
    stats: CalibrationStats,
    target: Path,
    excluded: list[str],
    auto: list[str],
    calib: CalibrationSet | None,
) -> QuantizedArtifact:
    """NVIDIA ModelOpt's INT8 placement, fed our ranges through a TensorRT calibration cache."""
    import numpy as np

    moq = require(MODELOPT, purpose="NVIDIA ModelOpt Q/DQ placement")
    data = np.concatenate(list(calib.batches(card))) if calib is not None else None
    with scratch_dir("edgeseg-modelopt-") as tmp:
        src = Path(tmp) / "model.onnx"
        onnx.save(model, str(src))
        cache = write_trt_cache(stats.ranges, Path(tmp) / "ranges.cache")
        out = Path(tmp) / "qdq.onnx"
        with quiet_ort_logging():
            try:
                moq.quantize(
                    onnx_path=str(src),
                    quantize_mode="int8",
                    calibration_data=data,
                    calibration_method="entropy" if stats.method == "entropy" else "max",
                    calibration_cache_path=str(cache),
                    calibration_eps=["cpu"],
                    nodes_to_exclude=sorted(set(excluded) | set(auto)),
                    output_path=str(out),
                    high_precision_dtype="fp16",  # float parts FP16, I/O FP32 (ModelOpt's default)
                    log_level="ERROR",
                )
            except Exception as exc:  # ModelOpt raises assorted errors on graphs it cannot handle
                first = first_line(exc)
                raise EdgesegError(f"ModelOpt INT8 quantization failed: {first[:200]}") from None
        if not out.is_file():
            raise EdgesegError("ModelOpt INT8 quantization wrote no model")
        q = onnx.load(str(out))
        dropped = qdq_rules.drop_qdq_beside(q, concat=False)  # e.g. an FCN skip Add fed by a Resize
        report = qdq_rules.check_tensorrt_rules(q, strict=False)
        if not report.ok:
            raise InternalError(f"ModelOpt's Q/DQ graph breaks a TensorRT rule: {report.violations[0]}")
        info = {
            "form": "tensorrt-qdq",
            "engine": "modelopt",
            "float_parts": "fp16",
            "source_opset": opset_version(model),
            "scheme": "S8S8 symmetric, per-channel weights, per-tensor activations",
            "calibration": stats.describe(),
            "excluded_nodes": excluded,
            "float_by_rule": auto,
            "quantized_weighted_ops": report.quantized_weighted_ops,
            "dropped_pairs": dropped,
        }
    new_card = _stamp(q, card, info)
    return QuantizedArtifact("qdq", target, excluded=excluded, details={"card": new_card, **info}, model=q)


def _fp16_float_parts(model: onnx.ModelProto) -> onnx.ModelProto:
    from edgeseg.export.fp16 import convert_qdq_fp16

    converted = convert_qdq_fp16(model)
    try:
        onnx.checker.check_model(converted)
    except Exception as exc:
        first = first_line(exc)
        raise InternalError(
            f"the FP16 float parts of the Q/DQ graph fail the ONNX checker: {first}"
        ) from None
    return converted


def quantize_cpu_form(
    model_path: Path, card: ModelCard, stats: CalibrationStats, target: Path, **kw: Any
) -> QuantizedArtifact:
    """`make_cpu_form`, written to `target`."""
    return make_cpu_form(model_path, card, stats, target, **kw).save()


def make_cpu_form(
    model_path: Path,
    card: ModelCard,
    stats: CalibrationStats,
    target: Path,
    *,
    exclude: list[str] | None = None,
    cpu_format: str = CPU_INT8_FORMAT,
) -> QuantizedArtifact:
    """U8S8 per-channel INT8 for ONNX Runtime on x86, slow-in-INT8 ops kept in FP32, in memory."""
    if cpu_format not in CPU_FORMATS:
        raise EdgesegError(f"unknown CPU INT8 format {cpu_format!r}; choose {' or '.join(CPU_FORMATS)}")
    from onnxruntime.quantization import QuantFormat, QuantType

    model = name_nodes(load_model(model_path))
    auto = cpu_slow_nodes(model)
    excluded = sorted(set(exclude or []))
    with scratch_dir("edgeseg-cpu-") as tmp:
        out = Path(tmp) / "cpu.onnx"
        _run_quantize_static(
            model,
            stats,
            out,
            quant_format=QuantFormat.QOperator if cpu_format == "qoperator" else QuantFormat.QDQ,
            op_types_to_quantize=CPU_OP_TYPES,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(set(excluded) | set(auto)),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        info = {
            "form": f"onnxruntime-cpu-{cpu_format}",
            "scheme": "U8S8, per-channel weights",
            "calibration": stats.describe(),
            "excluded_nodes": excluded,
            "float_by_rule": auto,
        }
        q = onnx.load(str(out))
    new_card = _stamp(q, card, info)
    return QuantizedArtifact("cpu", target, excluded=excluded, details={"card": new_card, **info}, model=q)


def make_form(
    form: str, model_path: Path, card: ModelCard, stats: CalibrationStats, target: Path, **kw: Any
) -> QuantizedArtifact:
    """INT8 form `form` in memory (nothing written); `kw` may carry both forms' options."""
    if form == "qdq":
        kw.pop("cpu_format", None)
        return make_tensorrt_form(model_path, card, stats, target, **kw)
    if form == "cpu":
        kw.pop("engine", None)
        kw.pop("calib", None)
        return make_cpu_form(model_path, card, stats, target, **kw)
    raise EdgesegError(f"unknown INT8 form {form!r}; choose {' or '.join(INT8_FORMS)}")
