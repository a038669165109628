"""INT8 of a valid foreign ONNX (LR-ASPP from torch.onnx.export with a dynamic batch axis): weights the
exporter put behind Identity nodes, Conv outputs that also feed Shape, edgeseg's own failures as exit 1
(not "bad input"), and a failing build naming the files it completed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from edgeseg.calib import qdq_rules
from edgeseg.cli import app
from edgeseg.errors import ExitCode, InternalError
from edgeseg.export.graph import inline_constant_identities

runner = CliRunner()


def _lraspp_onnx(folder: Path) -> Path:
    """torchvision's LR-ASPP, untrained, exported as a user would: torch.onnx.export, batch dynamic."""
    torch = pytest.importorskip("torch")
    tvs = pytest.importorskip("torchvision.models.segmentation")

    class Out(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)["out"]

    torch.manual_seed(0)
    net = tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).eval()
    path = folder / "lr" / "lr.onnx"
    path.parent.mkdir(parents=True)
    with torch.no_grad():
        torch.onnx.export(
            Out(net),
            (torch.rand(1, 3, 64, 128),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["out"],
            dynamic_axes={"input": {0: "batch"}, "out": {0: "batch"}},
        )
    return path


def _frames(folder: Path, n: int = 6) -> Path:
    import cv2

    from edgeseg.data.synth import SceneGenerator

    folder.mkdir()
    for i, (rgb, _) in enumerate(SceneGenerator(64, 128, seed=3).video(n)):
        cv2.imwrite(str(folder / f"f{i}.png"), rgb[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def lraspp(tmp_path_factory):
    d = tmp_path_factory.mktemp("lraspp")
    path = _lraspp_onnx(d)
    r = runner.invoke(app, ["card", "--onnx", str(path), "--classes", "3", "--embed"])
    assert r.exit_code == 0, r.output
    model = onnx.load(str(path))
    prod = {o: n for n in model.graph.node for o in n.output}
    # the two shapes of the foreign graph this test is about
    assert any(n.op_type == "Shape" and prod[n.input[0]].op_type == "Conv" for n in model.graph.node)
    assert any(n.op_type == "Identity" for n in model.graph.node)
    return path, _frames(d / "frames")


@pytest.mark.slow
def test_int8_of_a_foreign_lraspp_with_a_dynamic_batch_builds_both_forms(lraspp, tmp_path):
    src, frames = lraspp
    path = tmp_path / "lr" / "lr.onnx"
    path.parent.mkdir()
    path.write_bytes(src.read_bytes())
    (path.parent / "lr.card.json").write_bytes((src.parent / "lr.card.json").read_bytes())
    args = ["build", str(path), "--fp16", "--int8", "--calib-data", str(frames), "--calib-images", "3"]
    r = runner.invoke(app, [*args, "--eval-images", "2", "--max-miou-drop", "100", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert {Path(a["artifact"]).name for a in report["artifacts"]} == {
        "lr.onnx",
        "lr.fp16.onnx",
        "lr.int8.cpu.onnx",
        "lr.int8.qdq.onnx",
    }
    qdq = onnx.load(str(path.parent / "lr.int8.qdq.onnx"))
    rules = qdq_rules.check_tensorrt_rules(qdq)
    assert rules.ok and rules.quantized_weighted_ops > 30


def _conv_feeding_shape() -> onnx.ModelProto:
    """x -> Conv -> Q/DQ -> (Conv, Shape): the Q/DQ sits on the input of the second conv, which is
    right; the Shape reading the same DQ output reads no values."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "wq")
    w2 = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.int8), "w2q")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    ws = numpy_helper.from_array(np.full(4, 0.1, np.float32), "ws")
    wz = numpy_helper.from_array(np.zeros(4, np.int8), "wz")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="qx"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dqx"),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="dqw", axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c1"], name="conv1"),
        helper.make_node("QuantizeLinear", ["c1", "s", "z"], ["c1q"], name="qc1"),
        helper.make_node("DequantizeLinear", ["c1q", "s", "z"], ["c1d"], name="dqc1"),
        helper.make_node("DequantizeLinear", ["w2q", "ws", "wz"], ["w2d"], name="dqw2", axis=0),
        helper.make_node("Conv", ["c1d", "w2d"], ["y"], name="conv2"),
        helper.make_node("Shape", ["c1d"], ["shape"], name="shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        [w, w2, s, z, ws, wz],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_readers_are_not_quantized_consumers():
    model = _conv_feeding_shape()
    assert qdq_rules.check_tensorrt_rules(model).ok
    # a reader of values is still one: the rule itself is unchanged
    next(n for n in model.graph.node if n.name == "shape").op_type = "Relu"
    assert "conv1: output of a weighted op is quantized" in qdq_rules.check_tensorrt_rules(model).violations


def test_weights_behind_identity_nodes_are_inlined_for_the_quantizer():
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    nodes = [
        helper.make_node("Identity", ["b"], ["b_copy"]),
        helper.make_node("Identity", ["b_copy"], ["b_copy2"]),
        helper.make_node("Conv", ["x", "w", "b_copy2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [b, w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert inline_constant_identities(model) == 2
    assert [n.op_type for n in model.graph.node] == ["Conv"] and list(model.graph.node[0].input) == [
        "x",
        "w",
        "b",
    ]
    onnx.checker.check_model(model)


def test_edgeseg_failing_on_a_valid_file_is_exit_1_and_names_the_complete_files(
    tiny_onnx, _isolated_workdir, monkeypatch
):
    """Not exit 2 ("bad input"): the file was valid. And the FP16 file written before the failure is
    named as complete, so no half-made set is left unexplained."""
    from edgeseg.calib import gate

    path = _isolated_workdir / "tiny" / "tiny.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(tiny_onnx(name="tiny").read_bytes())

    def broken(*args, **kwargs):
        raise InternalError(
            "TensorRT Q/DQ placement broke a rule: conv: output of a weighted op is quantized"
        )

    monkeypatch.setattr(gate, "make_form", broken)
    r = runner.invoke(
        app,
        ["build", "--fp16", "--int8", "--calib-data", "synth", "--calib-images", "2", "--eval-images", "2"],
    )
    assert r.exit_code == ExitCode.BUG, r.output
    assert "Traceback" not in r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
    assert "edgeseg failed on a valid input" in line and "complete before the failure: tiny.fp16.onnx" in line
    assert (path.parent / "tiny.fp16.onnx").is_file()


def test_a_build_failing_part_way_carries_its_complete_files_as_data(tiny_onnx, tmp_path, monkeypatch):
    """The library caller gets the files as a field (`PartialBuild.complete`) and the failure itself
    (`cause`, whose exit code it keeps), not a message to parse; a failure before any file was written
    is raised as it is."""
    from edgeseg.build import BuildOptions, PartialBuild, build
    from edgeseg.calib import gate

    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_onnx(name="tiny").read_bytes())
    cause = InternalError("Q/DQ placement broke a rule")

    def broken(*args, **kwargs):
        raise cause

    monkeypatch.setattr(gate, "make_form", broken)
    opts = BuildOptions(
        fp16=True, int8=True, forms=("qdq",), calib_data="synth", calib_images=2, eval_images=2
    )
    with pytest.raises(PartialBuild) as err:
        build(path, opts)
    assert err.value.cause is cause and err.value.__cause__ is cause
    assert err.value.complete == (tmp_path / "tiny.fp16.onnx",) and err.value.complete[0].is_file()
    assert err.value.exit_code == ExitCode.BUG
    assert str(err.value) == f"{cause}; complete before the failure: tiny.fp16.onnx"
    assert (
        str(cause)
        == "Q/DQ placement broke a rule (edgeseg failed on a valid input: please report it, with the file)"
    )
    (tmp_path / "tiny.fp16.onnx").unlink()
    with pytest.raises(InternalError) as err2:  # nothing complete: the failure as it is
        build(
            path, BuildOptions(int8=True, forms=("qdq",), calib_data="synth", calib_images=2, eval_images=2)
        )
    assert type(err2.value) is InternalError


@pytest.mark.slow  # the dynamo exporter's first run takes about a minute on 2 busy cores
def test_torchs_default_exporter_runs_in_edgesegs_environment(tmp_path):
    """PyTorch 2.14's default torch.onnx.export (dynamo) needs onnxscript: edgeseg[export] installs it,
    so a user exporting their own net in edgeseg's venv does not meet "No module named 'onnxscript'"."""
    torch = pytest.importorskip("torch")

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    path = tmp_path / "theirs.onnx"
    torch.onnx.export(net.eval(), (torch.rand(1, 3, 16, 32),), str(path), external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node].count("Conv") == 2
