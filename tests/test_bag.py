"""ROS 2 bags as source and sink: real MCAP and SQLite bags written with `rosbags`, read back through
edgeseg (every supported encoding, timestamps, order, ground truth by stamp, damaged bags), and
`--save-bag` output read back with `rosbags`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags")

from bagfiles import (  # noqa: E402
    EPOCH,
    bayer_mosaic,
    camera_bag,
    camera_frames,
    compressed_image,
    pack_yuv422,
    raw_image,
    write_bag,
)
from rosbags.highlevel import AnyReader  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from edgeseg.cli import app  # noqa: E402
from edgeseg.errors import EdgesegError, MissingDependencyError  # noqa: E402
from edgeseg.metrics import ConfusionMatrix  # noqa: E402
from edgeseg.runtime import Pipeline, Segmenter  # noqa: E402
from edgeseg.runtime.bag import BagSink, BagSource  # noqa: E402

runner = CliRunner()
STORAGES = ["mcap", "sqlite3"]


def frames_of(path: Path, topic: str | None = None, **kw) -> list:
    source = BagSource(path, topic, **kw)
    source.open()
    try:
        return list(iter(source.read, None))
    finally:
        source.close()


def one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "error:" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()]) <= 2  # one message (may wrap once)
    return " ".join(r.output.split())


# --- encodings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_every_raw_encoding_decodes_to_the_recorded_pixels(tmp_path, storage):
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    gray = rng.integers(0, 255, (6, 8), dtype=np.uint8)
    wide = rng.integers(0, 65535, (6, 8), dtype=np.uint16)
    cases = {  # topic: (message, expected BGR frame)
        "/bgr8": (raw_image(bgr, "bgr8", EPOCH), bgr),
        "/8UC3": (raw_image(bgr, "8UC3", EPOCH), bgr),
        "/rgb8": (raw_image(bgr[:, :, ::-1].copy(), "rgb8", EPOCH), bgr),
        "/rgb8_padded": (raw_image(bgr[:, :, ::-1].copy(), "rgb8", EPOCH, pad=7), bgr),
        "/bgra8": (raw_image(np.dstack([bgr, gray]), "bgra8", EPOCH), bgr),
        "/rgba8": (raw_image(np.dstack([bgr[:, :, ::-1], gray]), "rgba8", EPOCH), bgr),
        "/mono8": (raw_image(gray, "mono8", EPOCH), np.dstack([gray] * 3)),
        "/8UC1": (raw_image(gray, "8UC1", EPOCH, pad=3), np.dstack([gray] * 3)),
        "/mono16": (raw_image(wide.astype("<u2"), "mono16", EPOCH), np.dstack([(wide >> 8).astype(np.uint8)] * 3)),
        "/mono16_be": (
            raw_image(wide.astype(">u2"), "mono16", EPOCH, bigendian=True),
            np.dstack([(wide >> 8).astype(np.uint8)] * 3),
        ),
        "/png": (compressed_image(bgr, "png", EPOCH), bgr),
    }  # fmt: skip
    path = write_bag(tmp_path / "enc", {t: [(EPOCH + 1, m)] for t, (m, _) in cases.items()}, storage)
    for topic, (_, expected) in cases.items():
        (frame,) = frames_of(path, topic)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (6, 8, 3), topic
        np.testing.assert_array_equal(frame.image, expected, err_msg=topic)


def test_jpeg_compressed_images_decode_close_to_the_original(tmp_path):
    smooth = cv2.GaussianBlur(camera_frames(1, (48, 64))[0], (0, 0), 3)  # JPEG-friendly content
    path = write_bag(
        tmp_path / "jpg", {"/camera/image_raw/compressed": [(EPOCH, compressed_image(smooth, "jpeg", EPOCH))]}
    )
    (frame,) = frames_of(path)
    assert frame.image.shape == smooth.shape
    assert np.abs(frame.image.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize(
    ("encoding", "order"), [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")]
)
def test_packed_yuv422_keeps_colours_where_they_were(tmp_path, encoding, order):
    """Left half strongly blue (high U), right half strongly red (high V), bottom rows grey: a swap
    of the byte order or of U and V shows up as the wrong colour in the wrong place."""
    h, w = 4, 8
    y = np.full((h, w), 90, np.uint8)
    u = np.full((h, w), 128, np.uint8)
    v = np.full((h, w), 128, np.uint8)
    u[:2, : w // 2], v[:2, w // 2 :] = 230, 230
    y[2:] = 200
    path = write_bag(
        tmp_path / "yuv", {"/cam": [(EPOCH, raw_image(pack_yuv422(y, u, v, order), encoding, EPOCH))]}
    )
    (frame,) = frames_of(path)
    b, g, r = (frame.image[..., i].astype(int) for i in range(3))
    assert (b[:2, : w // 2] > r[:2, : w // 2] + 80).all()  # blue where U was high
    assert (r[:2, w // 2 :] > b[:2, w // 2 :] + 80).all()  # red where V was high
    assert (np.abs(b[2:] - r[2:]) < 8).all() and (np.abs(g[2:] - r[2:]) < 8).all() and (g[2:] > 180).all()


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_mosaics_demosaic_to_the_scene_colour(tmp_path, pattern):
    scene = np.zeros((16, 16, 3), np.uint8)
    scene[:] = (40, 120, 220)  # BGR: orange
    path = write_bag(
        tmp_path / "bayer",
        {"/cam": [(EPOCH, raw_image(bayer_mosaic(scene, pattern), f"bayer_{pattern}8", EPOCH))]},
    )
    (frame,) = frames_of(path)
    np.testing.assert_allclose(frame.image[4:12, 4:12].reshape(-1, 3).mean(0), (40, 120, 220), atol=2)


def test_unsupported_or_inconsistent_images_fail_in_one_line(tmp_path, tiny_onnx):
    depth = raw_image(np.zeros((4, 4), np.float32).view(np.uint8).reshape(4, 16), "32FC1", EPOCH)
    short = raw_image(np.zeros((4, 6, 3), np.uint8), "bgr8", EPOCH)
    short.height = 9  # claims more rows than it carries
    junk = compressed_image(np.zeros((4, 4, 3), np.uint8), "png", EPOCH)
    junk.data = np.frombuffer(b"not an image at all", np.uint8)
    path = write_bag(
        tmp_path / "bad", {"/depth": [(EPOCH, depth)], "/short": [(EPOCH, short)], "/junk": [(EPOCH, junk)]}
    )
    for topic, needle in (
        ("/depth", "encoding '32FC1' is not supported"),
        ("/short", "needs"),
        ("/junk", "cannot decode CompressedImage"),
    ):
        with pytest.raises(EdgesegError, match=needle):
            frames_of(path, topic)
        r = runner.invoke(app, ["run", "--model", str(tiny_onnx()), "--bag", str(path), "--topic", topic])
        assert needle in one_line_error(r)


# --- order, timestamps, realtime --------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_frames_come_in_recorded_order_with_header_stamps_as_capture_times(tmp_path, storage):
    frames = camera_frames(4)
    stamps = [EPOCH + k * 33_000_000 + 123 for k in range(4)]
    msgs = [(stamps[k] + 1_000_000, raw_image(frames[k], "bgr8", stamps[k])) for k in range(4)]
    zero_stamp = raw_image(frames[0], "bgr8", 0)  # a driver that never sets the stamp
    msgs.append((EPOCH + 9 * 10**9, zero_stamp))
    path = write_bag(
        tmp_path / "order", {"/cam": [msgs[i] for i in (2, 0, 4, 3, 1)]}, storage
    )  # written shuffled
    got = frames_of(path, "/cam")
    for k in range(4):
        np.testing.assert_array_equal(got[k].image, frames[k])
        assert got[k].stamp_ns == stamps[k] and got[k].frame_id == "camera_optical"
        assert got[k].name == f"cam_{k:06d}"
    assert got[4].stamp_ns == EPOCH + 9 * 10**9  # no header stamp: the bag's receive time

    r = runner.invoke(
        app, ["run", "--bag", str(path), "--log", str(tmp_path / "log.jsonl"), "--json", "--workers", "1"]
    )
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [rec["stamp_ns"] for rec in records] == [*stamps, EPOCH + 9 * 10**9]
    assert records[1]["captured_at"] == pytest.approx(stamps[1] / 1e9, abs=1e-6)
    assert json.loads(r.stdout)["source"]["kind"] == "bag"


def test_realtime_replays_at_the_recorded_receive_times(tmp_path, tiny_onnx):
    frames = camera_frames(3)
    offsets = [0.0, 0.5, 0.6]  # irregular on purpose: a fixed frame rate cannot match it
    msgs = [
        (EPOCH + int(o * 1e9), raw_image(f, "bgr8", EPOCH + int(o * 1e9))) for o, f in zip(offsets, frames)
    ]
    path = write_bag(tmp_path / "rt", {"/cam": msgs})
    seen = []
    with Pipeline(Segmenter(tiny_onnx()), BagSource(path), realtime=True) as pipe:
        for result in pipe.stream():
            seen.append(result.t_capture)
    assert len(seen) == 3
    gaps = np.diff(seen)
    assert gaps[0] == pytest.approx(0.5, abs=0.12) and gaps[1] == pytest.approx(0.1, abs=0.08)


def test_loop_repeats_the_topic(tmp_path, tiny_onnx):
    path = camera_bag(tmp_path / "loop", camera_frames(3))
    r = runner.invoke(
        app, ["run", "--model", str(tiny_onnx()), "--bag", str(path), "--loop", "--frames", "7", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frames"]["processed"] == 7


# --- ground truth from a labels topic ----------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_labels_topic_pairs_by_stamp_and_scores_the_run(tmp_path, tiny_onnx, storage):
    frames = camera_frames(5)
    rng = np.random.default_rng(9)
    labels = {
        k: rng.integers(0, 3, frames[0].shape[:2], dtype=np.uint8) for k in (0, 2, 3)
    }  # 1 and 4 unlabelled
    labels[0][:2] = 255  # ignore band
    path = camera_bag(tmp_path / "gt", frames, storage=storage, labels=labels)
    model = tiny_onnx()
    r = runner.invoke(
        app, ["run", "--model", str(model), "--bag", str(path), "--labels-topic", "/camera/labels", "--json"]
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    seg, cm = Segmenter(model), ConfusionMatrix(3)
    for k, mask in labels.items():
        cm.update(seg.infer(frames[k]), mask)
    assert report["metrics"]["miou"] == pytest.approx(cm.compute().miou)
    assert report["source"]["labelled"] == 3 and report["frames"]["unlabeled"] == 2
    assert report["metrics"]["pixels"] == 3 * frames[0].size // 3 - 2 * frames[0].shape[1]


def test_labels_topic_problems_are_one_line(tmp_path, tiny_onnx):
    frames = camera_frames(2)
    path = camera_bag(tmp_path / "gt", frames, labels={0: np.zeros((5, 5), np.uint8)})
    model = str(tiny_onnx())
    r = runner.invoke(app, ["run", "--model", model, "--bag", str(path), "--labels-topic", "/camera/labels"])
    assert "label on /camera/labels is 5x5 but its frame on /camera/image_raw is 32x24" in one_line_error(r)
    r = runner.invoke(app, ["run", "--model", model, "--bag", str(path), "--labels-topic", "/nope"])
    assert "no labels topic /nope in bag" in one_line_error(r)
    r = runner.invoke(
        app, ["run", "--model", str(tiny_onnx(num_classes=8)), "--labels-topic", "/camera/labels"]
    )
    assert "select topics of a --bag" in one_line_error(r)


# --- damaged bags and wrong topics -------------------------------------------------------------------
@pytest.mark.parametrize("storage", STORAGES)
def test_damaged_bags_fail_in_one_line(tmp_path, tiny_onnx, storage):
    good = camera_bag(tmp_path / "good", camera_frames(30, (48, 64)), storage=storage)
    (store,) = [p for p in good.iterdir() if p.suffix in (".mcap", ".db3")]
    cut = tmp_path / "cut"
    shutil.copytree(good, cut)
    data = (cut / store.name).read_bytes()
    (cut / store.name).write_bytes(data[: len(data) // 2])  # a recording that died halfway
    garbage = tmp_path / "garbage"
    shutil.copytree(good, garbage)
    (garbage / store.name).write_bytes(os.urandom(4096))
    model = str(tiny_onnx())
    for bad in (cut, garbage):
        r = runner.invoke(
            app, ["run", "--model", model, "--bag", str(bad), "--save-bag", str(tmp_path / "out")]
        )
        text = one_line_error(r)
        assert f"cannot read bag {bad}" in text and "mcap recover" in text
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    r = runner.invoke(
        app, ["run", "--model", model, "--bag", str(good / store.name), "--frames", "2", "--json"]
    )
    assert r.exit_code == 0, r.output  # the storage file alone is a bag too


def test_missing_bags_and_topics_are_one_line(tmp_path, tiny_onnx):
    path = camera_bag(tmp_path / "bag", camera_frames(2))
    write_bag(tmp_path / "two", {"/a": [(EPOCH, raw_image(camera_frames(1)[0], "bgr8", EPOCH))],
                                 "/b": [(EPOCH, raw_image(camera_frames(1)[0], "bgr8", EPOCH))],
                                 "/chatter": [(EPOCH, __import__("bagfiles").String(data="hi"))]})  # fmt: skip
    (tmp_path / "empty").mkdir()
    model = str(tiny_onnx())
    cases = [
        (["--bag", str(path), "--topic", "/camera/nope"], f"no topic /camera/nope in bag {path}; its image topics: /camera/image_raw"),
        (["--bag", str(tmp_path / "missing")], "bag not found"),
        (["--bag", str(tmp_path / "empty")], "has no metadata.yaml: not a rosbag2 folder"),
        (["--bag", str(tmp_path / "two")], "has 2 image topics (/a, /b); choose one with --topic"),
        (["--bag", str(tmp_path / "two"), "--topic", "/chatter"], "carries std_msgs/msg/String"),
        (["--bag", str(path), "--video", "x.mp4"], "video not found: x.mp4"),  # two streams, one model
    ]  # fmt: skip
    for args, needle in cases:
        assert needle in one_line_error(runner.invoke(app, ["run", "--model", model, *args])), args
    r = runner.invoke(
        app, ["run", "--model", str(tiny_onnx(num_classes=8)), "--topic", "/a"]
    )  # synthetic source
    assert "select topics of a --bag" in one_line_error(r)


def test_missing_rosbags_names_the_extra(tmp_path, monkeypatch):
    path = camera_bag(tmp_path / "bag", camera_frames(1))
    for name in [m for m in sys.modules if m == "rosbags" or m.startswith("rosbags.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rosbags", None)  # import -> ImportError, like an uninstalled package
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeseg\[ros\]'"):
        BagSource(path).open()
    with pytest.raises(MissingDependencyError, match=r"edgeseg\[ros\]"):
        BagSink(tmp_path / "out", ["a"])


# --- results as a bag --------------------------------------------------------------------------------
def read_bag(path: Path) -> dict[str, list]:
    with AnyReader([path]) as reader:
        out: dict[str, list] = {}
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
        return out


@pytest.mark.parametrize("storage", STORAGES)
def test_save_bag_holds_class_maps_overlays_and_stats_with_the_source_headers(tmp_path, tiny_onnx, storage):
    frames = camera_frames(4)
    src = camera_bag(tmp_path / "in", frames)
    model = tiny_onnx()
    out = tmp_path / "results"
    r = runner.invoke(app, ["run", "--model", str(model), "--bag", str(src), "--save-bag", str(out),
                            "--save-bag-overlay", "--bag-storage", storage, "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert sorted(p.suffix for p in out.iterdir()) == sorted(
        [".yaml", ".mcap" if storage == "mcap" else ".db3"]
    )
    assert not list(tmp_path.glob(".results*"))
    meta = (out / "metadata.yaml").read_text()
    assert "version: 8" in meta and "edgeseg.classes" in meta  # v8: Humble's rosbag2 reads it
    got = read_bag(out)
    assert sorted(got) == ["/edgeseg/class_map", "/edgeseg/overlay", "/edgeseg/stats"]
    seg = Segmenter(model)
    for k, frame in enumerate(frames):
        stamp = EPOCH + k * 100_000_000
        t, cls = got["/edgeseg/class_map"][k]
        assert t == stamp and cls.encoding == "mono8" and cls.step == cls.width == 32 and cls.height == 24
        assert cls.header.stamp.sec * 10**9 + cls.header.stamp.nanosec == stamp
        assert cls.header.frame_id == "camera_optical"
        np.testing.assert_array_equal(np.asarray(cls.data).reshape(24, 32), seg.infer(frame))
        _, ov = got["/edgeseg/overlay"][k]
        assert ov.encoding == "bgr8" and ov.header.frame_id == "camera_optical"
        expected = seg.overlay(frame, seg.infer(frame))
        assert np.abs(np.asarray(ov.data).reshape(24, 32, 3).astype(int) - expected).max() <= 1
        _, stats = got["/edgeseg/stats"][k]
        rec = json.loads(stats.data)
        assert rec["index"] == k and rec["stamp_ns"] == stamp and rec["latency_ms"] > 0
        assert sum(rec["class_pixels"].values()) == 24 * 32
    assert json.loads(r.stdout)["outputs"][0]["frames"] == 4


def test_save_bag_from_a_video_uses_capture_times_and_refuses_to_overwrite(tmp_path, tiny_onnx):
    from test_runtime import write_video

    write_video(tmp_path / "clip.mp4", 3, size=(24, 32))
    out = tmp_path / "out"
    before = time.time()
    r = runner.invoke(
        app,
        ["run", "--model", str(tiny_onnx()), "--video", str(tmp_path / "clip.mp4"), "--save-bag", str(out)],
    )
    assert r.exit_code == 0, r.output
    stamps = [t for t, _ in read_bag(out)["/edgeseg/class_map"]]
    assert len(stamps) == 3 and all(before - 1 < s / 1e9 < time.time() + 1 for s in stamps)
    r = runner.invoke(
        app,
        ["run", "--model", str(tiny_onnx()), "--video", str(tmp_path / "clip.mp4"), "--save-bag", str(out)],
    )
    assert "exists; a bag is never overwritten" in one_line_error(r)
    r = runner.invoke(
        app,
        ["run", "--model", str(tiny_onnx()), "--video", str(tmp_path / "clip.mp4"), "--save-bag",
         str(tmp_path / "x"), "--bag-storage", "zip"],
    )  # fmt: skip
    assert "unknown bag storage 'zip'" in one_line_error(r)


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bag_write_that_fails_exits_6_and_leaves_no_bag(tmp_path, tiny_onnx, monkeypatch, storage):
    """A full disk under SQLite storage raises sqlite3's error, not OSError: it must still be exit 6
    (output failed) with one line, and the incomplete bag never takes the final name."""
    import sqlite3

    from rosbags.rosbag2 import Writer

    real_write, calls = Writer.write, []

    def write_until_full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 4:  # two frames' messages went in, the third frame meets a full disk
            raise (
                sqlite3.OperationalError("database or disk is full")
                if storage == "sqlite3"
                else OSError(28, "No space left on device")
            )
        return real_write(self, *args, **kwargs)

    src = camera_bag(tmp_path / "in", camera_frames(6))
    monkeypatch.setattr(Writer, "write", write_until_full)
    out = tmp_path / "results"
    r = runner.invoke(app, ["run", "--model", str(tiny_onnx()), "--bag", str(src), "--save-bag", str(out),
                            "--bag-storage", storage, "--workers", "1"])  # fmt: skip
    assert r.exit_code == 6, r.output
    assert "Traceback" not in r.output
    reason = "database or disk is full" if storage == "sqlite3" else "No space left on device"
    assert f"cannot write bag {out}: {reason}" in " ".join(r.output.split())
    assert not out.exists() and not list(tmp_path.glob(".results*"))


def test_a_run_that_stops_early_leaves_a_complete_bag(tmp_path, tiny_onnx):
    """Leaving `stream()` is the path Ctrl-C takes in `run()`: stop, then close the sinks."""
    src = camera_bag(tmp_path / "in", camera_frames(20))
    out = tmp_path / "out"
    with Pipeline(Segmenter(tiny_onnx()), BagSource(src), [BagSink(out, ["a", "b", "c"])]) as pipe:
        for result in pipe.stream():
            if result.index == 2:
                break
    written = read_bag(out)["/edgeseg/class_map"]
    assert 3 <= len(written) < 20 and [t for t, _ in written] == [
        EPOCH + k * 100_000_000 for k in range(len(written))
    ]


def test_ctrl_c_finalises_the_bag(tmp_path, tiny_onnx):
    src = camera_bag(tmp_path / "in", camera_frames(10))
    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeseg", "run", "--model", str(tiny_onnx()), "--bag", str(src), "--loop",
         "--realtime", "--save-bag", str(out), "--report", str(report), "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".out.*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert list(tmp_path.glob(".out.*")), proc.communicate()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    processed = json.loads(report.read_text())["frames"]["processed"]
    written = read_bag(out)
    assert processed > 0 and len(written["/edgeseg/class_map"]) == len(written["/edgeseg/stats"]) == processed
    assert not list(tmp_path.glob(".out.*"))


# --- edgeseg data bag --------------------------------------------------------------------------------
def test_data_bag_lists_image_topics_with_counts_and_encodings(tmp_path):
    frames = camera_frames(3)
    path = write_bag(tmp_path / "rec", {
        "/front/image_raw": [(EPOCH + k, raw_image(f[:, :, ::-1].copy(), "rgb8", EPOCH + k)) for k, f in enumerate(frames)],
        "/front/image_raw/compressed": [(EPOCH, compressed_image(frames[0], "jpeg", EPOCH))],
        "/chatter": [(EPOCH, __import__("bagfiles").String(data="x"))] * 2,
    }, "sqlite3")  # fmt: skip
    r = runner.invoke(app, ["data", "bag", str(path), "--json"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    images = {t["topic"]: t for t in listing["image_topics"]}
    assert images["/front/image_raw"] == {"topic": "/front/image_raw", "type": "sensor_msgs/msg/Image",
                                          "messages": 3, "encoding": "rgb8", "size": [32, 24]}  # fmt: skip
    assert images["/front/image_raw/compressed"]["encoding"] == "jpeg"
    assert listing["other_topics"] == [{"topic": "/chatter", "type": "std_msgs/msg/String", "messages": 2}]
    r = runner.invoke(app, ["data", "bag", str(path)])
    assert r.exit_code == 0 and "/front/image_raw" in r.stdout and "rgb8" in r.stdout and "32x24" in r.stdout
    r = runner.invoke(app, ["data", "bag", str(tmp_path / "nothing")])
    assert "bag not found" in one_line_error(r)
