"""The TensorRT op-compatibility report on hand-built graphs: each rule fires where it should."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export.trt_compat import check_trt_compat


def model_of(nodes, *, inits=(), opset=17, out_type=TensorProto.FLOAT, in_dims=(1, 3, 8, 8), out_dims=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_dims))
    y = helper.make_tensor_value_info("y", out_type, list(out_dims) if out_dims else None)
    g = helper.make_graph(nodes, "g", [x], [y], list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def row(report, op):
    return next(r for r in report.rows if r.op == op)


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def resize(**attrs):
    sizes = const("sizes", np.array([1, 3, 16, 16], np.int64))
    return model_of([helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)], inits=[sizes])


@pytest.mark.parametrize(
    "attrs, status, note",
    [
        ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, "ok", "linear/align_corners"),
        (
            {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
            "ok",
            "pytorch_half_pixel",
        ),
        (
            {"mode": "nearest", "nearest_mode": "floor", "coordinate_transformation_mode": "asymmetric"},
            "ok",
            "",
        ),
        (
            {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"},
            "error",
            "tf_crop_and_resize",
        ),
        ({"mode": "linear", "antialias": 1}, "error", "antialias"),
        ({"mode": "linear", "keep_aspect_ratio_policy": "not_larger"}, "error", "keep_aspect_ratio_policy"),
        ({"mode": "cubic"}, "warning", "cubic"),
    ],
)
def test_resize_rules(attrs, status, note):
    opset = 18 if {"antialias", "keep_aspect_ratio_policy"} & attrs.keys() else 17
    report = check_trt_compat(resize(**attrs) if opset == 17 else _resize18(**attrs))
    r = row(report, "Resize")
    assert r.status == status and note in "; ".join(r.notes)
    assert (status == "error") == bool(report.errors)


def _resize18(**attrs):
    m = resize(**attrs)
    m.opset_import[0].version = 18
    return m


def test_resize_with_scales_is_a_warning():
    scales = const("scales", np.array([1, 1, 2, 2], np.float32))
    m = model_of([helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")], inits=[scales])
    r = row(check_trt_compat(m), "Resize")
    assert r.status == "warning" and "prefer `sizes`" in r.problems[0]


def test_argmax_is_a_warning_and_select_last_index_an_error():
    ok = model_of([helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)], out_type=TensorProto.INT64)
    report = check_trt_compat(ok)
    assert row(report, "ArgMax").status == "warning" and "TopK" in row(report, "ArgMax").notes[0]
    assert row(report, "(int64 I/O)").status == "warning"
    bad = model_of(
        [helper.make_node("ArgMax", ["x"], ["y"], axis=1, select_last_index=1)], out_type=TensorProto.INT64
    )
    assert "select_last_index" in check_trt_compat(bad).errors[0]


def test_uint8_cast_ok_only_at_the_network_output():
    at_output = model_of(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)], out_type=TensorProto.UINT8
    )
    assert row(check_trt_compat(at_output), "Cast").status == "ok"
    inside = model_of(
        [
            helper.make_node("Cast", ["x"], ["t"], to=TensorProto.UINT8),
            helper.make_node("Cast", ["t"], ["y"], to=1),
        ]
    )
    assert row(check_trt_compat(inside), "Cast").status == "error"


def test_pooling_rules():
    mp = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    assert "Indices" in row(check_trt_compat(model_of([mp])), "MaxPool").problems[0]
    dil = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2])
    assert row(check_trt_compat(model_of([dil])), "MaxPool").status == "error"
    ap = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], ceil_mode=1)
    assert row(check_trt_compat(model_of([ap])), "AveragePool").status == "ok"


def test_conv_rules():
    w = const("w", np.zeros((4, 3, 3, 3), np.float32))
    dilated = helper.make_node("Conv", ["x", "w"], ["y"], dilations=[2, 2], pads=[2, 2, 2, 2])
    r = row(check_trt_compat(model_of([dilated], inits=[w])), "Conv")
    assert r.status == "ok" and "dilated" in r.notes[0]
    wt = const("wt", np.zeros((3, 4, 2, 2), np.float32))
    deconv = helper.make_node("ConvTranspose", ["x", "wt"], ["y"], strides=[2, 2], dilations=[2, 2])
    assert row(check_trt_compat(model_of([deconv], inits=[wt])), "ConvTranspose").status == "warning"
    runtime_w = helper.make_node("ConvTranspose", ["x", "x"], ["y"])
    assert row(check_trt_compat(model_of([runtime_w])), "ConvTranspose").status == "error"


def test_unsupported_custom_and_unknown_ops():
    nodes = [
        helper.make_node("Det", ["x"], ["d"]),
        helper.make_node("FusedConv", ["x"], ["f"], domain="com.microsoft"),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    m = model_of(nodes)
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    report = check_trt_compat(m)
    assert row(report, "Det").status == "error" and row(report, "com.microsoft::FusedConv").status == "error"
    assert row(report, "Relu").status == "ok" and len(report.errors) == 2 and not report.ok
    assert report.rows[0].op == "(opset)"  # graph-level rows first, then errors before warnings/ok
    statuses = [r.status for r in report.rows[1:]]
    assert statuses == sorted(statuses, key=["error", "warning", "ok"].index)


def test_qdq_zero_point_must_be_zero():
    s, zp0, zp1 = const("s", np.float32(0.1)), const("z0", np.int8(0)), const("z1", np.int8(3))
    good = model_of([helper.make_node("QuantizeLinear", ["x", "s", "z0"], ["y"])], inits=[s, zp0])
    bad = model_of([helper.make_node("QuantizeLinear", ["x", "s", "z1"], ["y"])], inits=[s, zp1])
    assert check_trt_compat(good).ok
    assert "zero point" in check_trt_compat(bad).errors[0]


@pytest.mark.parametrize(
    "opset, status, note",
    [
        (17, "ok", "opset 17: TensorRT 8.5+ and 10.x"),
        (19, "warning", "opset 19: TensorRT 8.5 / 8.6 (JetPack 5.1 / 6.0) parse up to 17, 10.x up to 20"),
        (21, "error", "opset 21: TensorRT 10.x parses opsets 9 to 20"),
        (8, "warning", "opset 8: TensorRT 10.x parses opsets 9 to 20"),
    ],
)
def test_opset_range(opset, status, note):
    """The limits of onnx-tensorrt's operator matrices: 8.5 and 8.6 "up to Opset 17" (JetPack 5.1 ships
    8.5.2, JetPack 6.0 8.6.2: not only JetPack 5), 10.0 "opset 9 to opset 20"."""
    m = model_of([helper.make_node("Relu", ["x"], ["y"])], opset=opset)
    r = row(check_trt_compat(m), "(opset)")
    assert r.status == status and r.notes == [note]


def test_notes_say_what_each_tensorrt_version_does():
    """What onnx-tensorrt's 8.5-GA to 10.x importers do, not "TensorRT 8.x lacks it": cubic Resize maps
    to the cubic mode and exclude_outside is passed on from 8.5; run-time Conv weights are a weights
    input from 8.5; run-time `axes` is refused by every matrix from 8.5 to 10.x."""
    cubic = row(check_trt_compat(resize(mode="cubic")), "Resize")
    assert cubic.status == "warning" and "importer (8.5+) maps cubic" in cubic.notes[0]
    outside = row(check_trt_compat(resize(mode="linear", exclude_outside=1)), "Resize")
    assert outside.status == "ok" and "passed to TensorRT's resize layer" in "; ".join(outside.notes)
    runtime_w = row(check_trt_compat(model_of([helper.make_node("Conv", ["x", "x"], ["y"])])), "Conv")
    assert "parsed as a weights input by onnx-tensorrt 8.5+" in runtime_w.problems[0]
    axes = helper.make_node("Unsqueeze", ["x", "x"], ["y"])
    assert (
        "onnx-tensorrt 8.5 to 10.x needs it constant"
        in row(check_trt_compat(model_of([axes])), "Unsqueeze").problems[0]
    )
    notes = [n for r in check_trt_compat(resize(mode="cubic")).rows for n in r.notes]
    assert not any("TensorRT 8.x" in n or "JetPack 5)" in n for n in notes)


def test_dynamic_inputs_need_a_profile():
    m = model_of([helper.make_node("Relu", ["x"], ["y"])], in_dims=("N", 3, "H", "W"))
    r = row(check_trt_compat(m), "(dynamic shapes)")
    assert r.status == "ok" and "optimization profile" in r.notes[0]
