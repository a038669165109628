"""Will TensorRT's ONNX parser accept this graph? A per-op report computed without TensorRT.

The facts are data, taken from onnx-tensorrt's `docs/operators.md` support matrix (TensorRT 8.5/8.6,
opset <= 17; TensorRT 10.x parses opsets 9..20) and the Resize/ArgMax/pooling restrictions listed
there. `error` = the parser would reject the node; `warning` = accepted only by some TensorRT
versions, or accepted but slow/lossy; `ok` = supported as used. The real verdict comes from building
the engine; this report catches the common failures on a machine without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Tuple

from edgeseg.export.graph import attributes, opset_version
from edgeseg.lazy import require

Status = Literal["ok", "warning", "error"]
_RANK = {"ok": 0, "warning": 1, "error": 2}

# "Supported: Y" rows of the onnx-tensorrt operator matrix (default ONNX domain).
SUPPORTED_OPS = frozenset(
    [
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "DepthToSpace",
        "DequantizeLinear",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "EyeLike",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gemm",
        "GlobalAveragePool",
        "GlobalLpPool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GridSample",
        "GRU",
        "HardSigmoid",
        "HardSwish",
        "Identity",
        "If",
        "ImageScaler",
        "InstanceNormalization",
        "IsNaN",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "Loop",
        "LRN",
        "LSTM",
        "LpNormalization",
        "LpPool",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "MeanVarianceNormalization",
        "Min",
        "Mod",
        "Mul",
        "Neg",
        "NonMaxSuppression",
        "NonZero",
        "Not",
        "OneHot",
        "Or",
        "Pad",
        "ParametricSoftplus",
        "Pow",
        "PRelu",
        "QuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Range",
        "Reciprocal",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Resize",
        "ReverseSequence",
        "RNN",
        "RoiAlign",
        "Round",
        "ScaledTanh",
        "Scan",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Selu",
        "Shape",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "SpaceToDepth",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Upsample",
        "Where",
        "Xor",
    ]
)

# "Supported: N" rows: the parser has no importer for these.
UNSUPPORTED_OPS = frozenset(
    [
        "Bernoulli",
        "BitShift",
        "BlackmanWindow",
        "Compress",
        "ConcatFromSequence",
        "ConvInteger",
        "DFT",
        "Det",
        "DynamicQuantizeLinear",
        "HammingWindow",
        "HannWindow",
        "Hardmax",
        "IsInf",
        "MatMulInteger",
        "MaxRoiPool",
        "MaxUnpool",
        "MelWeightMatrix",
        "Multinomial",
        "NegativeLogLikelihoodLoss",
        "Optional",
        "OptionalGetElement",
        "OptionalHasElement",
        "QLinearConv",
        "QLinearMatMul",
        "STFT",
        "SequenceAt",
        "SequenceConstruct",
        "SequenceEmpty",
        "SequenceErase",
        "SequenceInsert",
        "SequenceLength",
        "SequenceMap",
        "SoftmaxCrossEntropyLoss",
        "SplitToSequence",
        "StringNormalizer",
        "TfIdfVectorizer",
        "Unique",
    ]
)

# Added after the 8.5 matrix: accepted by newer parsers only.
NEWER_OPS = {"LayerNormalization": "TensorRT >= 8.6 only (not JetPack 5.1's 8.5)"}

RESIZE_COORD_MODES = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})
TRT8_MAX_OPSET = 17  # TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0): "up to Opset 17" in their operator matrices
TRT10_MIN_OPSET, TRT10_MAX_OPSET = 9, 20  # TensorRT 10.x (JetPack 6.1/6.2 ship 10.3): "opset 9 to opset 20"

# ONNX TensorProto data types by number (avoids importing onnx for the table).
UINT8, INT64, DOUBLE = 2, 7, 11

Finding = Tuple[Status, str]  # (typing's form: export/ is linted for Python 3.8)


@dataclass
class OpRow:
    op: str
    count: int = 0
    status: Status = "ok"
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the notes that made it warning/error

    def add(self, status: Status, note: str) -> None:
        if _RANK[status] > _RANK[self.status]:
            self.status = status
            self.problems = []
        if note and note not in self.notes:
            self.notes.append(note)
        if note and status == self.status and status != "ok" and note not in self.problems:
            self.problems.append(note)


@dataclass
class TrtReport:
    rows: list[OpRow]
    opset: int
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def table_rows(self) -> list[list[Any]]:
        return [[r.op, r.count, r.status, "; ".join(r.notes)] for r in self.rows]

    def to_dict(self) -> dict[str, Any]:
        return {
            "opset": self.opset,
            "errors": self.errors,
            "warnings": self.warnings,
            "ops": [
                {"op": r.op, "count": r.count, "status": r.status, "note": "; ".join(r.notes)}
                for r in self.rows
            ],
        }


class _Graph:
    """What node checks need: constant values and which tensors are graph outputs."""

    def __init__(self, model: Any) -> None:
        numpy_helper = require("onnx").numpy_helper
        self.constants: dict[str, Any] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output:
                attrs = attributes(node)
                if "value" in attrs:
                    self.constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
        self.outputs = {o.name for o in model.graph.output}
        from edgeseg.export.tensorrt_onnx import uint8_casts

        self.uint8_from_int = {n.output[0] for n in uint8_casts(model)}

    def is_const(self, name: str) -> bool:
        return name in self.constants


def _spatial_rank(attrs: dict[str, Any], g: _Graph, weight: str | None) -> int | None:
    if "kernel_shape" in attrs:
        return len(attrs["kernel_shape"])
    if weight and g.is_const(weight):
        return g.constants[weight].ndim - 2
    return None


def _check_conv(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    found: list[Finding] = []
    weight = node.input[1] if len(node.input) > 1 else None
    rank = _spatial_rank(attrs, g, weight)
    if rank == 1:
        found.append(("warning", "1D kernel: the matrix lists 2D/3D only (the parser reshapes to 2D)"))
    elif rank is not None and rank > 3:
        found.append(("error", f"{rank}D kernel: TensorRT supports 2D/3D only"))
    if weight and not g.is_const(weight) and node.op_type == "Conv":
        # onnx-tensorrt 8.5+ imports a Conv whose weights are a tensor as a convolution with a weights input
        found.append(("warning", "weights computed at run time (not an initializer): parsed as a weights input "
                                 "by onnx-tensorrt 8.5+; the engine build tells what TensorRT makes of it"))  # fmt: skip
    dil = [d for d in attrs.get("dilations", []) if d != 1]
    if node.op_type == "ConvTranspose":
        if weight and not g.is_const(weight):
            found.append(("error", "ConvTranspose weights must be an initializer"))
        if dil:
            found.append(("warning", "dilated ConvTranspose: not supported by every TensorRT version"))
        if attrs.get("output_shape"):
            found.append(("warning", "explicit output_shape: check the engine's output size"))
    elif dil:
        found.append(("ok", "dilated: supported"))
    if attrs.get("group", 1) > 1:
        found.append(("ok", "grouped/depthwise: supported"))
    return found


def _check_pool(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    found: list[Finding] = []
    rank = len(attrs.get("kernel_shape", [])) or None
    if rank == 1:
        found.append(("warning", "1D pooling: the matrix lists 2D/3D pooling only"))
    elif rank is not None and rank > 3:
        found.append(("error", f"{rank}D pooling: TensorRT pools 2D/3D only"))
    if any(d != 1 for d in attrs.get("dilations", [])):
        found.append(("error", "dilated pooling: TensorRT pooling has no dilation"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        found.append(("error", "MaxPool Indices output is unsupported"))
    if attrs.get("ceil_mode", 0):
        found.append(("ok", "ceil_mode: supported"))
    return found


def _check_resize(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    found: list[Finding] = []
    mode = attrs.get("mode", "nearest")
    coord = attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode == "cubic":
        # the matrices (8.5 to 10.x) list nearest/linear, while the importers since 8.5 map cubic to kCUBIC
        found.append(("warning", "cubic resize: onnx-tensorrt's matrix lists nearest/linear only, though its "
                                 "importer (8.5+) maps cubic to TensorRT's cubic mode: check the engine build"))  # fmt: skip
    elif mode not in RESIZE_MODES:
        found.append(("error", f"resize mode {mode!r} unsupported"))
    if coord not in RESIZE_COORD_MODES:
        found.append(("error", f"coordinate_transformation_mode {coord!r} unsupported"))
    if mode == "nearest" and attrs.get("nearest_mode", "round_prefer_floor") not in RESIZE_NEAREST_MODES:
        found.append(("error", f"nearest_mode {attrs.get('nearest_mode')!r} unsupported"))
    if attrs.get("antialias", 0):
        found.append(("error", "antialias=1 is unsupported"))
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        found.append(("error", "keep_aspect_ratio_policy other than 'stretch' is unsupported"))
    if attrs.get("exclude_outside", 0):
        found.append(("ok", "exclude_outside=1: passed to TensorRT's resize layer (onnx-tensorrt 8.5+)"))
    has_sizes = len(node.input) > 3 and bool(node.input[3])
    has_scales = len(node.input) > 2 and bool(node.input[2])
    if has_scales and not has_sizes:
        found.append(("warning", "driven by `scales`: prefer `sizes` (exact output shape in TensorRT)"))
    found.append(("ok", f"{mode}/{coord}"))
    return found


def _check_argmax(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    if attrs.get("select_last_index", 0):
        return [("error", "select_last_index=1 is unsupported")]
    return [
        (
            "warning",
            "lowers to TopK(k=1); reported slow on large maps: compare --output logits with `edgeseg bench`",
        )
    ]


def _check_topk(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    if len(node.input) > 1 and not g.is_const(node.input[1]):
        return [("error", "TopK's K must be an initializer")]
    return []


def _check_cast(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    to = attrs.get("to")
    if to == UINT8:
        if node.output[0] in g.uint8_from_int:  # ArgMax's INT32 indices (DataType::kUINT8 docs)
            return [
                (
                    "error",
                    "UINT8 from an integer (ArgMax's INT32 indices): TensorRT converts to UINT8 only from "
                    "FLOAT/HALF; export --labels-dtype int32 (`edgeseg build --target tensorrt` builds it as INT32)",
                )
            ]
        if node.output[0] in g.outputs:
            return [("ok", "UINT8 as network output: supported (UINT8 is an I/O-only type)")]
        return [("error", "UINT8 inside the network: TensorRT allows UINT8 only as network input/output")]
    if to == DOUBLE:
        return [("warning", "DOUBLE is cast down to FLOAT by TensorRT")]
    return []


def _check_axes_const(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    index = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1}[node.op_type]
    if len(node.input) > index and node.input[index] and not g.is_const(node.input[index]):
        return [("warning", "`axes` is computed at run time: onnx-tensorrt 8.5 to 10.x needs it constant "
                            "(an initializer; fold constants first)")]  # fmt: skip
    return []


def _check_qdq(node: Any, attrs: dict[str, Any], g: _Graph) -> list[Finding]:
    zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if zp and g.is_const(zp) and bool((g.constants[zp] != 0).any()):
        return [("error", "zero point must be 0 (TensorRT Q/DQ is symmetric)")]
    if zp and not g.is_const(zp):
        return [("error", "zero point must be a constant 0")]
    return []


NODE_CHECKS: dict[str, Callable[[Any, dict[str, Any], _Graph], list[Finding]]] = {
    "Conv": _check_conv,
    "ConvTranspose": _check_conv,
    "MaxPool": _check_pool,
    "AveragePool": _check_pool,
    "LpPool": _check_pool,
    "Resize": _check_resize,
    "Upsample": _check_resize,
    "ArgMax": _check_argmax,
    "ArgMin": _check_argmax,
    "TopK": _check_topk,
    "Cast": _check_cast,
    "Slice": _check_axes_const,
    "Squeeze": _check_axes_const,
    "Unsqueeze": _check_axes_const,
    "QuantizeLinear": _check_qdq,
    "DequantizeLinear": _check_qdq,
}


def _io_rows(model: Any) -> list[OpRow]:
    """Graph-level findings: dynamic dims (need a profile) and INT64 I/O (TensorRT < 10 lacks it)."""
    rows = []
    inits = {i.name for i in model.graph.initializer}
    dynamic = OpRow("(dynamic shapes)")
    int64 = OpRow("(int64 I/O)")
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if any(d.dim_param or not d.dim_value for d in dims):
            dynamic.count += 1
        if vi.type.tensor_type.elem_type == INT64:
            int64.count += 1
    if dynamic.count:
        dynamic.add("ok", "needs an optimization profile (min/opt/max) when building the engine")
        rows.append(dynamic)
    if int64.count:
        int64.add("warning", "INT64 network I/O needs TensorRT >= 10 (8.x casts to INT32)")
        rows.append(int64)
    return rows


def check_trt_compat(model: Any) -> TrtReport:
    """Walk every node of `model` (an onnx.ModelProto) and grade it against TensorRT's parser."""
    g = _Graph(model)
    rows: dict[str, OpRow] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        row = rows.setdefault(key, OpRow(key))
        row.count += 1
        if node.domain not in ("", "ai.onnx"):
            row.add("error", f"custom-domain op ({node.domain}): needs a TensorRT plugin")
            continue
        op = node.op_type
        if op in UNSUPPORTED_OPS:
            row.add("error", "not supported by the ONNX-TensorRT parser")
            continue
        if op in NEWER_OPS:
            row.add("warning", NEWER_OPS[op])
        elif op not in SUPPORTED_OPS:
            row.add("warning", "not in the onnx-tensorrt support matrix")
        check = NODE_CHECKS.get(op)
        if check is not None:
            for status, note in check(node, attributes(node), g):
                row.add(status, note)

    opset = opset_version(model)
    out = sorted(rows.values(), key=lambda r: (-_RANK[r.status], -r.count, r.op))
    opset_row = OpRow("(opset)", 1)
    if opset > TRT10_MAX_OPSET:
        opset_row.add(
            "error", f"opset {opset}: TensorRT 10.x parses opsets {TRT10_MIN_OPSET} to {TRT10_MAX_OPSET}"
        )
    elif opset > TRT8_MAX_OPSET:
        opset_row.add("warning", f"opset {opset}: TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0) parse up to "
                                 f"{TRT8_MAX_OPSET}, 10.x up to {TRT10_MAX_OPSET}")  # fmt: skip
    elif opset < TRT10_MIN_OPSET:
        opset_row.add(
            "warning", f"opset {opset}: TensorRT 10.x parses opsets {TRT10_MIN_OPSET} to {TRT10_MAX_OPSET}"
        )
    else:
        opset_row.add("ok", f"opset {opset}: TensorRT 8.5+ and 10.x")
    out = [opset_row, *_io_rows(model), *out]
    errors = [f"{r.op}: {'; '.join(r.problems)}" for r in out if r.status == "error"]
    warnings = [f"{r.op}: {'; '.join(r.problems)}" for r in out if r.status == "warning"]
    return TrtReport(rows=out, opset=opset, errors=errors, warnings=warnings)
