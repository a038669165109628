"""The ONNX as the installed TensorRT must read it: edits made on the device, in memory, just before parsing.

The files edgeseg writes serve every TensorRT version and ONNX Runtime, so three version facts are
applied only where the version is known, at build time (each returns a note for the sidecar):
  - TensorRT 8.x reads Q/DQ scales as FP32 (onnx-tensorrt 8.6 QuantDequantLinearHelper): an FP16 Q/DQ
    graph is widened back to FP32 float parts (`FP16` by builder flag instead).
  - TensorRT converts nothing to UINT8 from INT32/INT8/BOOL (DataType::kUINT8 in NvInferRuntimeCommon.h
    8.5.2/8.6.1, NvInferRuntimeBase.h 10.3.0), and ArgMax's indices are INT32 there: a labels output
    cast to UINT8 (the ONNX Runtime form) is built as INT32 labels.
  - ConvTranspose INT8 weights: calib/ writes them per output channel (axis 1, TensorRT 10.2+);
    TensorRT before 10.2 reads per-channel ConvTranspose scales per input channel (NVIDIA/TensorRT#2380,
    #1694; pytorch-quantization's axis 0 up to 10.1), so there they are re-expressed per tensor, the one
    form both readings agree on (exact when every channel has the same scale, as FCN's bilinear
    upsampling kernels do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.export.tensorrt_features import TrtFeatures

INTEGER_TYPES = ("INT64", "INT32", "INT8", "BOOL")


def uint8_casts(model: Any) -> list[Any]:
    """Cast nodes that turn an integer tensor (ArgMax's indices) into UINT8: TensorRT builds none."""
    from onnx import TensorProto

    producers = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type != "Cast" or _attr(node, "to") != TensorProto.UINT8:
            continue
        src = producers.get(node.input[0])
        integer_cast = (
            src is not None and src.op_type == "Cast" and _type_name(_attr(src, "to", 0)) in INTEGER_TYPES
        )
        if src is not None and (src.op_type in ("ArgMax", "ArgMin", "TopK", "Shape") or integer_cast):
            found.append(node)
    return found


def labels_to_int32(model: Any) -> str | None:
    """Rewrite every integer -> UINT8 Cast as -> INT32 (and such graph outputs as INT32)."""
    from onnx import TensorProto

    casts = uint8_casts(model)
    if not casts:
        return None
    outputs = {n.output[0] for n in casts}
    for node in casts:
        for a in node.attribute:
            if a.name == "to":
                a.i = TensorProto.INT32
    for vi in list(model.graph.output) + list(model.graph.value_info):
        if vi.name in outputs:
            vi.type.tensor_type.elem_type = TensorProto.INT32
    return "labels built as INT32: TensorRT converts no INT32 (ArgMax's indices) to UINT8"


def convtranspose_weights_per_tensor(model: Any, base_dir: Path | None) -> str | None:
    """ConvTranspose weights dequantized per channel on another axis than axis 0 -> one per-tensor scale."""
    from onnx import numpy_helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    changed = []
    for node in graph.node:
        if node.op_type != "ConvTranspose" or len(node.input) < 2:
            continue
        dq = producers.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or _attr(dq, "axis", 1) == 0:
            continue
        w_init, s_init = inits.get(dq.input[0]), inits.get(dq.input[1])
        if w_init is None or s_init is None or int(np.prod(s_init.dims or [1])) <= 1:
            continue
        folder = str(base_dir) if base_dir is not None else None
        weight = numpy_helper.to_array(w_init, folder).astype(np.float32)
        scale = numpy_helper.to_array(s_init, folder).astype(np.float32)
        axis = _attr(dq, "axis", 1)
        shape = [1] * weight.ndim
        shape[axis] = -1
        real = weight * scale.reshape(shape)
        one = np.float32(max(float(np.abs(real).max()), 1e-12) / 127.0)
        q = np.clip(np.round(real / one), -127, 127).astype(np.int8)
        w_init.CopyFrom(numpy_helper.from_array(q, w_init.name))
        s_init.CopyFrom(numpy_helper.from_array(np.array(one, np.float32), s_init.name))
        if len(dq.input) > 2 and dq.input[2] in inits:
            zp = inits[dq.input[2]]
            zp.CopyFrom(numpy_helper.from_array(np.array(0, np.int8), zp.name))
        for a in dq.attribute:
            if a.name == "axis":
                a.i = 0
        changed.append(node.name or node.output[0])
    if not changed:
        return None
    return (
        f"ConvTranspose INT8 weights per tensor for this TensorRT ({', '.join(changed)}): before 10.2 it "
        "reads per-channel ConvTranspose scales per input channel"
    )


def prepare_for_tensorrt(
    model: Any, features: TrtFeatures, graph_has_qdq: bool, fp16_graph: bool, base_dir: Path | None
) -> tuple[Any, list[str]]:
    """The model edited for this TensorRT (a copy when anything changes) and a note per edit."""
    import onnx

    notes: list[str] = []
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    if graph_has_qdq and fp16_graph and not features.strongly_typed:
        from edgeseg.export.fp16 import widen_to_fp32
        from edgeseg.export.graph import card_of

        try:
            source_opset = card_of(edited).extra.get("int8", {}).get("source_opset")
        except EdgesegError:  # no card: the opset is read off the graph
            source_opset = None
        edited = widen_to_fp32(edited, source_opset)
        notes.append("Q/DQ graph widened to FP32 float parts for TensorRT 8.x's parser (FP16 by BuilderFlag)")
    note = labels_to_int32(edited)
    if note:
        notes.append(note)
    if graph_has_qdq and features.convtranspose_weight_axis == 0:
        note = convtranspose_weights_per_tensor(edited, base_dir)
        if note:
            notes.append(note)
    return (edited if notes else model), notes


def _attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type)
