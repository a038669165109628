"""The bad-input corpus: what a new user, a typo or a broken robot hands every command (files,
devices, flags, disks). Each case must end with a non-zero exit code from `ExitCode`, exactly one
line on stderr, no traceback, and no file written, half-written or replaced anywhere the command
could reach (the inputs, the case's folder, the workspace, a full disk).

Cases needing root (a pre-filled tmpfs, a /dev/full-style device made with mknod) are skipped
elsewhere; CI runs as root. The live-source cases against real stream servers that are killed,
frozen and started late are in test_reliability_live.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import socket
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx_models import card_of, save_with_card, tiny_model
from test_runtime import write_images, write_video
from tmpfs import tmpfs_at
from typer.testing import CliRunner

from edgeseg.cli import app

runner = CliRunner()
BAD, SOURCE_LOST, OUTPUT = 2, 5, 6


class Evil:
    """Unpickling this would run code: the corpus's malicious checkpoint."""

    def __reduce__(self):
        return (os.system, ("echo PWNED",))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every bad (and a few good) input files, made once; no case may change any of them."""
    import cv2
    import onnx

    d = tmp_path_factory.mktemp("corpus")
    _tiny(d / "tiny.onnx", 8)
    _tiny(d / "tiny3.onnx", 3)
    plain = onnx.load(d / "tiny.onnx")
    del plain.metadata_props[:]
    onnx.save(plain, d / "nocard.onnx")
    (d / "broken.onnx").write_bytes(b"\x08\x07 not a protobuf" * 40)
    (d / "model.txt").write_text("hello")
    (d / "m.engine").write_bytes(b"serialized engine from another machine")
    (d / "card-missing-keys.json").write_text("{}")
    (d / "card-bad.json").write_text("{not json")
    card = card_of(8, (32, 64))
    card.save_json(d / "card.json")
    (d / "junk.mp4").write_bytes(b"\x00garbage" * 200)
    (d / "empty.mp4").write_bytes(b"")
    write_video(d / "clip.avi", 30, size=(48, 64))
    data = (d / "clip.avi").read_bytes()
    (d / "truncated.avi").write_bytes(data[: int(len(data) * 0.6)])
    (d / "clip.avi").unlink()
    (d / "no-images").mkdir()
    (d / "no-images" / "notes.txt").write_text("no pictures here")
    (d / "unreadable").mkdir()
    for i in range(3):
        (d / "unreadable" / f"img_{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    write_images(d / "images", [(32, 48)])
    (d / "masks").mkdir()
    cv2.imwrite(str(d / "masks" / "img_000.png"), np.zeros((20, 20), np.uint8))  # wrong size
    (d / "a-file").write_text("a file, not a folder")
    (d / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    (d / "junk.pt").write_bytes(b"not a checkpoint at all")
    (d / "dataset-empty").mkdir()
    _outputs_that_are_inputs(d)
    _bad_cards(d, card.to_dict())
    _classifier(d / "classifier.onnx")
    (d / "empty.onnx").write_bytes(b"")
    from edgeseg.data.synth import write_dataset

    write_dataset(d / "gen", 2, 32, 48)  # a generated dataset
    (d / "huge-card.json").write_bytes(b" " * ((1 << 20) + 1))
    (d / "folder.onnx").mkdir()
    future = onnx.load(d / "tiny.onnx")
    future.opset_import[0].version = 99
    onnx.save(future, d / "opset99.onnx")
    _ground_truth_of_another_model(d)
    _training_run(d / "train" / "fcn8s" / "r1")
    (d / "run").symlink_to(d / "train" / "fcn8s" / "r1")
    (d / "hf-evil").mkdir()
    (d / "hf-evil" / "config.json").write_text(json.dumps({"model_type": "segformer", "num_labels": 2}))
    (d / "hf-evil" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}, protocol=2))
    yield d


def _ground_truth_of_another_model(d: Path) -> None:
    """Labels the 8-class tiny model cannot be scored on: a 16-bit mask with ids 256..263 (they used
    to wrap to 0..7), a mask with id 9, and a plain dataset of 3 classes."""
    import cv2

    h, w = cv2.imread(str(d / "images" / "img_000.png")).shape[:2]
    ids = (np.arange(h * w).reshape(h, w) % 8).astype(np.uint16)
    (d / "labels16").mkdir()
    cv2.imwrite(str(d / "labels16" / "img_000.png"), ids + 256)
    (d / "labels9").mkdir()
    cv2.imwrite(str(d / "labels9" / "img_000.png"), np.full((h, w), 9, np.uint8))
    for sub in ("images", "masks"):
        (d / "ds3" / sub).mkdir(parents=True)
    for i in range(4):
        cv2.imwrite(str(d / "ds3" / "images" / f"s{i}.png"), np.full((32, 64, 3), 40 * i, np.uint8))
        cv2.imwrite(str(d / "ds3" / "masks" / f"s{i}.png"), np.full((32, 64), i % 3, np.uint8))
    (d / "ds3" / "classes.txt").write_text("sky\nroad\ncar\n")


def _training_run(run: Path) -> None:
    """A run folder of an unfinished fcn8s run (epoch 1 of 2) in a workspace layout: last.pt, best.pt
    and a hard link to best.pt elsewhere. Its checkpoints hold no weights: every case refuses before
    loading them."""
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.training import TrainConfig

    card = ModelCard(model="fcn8s", classes=[f"c{i}" for i in range(8)], palette=default_palette(8))
    state = {"config": TrainConfig(model="fcn8s", data="synth:2", epochs=2).to_dict(), "epoch": 1}
    for name in ("last.pt", "best.pt"):
        save_checkpoint(run / name, {}, card, train_state=state)
    os.link(run / "best.pt", run.parents[2] / "hard-best.pt")


def _outputs_that_are_inputs(d: Path) -> None:
    """Paths that lead back to an input (a hard link, a symlink) and outputs that cannot be files."""
    os.link(d / "tiny.onnx", d / "hard-tiny.onnx")
    (d / "link.avi").symlink_to(d / "truncated.avi")
    os.mkfifo(d / "fifo")  # nobody ever reads it
    (d / "loop-a").symlink_to(d / "loop-b")
    (d / "loop-b").symlink_to(d / "loop-a")


BAD_CARDS = {  # name: (change to a good card, part of the one line)
    "list": ([], "must be a JSON object, got a list"),
    "null": (None, "must be a JSON object, got null"),
    "classes-int": ({"classes": 8}, "classes must be a non-empty list"),
    "palette-2": ({"palette": [[1, 2]] * 8}, "palette[0] must be [R, G, B]"),
    "palette-300": ({"palette": [[300, 0, 0]] * 8}, "palette[0] must be [R, G, B] with integers 0..255"),
    "palette-neg": ({"palette": [[0, -5, 0]] * 8}, "palette[0] must be"),
    "palette-str": ({"palette": "red"}, "palette must be a list of 8"),
    "palette-short": ({"palette": [[0, 0, 0]] * 3}, "palette must be a list of 8"),
    "size-0": ({"input_size": [0, 0]}, "input_size must be [height, width]"),
    "size-str": ({"input_size": "32x64"}, "input_size must be"),
    "size-huge": (
        {"input_size": [100000, 100000]},
        "input_size must be [height, width] with integers 1..8192",
    ),
    "mean-1": ({"mean": [0.5]}, "mean must be three finite numbers"),
    "mean-nan": ({"mean": [float("nan"), 0.5, 0.5]}, "mean must be three finite numbers"),
    "std-0": ({"std": [0, 0, 0]}, "std must be three positive numbers"),
    "output-bogus": ({"output": "bogus"}, "output must be logits or labels"),
    "color-xyz": ({"color_order": "XYZ"}, "color_order must be RGB or BGR"),
    "dynamic-str": ({"dynamic": "yes"}, "dynamic must be true or false"),
}


def _bad_cards(d: Path, good: dict) -> None:
    """Cards with a field of the wrong type or out of range: as a --card file, in an ONNX's metadata
    and in an engine's sidecar."""
    import onnx

    for name, (change, _) in BAD_CARDS.items():
        data = {**good, **change} if isinstance(change, dict) else change
        (d / f"card-{name}.json").write_text(json.dumps(data))
    (d / "card-folder.json").mkdir()
    model = onnx.load(d / "tiny.onnx")
    for prop in model.metadata_props:
        if prop.key == "edgeseg.std":
            prop.value = "[0, 0, 0]"
    onnx.save(model, d / "std0.onnx")
    (d / "palette.engine").write_bytes(b"serialized engine")
    sidecar = {"card": {**good, "palette": [[0, 0]] * 8}, "tensorrt_version": "10.3.0"}
    (d / "palette.engine.json").write_text(json.dumps(sidecar))


def _classifier(path: Path) -> None:
    """An image classifier (N x 8 scores, no spatial output) carrying an edgeseg card."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).normal(size=(8, 3, 1, 1)).astype(np.float32)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 64])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 8])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["p"]),
         helper.make_node("Flatten", ["p"], ["scores"])],
        "classifier", [x], [y], [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    save_with_card(model, path, card_of(8, (32, 64), "classifier"))


def _tiny(path: Path, classes: int) -> None:
    """The conftest's tiny model (a 1x1 conv with an edgeseg card), written to `path`."""
    tiny_model(path, classes, (32, 64), name=path.stem)


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory, inputs):
    """A 1 MiB tmpfs holding an export, filled to the brim (root only)."""
    mount = tmp_path_factory.mktemp("full")
    with tmpfs_at(mount, "1m") as refused:
        if refused:
            yield None
            return
        (mount / "export").mkdir()
        (mount / "export" / "tiny.onnx").write_bytes((inputs / "tiny.onnx").read_bytes())
        with open(mount / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
        yield mount


# (command line with placeholders, exit code, part of the one stderr line)
# {in}: the inputs; {case}: this case's own folder; {full}: the full disk; {dev}: a full device;
# {port}: a 127.0.0.1 port where nothing listens; {long}: a 300-character file name; the workspace
# holds an export named "tiny"; the message may use the same placeholders
CASES = [
    # --- run: models and cards
    ("run --model {in}/missing.onnx", BAD, "artifact not found"),
    ("run --model {in}/model.txt", BAD, "don't know how to run model.txt"),
    ("run --model {in}/broken.onnx", BAD, "not a valid ONNX model"),
    ("run --model {in}/nocard.onnx --frames 2", BAD, "carries no edgeseg metadata"),
    ("run --model {in}/nocard.onnx --card {in}/missing.json", BAD, "model card not found"),
    ("run --model {in}/nocard.onnx --card {in}/card-bad.json", BAD, "is not valid JSON"),
    (
        "run --model {in}/nocard.onnx --card {in}/card-missing-keys.json",
        BAD,
        "is missing ['classes', 'model'",
    ),
    ("run --model {in}/m.engine", BAD, "no sidecar m.engine.json"),
    ("run --model nosuch", BAD, "no export or training run named 'nosuch'"),
    ("run --model {in}/tiny.onnx --backend tensorrt", BAD, "--backend tensorrt runs"),
    ("run --model tiny --backend bogus", BAD, "unknown --backend"),
    ("run --backend tensorrt --frames 1", BAD, "--backend tensorrt has no default model"),
    ("run --model tiny --providers bogus --frames 2", BAD, "provider(s) ['bogus'] not available"),
    # --- run: sources
    ("run --model tiny --camera 57", BAD, "camera 57 could not be opened"),
    ("run --model tiny --video {in}/missing.mp4", BAD, "video not found"),
    ("run --model tiny --video {in}/junk.mp4", BAD, "cannot read video"),
    ("run --model tiny --video {in}/empty.mp4", BAD, "cannot read video"),
    ("run --model tiny --video {in}/truncated.avi", BAD, "of its 30 frames (truncated or damaged)"),
    ("run --model tiny --images {in}/no-images", BAD, "no images"),
    ("run --model tiny --images {in}/unreadable", BAD, "no readable image"),
    ("run --model tiny --images {in}/missing", BAD, "no such image folder"),
    ("run --model tiny --images {in}/images --labels {in}/missing", BAD, "--labels folder not found"),
    ("run --model tiny --images {in}/images --labels {in}/masks", BAD, "label img_000.png is 20x20"),
    ("run --model tiny --url cam.local/stream", BAD, "--url needs a scheme"),
    ("run --model tiny --url http://127.0.0.1:{port}/stream.mjpg", BAD, "cannot open stream"),
    (
        "run --model tiny --url http://127.0.0.1:{port}/s.mjpg --reconnect --reconnect-timeout 0.5",
        SOURCE_LOST,
        "live source lost: cannot open stream",
    ),
    ("run --model tiny --gst videotestsrc!appsink", BAD, "GStreamer"),
    (
        "run --model tiny --camera 0 --video {in}/junk.mp4",
        BAD,
        "camera 0 could not be opened",
    ),  # two streams; no camera
    ("run --model {in}/tiny3.onnx --synthetic", BAD, "--synthetic scores against 8 street classes"),
    ("run --model tiny --synthetic --labels {in}/masks", BAD, "--synthetic brings its own ground truth"),
    # --- run: flags
    ("run --model tiny --frames 0", BAD, "--frames must be at least 1"),
    ("run --model tiny --frames abc", BAD, "Invalid value for '--frames'"),
    ("run --model tiny --reconnect-timeout 0", BAD, "'--reconnect-timeout': 0 must be greater than 0"),
    ("run --model tiny --mode heatmap --frames 1", BAD, "unknown visual mode"),
    ("run --model tiny --alpha 2 --frames 1", BAD, "'--alpha': 2 must be at most 1"),
    ("run --model tiny --workers 0 --frames 1", BAD, "--workers must be at least 1"),
    ("run --model tiny --threads 0 --frames 1", BAD, "Invalid value for '--threads'"),
    ("run --model tiny --synthetic-size 4x4", BAD, "size must be at least 16x16"),
    ("run --model tiny --synthetic-size big", BAD, "expected HxW"),
    ("run --model tiny --serve 70000 --frames 1", BAD, "--serve"),
    ("run --model tiny --no-such-flag", BAD, "No such option: --no-such-flag"),
    # --- run: outputs, checked before the model loads (a missing model would be the error otherwise)
    ("run --model {in}/missing.onnx --save {case}/out.txt", BAD, "--save needs a video file name"),
    ("run --model {in}/missing.onnx --save /proc/edgeseg/out.mp4", OUTPUT, "cannot write --save"),
    ("run --model {in}/missing.onnx --log /sys/edgeseg.jsonl", OUTPUT, "cannot write --log"),
    ("run --model {in}/missing.onnx --report {in}/a-file/r.json", OUTPUT, "is a file, not a folder"),
    ("run --model {in}/missing.onnx --report {case}", OUTPUT, "it is a folder"),
    ("run --model {in}/missing.onnx --save-masks {in}/a-file", OUTPUT, "it is a file, not a folder"),
    ("run --model {in}/missing.onnx --save-bag /proc/edgeseg-bag", OUTPUT, "cannot write --save-bag"),
    ("run --model tiny --frames 3 --report {full}/r.json", OUTPUT, "no space left on device"),
    ("run --model tiny --frames 3 --save {full}/o.mp4", OUTPUT, "no space left on device"),
    ("run --model tiny --frames 3 --log {dev}", OUTPUT, "No space left on device"),
    # --- eval
    ("eval {in}/missing.onnx --data synth:2", BAD, "artifact not found"),
    ("eval {in}/broken.onnx --data synth:2", BAD, "not a valid ONNX model"),
    ("eval tiny", BAD, "pass --data PATH"),
    ("eval tiny --data {in}/missing", BAD, "dataset not found"),
    ("eval tiny --data synth:abc", BAD, "bad synthetic data spec"),
    ("eval tiny --data synth:2 --limit 0", BAD, "--limit must be at least 1"),
    ("eval tiny --data synth:2 --limit -3", BAD, "--limit must be at least 1"),
    ("eval {in}/evil.pt --data synth:2", BAD, "not a plain weights file"),
    ("eval {in}/junk.pt --data synth:2", BAD, "corrupt or not a PyTorch file"),
    ("eval tiny --data synth:2 --plots /proc/edgeseg-plots", OUTPUT, "cannot write --plots"),
    ("eval tiny --data synth:2 --plots {full}/plots", OUTPUT, "no space left on device"),
    # --- export
    ("export nosuch", BAD, "unknown model 'nosuch'"),
    ("export {in}/evil.pt", BAD, "not a plain weights file"),
    ("export {in}/junk.pt", BAD, "corrupt or not a PyTorch file"),
    ("export fcn8s --weights {in}/missing.pt", BAD, "not found"),
    ("export fcn8s --simplifier fastest", BAD, "--simplifier must be"),
    ("export fcn8s --workdir /proc/edgeseg-work", OUTPUT, "cannot write --workdir"),
    ("export fcn8s --workdir {full}/work", OUTPUT, "no space left on device"),
    (  # torch's checkpoint writer on a full disk was a traceback
        "train unet --backbone compact --data synth:2 --epochs 1 --height 64 --width 128 --workdir {full}/work",
        OUTPUT,
        "no space left on device",
    ),
    # --- build
    ("build", BAD, "nothing to build"),
    ("build --int8 --target cuda", BAD, "unknown --target"),
    ("build --int8 --calib-method kl", BAD, "unknown calibration method"),
    ("build nosuch --int8", BAD, "no export named 'nosuch'"),
    ("build --int8 --max-miou-drop -1", BAD, "'--max-miou-drop': -1 must be at least 0"),
    ("build --int8 --calib-images 0", BAD, "Invalid value for '--calib-images'"),
    ("build {in}/broken.onnx --int8", BAD, "not a valid ONNX model"),
    ("build --int8 --card {in}/missing.json", BAD, "model card not found"),
    ("build tiny --int8 --calib-data {in}/dataset-empty", BAD, "is empty"),
    ("build {full}/export/tiny.onnx --int8", OUTPUT, "no space left on device"),
    # --- train
    ("train nosuch --data synth:2", BAD, "unknown model 'nosuch'"),
    (
        "train fcn8s --data synth:2 --height 4 --width 64",
        BAD,
        "'--height': Input should be greater than or equal to 8",
    ),
    ("train fcn8s --data {in}/missing", BAD, "dataset not found"),
    (
        "train fcn8s --data synth:2 --epochs 0",
        BAD,
        "'--epochs' / '-e': Input should be greater than or equal to 1",
    ),
    ("train fcn8s --data synth:2 --optimizer adam", BAD, "unknown optimizer"),
    ("train fcn8s --data synth:2 -o width", BAD, "must look like key=value"),
    ("train fcn8s --data synth:2 --crop 4x4", BAD, "size must be at least 16x16"),
    ("train fcn8s --data synth:2 --resume {in}/missing.pt", BAD, "checkpoint not found"),
    ("train fcn8s --data synth:2 --workdir /proc/edgeseg-work", OUTPUT, "cannot write --workdir"),
    # --- ros2 (the report path is checked before ROS is imported)
    ("ros2 --model tiny --report /proc/edgeseg-report.json", OUTPUT, "cannot write --report"),
    # --- bench
    ("bench --iterations 0", BAD, "--iterations must be at least 1"),
    ("bench --warmup -1", BAD, "--warmup must be 0 or more"),
    ("bench --threads 0", BAD, "Invalid value for '--threads'"),
    ("bench nosuch", BAD, "no export named 'nosuch'"),
    ("bench --checkpoint {in}/missing.pt", BAD, "missing.pt is not a file"),
    ("bench --markdown /proc/bench.md", OUTPUT, "cannot write --markdown"),
    ("bench --plot {full}/bench.png", OUTPUT, "no space left on device"),
    ("bench broken --iterations 1", BAD, "is not a valid ONNX model"),  # its card, read before measuring
    # --- data, models, demo
    ("data synth {case}/v --video --fps 0", BAD, "'--fps': 0 must be greater than 0"),
    ("data synth {case}/v.txt --video", BAD, "unsupported video suffix"),
    ("data synth {case}/d --num 0", BAD, "'--num' / '-n': Input should be greater than or equal to 1"),
    ("data synth /proc/edgeseg-scenes", OUTPUT, "cannot write OUT"),
    # data synth never mixes into a folder it did not write (issue 23 §1)
    ("data synth {in}/no-images --num 2", BAD, "holds files that are not generated scenes (e.g. notes.txt)"),
    ("data synth {in}/hf-evil --num 2", BAD, "write to a new or empty folder"),
    ("data synth {in}/images --num 2", BAD, "{in}/images holds files that are not generated scenes"),
    ("data synth {in}/ds3 --num 2", BAD, "(e.g. classes.txt)"),
    # a generated dataset's images/ folder is not a generated dataset: it was replaced whole (exit 0)
    ("data synth {in}/gen/images --num 1", BAD, "{in}/gen/images holds files that are not generated scenes"),
    ("data synth {in}/gen/masks/ --num 1 --json", BAD, "(e.g. scene_000000.png)"),
    ("data synth {in}/v.mp4 --video --frames 2", BAD, "{in}/masks holds files that are not generated video"),
    ("data info {in}/missing", BAD, "dataset not found"),
    ("data info {in}/junk.pt", BAD, "must be a folder, not a file"),
    ("data preview {in}/missing {case}/p", BAD, "dataset not found"),
    ("data nosuch", BAD, "No such command 'nosuch'"),
    ("models nosuch", BAD, "unknown model 'nosuch'"),
    ("nosuch", BAD, "No such command 'nosuch'"),
    ("demo --quick --frames 0", BAD, "'--frames': Input should be greater than or equal to 1"),
    ("demo --epochs 0", BAD, "'--epochs': Input should be greater than or equal to 1"),
    ("demo --quick --out /proc/edgeseg-demo", OUTPUT, "cannot write --out"),
    # --- an output never overwrites an input (issue 23 §1): same file, symlink, hard link, folders
    (
        "run --model {in}/tiny.onnx --video {in}/truncated.avi --save {in}/truncated.avi",
        BAD,
        "are the same file",
    ),
    ("run --model {in}/tiny.onnx --video {in}/truncated.avi --log {in}/link.avi", BAD, "are the same file"),
    ("run --model {in}/tiny.onnx --video {in}/link.avi --log {in}/truncated.avi", BAD, "are the same file"),
    (
        "run --model {in}/tiny.onnx --frames 2 --report {in}/tiny.onnx",
        BAD,
        "--report {in}/tiny.onnx and --model",
    ),
    ("run --model {in}/tiny.onnx --frames 2 --report {in}/hard-tiny.onnx", BAD, "are the same file"),
    ("run --model {in}/tiny.onnx --card {in}/card.json --frames 2 --log {in}/card.json", BAD, "and --card"),
    (
        "run --model {in}/tiny.onnx --images {in}/images --labels {in}/masks --save-masks {in}/masks",
        BAD,
        "--save-masks {in}/masks holds the input --labels",
    ),
    ("run --model {in}/tiny.onnx --images {in}/images --save-masks {in}", BAD, "holds the input --model"),
    (
        "run --model {in}/tiny.onnx --images {in}/images --save-masks {in}/images",
        BAD,
        "holds the input --images",
    ),
    (
        "run --model {in}/tiny.onnx --images {in}/images/*.png --log {in}/images/img_000.png",
        BAD,
        "would replace a file inside the input --images",
    ),
    (
        "build {in}/tiny.onnx --int8 --calib-cache {in}/tiny.onnx",
        BAD,
        "--calib-cache {in}/tiny.onnx and MODEL",
    ),
    ("build {in}/tiny.onnx --int8 --card {in}/card.json --calib-cache {in}/card.json", BAD, "and --card"),
    ("bench {in}/tiny.onnx --markdown {in}/tiny.onnx", BAD, "are the same file"),
    ("bench {in}/tiny.onnx --plot {in}/hard-tiny.onnx", BAD, "are the same file"),
    ("card {in}/tiny.onnx --onnx {in}/tiny.onnx", BAD, "OUTPUT_PATH {in}/tiny.onnx and --onnx"),
    ("card {in}/card.json --onnx {in}/nocard.onnx --classes {in}/card.json", BAD, "are the same file"),
    # a card is JSON: a model named as OUTPUT_PATH was overwritten with it (exit 0)
    (
        "card {in}/nocard.onnx --onnx {in}/tiny.onnx",
        BAD,
        "OUTPUT_PATH {in}/nocard.onnx is where the card's JSON",
    ),
    ("card {in}/tiny.onnx --classes 3 --input-size 32x48", BAD, "give it a .json name"),
    ("card {case}/tiny.card --classes 3 --input-size 32x48", BAD, "give it a .json name"),
    ("data preview {in}/images {in}/images/img_000.png", BAD, "would replace a file inside the input PATH"),
    ("ros2 --model {in}/tiny.onnx --report {in}/tiny.onnx", BAD, "are the same file"),
    # train: a resumed run writes last.pt, best.pt and history.json in its folder
    (
        "train fcn8s --data synth:2 --resume {in}/run --weights {in}/run/best.pt",
        BAD,
        "the resumed run's folder {in}/run holds the input --weights {in}/run/best.pt",
    ),
    (
        "train fcn8s -d synth:2 --resume {in}/run/last.pt --weights {in}/hard-best.pt",
        BAD,
        "holds the input --weights",
    ),
    ("train fcn8s --resume {in}/run --data {in}/run", BAD, "holds the input --data {in}/run"),
    (
        "train fcn8s -d synth:2 --resume auto --workdir {in} --val-data {in}/train/fcn8s/r1",
        BAD,
        "the resumed run's folder {in}/train/fcn8s/r1 holds the input --val-data",
    ),
    (
        "train fcn8s -d synth:2 --resume {in}/run --val-data {in}/run/.",
        BAD,
        "resume a copy of the run folder",
    ),
    # two outputs of one command that are one file, however spelled; outputs never land in a dataset
    (
        "run --model tiny --frames 2 --log {case}/x.json --report {case}/x.json",
        BAD,
        "one output would replace",
    ),
    ("run --model tiny --frames 2 --log x.json --report {case}/./x.json", BAD, "--log x.json and --report"),
    ("bench {in}/tiny.onnx --markdown {case}/b.md --plot b.md", BAD, "one output would replace the other"),
    (
        "run --model tiny --frames 2 --save {in}/link.avi --log {in}/truncated.avi",
        BAD,
        "--save {in}/link.avi",
    ),
    (
        "eval {in}/tiny3.onnx --data {in}/ds3 --plots {in}/ds3/masks",
        BAD,
        "is inside the input --data {in}/ds3: what is written there would mix into it",
    ),
    ("eval {in}/tiny3.onnx --data {in}/ds3 --plots {in}/ds3", BAD, "is inside the input --data"),
    ("data preview {in}/ds3 {in}/ds3/images/p.png", BAD, "OUT {in}/ds3/images/p.png is inside the input"),
    ("bench {in}/tiny.onnx --data {in}/ds3 --markdown {in}/ds3/b.md", BAD, "is inside the input --data"),
    (
        "build {in}/tiny.onnx --int8 --calib-data {in}/ds3 --calib-cache {in}/ds3/masks/c.cache",
        BAD,
        "--calib-cache {in}/ds3/masks/c.cache is inside the input --calib-data",
    ),
    ("export fcn8s --name ../escape", BAD, "--name '../escape' must be a plain name"),
    ("export fcn8s --name a/b", BAD, "must be a plain name"),
    ("export fcn8s --name ..", BAD, "must be a plain name"),
    # --- outputs that can never be a regular file, refused before work
    ("run --model tiny --frames 2 --log {in}/fifo", OUTPUT, "it is a FIFO that nobody reads"),
    ("run --model tiny --frames 2 --save {in}/fifo", BAD, "--save needs a video file name"),
    ("run --model tiny --frames 2 --report {in}/fifo", OUTPUT, "it is a FIFO that nobody reads"),
    ("run --model tiny --frames 2 --log {in}/loop-a", OUTPUT, "a symlink loop"),
    ("run --model tiny --frames 2 --report {case}/{long}.json", OUTPUT, "file name too long (305 bytes"),
    ("run --model tiny --frames 2 --save {case}/{long}.mp4", OUTPUT, "file name too long"),
    ("eval tiny --data synth:2 --plots {case}/{long}", OUTPUT, "file name too long"),
    ("bench --markdown {in}/fifo", OUTPUT, "it is a FIFO that nobody reads"),
    ("data synth {case}/{long}.mp4 --video", OUTPUT, "file name too long"),
    ("data preview synth:2 {in}/loop-a", OUTPUT, "a symlink loop"),
    # --- a model card is validated once, completely (issue 23 §2)
    *[
        (f"run --model {{in}}/nocard.onnx --card {{in}}/card-{name}.json --frames 1", BAD, message)
        for name, (_, message) in BAD_CARDS.items()
    ],
    ("eval {in}/nocard.onnx --card {in}/card-palette-300.json --data synth:2", BAD, "palette[0] must be"),
    ("build {in}/nocard.onnx --fp16 --card {in}/card-std-0.json", BAD, "std must be three positive"),
    ("bench {in}/nocard.onnx --card {in}/card-size-0.json", BAD, "input_size must be"),
    ("run --model {in}/nocard.onnx --card {in}/card-folder.json", BAD, "card-folder.json is a folder"),
    # a card, classes file or checkpoint that is no regular file: /dev/zero filled the memory (the
    # OOM killer ended the run), a FIFO nobody writes blocked for ever, both said "not found" elsewhere
    ("run --model {in}/nocard.onnx --card /dev/zero", BAD, "model card /dev/zero is not a regular file"),
    ("run --model {in}/nocard.onnx --card {in}/fifo", BAD, "model card {in}/fifo is not a regular file"),
    (
        "eval {in}/nocard.onnx --card {in}/fifo --data synth:2",
        BAD,
        "is not a regular file (a device or FIFO)",
    ),
    ("run --model {in}/nocard.onnx --card {in}/huge-card.json", BAD, "1048577 bytes, not a model card"),
    (
        "card {case}/c.json --onnx {in}/nocard.onnx --classes {in}/fifo",
        BAD,
        "classes file {in}/fifo is not a",
    ),
    ("card {case}/c.json --onnx {in}/nocard.onnx --classes /dev/zero", BAD, "classes file /dev/zero is not"),
    ("train fcn8s --data synth:2 --weights {in}/fifo", BAD, "checkpoint {in}/fifo is not a regular file"),
    ("train fcn8s --data synth:2 --weights {in}/images", BAD, "checkpoint {in}/images is a folder"),
    (
        "run --model {in}/std0.onnx --frames 1",
        BAD,
        "model card in {in}/std0.onnx: std must be three positive",
    ),
    ("run --model {in}/palette.engine --frames 1", BAD, "palette.engine.json: palette[0] must be"),
    ("card {case}/c.json --onnx {in}/classifier.onnx --classes 8", BAD, "not a segmentation output"),
    ("run --model {in}/classifier.onnx --frames 1", BAD, "is not a segmentation output"),
    ("eval {in}/classifier.onnx --data synth:2", BAD, "output 'scores' [1, 8] is not a segmentation output"),
    ("bench {in}/classifier.onnx --data synth:2", BAD, "is not a segmentation output"),
    # --- sources and models say what they are (issue 23 §4)
    ("run --model tiny --camera -1", BAD, "--camera must be a device index 0 or more"),
    ("run --model tiny --camera 0 --camera -2", BAD, "--camera must be a device index 0 or more"),
    ("run --model tiny --video {in}/images", BAD, "is a folder, not a video file"),
    ("run --model tiny --video /dev/zero", BAD, "video /dev/zero is not a regular file"),
    ("run --model {in}/empty.onnx", BAD, "empty.onnx is empty (0 bytes): not an ONNX model"),
    ("eval {in}/empty.onnx --data synth:2", BAD, "is empty (0 bytes)"),
    ("run --model {in}/folder.onnx", BAD, "folder.onnx is a folder, not a model file"),
    ("run --model {in}/opset99.onnx --frames 1", BAD, "it uses ONNX opset 99, and "),  # ORT or OpenVINO
    # --- ground truth that cannot match the model, and a pickle in an hf: folder
    (
        "run --model {in}/tiny.onnx --images {in}/images --labels {in}/labels16",
        BAD,
        "holds class id 263 but the",
    ),
    (
        "run --model {in}/tiny.onnx --images {in}/images --labels {in}/labels9",
        BAD,
        "holds class id 9 but the",
    ),
    ("build tiny --fp16 --eval-data {in}/ds3", BAD, "the model predicts 8 classes"),
    ("export hf:{in}/hf-evil", BAD, "not a plain weights file"),
    # --- every number option is checked once (issue 23 §3): ranges, nan, inf, absurd sizes
    ("export fcn8s --height 0", BAD, "Invalid value for '--height'"),
    ("export fcn8s --width 100000", BAD, "Invalid value for '--width'"),
    ("train fcn8s --data synth:2 --val-limit 0", BAD, "Invalid value for '--val-limit'"),
    ("train fcn8s --data synth:2 --threads 0", BAD, "Invalid value for '--threads'"),
    ("train fcn8s --data synth:2 --weight-decay nan", BAD, "'--weight-decay': nan is not a finite number"),
    ("train fcn8s --data synth:2 --lr inf", BAD, "'--lr': inf is not a finite number"),
    ("train fcn8s --data synth:2 --lr 0", BAD, "'--lr': 0 must be greater than 0"),
    ("train fcn8s --data synth:2 --batch-size 0", BAD, "Invalid value for '--batch-size'"),
    ("train fcn8s --data synth:2 --workers -1", BAD, "Invalid value for '--workers'"),
    ("eval tiny --data synth:2 --threads -1", BAD, "Invalid value for '--threads'"),
    ("data preview synth:2 {case}/p.png --num 0", BAD, "Invalid value for '--num'"),
    ("data preview synth:2 {case}/p.png --tile-width 0", BAD, "Invalid value for '--tile-width'"),
    ("data info synth:2 --limit -1", BAD, "Invalid value for '--limit'"),
    ("data synth {case}/v --video --fps inf", BAD, "'--fps': inf is not a finite number"),
    ("data synth {case}/v --video --fps nan", BAD, "'--fps': nan is not a finite number"),
    ("data synth {case}/v.mp4 --video --fps 0.001", BAD, "'--fps': 0.001 must be at least 0.01"),
    ("data synth {case}/v.avi --video --fps 1e-300", BAD, "must be at least 0.01"),
    ("data synth {case}/v --video --frames 0", BAD, "Invalid value for '--frames'"),
    ("data synth {case}/d --height 100000", BAD, "Invalid value for '--height'"),
    ("demo --quick --max-miou-drop nan", BAD, "'--max-miou-drop': nan is not a finite number"),
    ("demo --quick --threads 0", BAD, "Invalid value for '--threads'"),
    ("build --int8 --max-miou-drop nan", BAD, "'--max-miou-drop': nan is not a finite number"),
    ("build --int8 --max-miou-drop inf", BAD, "'--max-miou-drop': inf is not a finite number"),
    ("build --int8 --max-fallback-layers -1", BAD, "Invalid value for '--max-fallback-layers'"),
    ("build --int8 --threads 0", BAD, "Invalid value for '--threads'"),
    ("build --target tensorrt --builder-optimization-level 9", BAD, "'--builder-optimization-level'"),
    (
        "run --model tiny --reconnect --reconnect-timeout nan",
        BAD,
        "'--reconnect-timeout': nan is not a finite",
    ),
    ("run --model tiny --reconnect-timeout inf", BAD, "'--reconnect-timeout': inf is not a finite"),
    ("run --model tiny --alpha nan --frames 1", BAD, "'--alpha': nan is not a finite number"),
    ("run --model tiny --synthetic-size 30000x30000", BAD, "size must be at most 8192x8192"),
    ("bench --height 0", BAD, "Invalid value for '--height'"),
    ("ros2 --model tiny --timeout nan", BAD, "'--timeout': nan is not a finite number"),
    ("ros2 --model tiny --alpha -1", BAD, "'--alpha': -1 must be at least 0"),
    ("ros2 --model tiny --threads 0", BAD, "Invalid value for '--threads'"),
    # seeds and counts of threads or workers past what a generator or a CPU can take (a traceback from
    # numpy's seeding; minutes spent creating 100000 threads or model copies)
    ("train fcn8s --data synth:2 --seed -1", BAD, "Invalid value for '--seed'"),
    ("train fcn8s --data synth:2 --seed 99999999999999999999", BAD, "Invalid value for '--seed'"),
    ("data synth {case}/d --num 1 --seed -5", BAD, "Invalid value for '--seed'"),
    ("run --model tiny --workers 100000 --frames 1", BAD, "--workers must be at most 64, got 100000"),
    ("run --model tiny --threads 100000 --frames 1", BAD, "Invalid value for '--threads'"),
    ("bench tiny --threads 100000 --iterations 1", BAD, "Invalid value for '--threads'"),
    ("eval tiny --data synth:2 --threads 5000", BAD, "Invalid value for '--threads'"),
]


def _needs(line: str) -> str | None:
    return "full" if "{full}" in line else "dev" if "{dev}" in line else None


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every non-folder under `roots`: its kind and, for files, size and content hash."""
    seen: dict[str, tuple] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            digest = hashlib.sha1(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            seen[str(path)] = (stat.S_IFMT(st.st_mode), st.st_size, digest)
    return seen


@pytest.mark.parametrize(("line", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_leaves_files_alone(
    line, code, message, inputs, full_disk, tmp_path, _isolated_workdir, monkeypatch
):
    needs = _needs(line)
    if needs == "full" and full_disk is None:
        pytest.skip("a full tmpfs needs root (CI runs as root)")
    case = tmp_path / "case"
    case.mkdir()
    device = case / "full"
    if needs == "dev":
        try:
            os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))  # like /dev/full, in the case folder
        except PermissionError:
            pytest.skip("making a device node needs root (CI runs as root)")
    export = _isolated_workdir / "tiny" / "tiny.onnx"
    export.parent.mkdir(parents=True)
    export.write_bytes((inputs / "tiny.onnx").read_bytes())
    broken = _isolated_workdir / "broken" / "broken.onnx"  # every artifact of it fails to load
    broken.parent.mkdir()
    broken.write_bytes((inputs / "tiny.onnx").read_bytes()[:300])
    monkeypatch.chdir(case)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    values = {
        "in": inputs,
        "case": case,
        "full": full_disk,
        "dev": device,
        "port": _free_port(),
        "long": "x" * 300,
    }
    args = line.format(**values)
    message = message.format(**values)
    roots = [inputs, tmp_path] + ([full_disk] if full_disk is not None else [])
    before = _snapshot(*roots)

    r = runner.invoke(app, args.split())

    assert r.exit_code == code, r.output
    assert isinstance(r.exception, SystemExit), r.exception  # no traceback: an expected, handled exit
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in r.output
    assert _snapshot(*roots) == before  # nothing written, half-written or replaced


def test_the_corpus_covers_every_command():
    commands = {line.split()[0] for line, _, _ in CASES}
    assert len(CASES) >= 60
    assert commands >= {"run", "eval", "export", "build", "train", "bench", "data", "models", "demo"}


def test_a_truncated_video_is_reported_with_the_frames_reached(inputs, tmp_path):
    """The frames before the damage are processed and saved; the report says how far the file went."""
    report = tmp_path / "report.json"
    r = runner.invoke(
        app,
        ["run", "--model", str(inputs / "tiny.onnx"), "--video", str(inputs / "truncated.avi"),
         "--report", str(report), "--log", str(tmp_path / "f.jsonl")],
    )  # fmt: skip
    assert r.exit_code == BAD, r.output
    data = json.loads(report.read_text())
    reached = data["source"]["frames_read"]
    assert 0 < reached == data["frames"]["processed"] < 30
    assert data["ended"]["exit_code"] == BAD and f"{reached} of its 30 frames" in data["ended"]["reason"]
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == reached


def test_some_unreadable_images_are_one_warning_and_the_rest_is_processed(inputs, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in (inputs / "unreadable").iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_good.png").write_bytes((inputs / "images" / "img_000.png").read_bytes())
    r = runner.invoke(app, ["run", "--model", str(inputs / "tiny.onnx"), "--images", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frames"]["processed"] == 1
    warning = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(warning) == 1 and "skipping 3 unreadable image(s)" in warning[0]


@pytest.mark.parametrize("command", ["run", "eval", "bench", "build"])
def test_the_no_card_advice_works_on_every_command_that_gives_it(command, inputs, _isolated_workdir):
    """The "no edgeseg metadata" error says to pass --card CARD.json: each command takes it."""
    folder = _isolated_workdir / "nocard"
    folder.mkdir(parents=True)
    model = folder / "nocard.onnx"
    model.write_bytes((inputs / "nocard.onnx").read_bytes())
    card = str(inputs / "card.json")
    args = {
        "run": ["run", "--model", str(model), "--card", card, "--frames", "2", "--synthetic-size", "32x64"],
        "eval": ["eval", str(model), "--card", card, "--data", "synth:2"],
        "bench": [
            "bench",
            str(model),
            "--card",
            card,
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--data",
            "synth:1",
        ],
        "build": ["build", str(model), "--card", card, "--fp16", "--eval-data", "synth:2"],
    }[command]
    without = runner.invoke(app, [a for a in args if a not in ("--card", card)])
    assert without.exit_code == BAD and "--card CARD.json" in without.stderr
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output


# --- shared files, full disks and stop signals (issue 23 §1, §5) ---------------------------------
def test_two_writers_of_one_log_never_mix_and_the_last_wins_whole(tmp_path):
    """Two runs with the same --log: each stages in a file of its own, so the log is one run's whole."""
    from edgeseg.runtime.pipeline import FrameResult
    from edgeseg.runtime.sinks import JsonlSink

    log = tmp_path / "same.jsonl"
    first, second = JsonlSink(log, ["a", "b"]), JsonlSink(log, ["a", "b"])
    frame = np.zeros((4, 4, 3), np.uint8)
    for i in range(50):  # interleaved, as two processes write
        for sink, name in ((first, "first"), (second, "second")):
            sink.write(FrameResult(index=i, name=name, frame=frame, wall_time=0.0, t_capture=0.0))
    first.close()
    second.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(50))
    assert {r["name"] for r in records} == {"second"}  # the last to finish, whole
    assert not list(tmp_path.glob(".*partial*"))


def test_a_second_build_in_the_same_folder_is_refused_in_one_line(inputs, _isolated_workdir):
    from edgeseg.workspace import build_lock

    folder = _isolated_workdir / "tiny"
    folder.mkdir(parents=True)
    (folder / "tiny.onnx").write_bytes((inputs / "tiny.onnx").read_bytes())
    with build_lock(folder):
        r = runner.invoke(app, ["build", "tiny", "--fp16", "--eval-data", "synth:2"])
        assert r.exit_code == BAD and isinstance(r.exception, SystemExit), r.output
        assert f"another edgeseg build (pid {os.getpid()}) is writing in {folder}" in r.stderr
        assert sorted(p.name for p in folder.iterdir()) == [".edgeseg-build.lock", "tiny.onnx"]
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.onnx"]  # the holder removed its lock
    r = runner.invoke(app, ["build", "tiny", "--fp16", "--eval-data", "synth:2"])
    assert r.exit_code == 0, r.output
    assert (folder / "tiny.fp16.onnx").is_file() and not (folder / ".edgeseg-build.lock").exists()


def test_a_checkpoint_on_a_full_disk_is_exit_6_naming_the_file(full_disk):
    """torch's writer wraps ENOSPC in its own RuntimeError: still one OutputFailed, nothing left."""
    if full_disk is None:
        pytest.skip("a full tmpfs needs root (CI runs as root)")
    import torch

    from edgeseg.card import ModelCard, default_palette
    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.errors import OutputFailed

    card = ModelCard(model="m", classes=["a", "b"], palette=default_palette(2))
    target = full_disk / "export" / "best.pt"
    before = sorted(p.name for p in target.parent.iterdir())
    with pytest.raises(OutputFailed, match=f"cannot write {target}: no space left on device") as failed:
        save_checkpoint(target, {"w": torch.zeros(1 << 18)}, card)
    assert failed.value.exit_code == OUTPUT
    assert sorted(p.name for p in target.parent.iterdir()) == before


def test_a_full_disk_anywhere_is_exit_6_naming_the_path(tmp_path, monkeypatch):
    """A library writing its own temporary file on a full disk: one line and exit 6, no traceback."""
    import errno

    import edgeseg.data.synth

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/their-temporary-file")

    monkeypatch.setattr(edgeseg.data.synth, "write_dataset", full)
    r = runner.invoke(app, ["data", "synth", str(tmp_path / "d"), "--num", "2"])
    assert r.exit_code == OUTPUT and isinstance(r.exception, SystemExit), r.output
    assert r.stderr.strip() == "error: cannot write /tmp/their-temporary-file: No space left on device"


def _bench_measuring(inputs: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """`edgeseg bench` measuring a million iterations of the tiny model, once its spawned child is up;
    returns the bench process and its children's pids."""
    import sys
    import time

    work = tmp_path / "work"
    (work / "tiny").mkdir(parents=True)
    (work / "tiny" / "tiny.onnx").write_bytes((inputs / "tiny.onnx").read_bytes())
    env = {**os.environ, "EDGESEG_WORKDIR": str(work), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "bench", "tiny", "--iterations", "1000000", "--data", "synth:1",
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    line = ""
    while "measuring" not in line and proc.poll() is None:
        line = proc.stdout.readline()
    children = _children(proc.pid)
    deadline = time.monotonic() + 120
    while not children and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        children = _children(proc.pid)
    return proc, children


def _still_alive_after(pids: list[int], seconds: float) -> list[int]:
    """Those of `pids` still running once they had `seconds` to exit (a bound on waiting only)."""
    import time

    deadline = time.monotonic() + seconds
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_bench_stops_within_seconds_while_its_child_measures(sig, inputs, tmp_path):
    """SIGTERM/SIGINT while a spawned child measures a million iterations: the child is ended at once
    and bench exits 143/130 (the pool used to wait for every iteration)."""
    import signal
    import time

    proc, children = _bench_measuring(inputs, tmp_path)
    try:
        time.sleep(2)
        proc.send_signal(getattr(signal, sig))
        start = time.monotonic()
        proc.communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == (143 if sig == "SIGTERM" else 130)
    assert took < 20  # seconds, not the million iterations
    names = {pid: _cmdline(pid) for pid in children}
    assert not [names[pid] for pid in _still_alive_after(children, 10)]


def test_a_bench_killed_outright_takes_its_measuring_child_with_it(inputs, tmp_path):
    """SIGKILL cannot be caught, so bench cannot end its child: the child watches its parent and exits
    (it used to go on measuring a million iterations as an orphan)."""
    import signal

    proc, children = _bench_measuring(inputs, tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()  # (not communicate(): an orphan would hold the pipes open)
        orphans = _still_alive_after(children, 60)  # it exits in ~0.5 s
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()
    assert children and not orphans


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_garbage_mjpeg_stream_names_the_url_and_the_decoding_failure(inputs):
    """A server that answers with multipart parts that are not JPEGs: the one line names the URL and
    says nothing decoded (it used to be "source stopped delivering")."""
    import http.server
    import threading
    import time

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server hook
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            body = b"\xff\xd8 not a jpeg" * 50
            with contextlib.suppress(OSError):
                for _ in range(400):
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body)
                    self.wfile.write(part + body + b"\r\n")
                    time.sleep(0.05)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/s.mjpg"
    try:
        r = runner.invoke(app, ["run", "--model", str(inputs / "tiny.onnx"), "--url", url, "--json"])
    finally:
        server.shutdown()
    assert r.exit_code == SOURCE_LOST and isinstance(r.exception, SystemExit), r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and url in lines[0] and "FFmpeg decoded no frame" in lines[0], r.stderr
