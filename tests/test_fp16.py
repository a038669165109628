"""FP16 as an ONNX transform: FP32 I/O kept, unsafe ops in FP32, argmax agreement >= 99.5% on ORT.

The net is briefly fitted on generated scenes first: random-init nets have near-tied logits, where
any rounding flips the argmax and the agreement would measure noise, not the conversion.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxconverter_common")
import onnx  # noqa: E402
from test_export import TinySeg  # noqa: E402

from edgeseg.card import ModelCard  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.export import graph  # noqa: E402
from edgeseg.export.fp16 import Fp16Check, write_fp16  # noqa: E402
from edgeseg.export.onnx_export import export_onnx  # noqa: E402

torch.set_num_threads(1)
SIZE = (48, 64)


@pytest.fixture(scope="module")
def fitted():
    """TinySeg fitted for a few dozen steps on 4 generated scenes (decisive logits), with its card."""
    from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE, SceneGenerator
    from edgeseg.preprocess import Normalizer

    card = ModelCard(
        model="tinyseg", classes=list(SYNTH_CLASSES), palette=list(SYNTH_PALETTE), input_size=SIZE
    )
    gen = SceneGenerator(*SIZE, seed=7)
    norm = Normalizer(card.mean, card.std)
    scenes = [gen.scene(i) for i in range(4)]
    x = torch.from_numpy(np.stack([norm(rgb) for rgb, _ in scenes]))
    y = torch.from_numpy(np.stack([m for _, m in scenes]).astype(np.int64))
    torch.manual_seed(0)
    net = TinySeg(num_classes=card.num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y, ignore_index=255)
        loss.backward()
        opt.step()
    return net.eval(), card


@pytest.fixture(scope="module")
def exports(fitted, tmp_path_factory):
    net, card = fitted
    root = tmp_path_factory.mktemp("fp16")
    logits = export_onnx(net, root / "m" / "m.onnx", card, parity_scenes=2)
    labels = export_onnx(net, root / "l" / "l.onnx", card, output="labels", parity_scenes=2)
    return logits.path, labels.path


def test_fp16_keeps_fp32_io_and_agrees_with_fp32(exports, tmp_path):
    from edgeseg.runtime.segmenter import Segmenter

    out, parity = write_fp16(exports[0], tmp_path / "m.fp16.onnx", check=Fp16Check(num_scenes=3))
    assert parity.agreement >= 0.995 and parity.passed
    model = graph.load_onnx(out)
    fp16_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(fp16_weights) >= 5  # the convs really are FP16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    producers = {o: n for n in model.graph.node for o in n.output}
    last = producers[model.graph.output[0].name]
    assert not (last.op_type == "Cast" and graph.attributes(last)["to"] == onnx.TensorProto.FLOAT16)
    resize_in = [producers[n.input[0]] for n in model.graph.node if n.op_type == "Resize"]
    assert resize_in and all(p.op_type != "Cast" for p in resize_in)  # Resize runs in FP16, no Cast in front
    pool = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    assert producers[pool.input[0]].op_type == "Cast"  # kept FP32
    seg = Segmenter(out)
    assert seg.card.precision == "fp16" and seg.card.classes == exports_card_classes(exports[0])
    frame = np.full((50, 70, 3), 90, np.uint8)
    frame[25:] = 200
    assert seg.infer(frame).shape == (50, 70)
    assert out.with_suffix(".card.json").is_file()


def exports_card_classes(path) -> list[str]:
    return graph.card_of(graph.load_onnx(path)).classes


def test_fp16_labels_output_keeps_argmax_in_fp32(exports, tmp_path):
    import onnxruntime as ort

    out, parity = write_fp16(exports[1], tmp_path / "l.fp16.onnx", check=Fp16Check(num_scenes=2))
    assert (
        parity.agreement >= 0.995 and parity.output_dtype == "int32"
    )  # the labels default (TensorRT builds no UINT8 from ArgMax)
    model = graph.load_onnx(out)
    argmax = next(n for n in model.graph.node if n.op_type == "ArgMax")
    producers = {o: n for n in model.graph.node for o in n.output}
    feeder = producers[argmax.input[0]]
    assert feeder.op_type != "Cast" or graph.attributes(feeder)["to"] == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).normal(size=(1, 3, *SIZE)).astype(np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.int32 and got.shape == (1, *SIZE)


def test_failed_fp16_check_writes_nothing(exports, tmp_path):
    target = tmp_path / "m.fp16.onnx"
    with pytest.raises(EdgesegError, match="was not written"):
        write_fp16(exports[0], target, check=Fp16Check(threshold=1.01, num_scenes=1))
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_fp16_input_errors_are_one_line(exports, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage-not-protobuf" * 10)
    with pytest.raises(EdgesegError, match="is not a valid ONNX model"):
        write_fp16(bad, tmp_path / "o.onnx")
    with pytest.raises(EdgesegError, match="ONNX file not found"):
        write_fp16(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    fp16, _ = write_fp16(exports[0], tmp_path / "once.onnx")
    with pytest.raises(EdgesegError, match="already fp16"):
        write_fp16(fp16, tmp_path / "twice.onnx")


def test_graph_ending_in_an_fp32_op_keeps_fp32_output(tiny_onnx, tmp_path):
    """onnxconverter-common casts a blocked last node's output to FP16 despite keep_io_types; we undo it."""
    import onnxruntime as ort
    from onnx import helper

    model = graph.load_onnx(tiny_onnx(num_classes=3, size=(8, 8)))
    model.graph.node[0].output[0] = "conv_out"
    model.graph.node.append(helper.make_node("Softmax", ["conv_out"], ["logits"], axis=1))
    src = tmp_path / "soft.onnx"
    onnx.save(model, str(src))
    out, _ = write_fp16(src, tmp_path / "soft.fp16.onnx")
    converted = graph.load_onnx(out)
    assert converted.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in converted.graph.initializer)
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    a = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert b.dtype == np.float32 and np.abs(a - b).max() < 1e-2
