"""TensorRT's Q/DQ placement rules, applied to (and checked on) an ONNX graph.

What TensorRT wants from an explicitly quantized ONNX (NVIDIA's "Q/DQ layer placement
recommendations" and ModelOpt's default policy):

- symmetric INT8, zero point 0; activations per-tensor, weights per-channel on the output-channel axis
  (axis 0 for Conv weights [K, C, kh, kw], axis 1 for ConvTranspose weights [C, K/g, kh, kw]);
- Q/DQ on the *inputs* of weighted ops (Conv, ConvTranspose, Gemm, MatMul), not on their outputs, so
  TensorRT fuses Conv+BN+ReLU and picks the output precision itself;
- the residual input of an Add that follows a weighted op gets Q/DQ too, so TensorRT can fuse the
  addition into the convolution's INT8 epilogue;
- no Q/DQ on Concat inputs (one Q/DQ after the Concat, on the consumer's input, keeps one scale);
- no Q/DQ touching Resize or ArgMax: TensorRT runs them in float (ArgMax lowers to TopK) and a Q/DQ
  beside them only adds reformatting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NO_QDQ_NEIGHBOURS = ("Resize", "ArgMax", "Upsample")
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}
# readers of a tensor's shape only (interpolate(size=x.shape[-2:]) in a dynamic export): they read no
# values, so a Q/DQ they sit behind quantizes nothing for them
SHAPE_READERS = ("Shape", "Size")


@dataclass
class RuleReport:
    """Outcome of `check_tensorrt_rules`: empty `violations` means the graph obeys the rules."""

    quantized_weighted_ops: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    result: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            result.setdefault(name, []).append(node)
    return result


def _const(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def drop_qdq_beside(
    model: onnx.ModelProto, op_types: tuple[str, ...] = NO_QDQ_NEIGHBOURS, *, concat: bool = True
) -> int:
    """Keep activation Q/DQ away from `op_types` (Resize, ArgMax) and off Concat inputs.

    A consumer of that kind reading a DQ output is rewired to the float tensor behind the Q; a pair whose
    input comes from such an op is bypassed for every consumer; pairs left unused are deleted. Returns
    the number of consumer inputs rewired.
    """
    graph = model.graph
    prod = _producers(graph)
    cons = _consumers(graph)
    rewired = 0
    for q in list(graph.node):
        if q.op_type != "QuantizeLinear" or _const(graph, q.input[0]) is not None:
            continue
        src = q.input[0]
        src_node = prod.get(src)
        bypass_all = src_node is not None and src_node.op_type in op_types
        for dq in [n for n in cons.get(q.output[0], []) if n.op_type == "DequantizeLinear"]:
            for c in cons.get(dq.output[0], []):
                if bypass_all or c.op_type in op_types or (concat and c.op_type == "Concat"):
                    for i, name in enumerate(c.input):
                        if name == dq.output[0]:
                            c.input[i] = src
                            rewired += 1
    _prune_unused_qdq(graph)
    return rewired


def _prune_unused_qdq(graph: onnx.GraphProto) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [
            n
            for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)
        ]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def add_residual_qdq(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> int:
    """Give the non-conv input of each `Add(weighted_op_output, residual)` a symmetric INT8 Q/DQ.

    Reuses an existing Q/DQ of the residual tensor when there is one. Returns Adds handled.
    """
    graph = model.graph
    prod = _producers(graph)
    cons = _consumers(graph)
    dq_of: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            for dq in cons.get(node.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    dq_of[node.input[0]] = dq.output[0]
    handled = 0
    new_nodes: list[tuple[int, list[onnx.NodeProto]]] = []
    position = {id(n): i for i, n in enumerate(graph.node)}
    for add in list(graph.node):
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        kinds = [prod.get(x).op_type if prod.get(x) is not None else "input" for x in add.input]
        from_weighted = [k in WEIGHTED_OPS for k in kinds]
        if sum(from_weighted) == 2:
            # Both branches end in a conv (ResNet downsample block): the branch produced earlier in
            # topological order, the shortcut, is the residual; the later conv fuses the addition.
            first = min((0, 1), key=lambda i: position[id(prod[add.input[i]])])
            from_weighted = [i != first for i in (0, 1)]
        elif sum(from_weighted) != 1:
            continue
        slot = from_weighted.index(False)
        r = add.input[slot]
        if kinds[slot] == "DequantizeLinear":
            handled += 1  # the quantizer already shares the residual's Q/DQ with a conv input
            continue
        if _const(graph, r) is not None or kinds[slot] in NO_QDQ_NEIGHBOURS:
            continue
        if r in dq_of:
            add.input[slot] = dq_of[r]
            handled += 1
            continue
        if r not in ranges:
            continue
        lo, hi = ranges[r]
        amax = max(abs(lo), abs(hi), 1e-8)
        scale = numpy_helper.from_array(np.array(amax / 127.0, dtype=np.float32), f"{r}_res_scale")
        zp = numpy_helper.from_array(np.array(0, dtype=np.int8), f"{r}_res_zero_point")
        graph.initializer.extend([scale, zp])
        q = helper.make_node(
            "QuantizeLinear", [r, scale.name, zp.name], [f"{r}_res_q"], name=f"{r}_res_QuantizeLinear"
        )
        dq = helper.make_node(
            "DequantizeLinear",
            [q.output[0], scale.name, zp.name],
            [f"{r}_res_dq"],
            name=f"{r}_res_DequantizeLinear",
        )
        add.input[slot] = dq.output[0]
        dq_of[r] = dq.output[0]
        new_nodes.append((position[id(add)], [q, dq]))
        handled += 1
    for pos, nodes in sorted(new_nodes, key=lambda t: -t[0]):
        for k, n in enumerate(nodes):
            graph.node.insert(pos + k, n)
    return handled


def nodes_fed_by(model: onnx.ModelProto, op_types: tuple[str, ...] = NO_QDQ_NEIGHBOURS) -> list[str]:
    """Weighted ops whose activation input comes straight from Resize/ArgMax: kept in float for
    TensorRT, since quantizing them would put a Q/DQ right after the Resize."""
    prod = _producers(model.graph)
    names = []
    for node in model.graph.node:
        if node.op_type in WEIGHTED_OPS and node.input:
            src = prod.get(node.input[0])
            if src is not None and src.op_type in op_types:
                names.append(node.name)
    return names


def check_tensorrt_rules(model: onnx.ModelProto, *, strict: bool = True) -> RuleReport:
    """Verify the TensorRT Q/DQ rules on `model`; each broken rule becomes one line in `violations`.

    `strict=False` checks only what TensorRT requires (symmetric INT8, per-channel weight axes, nothing
    beside Resize/ArgMax) and leaves placement preferences (outputs, Concat inputs) to the placer, as
    for ModelOpt, whose concat elimination deliberately puts equal-scale Q/DQ on Concat inputs."""
    graph = model.graph
    prod = _producers(graph)
    cons = _consumers(graph)
    report = RuleReport()
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3:
            report.violations.append(f"{node.name}: no zero point (defaults to uint8)")
        else:
            zp = _const(graph, node.input[2])
            if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
                report.violations.append(f"{node.name}: zero point must be INT8 0 (symmetric)")
        neighbours = [prod.get(node.input[0])] + cons.get(node.output[0], [])
        for nb in neighbours:
            if nb is not None and nb.op_type in NO_QDQ_NEIGHBOURS:
                report.violations.append(f"{node.name}: Q/DQ adjacent to {nb.op_type} {nb.name}")
    for node in graph.node:
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2:
            continue
        w_src = prod.get(node.input[1])
        if w_src is None or w_src.op_type != "DequantizeLinear":
            continue
        report.quantized_weighted_ops += 1
        a_src = prod.get(node.input[0])
        if a_src is None or a_src.op_type != "DequantizeLinear":
            report.violations.append(f"{node.name}: weights quantized but activation input is not")
        if node.op_type in WEIGHT_AXIS:
            scale = _const(graph, w_src.input[1])
            axis = next((a.i for a in w_src.attribute if a.name == "axis"), 1)
            weight = _const(graph, w_src.input[0])
            if scale is None or scale.ndim != 1 or weight is None:
                report.violations.append(f"{node.name}: weights not quantized per channel")
            elif axis != WEIGHT_AXIS[node.op_type] or scale.shape[0] != weight.shape[axis]:
                report.violations.append(
                    f"{node.name}: per-channel axis {axis}, expected {WEIGHT_AXIS[node.op_type]}"
                )
        for c in cons.get(node.output[0], []) if strict else []:
            if c.op_type != "QuantizeLinear":
                continue
            # allowed only as the input of another weighted op (e.g. score conv -> ConvTranspose) or
            # as a residual input of an Add; anything else is output quantization TensorRT should decide
            readers = [
                r
                for dq in cons.get(c.output[0], [])
                for r in cons.get(dq.output[0], [])
                if r.op_type not in SHAPE_READERS
            ]
            if not readers or any(r.op_type not in (*WEIGHTED_OPS, "Add") for r in readers):
                report.violations.append(f"{node.name}: output of a weighted op is quantized")
    for node in graph.node if strict else []:
        if node.op_type == "Concat":
            for x in node.input:
                p = prod.get(x)
                if p is not None and p.op_type == "DequantizeLinear":
                    report.violations.append(f"{node.name}: Q/DQ on a Concat input")
    return report
