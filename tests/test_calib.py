"""INT8 calibration: data selection, cached statistics, both INT8 forms, and the mIoU gate.

The nets are tiny (a few convs at 32x64) and trained for a few dozen steps on generated scenes so
predictions, and therefore mIoU and its INT8 drop, mean something.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_models import save_with_card

from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends import BackendOptions

H, W = 32, 64
pytestmark = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")


def _tiny_net():
    """conv-bn-relu stem, strided conv, residual add, bilinear Resize, Concat skip, 1x1 head."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from edgeseg.card import ModelCard
    from edgeseg.data.synth import SYNTH_CLASSES, SYNTH_PALETTE, SceneGenerator
    from edgeseg.preprocess import Preprocessor

    class Net(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
            self.down = nn.Sequential(
                nn.Conv2d(12, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU()
            )
            self.res = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
            self.head = nn.Conv2d(16 + 12, c, 1)

        def forward(self, x):
            a = self.stem(x)
            b = self.down(a)
            b = F.relu(b + self.res(b))
            u = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
            return self.head(torch.cat([u, a], 1))

    torch.manual_seed(0)
    torch.set_num_threads(1)
    card = ModelCard(
        model="tiny", classes=list(SYNTH_CLASSES), palette=list(SYNTH_PALETTE), input_size=(H, W)
    )
    gen = SceneGenerator(H, W, seed=0)
    pre = Preprocessor(card, input_bgr=False)
    scenes = [gen.scene(i) for i in range(48)]
    x = torch.from_numpy(np.concatenate([pre(rgb)[0] for rgb, _ in scenes]))
    y = torch.from_numpy(np.stack([m for _, m in scenes]).astype(np.int64))
    net = Net(len(SYNTH_CLASSES))
    opt = torch.optim.Adam(net.parameters(), 5e-3)
    for _ in range(80):
        idx = torch.randint(0, len(scenes), (8,))
        loss = F.cross_entropy(net(x[idx]), y[idx], ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    return net, card


def _with_outlier(net, factor: float):
    """One stem channel scaled by `factor` before the ReLU, its consumers divide it back.

    The FP32 output is unchanged, but that activation's range explodes, so per-tensor INT8 of the
    layers reading it loses every other channel (the classic activation-outlier failure).
    """
    import copy

    import torch

    net = copy.deepcopy(net)
    with torch.no_grad():
        bn = net.stem[1]
        bn.weight[0] *= factor
        bn.bias[0] *= factor
        net.down[0].weight[:, 0] /= factor
        net.head.weight[:, 16] /= factor  # concat channel 16 is stem channel 0
    return net


def _export(net, card, path: Path) -> Path:
    import io

    import torch

    buf = io.BytesIO()
    torch.onnx.export(
        net,
        torch.zeros(1, 3, H, W),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
    )
    model = onnx.load_from_string(buf.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_with_card(model, path, card)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("calib_models")
    net, card = _tiny_net()
    good = _export(net, card, root / "src" / "tiny.onnx")
    bad = _export(_with_outlier(net, 2000.0), card.replace(model="outlier"), root / "src" / "outlier.onnx")
    return {"tiny": good, "outlier": bad}


@pytest.fixture
def tiny(tiny_models, tmp_path) -> Path:
    """A fresh copy per test (artifacts and caches are written beside the model)."""
    dst = tmp_path / "m" / "tiny.onnx"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(tiny_models["tiny"].read_bytes())
    return dst


def _card(path: Path):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path).card


# --- calibration data -------------------------------------------------------------------------------
def test_stratified_pick_takes_rare_classes_first():
    from edgeseg.calib.data import stratified_pick

    common = np.array([100, 50, 0, 0])
    presence = [common, common, np.array([90, 0, 3, 0]), common, np.array([10, 0, 0, 1]), common]
    chosen, covered = stratified_pick(presence, 3, order=[0, 1, 3, 5, 2, 4])
    assert 4 in chosen and 2 in chosen  # the only images holding class 3 and class 2
    assert covered == [0, 1, 2, 3]
    assert len(chosen) == 3 and len(set(chosen)) == 3


def test_synth_calibration_is_deterministic_and_covers_classes(tiny):
    from edgeseg.calib.data import open_calibration

    card = _card(tiny)
    a = open_calibration("synth", card, 6, seed=1)
    b = open_calibration("synth", card, 6, seed=1)
    assert a.names == b.names and a.listing_hash == b.listing_hash
    assert len(a) == 6 and len(a.classes_covered) >= 6
    batch = next(a.batches(card))
    assert batch.shape == (1, 3, H, W) and batch.dtype == np.float32
    assert open_calibration("synth", card, 6, seed=2).names != a.names


def test_calibration_from_glob_and_video(tiny, tmp_path):
    from edgeseg.calib.data import open_calibration

    card = _card(tiny)
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(5):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 255, (40, 70, 3), dtype=np.uint8))
    cs = open_calibration(str(frames / "*.png"), card, 3, seed=0)
    assert len(cs) == 3 and cs.kind == "images"
    assert next(cs.batches(card)).shape == (1, 3, H, W)
    folder = open_calibration(str(frames), card, 10, seed=0)
    assert len(folder) == 5

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), i * 10, dtype=np.uint8))
    writer.release()
    vs = open_calibration(str(video), card, 4, seed=0)
    assert len(vs) == 4 and vs.kind == "video"
    means = [float(vs.image(i).mean()) for i in range(4)]
    assert means == sorted(means) and means[-1] - means[0] > 100  # spread over the clip, in order


def test_bad_calibration_data_gives_one_line_errors(tiny, tmp_path):
    from edgeseg.calib.data import open_calibration

    card = _card(tiny)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgesegError, match="empty"):
        open_calibration(str(empty), card, 4)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with pytest.raises(EdgesegError, match="no images"):
        open_calibration(str(tmp_path / "notes"), card, 4)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(EdgesegError, match="video"):
        open_calibration(str(broken), card, 4)
    with pytest.raises(EdgesegError, match="no images"):
        open_calibration(str(tmp_path / "nothing" / "*.jpg"), card, 4)
    with pytest.raises(EdgesegError, match="not found"):
        open_calibration(str(tmp_path / "missing"), card, 4)


# --- statistics cache ---------------------------------------------------------------------------------
def test_cache_is_reused_without_running_the_calibrator(tiny, monkeypatch):
    import onnxruntime.quantization as ortq

    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration

    card = _card(tiny)
    calib = open_calibration("synth", card, 4, seed=0)
    first = calibrate(tiny, card, calib, method="minmax")
    assert not first.from_cache and first.ranges
    assert (tiny.parent / "tiny.calib.json").is_file()

    def boom(*a, **k):
        raise AssertionError("calibrator invoked on a cache hit")

    monkeypatch.setattr(ortq, "create_calibrator", boom)
    again = calibrate(tiny, card, open_calibration("synth", card, 4, seed=0), method="minmax")
    assert again.from_cache and again.ranges == first.ranges
    with pytest.raises(EdgesegError, match="cache hit"):  # another method is another key: recalibrates
        calibrate(tiny, card, calib, method="percentile")


def test_cache_invalidated_by_model_or_listing_change(tiny, tmp_path):
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration

    card = _card(tiny)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
    spec = str(frames / "*.png")
    assert not calibrate(tiny, card, open_calibration(spec, card, 3), method="minmax").from_cache
    assert calibrate(tiny, card, open_calibration(spec, card, 3), method="minmax").from_cache

    cv2.imwrite(str(frames / "f3.png"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))  # listing changed
    assert not calibrate(tiny, card, open_calibration(spec, card, 3), method="minmax").from_cache

    model = onnx.load(str(tiny))  # model changed: new weights, same graph
    w = model.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.01, w.name))
    onnx.save(model, str(tiny))
    assert not calibrate(tiny, card, open_calibration(spec, card, 3), method="minmax").from_cache


# --- the two INT8 forms -------------------------------------------------------------------------------
def _stats(path: Path, method: str = "entropy", n: int = 8):
    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration

    card = _card(path)
    calib = open_calibration("synth", card, n, seed=0)
    return card, calib, calibrate(path, card, calib, method=method)


def _qdq_pairs_ok(model: onnx.ModelProto) -> None:
    """The TensorRT rules, asserted directly on the graph (independently of check_tensorrt_rules)."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize, "no QuantizeLinear at all"
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any(), f"{n.name}: zero point {zp}"
            neighbours = [producers.get(n.input[0])] + consumers.get(n.output[0], [])
            assert all(x is None or x.op_type not in ("Resize", "ArgMax") for x in neighbours), n.name
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    quantized = 0
    for conv in convs:
        wdq = producers.get(conv.input[1])
        if wdq is None or wdq.op_type != "DequantizeLinear":
            continue
        quantized += 1
        axis = next(a.i for a in wdq.attribute if a.name == "axis")
        weight, scale = inits[wdq.input[0]], inits[wdq.input[1]]
        want = 0 if conv.op_type == "Conv" else 1
        assert axis == want and scale.shape == (weight.shape[want],), conv.name  # per output channel
        assert weight.dtype == np.int8
        assert producers[conv.input[0]].op_type == "DequantizeLinear"  # activation per-tensor Q/DQ
        assert inits[producers[conv.input[0]].input[1]].ndim == 0
    assert quantized >= 1


def test_tensorrt_form_obeys_the_rules_and_runs_in_ort(tiny):
    from edgeseg.artifacts import int8_path
    from edgeseg.calib.qdq_rules import check_tensorrt_rules
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.runtime.segmenter import Segmenter

    card, calib, stats = _stats(tiny)
    art = quantize_tensorrt_form(tiny, card, stats, int8_path(tiny, "qdq"))
    assert art.path.name == "tiny.int8.qdq.onnx"
    model = onnx.load(str(art.path))
    _qdq_pairs_ok(model)
    assert check_tensorrt_rules(model).ok
    concat = next(
        n for n in model.graph.node if n.op_type == "Concat" and len(n.input) == 2 and "Resize" in n.input[0]
    )
    assert all(not i.endswith("DequantizeLinear_Output") and "_dq" not in i for i in concat.input)
    with Segmenter(art.path) as int8, Segmenter(tiny) as fp32:
        assert int8.card.precision == "int8"
        assert int8.card.extra["int8"]["form"] == "tensorrt-qdq"
        frame = cv2.cvtColor(calib.image(0), cv2.COLOR_RGB2BGR)
        assert (int8.infer(frame) == fp32.infer(frame)).mean() > 0.9


def test_tensorrt_form_conv_transpose_is_per_channel_on_axis_1(tmp_path):
    import io

    import torch
    from torch import nn

    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.card import ModelCard, default_palette

    torch.manual_seed(0)
    net = nn.Sequential(
        # conv output straight into a ConvTranspose, as in FCN-8s (score conv -> learned upsampling)
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ConvTranspose2d(8, 4, 2, stride=2),
    ).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        net, torch.zeros(1, 3, H, W), buf, dynamo=False, opset_version=17, input_names=["input"]
    )
    model = onnx.load_from_string(buf.getvalue())
    card = ModelCard(model="up", classes=list("abcd"), palette=default_palette(4), input_size=(H, W))
    path = save_with_card(model, tmp_path / "up.onnx", card)
    stats = calibrate(path, card, open_calibration("synth", card, 4), method="minmax")
    art = quantize_tensorrt_form(path, card, stats, tmp_path / "up.int8.qdq.onnx")
    q = onnx.load(str(art.path))
    _qdq_pairs_ok(q)
    assert any(n.op_type == "ConvTranspose" for n in q.graph.node)


def test_cpu_form_runs_in_ort_and_shares_the_statistics(tiny):
    from edgeseg.artifacts import int8_path
    from edgeseg.calib.quantize import quantize_cpu_form
    from edgeseg.runtime.segmenter import Segmenter

    card, calib, stats = _stats(tiny)
    for fmt in ("qoperator", "qdq"):
        art = quantize_cpu_form(tiny, card, stats, int8_path(tiny, "cpu"), cpu_format=fmt)
        model = onnx.load(str(art.path))
        ops = {n.op_type for n in model.graph.node}
        assert ("QLinearConv" in ops) if fmt == "qoperator" else ("DequantizeLinear" in ops)
        with Segmenter(art.path) as int8, Segmenter(tiny) as fp32:
            assert int8.card.extra["int8"]["calibration"]["key"] == stats.key_hash[:16]
            frame = cv2.cvtColor(calib.image(1), cv2.COLOR_RGB2BGR)
            assert (int8.infer(frame) == fp32.infer(frame)).mean() > 0.9


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    from edgeseg.calib.quantize import load_model

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(EdgesegError, match="not a valid ONNX model"):
        load_model(bad)


# --- the accuracy gate --------------------------------------------------------------------------------
def test_int8_build_on_generated_scenes_stays_within_the_gate(tiny):
    from edgeseg.build import BuildOptions, build

    report = build(tiny, BuildOptions(int8=True, calib_images=8, eval_images=8, max_miou_drop=1.0))
    assert report.failure is None and report.reference == "labels"
    fp32 = report.rows[0]
    assert fp32.precision == "fp32" and fp32.miou > 0.2  # the tiny net really learned something
    for gate in report.gates:
        assert gate.passed and gate.drop_points <= 1.0
        assert gate.artifact.path.is_file()
        assert gate.int8.agreement > 0.9
    forms = sorted(g.form for g in report.gates)
    assert forms == ["cpu", "qdq"]
    assert report.stats is not None and not report.stats.from_cache
    again = build(tiny, BuildOptions(int8=True, calib_images=8, eval_images=8, forms=("cpu",)))
    assert again.stats.from_cache


def test_gate_falls_back_on_an_outlier_layer(tiny_models, tmp_path):
    from edgeseg.build import BuildOptions, build
    from edgeseg.card import ModelCard

    path = tmp_path / "outlier.onnx"
    path.write_bytes(tiny_models["outlier"].read_bytes())
    report = build(
        path, BuildOptions(int8=True, calib_images=8, eval_images=8, calib_method="minmax", max_miou_drop=1.0)
    )
    assert report.failure is None
    # CPU form: the outlier also flows through a QLinearConcat, which the gate can move back to float
    cpu = next(g for g in report.gates if g.form == "cpu")
    assert cpu.attempts[0].drop_points > 1.0 and cpu.passed and cpu.artifact.excluded
    gate = next(g for g in report.gates if g.form == "qdq")
    first, last = gate.attempts[0], gate.attempts[-1]
    assert first.drop_points > 1.0, "the outlier should break plain INT8"
    assert last.passed and last.drop_points < first.drop_points
    assert gate.artifact.excluded and gate.sensitivity
    # the sensitive layers are those reading the outlier channel (down conv, head)
    assert set(gate.artifact.excluded) <= {n for n, _ in gate.sensitivity}
    card = ModelCard.load_json(gate.artifact.path.with_suffix(".card.json"))
    assert card.extra["int8"]["gate"]["excluded_nodes"] == gate.artifact.excluded
    assert card.extra["int8"]["gate"]["passed"] is True
    model = onnx.load(str(gate.artifact.path))
    float_convs = {
        n.name for n in model.graph.node if n.op_type == "Conv" and "DequantizeLinear" not in str(n.input)
    }
    assert float_convs  # excluded layers really run on float weights
    from edgeseg.calib.quantize import load_model

    assert load_model(gate.artifact.path).metadata_props


def test_gate_failure_reports_attempts_and_removes_the_artifact(tiny_models, tmp_path):
    from edgeseg.build import BuildOptions, build
    from edgeseg.calib.gate import GateFailed

    path = tmp_path / "outlier.onnx"
    path.write_bytes(tiny_models["outlier"].read_bytes())
    report = build(
        path,
        BuildOptions(
            int8=True,
            forms=("qdq",),
            calib_images=4,
            eval_images=4,
            calib_method="minmax",
            max_fallback_layers=0,
        ),
    )
    assert isinstance(report.failure, GateFailed) and report.failure.exit_code != 0
    assert "limit" in str(report.failure) and "\n" not in str(report.failure)
    assert not (tmp_path / "outlier.int8.qdq.onnx").exists()
    assert report.to_dict()["passed"] is False


# --- TensorRT calibration cache and the optional ModelOpt placement ------------------------------------
def test_trt_calibration_cache_round_trip(tmp_path):
    from edgeseg.calib.trt_cache import read_trt_cache, scale_of, write_trt_cache

    ranges = {"a": (-2.0, 1.0), "b": (0.0, 6.35), "weird:name": (0.0, 1.0)}
    path = write_trt_cache(ranges, tmp_path / "x.cache")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("TRT-") and len(lines) == 3  # a tensor name with ':' cannot be written
    scales = read_trt_cache(path)
    assert scales["a"] == pytest.approx(2.0 / 127) and scales["b"] == pytest.approx(scale_of(0.0, 6.35))
    (tmp_path / "bad.cache").write_text("TRT-8601-EntropyCalibration2\nx: zz\n")
    with pytest.raises(EdgesegError, match="bad calibration cache"):
        read_trt_cache(tmp_path / "bad.cache")


def test_modelopt_engine_gets_our_ranges_and_exclusions(tiny, monkeypatch):
    """ModelOpt cannot be installed next to our onnx (it pins onnx~=1.21), so a stand-in module records
    the call and, like ModelOpt, writes a Q/DQ ONNX to output_path (made here by the onnxruntime path)."""
    import sys
    import types

    from edgeseg.artifacts import int8_path
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.calib.trt_cache import read_trt_cache, scale_of

    card, calib, stats = _stats(tiny, method="minmax", n=4)
    reference = quantize_tensorrt_form(tiny, card, stats, tiny.with_name("ref.onnx"), engine="onnxruntime")
    seen: dict = {}

    def quantize(**kw):
        seen.update(kw, cache=read_trt_cache(kw["calibration_cache_path"]))
        Path(kw["output_path"]).write_bytes(reference.path.read_bytes())

    fake = types.ModuleType("modelopt.onnx.quantization")
    fake.quantize = quantize
    monkeypatch.setitem(sys.modules, "modelopt", types.ModuleType("modelopt"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx", types.ModuleType("modelopt.onnx"))
    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", fake)

    art = quantize_tensorrt_form(
        tiny, card, stats, int8_path(tiny, "qdq"), engine="modelopt", calib=calib, exclude=["/head/Conv"]
    )
    assert art.details["engine"] == "modelopt"
    assert seen["quantize_mode"] == "int8" and seen["calibration_method"] == "max"
    assert seen["nodes_to_exclude"] == ["/head/Conv"]
    assert seen["calibration_data"].shape == (4, 3, H, W)
    name, (lo, hi) = next(iter(stats.ranges.items()))
    assert seen["cache"][name] == pytest.approx(scale_of(lo, hi))
    assert _card(art.path).extra["int8"]["engine"] == "modelopt"
    with pytest.raises(EdgesegError, match="unknown Q/DQ engine"):
        quantize_tensorrt_form(tiny, card, stats, int8_path(tiny, "qdq"), engine="tensorrt")


def test_downsample_block_add_gets_qdq_on_the_shortcut(tmp_path):
    """Add(conv_main, conv_shortcut): the shortcut (earlier branch) gets Q/DQ so TensorRT fuses the add."""
    import io

    import torch
    from torch import nn

    from edgeseg.calib.activation_ranges import calibrate
    from edgeseg.calib.data import open_calibration
    from edgeseg.calib.qdq_rules import check_tensorrt_rules
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.card import ModelCard, default_palette

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shortcut = nn.Conv2d(3, 8, 1, stride=2)
            self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            s = self.shortcut(x)
            return self.head(torch.relu(self.b(torch.relu(self.a(x))) + s))

    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.onnx.export(
        Block().eval(), torch.zeros(1, 3, H, W), buf, dynamo=False, opset_version=17, input_names=["input"]
    )
    model = onnx.load_from_string(buf.getvalue())
    card = ModelCard(model="blk", classes=list("abcd"), palette=default_palette(4), input_size=(H, W))
    path = save_with_card(model, tmp_path / "blk.onnx", card)
    stats = calibrate(path, card, open_calibration("synth", card, 4), method="minmax")
    art = quantize_tensorrt_form(path, card, stats, tmp_path / "blk.int8.qdq.onnx", engine="onnxruntime")
    q = onnx.load(str(art.path))
    assert check_tensorrt_rules(q).ok and art.details["residual_qdq"] == 1
    producers = {o: n for n in q.graph.node for o in n.output}
    add = next(n for n in q.graph.node if n.op_type == "Add")
    kinds = [producers[i].op_type for i in add.input]
    assert sorted(kinds) == ["Conv", "DequantizeLinear"]
    dq = producers[add.input[kinds.index("DequantizeLinear")]]
    q_node = producers[dq.input[0]]
    assert producers[q_node.input[0]].name == "/shortcut/Conv"


def test_labels_output_model_keeps_argmax_free_of_qdq(tiny, tmp_path):
    """`--output labels` exports end in ArgMax: neither INT8 form may put Q/DQ beside it."""
    from onnx import TensorProto, helper

    from edgeseg.calib.quantize import quantize_cpu_form, quantize_tensorrt_form
    from edgeseg.runtime.segmenter import Segmenter

    model = onnx.load(str(tiny))
    logits = model.graph.output[0].name
    model.graph.node.append(
        helper.make_node("ArgMax", [logits], ["labels"], axis=1, keepdims=0, name="argmax")
    )
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("labels", TensorProto.INT64, [1, H, W]))
    card = _card(tiny).replace(output="labels")
    for prop in model.metadata_props:
        if prop.key == "edgeseg.output":
            prop.value = '"labels"'
    path = tmp_path / "labels.onnx"
    onnx.save(model, str(path))
    card, calib, stats = _stats(path, method="minmax", n=4)
    qdq = quantize_tensorrt_form(path, card, stats, tmp_path / "labels.int8.qdq.onnx", engine="onnxruntime")
    _qdq_pairs_ok(onnx.load(str(qdq.path)))
    cpu = quantize_cpu_form(path, card, stats, tmp_path / "labels.int8.cpu.onnx")
    frame = cv2.cvtColor(calib.image(0), cv2.COLOR_RGB2BGR)
    with Segmenter(path) as fp32, Segmenter(qdq.path) as a, Segmenter(cpu.path) as b:
        ref = fp32.infer(frame)
        assert (a.infer(frame) == ref).mean() > 0.9 and (b.infer(frame) == ref).mean() > 0.9


def test_tensorrt_form_carries_fp16_float_parts_and_fp32_io(tiny, monkeypatch, tmp_path):
    """Issue 14 point 8: built strongly typed (TensorRT 10/11), a Q/DQ file whose float parts are FP32 runs
    Resize, Concat and the rest in FP32. The TensorRT form carries them in FP16 (ModelOpt's
    high_precision_dtype="fp16"), keeps FP32 I/O, still runs on ONNX Runtime for the gate, and is
    widened back for TensorRT 8.x, whose parser reads Q/DQ scales as FP32."""
    from fake_tensorrt.install import install_trt
    from onnx import TensorProto

    from edgeseg.artifacts import int8_path
    from edgeseg.calib.quantize import quantize_tensorrt_form
    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions
    from edgeseg.runtime.segmenter import Segmenter

    card, calib, stats = _stats(tiny)
    art = quantize_tensorrt_form(tiny, card, stats, int8_path(tiny, "qdq"))
    model = onnx.load(str(art.path))
    io = [*model.graph.input, *model.graph.output]
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in io)
    trt = install_trt(monkeypatch, "10.3.0")
    build_engine(art.path, tmp_path / "q10.engine", EngineOptions(precision="int8"))
    assert trt.last_build["fp32_layers"] == []  # nothing left in FP32 on a strongly typed build
    assert art.details["float_parts"] == "fp16"
    trt = install_trt(monkeypatch, "8.6.1")
    r = build_engine(art.path, tmp_path / "q8.engine", EngineOptions(precision="int8"))
    assert r.plan.builder_flags == ["INT8", "FP16"]
    with Segmenter(art.path) as int8, Segmenter(tiny) as fp32:  # what the gate runs
        frame = cv2.cvtColor(calib.image(0), cv2.COLOR_RGB2BGR)
        assert (int8.infer(frame) == fp32.infer(frame)).mean() > 0.9


def test_fp16_qdq_graph_keeps_its_float_bias_in_onnx_runtime(tmp_path):
    """ONNX Runtime's WeightBiasQuantization turns a Conv's float bias into int32 at input_scale *
    weight_scale; with the FP16 scales of the TensorRT-form file that product underflows in FP16 and
    the bias vanishes (the demo model lost 11.6 mIoU points). The backend turns that rewrite off, so
    the gate measures what the file says: here, outputs equal to the same graph with FP32 float parts."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.card import ModelCard, default_palette
    from edgeseg.export.fp16 import convert_qdq_fp16
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend, has_fp16_qdq

    rng = np.random.default_rng(0)
    w = (rng.normal(size=(2, 3, 3, 3)) * 0.005).astype(np.float32)  # small weights: scales ~1e-4
    w_scale = (np.abs(w).reshape(2, -1).max(1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    inits = {
        "xs": np.array(0.02, np.float32), "xz": np.array(0, np.int8), "wq": w_q, "ws": w_scale,
        "wz": np.zeros(2, np.int8), "b": np.array([0.3, -0.3], np.float32), "ys": np.array(0.01, np.float32),
        "yz": np.array(0, np.int8),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "ys", "yz"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    card = ModelCard(
        model="m", classes=["a", "b"], palette=default_palette(2), input_size=(8, 8), precision="int8"
    )
    paths = {}
    for name, model in (("fp32", fp32), ("fp16", convert_qdq_fp16(fp32))):
        paths[name] = tmp_path / f"{name}.onnx"
        onnx.save(model, paths[name])
    assert has_fp16_qdq(paths["fp16"]) and not has_fp16_qdq(paths["fp32"])
    x = rng.uniform(0, 2, (1, 3, 8, 8)).astype(np.float32)
    out = {k: OnnxRuntimeBackend(p, BackendOptions(card=card)).run(x) for k, p in paths.items()}
    assert out["fp32"].max() > 0.25  # the bias shows in the output
    np.testing.assert_allclose(out["fp16"], out["fp32"], atol=0.02)


def test_fp16_float_parts_convert_ops_whose_form_changed_with_the_opset(tmp_path):
    """FP16 Q/DQ scales need opset 19, and ReduceMean (axes: attribute -> input) and Split (num_outputs)
    changed form on the way: relabelling the opset alone gave a graph the ONNX checker and ONNX Runtime
    refuse (any squeeze-excite block). Resize's scales must stay FLOAT whatever the data's type. Up to
    19 and back down to the export's 17 (TensorRT 8.x), both graphs pass the full check and compute
    what the FP32 original computes, on ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgeseg.export.fp16 import convert_qdq_fp16, widen_to_fp32

    inits = {
        "s": np.array(0.02, np.float32),
        "z": np.array(0, np.int8),
        "scales": np.array([1, 1, 2, 2], np.float32),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"]),
        helper.make_node("ReduceMean", ["x"], ["pooled"], axes=[2, 3], keepdims=1),  # squeeze-excite
        helper.make_node("Sigmoid", ["pooled"], ["gate"]),
        helper.make_node("Mul", ["x", "gate"], ["excited"]),
        helper.make_node("Split", ["excited"], ["left", "right"], axis=-3),  # torch.chunk(2, dim=1)
        helper.make_node("Add", ["left", "right"], ["summed"]),
        helper.make_node("Resize", ["summed", "", "scales"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 16, 16])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )  # fmt: skip
    fp32 = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(fp32, full_check=True)
    x = np.random.default_rng(0).uniform(0, 2, (1, 4, 8, 8)).astype(np.float32)

    def run(model):
        onnx.checker.check_model(model, full_check=True)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    reference = run(fp32)
    fp16 = convert_qdq_fp16(fp32)
    assert fp16.opset_import[0].version == 19
    assert [t.data_type for t in fp16.graph.initializer if "scales" in t.name] == [TensorProto.FLOAT]
    np.testing.assert_allclose(run(fp16), reference, atol=0.02)
    down = widen_to_fp32(convert_qdq_fp16(fp32), opset=17)
    assert [(e.domain, e.version) for e in down.opset_import] == [("", 17)]
    split = next(n for n in down.graph.node if n.op_type == "Split")
    assert len(split.input) == 2 and not any(a.name == "num_outputs" for a in split.attribute)
    np.testing.assert_allclose(run(down), reference, atol=0.02)
