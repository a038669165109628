"""Core, torch-free pieces: errors, lazy imports, cards, preprocessing, metrics, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseg.card import ModelCard, default_palette
from edgeseg.errors import EdgesegError, MissingDependencyError
from edgeseg.lazy import require
from edgeseg.metrics import ConfusionMatrix
from edgeseg.preprocess import Preprocessor, fit, labels_to_frame


def test_require_missing_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeseg\[tensorrt\]'"):
        require("tensorrt")


def test_runtime_import_pulls_no_torch():
    code = "import sys, edgeseg.runtime, edgeseg.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','torchvision','onnxsim')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_works_without_torch_imported():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom edgeseg.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_card_roundtrips_through_metadata_and_json(tmp_path):
    card = ModelCard(model="fcn8s", classes=["a", "b", "c"], palette=default_palette(3), input_size=(64, 96))
    props = card.to_metadata_props()
    assert all(isinstance(v, str) for v in props.values())
    assert ModelCard.from_metadata_props(props) == card
    card.save_json(tmp_path / "c.json")
    assert ModelCard.load_json(tmp_path / "c.json") == card
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EdgesegError, match="not valid JSON"):
        ModelCard.load_json(tmp_path / "bad.json")
    with pytest.raises(EdgesegError, match="no edgeseg metadata"):
        ModelCard.from_metadata_props({"other": "1"})


def test_default_palette_matches_voc():
    pal = default_palette(21)
    assert pal[0] == (0, 0, 0) and pal[1] == (128, 0, 0) and pal[15] == (192, 128, 128)


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_geometry_roundtrip_odd_sizes(mode):
    frame = np.zeros((250, 333, 3), np.uint8)
    labels_in = np.zeros((250, 333), np.uint8)
    labels_in[:, 200:] = 2
    fitted, geom = fit(labels_in, (64, 96), mode, interpolation=0)
    assert fitted.shape == (64, 96)
    back = labels_to_frame(fitted, geom)
    assert back.shape == frame.shape[:2]
    # class boundary survives the round trip within a couple of pixels
    assert abs(int(np.argmax(back[0] == 2)) - 200) <= 4


def test_preprocessor_normalizes_and_swaps_channels():
    card = ModelCard(model="m", classes=["a"], palette=[(0, 0, 0)], input_size=(4, 4))
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[..., 2] = 255  # red in BGR
    x, geom = Preprocessor(card)(frame)
    assert x.shape == (1, 3, 4, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], (1.0 - 0.485) / 0.229, rtol=1e-5)  # R channel first
    np.testing.assert_allclose(x[0, 2], (0.0 - 0.406) / 0.225, rtol=1e-5)
    assert geom.frame_hw == (8, 8)


def test_dynamic_card_resizes_to_its_stated_size_and_pads_only_when_native():
    """Dynamic height/width is not a reason to run frames at their own size: a dynamic card resizes
    every frame to its stated inference size, as a fixed one does; `native_size` (asked for) pads the
    frame to the stride instead."""
    card = ModelCard(model="m", classes=["a"], palette=[(0, 0, 0)], input_size=(128, 256), dynamic=True)
    frame = np.zeros((250, 333, 3), np.uint8)
    x, geom = Preprocessor(card)(frame)
    assert x.shape[2:] == (128, 256) and geom.content_hw == (128, 256)
    assert labels_to_frame(np.zeros((128, 256), np.uint8), geom).shape == (250, 333)
    x, geom = Preprocessor(card.replace(native_size=True))(frame)
    assert x.shape[2:] == (256, 352) and geom.content_hw == (250, 333)
    assert labels_to_frame(np.zeros((256, 352), np.uint8), geom).shape == (250, 333)


def test_inference_size_rules():
    """`at_inference_size`: another size or NATIVE only for dynamic height/width; a fixed card keeps
    its one size (asking for it again is fine), and the report says which size frames run at."""
    from edgeseg.preprocess import NATIVE, at_inference_size, inference_size

    fixed = ModelCard(model="m", classes=["a"], palette=[(0, 0, 0)], input_size=(128, 256))
    dyn = fixed.replace(dynamic=True)
    assert at_inference_size(fixed, None) is fixed and at_inference_size(fixed, (128, 256)) is fixed
    with pytest.raises(EdgesegError, match="--input-size 96x192 needs a model exported with --dynamic-hw"):
        at_inference_size(fixed, (96, 192))
    with pytest.raises(EdgesegError, match="--native-size needs a model exported with --dynamic-hw"):
        at_inference_size(fixed, NATIVE)
    assert at_inference_size(dyn, (96, 192)).input_size == (96, 192)
    assert at_inference_size(dyn, NATIVE).native_size
    with pytest.raises(EdgesegError, match="--input-size sides must be"):
        at_inference_size(dyn, (4, 192))
    assert inference_size(dyn)["size"] == [128, 256] and "dynamic" in inference_size(dyn)["how"]
    assert inference_size(fixed)["size"] == [128, 256] and "fixed size" in inference_size(fixed)["how"]
    assert inference_size(at_inference_size(dyn, NATIVE))["size"] == NATIVE
    with pytest.raises(EdgesegError, match="native_size must be false"):  # the schema: never on fixed H/W
        ModelCard.from_dict({**fixed.to_dict(), "native_size": True})


def test_confusion_matrix_hand_computed():
    cm = ConfusionMatrix(3)
    target = np.array([[0, 0, 1, 1], [1, 255, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 0]])
    cm.update(pred, target)
    # rows gt, cols pred: gt0: p0,p1 ; gt1: p1,p1,p0 ; gt2: p2,p0 ; ignore dropped
    np.testing.assert_array_equal(cm.matrix, [[1, 1, 0], [1, 2, 0], [1, 0, 1]])
    m = cm.compute()
    iou = [1 / (2 + 3 - 1), 2 / (3 + 3 - 2), 1 / (2 + 1 - 1)]
    np.testing.assert_allclose(m.iou, iou)
    assert m.miou == pytest.approx(np.mean(iou))
    assert m.pixel_accuracy == pytest.approx(4 / 7)
    assert m.mean_class_accuracy == pytest.approx(np.mean([1 / 2, 2 / 3, 1 / 2]))


def test_absent_classes_excluded_from_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1, 1]), np.array([0, 1, 0]))
    m = cm.compute()
    assert m.absent == [2, 3]
    assert m.miou == pytest.approx(np.mean([1 / 2, 1 / 2]))
    assert m.to_dict(["a", "b", "c", "d"])["absent_classes"] == ["c", "d"]


def test_confusion_rejects_out_of_range_labels():
    cm = ConfusionMatrix(2)
    with pytest.raises(EdgesegError, match="out of range"):
        cm.update(np.array([0]), np.array([5]))
    with pytest.raises(EdgesegError, match="shape"):
        cm.update(np.zeros(2), np.zeros(3))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    from edgeseg.atomic import atomic_open, write_json

    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("partial")
        raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_segmenter_on_onnx_returns_frame_sized_labels(tiny_onnx):
    from edgeseg.runtime import Segmenter

    seg = Segmenter(tiny_onnx(num_classes=4, size=(32, 48)))
    frame = np.random.default_rng(1).integers(0, 255, (61, 77, 3), dtype=np.uint8)
    labels, logits = seg.infer(frame, return_logits=True)
    assert labels.shape == (61, 77) and labels.dtype == np.uint8
    assert logits.shape == (4, 32, 48)
    assert labels.max() < 4
    assert seg.overlay(frame, labels).shape == frame.shape


def test_corrupt_onnx_is_one_line_error(tmp_path):
    from edgeseg.runtime import Segmenter

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    # ONNX Runtime's words, or the card reader's before OpenVINO (the CPU rule's choice) reads it
    with pytest.raises(EdgesegError, match="cannot load ONNX model|is not a valid ONNX model"):
        Segmenter(bad)
    with pytest.raises(EdgesegError, match="not found"):
        Segmenter(tmp_path / "missing.onnx")
    with pytest.raises(EdgesegError, match="don't know how to run"):
        (tmp_path / "x.txt").write_text("x")
        Segmenter(tmp_path / "x.txt")


def test_checkpoint_errors_are_one_line(tmp_path):
    pytest.importorskip("torch")
    import pickle

    from edgeseg.checkpoint import load_checkpoint

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage junk data")
    with pytest.raises(EdgesegError, match="corrupt or not a PyTorch file") as info:
        load_checkpoint(junk)
    assert "\n" not in str(info.value)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"a": Evil()}, protocol=2))
    with pytest.raises(EdgesegError, match="not a plain weights file") as info:
        load_checkpoint(evil)
    assert "weights_only" not in str(info.value)  # never the advice that would run its code
    with pytest.raises(EdgesegError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_cli_error_keeps_square_brackets(tmp_path):
    """Messages naming extras (edgeseg[tensorrt]) must not be eaten as rich markup."""
    import json

    from typer.testing import CliRunner

    from edgeseg.artifacts import sidecar_path
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.cli import app

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    from edgeseg.data.synth import SYNTH_CLASSES

    card = ModelCard(model="m", classes=list(SYNTH_CLASSES), palette=default_palette(len(SYNTH_CLASSES)))
    sidecar_path(engine).write_text(json.dumps({"card": card.to_dict()}))
    r = CliRunner().invoke(app, ["run", "--model", str(engine), "--frames", "1"])
    assert r.exit_code == 2
    assert "edgeseg[tensorrt]" in r.output


def test_normalizer_lookup_matches_the_formula_for_every_level_and_order():
    from edgeseg.preprocess import Normalizer

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack([levels, levels[::-1], np.roll(levels, 7)], axis=-1).reshape(16, 16, 3)
    want = (image.transpose(2, 0, 1) / 255.0 - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    norm = Normalizer(mean, std)
    out = norm(image[:, ::-1])  # a strided view is accepted
    assert out.dtype == np.float32 and out.shape == (3, 16, 16) and out.flags.c_contiguous
    np.testing.assert_allclose(out, want[:, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(norm(image[:, :, ::-1].copy(), swap_rb=True), want, atol=1e-6)
    with pytest.raises(EdgesegError, match="uint8"):
        norm(image.astype(np.float32))


def test_help_shows_no_type_for_flags():
    """On/off flags take no value: `--json <bool>` in the help would suggest `--json true`."""
    from typer.testing import CliRunner

    from edgeseg.cli import app

    runner = CliRunner()
    commands = [
        [],
        ["data"],
        ["data", "synth"],
        *[[c] for c in ("models", "train", "eval", "export", "build", "run", "bench", "demo")],
    ]
    for words in commands:
        out = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "120"}).output
        assert "Show this message and exit" in out and "<bool>" not in out, words
        # one way of writing defaults: Typer's [default: ...], never a hand-written "(default: ...)"
        assert "(default" not in out and "default model:" not in out, words


def test_help_names_arguments_as_the_texts_do_and_plain_defaults_plainly():
    """Usage lines say MODEL / [MODEL] as the help texts do (Typer wrote {model} and [model]), and a
    default that is a value reads [default: 30] like Typer's own [default: 0], not [default: (30)]."""
    import re

    from typer.testing import CliRunner

    from edgeseg.cli import app

    runner = CliRunner()
    usage = {}
    for words in (["export"], ["bench"], ["train"], ["data", "preview"], ["card"], ["eval"]):
        out = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "120"}).output
        usage[" ".join(words)] = next(ln.strip() for ln in out.splitlines() if "Usage:" in ln)
        assert not re.search(r"\[default: \([\w.+-]+\)\]", out), (words, out)
    assert usage["export"] == "Usage: edgeseg export [OPTIONS] MODEL"
    assert usage["bench"] == "Usage: edgeseg bench [OPTIONS] [MODEL]"
    assert usage["data preview"] == "Usage: edgeseg data preview [OPTIONS] PATH OUT"
    train = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "120"}).output
    assert "[default: 30]" in train and "[default: sgd]" in train
    assert (
        "[default: (the newest export)]"
        in runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "120"}).output
    )
    missing = runner.invoke(app, ["export"])
    assert missing.exit_code == 2 and "MODEL" in missing.output


def test_machine_names_the_vector_isa_cpu_figures_depend_on():
    from pathlib import Path

    from edgeseg import machine

    isa = machine.cpu_vector_isa()
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    if "avx512_vnni" in flags:
        assert isa == "AVX-512 VNNI"
    elif " avx2" in flags:
        assert isa.startswith("AVX")
    assert f"({isa})" in machine.summary(2) and machine.summary(2).endswith("; 2 threads")


def test_variants_beside_an_export_are_its_own_not_a_namesakes(tmp_path):
    from edgeseg.artifacts import variants_beside

    names = ["fcn8s.onnx", "fcn8s.fp16.onnx", "fcn8s.int8.cpu.onnx", "fcn8s.fp16.engine", "fcn8s.int8-qdq.engine",
             "fcn8s_v2.onnx", "fcn8s_v2.fp16.onnx", "fcn8s_v2.fp16.engine", "fcn8s.int8.sensitivity.onnx"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in variants_beside(tmp_path / "fcn8s.onnx")] == [
        "fcn8s.fp16.onnx", "fcn8s.int8.cpu.onnx", "fcn8s.fp16.engine", "fcn8s.int8-qdq.engine",
    ]  # fmt: skip


def test_first_line_cuts_exceptions_and_library_texts():
    """One helper for one-line errors (edgeseg.errors.first_line): an exception or a library's log
    text (TensorRT's logger) cut to its first line; an empty exception gives its type, empty text ""."""
    from edgeseg.errors import first_line

    assert first_line(RuntimeError("parse failed\n  at node 3\n")) == "parse failed"
    assert first_line(ValueError()) == "ValueError"
    assert (
        first_line("  [E] engine deserialization failed\nassertion ...")
        == "[E] engine deserialization failed"
    )
    assert first_line("") == "" and first_line("\n \n") == ""


def test_a_miou_drop_is_in_points_and_every_miou_a_fraction():
    from edgeseg.metrics import drop_points

    assert drop_points(0.869, 0.859) == pytest.approx(1.0)  # the gate's 1.0-point limit
    assert drop_points(0.5, 0.6) == pytest.approx(-10.0)
