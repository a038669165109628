"""Dynamic height/width is its own option with a stated inference size (issue 25 §3): a `--dynamic-hw`
export's card states the size frames are resized to (the export size unless `--input-size` says), the
runtime resizes every frame to it on ONNX Runtime and OpenVINO as it does for a fixed export, and runs
frames at their own size only when asked (`--native-size`); `run` says which size frames ran at."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from test_export import TinySeg, frames, make_card  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.errors import EdgesegError  # noqa: E402
from edgeseg.export.onnx_export import export_onnx  # noqa: E402
from edgeseg.preprocess import NATIVE, at_inference_size  # noqa: E402
from edgeseg.runtime.backends import BackendOptions  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402

ODD = (75, 113)  # a frame size that is neither the stated size nor a multiple of the stride
SIZE = (48, 64)  # the export size, the stated inference size by default
BACKENDS = ["onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """The same weights exported three ways: fixed, `--dynamic --dynamic-hw`, and `--dynamic-hw
    --input-size 64x96` (a stated size other than the trace size)."""
    torch.manual_seed(0)
    net = TinySeg().eval()
    root = tmp_path_factory.mktemp("dynhw")
    out = {}
    for name, kw in {
        "fixed": {},
        "dynamic": {"dynamic": True, "dynamic_hw": True},
        "stated": {"dynamic_hw": True, "inference_size": (64, 96)},
    }.items():
        res = export_onnx(
            net, root / name / f"{name}.onnx", make_card(SIZE), parity_frames=frames(2, SIZE), **kw
        )
        assert res.parity is not None and res.parity.passed
        out[name] = res.path
    return out


def _segmenter(path: Path, backend: str, card=None) -> Segmenter:
    if backend == "openvino":
        pytest.importorskip("openvino")
    return Segmenter(path, BackendOptions(backend=backend, card=card))


def _spy(seg: Segmenter, monkeypatch) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    run = seg.backend.run
    monkeypatch.setattr(seg.backend, "run", lambda b: shapes.append(b.shape) or run(b))
    return shapes


def test_a_dynamic_hw_export_states_its_inference_size(exports):
    dyn = Segmenter(exports["dynamic"]).card
    assert dyn.dynamic and dyn.dynamic_batch and not dyn.native_size and dyn.input_size == SIZE
    stated = Segmenter(exports["stated"]).card
    assert stated.dynamic and not stated.dynamic_batch and stated.input_size == (64, 96)
    with pytest.raises(EdgesegError, match="needs dynamic_hw"):
        export_onnx(
            TinySeg().eval(), exports["fixed"].parent / "x.onnx", make_card(SIZE), inference_size=(64, 96)
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_hw_files_run_odd_frames_at_the_stated_size_like_a_fixed_one(exports, backend, monkeypatch):
    """Real ONNX Runtime and OpenVINO: a 75x113 frame through the dynamic export runs at 48x64 (the
    card's stated size) and predicts what the fixed export of the same weights predicts; the export
    stated at 64x96 runs there."""
    frame = frames(1, ODD, seed=3)[0]
    fixed = _segmenter(exports["fixed"], backend)
    dyn = _segmenter(exports["dynamic"], backend)
    shapes = _spy(dyn, monkeypatch)
    want, got = fixed.infer(frame), dyn.infer(frame)
    assert shapes == [(1, 3, *SIZE)] and got.shape == ODD
    assert (got == want).mean() >= 0.999
    stated = _segmenter(exports["stated"], backend)
    shapes = _spy(stated, monkeypatch)
    assert stated.infer(frame).shape == ODD and shapes == [(1, 3, 64, 96)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_native_size_and_another_size_are_asked_for(exports, backend, monkeypatch):
    """`--native-size`: the frame at its own size padded to the stride (96x128 for 75x113), the class
    map cropped back; `--input-size 96x128`: every frame resized to that; both only on dynamic H/W."""
    frame = frames(1, ODD, seed=4)[0]
    card = Segmenter(exports["dynamic"]).card
    native = _segmenter(exports["dynamic"], backend, at_inference_size(card, NATIVE))
    shapes = _spy(native, monkeypatch)
    assert native.infer(frame).shape == ODD and shapes == [(1, 3, 96, 128)]
    bigger = _segmenter(exports["dynamic"], backend, at_inference_size(card, (96, 128)))
    shapes = _spy(bigger, monkeypatch)
    assert bigger.infer(cv2.resize(frame, (200, 150))).shape == (150, 200) and shapes == [(1, 3, 96, 128)]
    fixed = Segmenter(exports["fixed"]).card
    with pytest.raises(EdgesegError, match="--native-size needs a model exported with --dynamic-hw"):
        at_inference_size(fixed, NATIVE)


def test_several_streams_of_different_sizes_batch_at_the_stated_size(exports, monkeypatch):
    """Two streams of different odd sizes through the dynamic-batch, dynamic-H/W export: resized to
    the one stated size, their frames batch together (at native size they could not)."""
    from test_multistream import Frames

    from edgeseg.runtime.multistream import MultiStream

    seg = Segmenter(exports["dynamic"])
    calls: list[tuple[int, ...]] = []
    submit = seg.backend.submit
    monkeypatch.setattr(seg.backend, "submit", lambda b: calls.append(b.shape) or submit(b))
    sources = [Frames(4, size=ODD, seed=1, name="a"), Frames(4, size=(90, 61), seed=2, name="b")]
    results = list(MultiStream(seg, sources).stream())
    assert len(results) == 8 and all(s[1:] == (3, *SIZE) for s in calls)
    assert {r.class_map.shape for r in results} == {ODD, (90, 61)}
    seg.close()


runner = CliRunner()


def test_run_reports_which_size_frames_run_at(exports, tmp_path):
    video = tmp_path / "odd"  # PNGs at an odd size (a video codec may round odd sides)
    video.mkdir()
    for i, frame in enumerate(frames(3, ODD, seed=5)):
        cv2.imwrite(str(video / f"f{i}.png"), frame)
    model = str(exports["dynamic"])

    def run(*extra: str) -> dict:
        r = runner.invoke(app, ["run", "--model", model, "--images", str(video), "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["model"]["inference_size"]

    assert run()["size"] == list(SIZE)
    assert run("--input-size", "64x96")["size"] == [64, 96]
    native = run("--native-size")
    assert native["size"] == NATIVE and "its own size" in native["how"]
    r = runner.invoke(app, ["run", "--model", model, "--images", str(video), "--frames", "2"])
    assert r.exit_code == 0 and f"frames: every frame resized to {SIZE[0]}x{SIZE[1]}" in r.output
    fixed = runner.invoke(
        app, ["run", "--model", str(exports["fixed"]), "--images", str(video), "--native-size"]
    )
    assert fixed.exit_code == 2 and "--native-size needs a model exported with --dynamic-hw" in fixed.output
    both = runner.invoke(
        app, ["run", "--model", model, "--images", str(video), "--native-size", "--input-size", "64x96"]
    )
    assert both.exit_code == 2 and "give one" in both.output


def test_backend_options_card_carries_the_size(exports):
    """The size a run asks for travels in the card the backend is opened with (RunPlan does this), so
    every worker a backend spawns runs at it too."""
    card = at_inference_size(Segmenter(exports["dynamic"]).card, (64, 96))
    seg = Segmenter(exports["dynamic"], BackendOptions(card=card))
    other = Segmenter(seg.spawn_backend())
    assert seg.card.input_size == other.card.input_size == (64, 96)


def test_eval_scores_at_the_size_asked_for(exports, tmp_path):
    """`edgeseg eval` takes the same two options: accuracy follows the size, so the size a model is
    scored at is the one it will run at, and the JSON says which."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    (data / "classes.txt").write_text("".join(f"class{i}\n" for i in range(5)))  # make_card's five
    for i, frame in enumerate(frames(2, ODD, seed=7)):
        cv2.imwrite(str(data / "images" / f"f{i}.png"), frame)
        cv2.imwrite(str(data / "masks" / f"f{i}.png"), (frame[:, :, 0] % 5).astype("uint8"))
    model = str(exports["dynamic"])

    def scored(*extra: str) -> dict:
        r = runner.invoke(app, ["eval", model, "--data", str(data), "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)["backend"]["inference_size"]

    assert scored()["size"] == list(SIZE)
    assert scored("--input-size", "64x96")["size"] == [64, 96]
    assert scored("--native-size")["size"] == NATIVE
    text = runner.invoke(app, ["eval", model, "--data", str(data), "--input-size", "64x96"])
    assert text.exit_code == 0 and "images: every frame resized to 64x96" in " ".join(text.output.split())
    fixed = runner.invoke(app, ["eval", str(exports["fixed"]), "--data", str(data), "--native-size"])
    assert fixed.exit_code == 2 and "--native-size needs a model exported with --dynamic-hw" in fixed.output


# --- one field for every way in: BackendOptions.input_size -----------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_segmenter_and_its_workers_run_at_the_size_its_options_ask(exports, backend, monkeypatch):
    """`Segmenter(path, BackendOptions(input_size=...))`: the size is applied to the card where the file
    opens, so the caller never reads and edits a card, and every worker it spawns runs there too."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    frame = frames(1, ODD, seed=6)[0]
    seg = Segmenter(exports["dynamic"], BackendOptions(backend=backend, input_size=(64, 96)))
    worker = Segmenter(seg.spawn_backend())
    assert seg.card.input_size == worker.card.input_size == (64, 96) and not seg.card.native_size
    shapes = _spy(worker, monkeypatch)
    assert worker.infer(frame).shape == ODD and shapes == [(1, 3, 64, 96)]
    native = Segmenter(exports["dynamic"], BackendOptions(backend=backend, input_size=NATIVE))
    shapes = _spy(native, monkeypatch)
    assert native.infer(frame).shape == ODD and shapes == [(1, 3, 96, 128)]
    with pytest.raises(EdgesegError, match="--input-size 64x96 needs a model exported with --dynamic-hw"):
        Segmenter(exports["fixed"], BackendOptions(backend=backend, input_size=(64, 96)))
    for seg_ in (worker, seg, native):
        seg_.close()


def test_backend_options_check_the_size_once():
    assert BackendOptions(input_size=[64, 96]).input_size == (64, 96)  # as JSON gives it
    for bad in [(4, 4), (64,), "big", (64.0, 96), (True, 96)]:
        with pytest.raises(EdgesegError, match="--input-size must be"):
            BackendOptions(input_size=bad)


def test_stream_takes_the_size_in_its_options(exports, tmp_path):
    """`stream(options=BackendOptions(input_size=...))`, the Python twin of `run --input-size`; an
    open Segmenter keeps the size it was opened with."""
    from edgeseg.runtime import stream

    folder = tmp_path / "odd"
    folder.mkdir()
    for i, frame in enumerate(frames(2, ODD, seed=8)):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    got = list(stream(exports["dynamic"], options=BackendOptions(input_size=NATIVE), images=str(folder)))
    assert len(got) == 2 and all(r.class_map.shape == ODD for r in got)
    seg = Segmenter(exports["dynamic"])
    with pytest.raises(EdgesegError, match="an open Segmenter runs at the size it was opened with"):
        list(stream(seg, options=BackendOptions(input_size=(64, 96)), images=str(folder)))
    seg.close()


def test_bench_runs_every_row_at_the_size_asked_for(exports, tmp_path):
    """`edgeseg bench --input-size`: every file's row (ONNX Runtime, OpenVINO) and the eager row are
    opened at that size; a fixed model refuses it in one line."""
    from edgeseg import bench

    cfg = bench.BenchConfig(data="synth:2", input_size=(64, 96))
    for art in bench.discover(exports["dynamic"], None):
        with Segmenter(art.path, bench.options_for(art, cfg)) as seg:
            assert seg.card.input_size == (64, 96), art.label
    eager = bench.Artifact(
        "PyTorch eager", exports["dynamic"], "torch", "fp32", Segmenter(exports["fixed"]).card
    )
    assert bench.options_for(eager, cfg).card.input_size == (64, 96)
    args = ["bench", str(exports["dynamic"]), "--data", "synth:2", "--iterations", "1", "--warmup", "0",
            "--input-size", "64x96", "--json"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["inference_size"]["size"] == [64, 96]
    fixed = runner.invoke(app, ["bench", str(exports["fixed"]), *args[2:]])
    assert fixed.exit_code == 2 and "needs a model exported with --dynamic-hw" in fixed.output, fixed.output


def test_a_card_older_than_the_split_runs_at_its_size_and_the_report_says_what_changed(exports, tmp_path):
    """A card written before edgeseg kept the axes apart has `dynamic: true` and no `dynamic_batch`: it
    meant N, H and W, and edgeseg then ran each frame at its own size. Such a file now runs frames at
    its card's size like any --dynamic-hw export, and the report says what it did before and how to
    get it (--native-size); writing the card back drops the mark (it then has dynamic_batch)."""
    import onnx

    from edgeseg.card import ModelCard

    old = tmp_path / "old.onnx"
    proto = onnx.load(str(exports["dynamic"]))
    props = [
        (p.key, p.value)
        for p in proto.metadata_props
        if p.key not in ("edgeseg.dynamic_batch", "edgeseg.native_size")
    ]
    del proto.metadata_props[:]
    for key, value in props:
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.save(proto, str(old))
    card = Segmenter(old).card
    assert card.dynamic and card.dynamic_batch and card.predates_dynamic_hw and card.input_size == SIZE
    assert "predates_dynamic_hw" not in card.to_dict()
    assert not ModelCard.from_dict(card.to_dict()).predates_dynamic_hw
    assert not Segmenter(exports["dynamic"]).card.predates_dynamic_hw
    images = tmp_path / "odd"
    images.mkdir()
    cv2.imwrite(str(images / "f0.png"), frames(1, ODD, seed=9)[0])
    r = runner.invoke(app, ["run", "--model", str(old), "--images", str(images), "--json"])
    assert r.exit_code == 0, r.output
    sized = json.loads(r.stdout)["model"]["inference_size"]
    assert sized["size"] == list(SIZE) and "older than --dynamic-hw" in sized["how"]
    assert "as --native-size does" in sized["how"]
    r = runner.invoke(app, ["run", "--model", str(old), "--images", str(images)])
    assert r.exit_code == 0 and "its card is older than --dynamic-hw" in " ".join(r.output.split())
