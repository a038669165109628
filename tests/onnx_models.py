"""ONNX models that carry an edgeseg card, built by tests with onnx's helper API (no torch): the card
of N classes `c0 ...` every such test writes, the card put into a model as export puts it
(set_card), the tiny 1x1-conv segmenter of the `tiny_onnx` fixture (module-scoped fixtures call
`tiny_model` directly) and a one-layer TensorRT-style Q/DQ graph (`qdq_layer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def card_of(num_classes: int, size: tuple[int, int], name: str = "tiny", **fields: Any):
    """A card of `num_classes` classes named c0, c1, ... with the default palette."""
    from edgeseg.card import ModelCard, default_palette

    classes = [f"c{i}" for i in range(num_classes)]
    return ModelCard(
        model=name, classes=classes, palette=default_palette(num_classes), input_size=size, **fields
    )


def save_with_card(model, path: Path, card, **save_kw: Any) -> Path:
    """`model` (an onnx ModelProto) saved at `path` with `card` in its metadata, as export writes it."""
    import onnx

    from edgeseg.export.graph import set_card

    set_card(model, card)
    onnx.save(model, path, **save_kw)
    return path


def tiny_model(
    path: Path,
    num_classes: int = 3,
    size: tuple[int, int] = (32, 48),
    dynamic: bool = False,
    name: str = "tiny",
    hidden: int = 0,
    batch: int | str | None = None,
) -> Path:
    """A 1x1 conv (3 -> `num_classes`) segmenter at `path`. `hidden` > 0: a 3x3 conv to that many
    channels and a ReLU first, enough work per operator for ONNX Runtime to split it over its intra-op
    threads (a lone 1x1 conv runs on one). `dynamic`: N, H and W named (as `edgeseg export --dynamic
    --dynamic-hw`); `batch`: the batch axis alone (an int fixes it, a name makes it dynamic); default
    1, or "N" when dynamic."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(num_classes, hidden or 3, 1, 1)).astype(np.float32)
    b = np.zeros(num_classes, dtype=np.float32)
    h, wd = ("H", "W") if dynamic else size
    n = batch if batch is not None else ("N" if dynamic else 1)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, h, wd])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, num_classes, h, wd])
    weights = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    nodes = [helper.make_node("Conv", ["relu" if hidden else "input", "w", "b"], ["logits"])]
    if hidden:
        w1 = rng.normal(size=(hidden, 3, 3, 3)).astype(np.float32)
        weights.append(numpy_helper.from_array(w1, "w1"))
        nodes[:0] = [
            helper.make_node("Conv", ["input", "w1"], ["hidden"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["hidden"], ["relu"]),
        ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    card = card_of(num_classes, size, name, dynamic=dynamic, dynamic_batch=isinstance(n, str))
    return save_with_card(model, path, card)


def qdq_layer(
    w: np.ndarray, op: str, axis: int, x_scale: float, hw: tuple, out_hw: tuple, name: str, **attrs: Any
):
    """One weight layer as TensorRT reads INT8 and calib/ writes it: the input through Q/DQ at `x_scale`,
    then `op` (Conv, ConvTranspose) on `w` quantized symmetric int8 per channel along `axis` (the output
    channels: 0 for Conv, 1 for ConvTranspose), zero points 0. An onnx ModelProto, opset 17."""
    from onnx import TensorProto, helper, numpy_helper

    per_channel = [-1 if a == axis else 1 for a in range(w.ndim)]
    w_scale = (np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis)) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale.reshape(per_channel)), -127, 127).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(x_scale, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zp"),
        numpy_helper.from_array(w_q, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(len(w_scale), np.int8), "w_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xdq"], name="dq_in"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w", axis=axis),
        helper.make_node(op, ["xdq", "w"], ["logits"], name=name, **attrs),
    ]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, w.shape[1 - axis], *hw])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, w.shape[axis], *out_hw])
    graph = helper.make_graph(nodes, "qdq", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
