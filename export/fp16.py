"""FP16 as an ONNX transform (TensorRT 11 reads precision only from the graph; see DESIGN.md).

onnxconverter-common's `convert_float_to_float16` converts weights and activations to FP16 while
keeping FP32 graph inputs/outputs (`keep_io_types`), so callers and preprocessing do not change.
Ops that are numerically unsafe in FP16 or lack FP16 kernels in ONNX Runtime stay FP32 behind
Casts (`fp32_ops()`): the converter's own default block list (TopK, Min/Max, Range, CumSum, ...),
plus reductions/normalisers that overflow or lose precision in FP16 (Softmax, LogSoftmax,
ReduceMean/Sum/L2, Exp/Log/Pow, GlobalAveragePool over large maps) and ArgMax (ONNX Runtime's CPU
ArgMax has no FP16 kernel; ArgMax of FP32 logits is also exact).

Resize/Upsample are taken OUT of the converter's default block list: a segmentation net's final
resize produces its largest tensor (C x H x W logits at full resolution), which FP32 would double in
bytes and wrap in Casts; bilinear/nearest interpolation is a convex combination, so it cannot
overflow in FP16, and ONNX Runtime's CPU Resize (1.32) and TensorRT both run it in FP16.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.artifacts import card_path, variant_path
from edgeseg.atomic import atomic_path
from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError, first_line
from edgeseg.export.graph import card_of, load_onnx, opset_version, set_card
from edgeseg.export.parity import ParityResult, compare_onnx
from edgeseg.lazy import require

FP16_AGREEMENT = 0.995  # argmax agreement FP16 vs FP32 on ONNX Runtime required to keep the FP16 file

FP16_SAFE_OPS = ("Resize", "Upsample")  # removed from the converter's default block list (see above)
EXTRA_FP32_OPS = (
    "Softmax",
    "LogSoftmax",
    "ReduceMean",
    "ReduceSum",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "Exp",
    "Log",
    "Pow",
    "GlobalAveragePool",
    "ArgMax",
    "ArgMin",
)
FLOAT, FLOAT16 = 1, 10


def fp32_ops() -> list[str]:
    """The op types kept in FP32: the converter's default block list plus ours."""
    float16 = require("onnxconverter_common.float16", purpose="FP16 conversion")
    return sorted((set(float16.DEFAULT_OP_BLOCK_LIST) - set(FP16_SAFE_OPS)) | set(EXTRA_FP32_OPS))


def _restore_fp32_outputs(model: Any, original_types: dict[str, int]) -> int:
    """Make every originally-FP32 graph output FP32 again; returns how many needed fixing.

    When the last node is in the block list, onnxconverter-common still appends a Cast to FP16 on
    the graph output despite keep_io_types. Turning that Cast's target back into FLOAT (or adding a
    Cast after an FP16 producer) restores the FP32 interface without an FP16 round trip.
    """
    helper = require("onnx").helper
    producers = {out: node for node in model.graph.node for out in node.output}
    fixed = 0
    for vi in model.graph.output:
        want = original_types.get(vi.name)
        have = vi.type.tensor_type.elem_type
        if want != FLOAT or have == FLOAT:
            continue
        node = producers.get(vi.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = FLOAT
        else:
            inner = f"{vi.name}_fp16"
            if node is not None:
                node.output[list(node.output).index(vi.name)] = inner
            model.graph.node.append(
                helper.make_node("Cast", [inner], [vi.name], to=FLOAT, name=f"{vi.name}_to_fp32")
            )
        vi.type.tensor_type.elem_type = FLOAT
        fixed += 1
    return fixed


def _pack_float_data(model: Any) -> int:
    """Re-store FLOAT initializers kept in `float_data` as `raw_data`; returns how many.

    Simplifiers write some folded weights as repeated `float_data`, which the converter turns into
    FP16 with a per-element Python loop (about 30 s for 10M weights); `raw_data` takes its numpy path.
    """
    numpy_helper = require("onnx").numpy_helper
    packed = 0
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == FLOAT and len(tensor.float_data):
            model.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name)
            )
            packed += 1
    return packed


def convert_model_fp16(model: Any, *, extra_fp32_ops: tuple[str, ...] = ()) -> Any:
    """In-memory FP16 conversion of an onnx.ModelProto with FP32 I/O kept."""
    float16 = require("onnxconverter_common.float16", purpose="FP16 conversion")
    _pack_float_data(model)
    original = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.output}
    block = sorted(set(fp32_ops()) | set(extra_fp32_ops))
    try:
        with warnings.catch_warnings():  # one UserWarning per weight clamped to FP16 range: thousands
            warnings.simplefilter("ignore", UserWarning)
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block, disable_shape_infer=False
            )
    except Exception as exc:  # the converter raises plain exceptions on odd graphs
        first = first_line(exc)
        raise EdgesegError(f"FP16 conversion failed: {first}") from None
    _restore_fp32_outputs(converted, original)
    _keep_float_parameters(converted)
    return converted


FLOAT_PARAMETERS = {"Resize": (1, 2)}  # roi, scales: tensor(float) in the ONNX spec, whatever the data is


def _keep_float_parameters(model: Any) -> int:
    """Give back FP32 to inputs the spec types as float (Resize's scales), which the converter turned
    FP16 once Resize left its block list: ONNX Runtime refuses such a graph. Returns how many."""
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    types = {vi.name: vi.type.tensor_type.elem_type for vi in model.graph.value_info}
    nodes, fixed = [], 0
    for node in model.graph.node:
        for index in FLOAT_PARAMETERS.get(node.op_type, ()) if node.domain in ("", "ai.onnx") else ():
            name = node.input[index] if index < len(node.input) else ""
            init = inits.get(name)
            if init is not None and init.data_type == FLOAT16:
                wide = f"{name}_fp32"
                if wide not in inits:
                    inits[wide] = numpy_helper.from_array(
                        numpy_helper.to_array(init).astype(np.float32), wide
                    )
                    model.graph.initializer.append(inits[wide])
            elif init is None and name and types.get(name) == FLOAT16:  # computed in FP16: cast back
                wide = f"{name}_fp32"
                nodes.append(onnx.helper.make_node("Cast", [name], [wide], to=FLOAT, name=f"{wide}_cast"))
            else:
                continue
            node.input[index] = wide
            fixed += 1
        nodes.append(node)
    if fixed:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        used = {name for node in nodes for name in node.input}
        unused = [t for t in model.graph.initializer if t.name not in used and t.data_type == FLOAT16]
        for tensor in unused:  # the FP16 copies nothing reads any more
            model.graph.initializer.remove(tensor)
    return fixed


QDQ_FP16_OPSET = 19  # the first opset whose QuantizeLinear/DequantizeLinear take FP16 scales


def convert_qdq_fp16(model: Any) -> Any:
    """A Q/DQ graph's float parts in FP16 with FP32 I/O, as NVIDIA ModelOpt writes them with
    `high_precision_dtype="fp16"` (modelopt/onnx/quantization/int8.py): the scales become FP16 too, so
    the opset rises to 19 (ModelOpt's autocast: "Opset 19 is the first to support fp16 scales in Q/DQ
    nodes"). Ops of the FP32 list stay FP32 behind Casts, as in `convert_model_fp16`."""
    if (opset_version(model) or QDQ_FP16_OPSET) < QDQ_FP16_OPSET:
        model = convert_opset(model, QDQ_FP16_OPSET)  # ops that changed form (ReduceMean's axes, ...)
    return convert_model_fp16(model)


def widen_to_fp32(model: Any, opset: int | None = None) -> Any:
    """The inverse for parsers that read Q/DQ scales as FP32 (TensorRT 8.x): FP16 initializers,
    constants, casts and tensor types back to FP32, the opset back to `opset` (the export's)."""
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.data_type == FLOAT16:
            wide = numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name)
            model.graph.initializer[i].CopyFrom(wide)
    for node in model.graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT16:
                attr.i = FLOAT
            elif attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT16:
                wide = numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name)
                attr.t.CopyFrom(wide)
    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        if vi.type.tensor_type.elem_type == FLOAT16:
            vi.type.tensor_type.elem_type = FLOAT
    if opset is not None and (opset_version(model) or opset) > opset:
        model = convert_opset(model, int(opset))
    return model


_PARKED = "edgeseg.parked"  # a private domain the version converter leaves alone


def convert_opset(model: Any, version: int) -> Any:
    """The graph at another opset, every op rewritten to that opset's form (ReduceMean's axes attribute
    vs input, Split's num_outputs, ...) by ONNX's version converter; relabelling the opset alone
    would leave ops that the checker and ONNX Runtime refuse. The converter has no adapter from
    Split-18 down to Split-13: those are parked in a private domain and rewritten here with explicit
    sizes (or an equal split, which is the same when the size is unknown and divides evenly)."""
    onnx = require("onnx")
    down = version < (opset_version(model) or version)
    parked = []
    if down and version < 18:
        model = onnx.shape_inference.infer_shapes(model)
        for node in model.graph.node:
            if node.op_type == "Split" and node.domain in ("", "ai.onnx"):
                node.domain = _PARKED
                parked.append(node.name or node.output[0])
        if parked:
            model.opset_import.append(onnx.helper.make_opsetid(_PARKED, 1))
    try:
        converted = onnx.version_converter.convert_version(model, version)
    except Exception as exc:  # the converter raises RuntimeError/ValueError with C++ assertion text
        first = first_line(exc)
        raise EdgesegError(f"cannot convert the graph to ONNX opset {version}: {first}") from None
    if parked:
        _unpark_splits(converted, _dims_of(model))
    return converted


def _dims_of(model: Any) -> dict[str, list[int | None]]:
    """Known tensor shapes after shape inference (None for a symbolic dimension)."""
    dims: dict[str, list[int | None]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        shape = vi.type.tensor_type.shape
        dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    return dims


def _unpark_splits(model: Any, dims: dict[str, list[int | None]]) -> None:
    """Split-18 (`num_outputs`) as Split-13: explicit sizes as a second input, from the output shapes."""
    onnx = require("onnx")
    for node in model.graph.node:
        if node.domain != _PARKED:
            continue
        node.domain = ""
        attrs = {a.name: a for a in node.attribute}
        if "num_outputs" in attrs:
            node.attribute.remove(attrs["num_outputs"])
            axis = attrs["axis"].i if "axis" in attrs else 0
            axis += len(dims.get(node.input[0]) or []) if axis < 0 else 0
            sizes = [(dims.get(out) or [])[axis : axis + 1] for out in node.output]
            if all(len(s) == 1 and s[0] is not None for s in sizes) and len(node.input) == 1:
                name = f"{node.output[0]}_split_sizes"
                split = np.array([s[0] for s in sizes], np.int64)
                model.graph.initializer.append(onnx.numpy_helper.from_array(split, name))
                node.input.append(name)
    kept = [e for e in model.opset_import if e.domain != _PARKED]
    del model.opset_import[:]
    model.opset_import.extend(kept)


@dataclass(frozen=True)
class Fp16Check:
    """Keep the FP16 file only if ONNX Runtime's FP16 argmax agrees with FP32 on >= `threshold` pixels."""

    threshold: float = FP16_AGREEMENT
    frames: Iterable[np.ndarray] | None = None  # BGR frames; None: generated scenes
    num_scenes: int = 3


def write_fp16(
    onnx_path: str | Path,
    out_path: str | Path | None = None,
    *,
    card: ModelCard | None = None,
    check: Fp16Check | None = None,
    extra_fp32_ops: tuple[str, ...] = (),
) -> tuple[Path, ParityResult | None]:
    """The one FP16 path (`export --fp16`, `build --fp16`, TensorRT FP16 engines): an FP16 copy of an
    FP32 ONNX with FP32 I/O and card precision "fp16", written atomically to `out_path` (default
    `<name>.fp16.onnx` beside it) with its card JSON. `card` is for an ONNX made elsewhere; `check`
    refuses to write a copy that disagrees with FP32. Returns the path and the check's result."""
    onnx = require("onnx")
    onnx_path = Path(onnx_path)
    out_path = Path(out_path) if out_path is not None else variant_path(onnx_path, "fp16")
    model = load_onnx(onnx_path)
    card = card or card_of(model)
    if card.precision != "fp32":
        raise EdgesegError(f"{onnx_path.name} is already {card.precision}; convert the FP32 export instead")
    converted = convert_model_fp16(model, extra_fp32_ops=extra_fp32_ops)
    fp16_card = card.replace(
        precision="fp16",
        extra={**card.extra, "fp16": {"converter": "onnxconverter-common", "fp32_ops": fp32_ops()}},
    )
    set_card(converted, fp16_card)
    try:
        onnx.checker.check_model(converted)
    except Exception as exc:
        first = first_line(exc)
        raise EdgesegError(f"the FP16 graph fails the ONNX checker: {first}") from None
    parity = None
    with atomic_path(out_path) as tmp:
        onnx.save(converted, str(tmp))
        if check is not None:
            parity = compare_onnx(
                onnx_path,
                tmp,
                card,
                frames=check.frames,
                num_scenes=check.num_scenes,
                threshold=check.threshold,
            )
            if not parity.passed:
                raise EdgesegError(
                    f"FP16 argmax agrees with FP32 on {parity.agreement:.3%} of pixels "
                    f"(< {check.threshold:.1%}); {out_path.name} was not written; keep more ops in FP32 "
                    "or use the FP32 model"
                )
    fp16_card.save_json(card_path(out_path))
    return out_path, parity
