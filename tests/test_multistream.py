"""Several streams through one model (runtime/multistream.py): frames of every stream really go into
one batch, each result belongs to its own frame, per-stream latest-frame accounting, per-stream and
tiled outputs, a fixed-batch model falling back, TensorRT profiles, streams that end early, errors
and Ctrl-C finalising every output, and `edgeseg run` with several sources."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_run_cli import run_cli, signal_when_writing
from test_runtime import PacedCamera, write_video

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.runtime import MultiStream, Segmenter, open_multistream, open_source, stream
from edgeseg.runtime.backends.base import Backend, BackendOptions
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgeseg.runtime.batcher import plan_batches
from edgeseg.runtime.multistream import open_sources, stream_names, stream_path
from edgeseg.runtime.pipeline import Reconnect
from edgeseg.runtime.request_pool import RequestPool
from edgeseg.runtime.sinks import JsonlSink, MaskSink, Sink, VideoSink
from edgeseg.runtime.sources import Frame, Source
from edgeseg.runtime.tiles import Tiler
from edgeseg.runtime.workers import available_cores


class RecordingBackend(Backend):
    """Real ONNX Runtime inference that records every call's batch (size and input shape) and can
    take at least `delay` seconds per call; says what batches the real session accepts."""

    name = "recording"

    def __init__(self, inner: Backend, delay: float = 0.0) -> None:
        self.inner, self.delay = inner, delay
        self.path, self.card = inner.path, inner.card
        self.shapes: list[tuple[int, ...]] = []

    @property
    def batch_limits(self):
        return self.inner.batch_limits

    @property
    def sizes(self) -> list[int]:
        return [s[0] for s in self.shapes]

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(tuple(batch.shape))
        if self.delay:
            time.sleep(self.delay)
        return self.inner.run(batch)


def recording(model: Path, delay: float = 0.0, card: ModelCard | None = None) -> Segmenter:
    return Segmenter(RecordingBackend(OnnxRuntimeBackend(model, BackendOptions(threads=1, card=card)), delay))


class Frames(Source):
    """A file-like source of `count` distinct random frames of `size`, optionally slow to read."""

    kind = "images"

    def __init__(self, count: int, size=(30, 40), seed: int = 0, delay: float = 0.0, name: str = "f") -> None:
        self.count, self.size, self.seed, self.delay, self.prefix = count, size, seed, delay, name
        self.i = 0
        self.length = count

    def open(self) -> None:
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= self.count:
            return None
        if self.delay:
            time.sleep(self.delay)
        rng = np.random.default_rng([self.seed, self.i])
        self.i += 1
        return Frame(rng.integers(0, 255, (*self.size, 3), dtype=np.uint8), f"{self.prefix}_{self.i - 1:03d}")

    def describe(self):
        return {**super().describe(), "spec": self.prefix}


class TimedSink(Sink):
    """Records what it got and when it was closed; `delay` makes its writes slow (a slow disk)."""

    needs_class_map = False

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.indices, self.closed_at = delay, [], None

    def write(self, result) -> None:
        if self.delay:
            time.sleep(self.delay)
        self.indices.append(result.index)

    def close(self) -> None:
        self.closed_at = self.closed_at or time.perf_counter()


def decoded_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            return frames
        frames.append(image)


# --- naming ----------------------------------------------------------------------------------------
def test_stream_names_are_short_unique_and_safe_in_file_names(tmp_path):
    sources = [
        open_source(camera=0),
        open_source(camera=2),
        open_source(video=tmp_path / "a" / "drive.mp4"),
        open_source(video=tmp_path / "b" / "drive.mp4"),
        open_source(url="rtsp://10.0.0.2:554/stream"),
        open_source(images=str(tmp_path / "val" / "*.png")),
        *open_sources([{"synthetic": 3}, {"synthetic": 3}]),
    ]
    assert stream_names(sources) == [
        "camera0", "camera2", "drive-0", "drive-1", "url-10.0.0.2_554", "val", "synthetic-0", "synthetic-1",
    ]  # fmt: skip
    assert stream_path(tmp_path / "out_{stream}.mp4", "camera0") == tmp_path / "out_camera0.mp4"
    first, second = open_sources([{"synthetic": 2}, {"synthetic": 2}])
    first.open(), second.open()
    assert not np.array_equal(first.read().image, second.read().image)  # two streets, not one twice


# --- batching --------------------------------------------------------------------------------------
def test_ready_frames_of_every_stream_run_as_one_batch(tiny_onnx):
    """Three file streams through a dynamic-batch model: inference calls carry frames of several
    streams at once, and every result is the one its own frame gives alone."""
    model = tiny_onnx(size=(32, 48), batch="N")
    seg = recording(model, delay=0.02)  # inference slower than reading: every stream has a frame ready
    sources = {f"s{i}": Frames(10, size=(30 + 4 * i, 40), seed=i, name=f"s{i}") for i in range(3)}
    multi = MultiStream(seg, sources)
    results = list(multi.stream())
    sizes = seg.backend.sizes
    assert max(sizes) == 3 and sizes.count(3) >= 5, sizes
    assert sum(sizes) == 30 and len(results) == 30
    reference = Segmenter(model)
    for name, source in sources.items():
        mine = [r for r in results if r.stream == name]
        assert [r.index for r in mine] == list(range(10))  # each stream in its own capture order
        for r in mine:
            assert r.frame.shape[:2] == source.size
            np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))
    batching = multi.report()["batching"]
    assert batching["max_batch"] == 3 and batching["model_batch"] == [1, None]
    assert batching["sizes"] == {str(k): sizes.count(k) for k in sorted(set(sizes))}
    assert batching["note"] is None


def test_frames_of_other_input_sizes_go_in_their_own_batches(tiny_onnx):
    """A dynamic N/H/W export (`edgeseg export --dynamic --dynamic-hw`) run at native size (`run
    --native-size`): frames padded to different net sizes cannot share a batch; those of equal size do."""
    from edgeseg.preprocess import NATIVE, at_inference_size

    model = tiny_onnx(dynamic=True)
    native = at_inference_size(Segmenter(model).card, NATIVE)
    seg = recording(model, delay=0.02, card=native)
    sources = {
        "a": Frames(6, size=(30, 40), seed=1),
        "b": Frames(6, size=(28, 60), seed=2),  # a and b pad to 32 x 64 (stride 32), c to 64 x 64
        "c": Frames(6, size=(64, 40), seed=3),
    }
    results = list(MultiStream(seg, sources).stream())
    assert len(results) == 18
    for shape in seg.backend.shapes:
        assert shape[2:] in {(32, 64), (64, 64)}
    assert any(s[0] == 2 and s[2:] == (32, 64) for s in seg.backend.shapes)  # a and b together
    assert all(s[0] == 1 for s in seg.backend.shapes if s[2:] == (64, 64))  # c always alone
    reference = Segmenter(model, BackendOptions(card=native))
    for r in results:
        np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))


def test_a_fixed_batch_model_runs_frames_one_at_a_time_and_says_so_once(tiny_onnx, capsys):
    model = tiny_onnx(size=(32, 48))  # batch axis fixed at 1, as the shipped default model
    seg = recording(model)
    multi = MultiStream(seg, [Frames(5, seed=1, name="a"), Frames(5, seed=2, name="b")])
    stats = multi.run()
    assert stats.processed == 10 and set(seg.backend.sizes) == {1}
    note = multi.report()["batching"]["note"]
    assert note.startswith("tiny.onnx has a fixed batch of 1: 2 streams run one frame at a time")
    assert "edgeseg export tiny --dynamic" in note
    err = capsys.readouterr().err
    assert err.count("fixed batch of 1") == 1 and "\n" not in err.strip()


def test_a_model_that_cannot_run_one_frame_is_refused_with_what_to_do(tiny_onnx):
    seg = Segmenter(tiny_onnx(batch=4))  # an ONNX exported elsewhere with batch 4 baked in
    with pytest.raises(EdgesegError, match=r"only runs batches of 4 frames.*edgeseg export tiny --dynamic"):
        MultiStream(seg, [Frames(2), Frames(2, seed=1)])
    with pytest.raises(EdgesegError, match="max_batch must be at least 1"):
        plan_batches(seg.backend, 2, 0)


def test_tensorrt_engines_batch_within_their_profile(monkeypatch, tmp_path, tiny_onnx):
    """The fake TensorRT runs the engine's ONNX with ONNX Runtime, so the numbers are real; the
    profile bounds (min/max batch) are enforced by TensorRTBackend itself."""
    from fake_tensorrt.install import install_trt

    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions

    install_trt(monkeypatch, "10.3.0")
    onnx = tiny_onnx(size=(32, 64), dynamic=True)
    engine = tmp_path / "tiny.fp32.engine"
    build_engine(
        onnx,
        engine,
        EngineOptions(min_shape=(1, 3, 32, 64), opt_shape=(2, 3, 32, 64), max_shape=(2, 3, 32, 64)),
    )
    seg = Segmenter(engine)
    calls: list[int] = []
    submit = seg.backend.submit
    monkeypatch.setattr(seg.backend, "submit", lambda batch: calls.append(batch.shape[0]) or submit(batch))
    sources = [Frames(6, size=(30, 60), seed=i, name=f"cam{i}") for i in range(3)]
    multi = MultiStream(seg, sources)
    results = list(multi.stream())
    assert len(results) == 18 and max(calls) == 2 and sum(calls) == 18
    note = multi.report()["batching"]["note"]
    assert "takes batches of at most 2: 3 streams run in batches of at most 2" in note
    assert "edgeseg build tiny.onnx --target tensorrt --max-batch 3" in note
    reference = Segmenter(onnx)
    for r in results:
        np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))
    seg.close()

    from_two = tmp_path / "from-two.fp32.engine"
    build_engine(
        onnx,
        from_two,
        EngineOptions(min_shape=(2, 3, 32, 64), opt_shape=(2, 3, 32, 64), max_shape=(4, 3, 32, 64)),
    )
    with (
        Segmenter(from_two) as seg2,
        pytest.raises(EdgesegError, match=r"only runs batches of 2 to 4.*--max-batch 3"),
    ):
        MultiStream(seg2, sources)


def test_a_default_tensorrt_profile_batches_every_stream_up_to_its_max(monkeypatch, tmp_path, tiny_onnx):
    """An engine built from a dynamic-batch ONNX with no shapes given takes batches 1..ENGINE_MAX_BATCH
    (it was batch 1 only): three streams run as batches of three; more streams than that run in
    batches of the maximum, said once with the rebuild command; H and W stay the export's."""
    from fake_tensorrt.install import install_trt

    from edgeseg.defaults import ENGINE_MAX_BATCH
    from edgeseg.export.tensorrt_build import build_engine
    from edgeseg.export.tensorrt_plan import EngineOptions

    install_trt(monkeypatch, "8.6.1")
    onnx = tiny_onnx(size=(32, 64), batch="N")  # `edgeseg export --dynamic`: the batch alone
    engine = tmp_path / "tiny.fp32.engine"
    info = build_engine(onnx, engine, EngineOptions()).info
    top = ENGINE_MAX_BATCH
    assert info["profiles"]["input"] == {
        "min": [1, 3, 32, 64],
        "opt": [top, 3, 32, 64],
        "max": [top, 3, 32, 64],
    }
    for streams in (3, top + 2):
        with Segmenter(engine) as seg:
            assert seg.backend.batch_limits == (1, top)
            calls: list[int] = []
            submit = seg.backend.submit
            monkeypatch.setattr(
                seg.backend, "submit", lambda b, s=submit, c=calls: c.append(b.shape[0]) or s(b)
            )
            sources = [Frames(4, size=(45, 70), seed=i, name=f"cam{i}") for i in range(streams)]
            multi = MultiStream(seg, sources)
            results = list(multi.stream())
            assert len(results) == 4 * streams and max(calls) <= min(streams, top)
            note = multi.report()["batching"]["note"]
            if streams <= top:
                assert note is None
            else:
                assert (
                    f"takes batches of at most {top}: {streams} streams run in batches of at most {top}"
                    in note
                )
                assert f"--max-batch {streams}" in note


# --- per-stream semantics ----------------------------------------------------------------------------
def test_latest_frame_and_accounting_hold_per_stream(tiny_onnx, tmp_path):
    """A fast camera and a video through a slow model: the camera drops (counted), the video keeps
    every frame, and per stream processed + dropped == captured."""
    write_video(tmp_path / "clip.mp4", 10)
    seg = recording(tiny_onnx(batch="N"), delay=0.03)
    multi = MultiStream(
        seg, {"cam": PacedCamera(count=60, period=0.004), "clip": open_source(video=tmp_path / "clip.mp4")}
    )
    results = list(multi.stream())
    report = multi.report()
    per = {s["stream"]: s for s in report["streams"]}
    cam, clip = per["cam"]["frames"], per["clip"]["frames"]
    assert cam["captured"] == 60 and cam["dropped"] > 0
    assert cam["processed"] + cam["dropped"] == cam["captured"]
    assert clip == {"captured": 10, "processed": 10, "dropped": 0, "unlabeled": 0}
    cam_results = [r for r in results if r.stream == "cam"]
    indices = [r.index for r in cam_results]
    assert indices == sorted(indices) and len(indices) == cam["processed"]
    assert sum(r.dropped_before for r in cam_results) + (59 - indices[-1]) == cam["dropped"]
    assert [r.index for r in results if r.stream == "clip"] == list(range(10))
    assert report["frames"]["captured"] == 70 and report["frames"]["dropped"] == cam["dropped"]
    assert report["frames"]["processed"] == len(results) and per["cam"]["live"] and not per["clip"]["live"]


def test_a_slow_stream_never_holds_back_a_fast_one(tiny_onnx):
    """A stream that is slow to read, and one whose output is slow to write, against a fast one: the
    fast stream finishes long before them (its frames run alone when theirs are not ready)."""
    seg = recording(tiny_onnx(batch="N"))
    slow_sink, fast_sink = TimedSink(delay=0.05), TimedSink()
    multi = MultiStream(
        seg,
        {"slowread": Frames(6, delay=0.06), "slowwrite": Frames(6, seed=2), "fast": Frames(40, seed=3)},
        {"slowwrite": [slow_sink], "fast": [fast_sink]},
    )
    multi.run()
    lanes = {lane.name: lane for lane in multi.lanes}
    fast_end = lanes["fast"].stats.last_done
    assert fast_sink.indices == list(range(40)) and slow_sink.indices == list(range(6))
    assert fast_end < lanes["slowread"].stats.last_done - 0.1
    assert fast_end < lanes["slowwrite"].stats.last_done - 0.1
    assert 1 in seg.backend.sizes


def test_a_live_source_that_ends_while_others_continue(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 25)
    seg = recording(tiny_onnx(batch="N"), delay=0.01)
    cam_sink, clip_sink = TimedSink(), TimedSink()
    multi = MultiStream(
        seg,
        {"cam": PacedCamera(count=5, period=0.01), "clip": Frames(25, delay=0.02)},
        {"cam": [cam_sink], "clip": [clip_sink]},
    )
    stats = multi.run()
    report = {s["stream"]: s for s in multi.report()["streams"]}
    assert report["cam"]["gaps"][0]["reason"] == "source stopped delivering"
    assert report["cam"]["frames"]["captured"] == 5
    assert report["clip"]["frames"]["processed"] == 25 and clip_sink.indices == list(range(25))
    assert cam_sink.closed_at < clip_sink.closed_at - 0.2  # its outputs were finalised when it ended
    assert not stats.interrupted


def test_mixed_synthetic_and_video_with_per_stream_outputs(tiny_onnx, tmp_path):
    """{stream} outputs: one playable video, one mask folder and one JSONL per stream; ground truth
    of the synthetic stream scores it (and the total), the video has none."""
    write_video(tmp_path / "clip.mp4", 6, size=(48, 64))
    model = tiny_onnx(num_classes=8, size=(32, 64), batch="N")
    seg = Segmenter(model)
    sources = open_sources([{"synthetic": 5}, {"video": tmp_path / "clip.mp4"}], synthetic_size=(64, 128))

    def outputs(name: str) -> list[Sink]:
        return [
            VideoSink(stream_path(tmp_path / "out_{stream}.mp4", name)),
            MaskSink(tmp_path / "masks" / name),
            JsonlSink(stream_path(tmp_path / "log_{stream}.jsonl", name), seg.classes),
        ]

    multi = open_multistream(seg, sources, outputs)
    results = list(multi.stream())
    report = multi.report()
    per = {s["stream"]: s for s in report["streams"]}
    assert set(per) == {"synthetic", "clip"}
    for name, count, size in [("synthetic", 5, (64, 128)), ("clip", 6, (48, 64))]:
        frames = decoded_frames(tmp_path / f"out_{name}.mp4")
        assert len(frames) == count == per[name]["frames"]["processed"] and frames[0].shape[:2] == size
        lines = [json.loads(x) for x in (tmp_path / f"log_{name}.jsonl").read_text().splitlines()]
        assert [x["index"] for x in lines] == list(range(count)) and {x["stream"] for x in lines} == {name}
        mine = [r for r in results if r.stream == name]
        saved = cv2.imread(str(tmp_path / "masks" / name / f"{mine[-1].name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(saved, mine[-1].class_map)
    assert per["synthetic"]["metrics"]["miou"] is not None and per["clip"]["metrics"] is None
    assert report["metrics"]["miou"] == pytest.approx(per["synthetic"]["metrics"]["miou"])
    assert [o["sink"] for o in per["clip"]["outputs"]] == ["video", "masks", "log"]
    assert not list(tmp_path.rglob(".*partial*"))


def test_tiles_put_every_stream_side_by_side(tiny_onnx, tmp_path):
    model = tiny_onnx(batch="N")
    sources = {f"s{i}": Frames(n, size=(30, 40), seed=i) for i, n in enumerate([4, 6, 8])}
    multi = MultiStream(Segmenter(model), sources, tile=VideoSink(tmp_path / "grid.mp4"))
    multi.run()
    frames = decoded_frames(tmp_path / "grid.mp4")
    assert frames[0].shape == (60, 80, 3)  # 3 streams: a 2 x 2 grid of 30 x 40 cells
    assert 8 <= len(frames) <= 18 and multi.report()["outputs"][0]["frames"] == len(frames)
    assert frames[-1][34:, 44:].mean() < 3 < frames[-1][34:, 4:36].mean()  # the fourth cell stays black


def test_tiler_composes_the_newest_frames_with_their_names():
    class Keep(Sink):
        def __init__(self):
            self.images = []

        def write(self, result):
            self.images.append(result.rendered)

    inner = Keep()
    tiler = Tiler(inner, ["left", "right"])
    a, b = np.full((60, 80, 3), 50, np.uint8), np.full((60, 80, 3), 100, np.uint8)
    tiler.put(0, a)
    assert inner.images == []  # waits for the other stream's frame of this round
    tiler.put(1, b)
    tiler.put(0, a + 1)
    tiler.put(0, a + 2)  # the left stream's next frame before the right's: the round is written
    assert len(inner.images) == 2
    grid = inner.images[1]
    assert grid.shape == (60, 160, 3)
    assert (grid[30:, :80] == 51).all() and (grid[30:, 80:] == 100).all()  # the right one repeats
    assert (grid[:30, :80] == 255).any() and (grid[:30, 80:] == 255).any()  # the names, in white
    tall = np.full((120, 80, 3), 200, np.uint8)  # another size: letterboxed into the 60 x 80 cell
    tiler.put(1, tall)
    tiler.stream_ended(0)
    tiler.stream_ended(1)
    last = inner.images[-1]
    assert len(inner.images) == 3 and last.shape == (60, 160, 3)
    assert (last[40:, 80:100] == 0).all() and (last[40:, 105:135] == 200).all()  # bars left and right


# --- stopping ----------------------------------------------------------------------------------------
class BrokenSink(Sink):
    needs_class_map = False

    def write(self, result) -> None:
        if result.index == 3:
            raise EdgesegError("disk full")


def test_a_failing_stream_stops_the_run_and_every_output_is_finalised(tiny_onnx, tmp_path):
    model = tiny_onnx(batch="N")
    good = VideoSink(tmp_path / "good.mp4")
    multi = MultiStream(
        Segmenter(model),
        {"good": Frames(500, seed=1), "bad": Frames(500, seed=2)},
        {"good": [good], "bad": [BrokenSink()]},
    )
    with pytest.raises(EdgesegError, match="disk full"):
        multi.run()
    assert 0 < good.frames < 500 and len(decoded_frames(tmp_path / "good.mp4")) == good.frames
    assert not list(tmp_path.glob(".*partial*"))
    assert not any(t.name.startswith("edgeseg-") for t in threading.enumerate())


class DamagedFrames(Frames):
    """A file source whose third frame cannot be decoded."""

    def read(self) -> Frame | None:
        if self.i == 2:
            raise EdgesegError("frame 2 is damaged")
        return super().read()


class LateCamera(Frames):
    """A live source that is not up yet (its open fails until the reconnect timeout would run out)."""

    live = True

    def open(self) -> None:
        raise EdgesegError("camera not up yet")


def test_a_stream_failing_while_another_waits_for_its_camera_is_the_error(tiny_onnx):
    """Stopping the waiting stream ends its wait with an interruption; the run must still report the
    first stream's failure, not a Ctrl-C nobody pressed (exit 130)."""
    multi = MultiStream(
        Segmenter(tiny_onnx(batch="N")),
        {"first": DamagedFrames(500, seed=1), "late": LateCamera(5)},
        reconnect=Reconnect(enabled=True, timeout=60),
    )
    started = time.monotonic()
    with pytest.raises(EdgesegError, match="frame 2 is damaged"):
        multi.run()
    assert time.monotonic() - started < 30 and not multi.stats.interrupted


def test_stream_api_with_several_sources_stops_early_and_finalises(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 30)
    got = []
    videos = {}

    def sinks(name):
        videos[name] = VideoSink(tmp_path / f"{name}.mp4")
        return [videos[name]]

    model = tiny_onnx(num_classes=8, batch="N")
    sources = [{"video": tmp_path / "clip.mp4"}, {"synthetic": 50}]
    for r in stream(model, sources=sources, sinks=sinks, loop=True, synthetic_size=(64, 128)):
        got.append((r.stream, r.class_map.shape))
        if {s for s, _ in got} == {"clip", "synthetic"}:
            break
    assert all(shape == ((50, 70) if s == "clip" else (64, 128)) for s, shape in got)
    for name, sink in videos.items():
        assert sink.writer is None and len(decoded_frames(tmp_path / f"{name}.mp4")) == sink.frames > 0
    assert not any(t.name.startswith("edgeseg-") for t in threading.enumerate())
    with pytest.raises(EdgesegError, match="share one batched inference worker"):
        next(stream(model, sources=[{"synthetic": 2}, {"synthetic": 2}], workers=2))
    with pytest.raises(EdgesegError, match="a function of the stream's name"):
        MultiStream(Segmenter(model), [Frames(1), Frames(1)], [VideoSink(tmp_path / "x.mp4")])


# --- the command line -----------------------------------------------------------------------------------
def test_cli_runs_several_sources_through_one_model(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 6, size=(48, 64))
    model = tiny_onnx(num_classes=8, size=(32, 64), batch="N")
    r = run_cli(
        "--model", str(model), "--synthetic", "--synthetic", "--video", str(tmp_path / "clip.mp4"),
        "--frames", "5", "--save", str(tmp_path / "out_{stream}.mp4"), "--log", str(tmp_path / "f_{stream}.jsonl"),
        "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    names = [s["stream"] for s in report["streams"]]
    assert names == ["clip", "synthetic-0", "synthetic-1"]
    assert [s["frames"]["processed"] for s in report["streams"]] == [5, 5, 5]
    assert report["frames"]["processed"] == 15 and report["source"]["kind"] == "3 streams"
    # on a CPU one model serves a request per core side by side, a frame each (docs/runtime.md)
    requests = min(3, available_cores())
    assert report["batching"]["max_batch"] == (1 if requests > 1 else 3)
    assert report["batching"]["in_flight"] == requests
    assert sum(int(k) * v for k, v in report["batching"]["sizes"].items()) == 15
    assert report["fps"] > 0 and report["latency_ms"]["capture_to_result"]["p50"] > 0
    assert all(s["fps"] > 0 and s["latency_ms"]["capture_to_result"]["p99"] for s in report["streams"])
    for name in names:
        assert len(decoded_frames(tmp_path / f"out_{name}.mp4")) == 5
        assert len((tmp_path / f"f_{name}.jsonl").read_text().splitlines()) == 5
    table = run_cli("--model", str(model), "--synthetic", "--synthetic", "--frames", "3")
    assert table.exit_code == 0 and "streams" in table.stdout and "synthetic-1" in table.stdout
    assert "batched inference:" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--synthetic", "--synthetic", "--save", "out.mp4"], "--save with 2 streams needs {stream}"),
        (["--synthetic", "--synthetic", "--log", "f.jsonl"], "--log with 2 streams needs {stream}"),
        (["--synthetic", "--synthetic", "--workers", "2"], "--workers is for a single source"),
        (["--synthetic", "--tile", "--save", "out.mp4"], "--tile puts several streams side by side"),
        (["--synthetic", "--synthetic", "--tile"], "--tile arranges what --show and --save draw"),
    ],
)
def test_cli_multi_stream_option_errors_are_one_line(tiny_onnx, tmp_path, args, message):
    r = run_cli("--model", str(tiny_onnx(num_classes=8)), *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_fixed_batch_model_warns_once_and_tiles(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 4, size=(48, 64))
    r = run_cli(
        "--model", str(tiny_onnx(num_classes=8)), "--synthetic", "--video", str(tmp_path / "clip.mp4"),
        "--frames", "4", "--save", str(tmp_path / "grid.mp4"), "--tile", "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    # on a CPU each request carries one frame anyway (docs/runtime.md): a fixed batch costs nothing
    # there, so nothing is said; a GPU backend says it once (test_a_fixed_batch_model_runs_frames_...)
    assert "fixed batch of 1" not in r.stderr or available_cores() < 2
    report = json.loads(r.stdout)
    assert report["batching"]["sizes"] == {"1": 8}
    frames = decoded_frames(tmp_path / "grid.mp4")
    assert frames[0].shape in {
        (48, 128, 3),
        (32, 96, 3),
    }  # two cells side by side (clip 48x64, synthetic 32x48)
    assert report["outputs"][0]["frames"] == len(frames) >= 4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_finalises_every_stream_output(tiny_onnx, tmp_path, sig):
    write_video(tmp_path / "a.mp4", 20, size=(48, 64))
    write_video(tmp_path / "b.mp4", 20, size=(40, 56))
    report = tmp_path / "report.json"
    partials = [tmp_path / ".out_a.*.partial.mp4", tmp_path / ".out_b.*.partial.mp4"]
    code, stderr = signal_when_writing(
        ["run", "--model", str(tiny_onnx(batch="N")), "--video", str(tmp_path / "a.mp4"),
         "--video", str(tmp_path / "b.mp4"), "--loop", "--save", str(tmp_path / "out_{stream}.mp4"),
         "--report", str(report), "--threads", "1"],
        partials, sig,
    )  # fmt: skip
    assert code == (143 if sig == signal.SIGTERM else 130), stderr  # SIGTERM: 143 (systemd)
    data = json.loads(report.read_text())
    assert data["interrupted"]
    for s in data["streams"]:
        processed = s["frames"]["processed"]
        assert processed > 0 and len(decoded_frames(tmp_path / f"out_{s['stream']}.mp4")) == processed
        assert s["outputs"][0]["frames"] == processed
    assert not list(tmp_path.glob(".*partial*"))


def test_several_streams_never_import_torch(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 3)
    model = tiny_onnx(num_classes=8, batch="N")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom edgeseg.cli import app\n"
        f"r = CliRunner().invoke(app, ['run', '--model', {str(model)!r}, '--video', {str(tmp_path / 'clip.mp4')!r},"
        " '--synthetic', '--frames', '3', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_windows_per_stream_and_a_tiled_window_are_shown_from_the_main_thread(tiny_onnx, monkeypatch):
    """No display here: record what the windows would show, and from which thread (GUI toolkits
    want the main thread); "q" in any window stops the run."""
    from edgeseg.runtime import sinks
    from edgeseg.runtime.sinks import WindowSink

    shown: list[tuple[str, str, tuple[int, ...]]] = []
    keys = iter([-1] * 40 + [ord("q")] + [-1] * 10_000)
    monkeypatch.setattr(sinks, "display_problem", lambda: None)
    monkeypatch.setattr(
        cv2, "imshow", lambda title, img: shown.append((threading.current_thread().name, title, img.shape))
    )
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    seg = recording(tiny_onnx(batch="N"), delay=0.01)
    sources = {"a": Frames(10_000, size=(30, 40)), "b": Frames(10_000, size=(30, 40), seed=1)}
    multi = MultiStream(seg, sources, lambda name: [WindowSink(f"w-{name}")], tile=WindowSink("grid"))
    stats = multi.run()
    assert stats.interrupted and {thread for thread, _, _ in shown} == {threading.main_thread().name}
    by_title = {title: shape for _, title, shape in shown}
    assert by_title == {"w-a": (30, 40, 3), "w-b": (30, 40, 3), "grid": (30, 80, 3)}


def test_two_bags_through_one_model_write_one_result_bag_each(tiny_onnx, tmp_path):
    pytest.importorskip("rosbags")
    from bagfiles import EPOCH, camera_bag, camera_frames
    from rosbags.highlevel import AnyReader

    fronts, rears = camera_frames(3, seed=1), camera_frames(4, seed=2)
    front, rear = camera_bag(tmp_path / "front", fronts), camera_bag(tmp_path / "rear", rears)
    model = tiny_onnx(size=(24, 32), batch="N")
    r = run_cli(
        "--model", str(model), "--bag", str(front), "--bag", str(rear),
        "--save-bag", str(tmp_path / "out_{stream}"), "--json",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [s["stream"] for s in report["streams"]] == ["front", "rear"]
    assert report["batching"]["max_batch"] == (1 if available_cores() > 1 else 2)  # CPU: a frame a request
    reference = Segmenter(model)
    for name, frames in [("front", fronts), ("rear", rears)]:
        with AnyReader([tmp_path / f"out_{name}"]) as reader:
            maps = [
                (t, reader.deserialize(raw, conn.msgtype))
                for conn, t, raw in reader.messages()
                if conn.topic == "/edgeseg/class_map"
            ]
        assert [t for t, _ in maps] == [EPOCH + k * 100_000_000 for k in range(len(frames))]
        for (_, msg), frame in zip(maps, frames):
            np.testing.assert_array_equal(np.asarray(msg.data).reshape(24, 32), reference.infer(frame))
    bad = run_cli(
        "--model", str(model), "--bag", str(front), "--bag", str(rear), "--save-bag", str(tmp_path / "o")
    )
    assert bad.exit_code == 2 and "--save-bag with 2 streams needs {stream}" in bad.output


def test_the_live_view_serves_every_stream_side_by_side(tiny_onnx):
    """--serve with several streams: one server, the tiles as its MJPEG frames, the total's stats."""
    import urllib.request

    from edgeseg.runtime.draw import Renderer
    from edgeseg.runtime.sinks import LiveViewSink

    model = tiny_onnx(batch="N")
    seg = Segmenter(model)
    live = LiveViewSink("127.0.0.1:0", renderer=Renderer(seg.palette, seg.classes), title="two")
    sources = {"a": Frames(10_000, size=(30, 40)), "b": Frames(10_000, size=(30, 40), seed=1)}
    multi = MultiStream(seg, sources, tile=live)
    thread = threading.Thread(target=multi.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        stats: dict = {}
        while time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(live.url + "stats.json", timeout=5) as resp:
                    stats = json.loads(resp.read())
                if stats.get("frames", {}).get("processed", 0) >= 6:
                    break
        assert stats["frames"]["processed"] >= 6  # the total over both streams
        with urllib.request.urlopen(live.url + "frame.jpg", timeout=5) as resp:
            grid = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)
        assert grid.shape == (30, 80, 3)  # the two streams side by side
    finally:
        multi.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert multi.report()["outputs"][0]["outputs"][0]["sink"] == "live view"


def test_onnx_runtime_spins_only_while_a_file_stream_keeps_the_batcher_busy(tiny_onnx):
    """Cameras set the pace, so the session's threads should sleep between frames (see test_idle_cpu);
    one file stream keeps the batcher busy, where spinning between operators is the faster choice."""
    model = tiny_onnx(batch="N")
    ort = BackendOptions(backend="onnxruntime")
    cameras = open_multistream(model, [PacedCamera(1, 0.0), PacedCamera(1, 0.0)], options=ort)
    mixed = open_multistream(model, [PacedCamera(1, 0.0), Frames(1)], options=ort)
    assert cameras.segmenter.backend.options.spin_wait is False
    assert mixed.segmenter.backend.options.spin_wait is True
    for multi in (cameras, mixed):
        multi.segmenter.close()


def test_tile_label_outline_hugs_its_text():
    """The dark outline under a stream's name ends where the white text ends (it used to be drawn with
    a thicker stroke, which OpenCV advances further per glyph, so it ran ~1 px per letter wider)."""
    from edgeseg.runtime.tiles import _label

    cell = np.full((40, 200, 3), 128, np.uint8)
    _label(cell, "synthetic-00")
    grey = cell.astype(int).sum(axis=2)
    white_cols = np.flatnonzero((grey > 600).any(axis=0))
    dark_cols = np.flatnonzero((grey < 150).any(axis=0))
    assert white_cols.size and dark_cols.size
    assert dark_cols.max() - white_cols.max() <= 2 and white_cols.min() - dark_cols.min() <= 2


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_cpu_streams_share_one_model_with_a_request_per_core(tiny_onnx, runtime):
    """Several streams on a CPU: one model (one ONNX Runtime session / one OpenVINO compiled model)
    keeps a request per core in flight, a frame each and a core's share of the threads, instead of
    one request with every thread running batches; every result is its own frame's."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    model = tiny_onnx(size=(32, 48), batch="N", hidden=8)
    sources = [Frames(6, size=(30 + 4 * i, 40), seed=i, name=f"s{i}") for i in range(3)]
    multi = open_multistream(model, sources, options=BackendOptions(backend=runtime, threads=2))
    backend = multi.segmenter.backend
    assert backend.name == runtime and isinstance(multi.batcher, RequestPool)
    assert backend.options.streams == 2 and backend.options.threads == 1
    results = list(multi.stream())
    requests = multi.batcher.backends
    assert len(requests) == 2 and requests[0] is backend  # the second was spawned from the model
    if runtime == "onnxruntime":
        assert requests[1].session is backend.session  # one session: one copy of the weights
    else:
        assert requests[1]._compiled is backend._compiled
    report = multi.report()["batching"]
    assert len(results) == 18 and report["sizes"] == {"1": 18} and report["in_flight"] == 2
    assert [r.index for r in results if r.stream == "s0"] == list(range(6))  # capture order kept
    with Segmenter(model, BackendOptions(backend=runtime)) as reference:
        for r in results:
            np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))


class SharedRequests(Backend):
    """A model opened for two requests at once on a CPU (as launch.cpu_streams opens one), whose
    requests record which thread ran each frame, take `delay` s each and fail at frame `fail_at`."""

    name = "shared"

    def __init__(self, inner: Backend, delay: float = 0.0, fail_at: int | None = None, log=None) -> None:
        self.inner, self.delay, self.fail_at = inner, delay, fail_at
        self.path, self.card = inner.path, inner.card
        self.options = BackendOptions(streams=2, threads=1)
        self.log = log if log is not None else []

    @property
    def batch_limits(self):
        return self.inner.batch_limits

    def spawn(self) -> Backend:
        return SharedRequests(self.inner, self.delay, self.fail_at, self.log)

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        self.log.append((id(self), threading.get_ident()))
        if self.fail_at is not None and len(self.log) > self.fail_at:
            raise EdgesegError("request failed")
        time.sleep(self.delay)
        return self.inner.run(batch)


def test_each_cpu_request_runs_on_its_own_thread_and_takes_any_streams_frame(tiny_onnx):
    """Two requests, each driven by its own thread (no batcher thread between them and the streams):
    every frame of every stream runs, each request always on the same thread, both requests busy."""
    model = tiny_onnx(batch="N")
    backend = SharedRequests(OnnxRuntimeBackend(model, BackendOptions(threads=1)), delay=0.01)
    multi = MultiStream(Segmenter(backend), {"a": Frames(10, seed=1), "b": Frames(10, seed=2)})
    assert multi.requests == 2 and multi.plan.max_batch == 1
    multi.run()
    assert multi.stats.processed == 20
    threads_of: dict[int, set[int]] = {}
    for request, thread in backend.log:
        threads_of.setdefault(request, set()).add(thread)
    assert len(threads_of) == 2 and all(len(t) == 1 for t in threads_of.values())
    assert len({next(iter(t)) for t in threads_of.values()}) == 2  # two threads, one per request
    assert not any(t.name.startswith("edgeseg-request") for t in threading.enumerate())


def test_a_failing_cpu_request_stops_every_stream_and_is_the_error(tiny_onnx, tmp_path):
    model = tiny_onnx(batch="N")
    backend = SharedRequests(OnnxRuntimeBackend(model, BackendOptions(threads=1)), fail_at=20)
    good = VideoSink(tmp_path / "good.mp4")
    multi = MultiStream(
        Segmenter(backend), {"a": Frames(500, seed=1), "b": Frames(500, seed=2)}, {"a": [good]}
    )
    with pytest.raises(EdgesegError, match="request failed"):
        multi.run()
    assert good.frames < 500 and not list(tmp_path.glob(".*partial*"))  # finalised, not left half-written
    if good.frames:  # the failure may come before stream a's first frame reached its video
        assert len(decoded_frames(tmp_path / "good.mp4")) == good.frames
    assert not any(t.name.startswith("edgeseg-") for t in threading.enumerate())


def test_onnx_runtime_spawns_share_the_session_only_for_several_cpu_streams(tiny_onnx):
    model = tiny_onnx(batch="N")
    shared = OnnxRuntimeBackend(model, BackendOptions(threads=1, streams=2))
    alone = OnnxRuntimeBackend(model, BackendOptions(threads=1))
    assert shared.spawn().session is shared.session  # several streams: one copy of the weights
    assert alone.spawn().session is not alone.session  # a single stream's second worker: its own
