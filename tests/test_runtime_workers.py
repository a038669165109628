"""Frame-parallel inference: several workers, each with its own backend, results back in capture
order; the worker plan `edgeseg run` uses; spawned backends are released."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from test_run_cli import run_cli
from test_runtime import PacedCamera, write_video

from edgeseg.errors import EdgesegError
from edgeseg.runtime import BackendOptions, Pipeline, Segmenter, stream
from edgeseg.runtime.backends.base import Backend
from edgeseg.runtime.backends.onnxruntime import OnnxRuntimeBackend
from edgeseg.runtime.sources import Frame, Source
from edgeseg.runtime.workers import AUTO_MAX_MODEL_BYTES, WorkerPlan, plan_workers


class NumberedFrames(Source):
    """A file-like source of `count` frames; frame i is filled with the value 8 * i."""

    kind = "images"

    def __init__(self, count: int) -> None:
        self.count, self.i = count, 0

    def open(self) -> None:
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= self.count:
            return None
        self.i += 1
        rng = np.random.default_rng(self.i)
        image = rng.integers(0, 255, (20 + self.i, 30, 3), dtype=np.uint8)  # sizes differ too
        image[0, 0] = 8 * (self.i - 1)
        return Frame(image, f"frame_{self.i - 1:03d}")


class UnevenBackend(Backend):
    """Real ONNX Runtime inference that takes 40 ms on even frames and none on odd ones, so two
    workers finish frames out of order. Records the order in which frames finished."""

    name = "uneven"

    def __init__(self, inner: Backend, key_to_index: dict[float, int], finished: list[int]) -> None:
        self.inner, self.key_to_index, self.finished = inner, key_to_index, finished
        self.path, self.card = inner.path, inner.card
        self.closed = False

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        index = self.key_to_index[float(batch[0, 0, 0, 0])]
        if index % 2 == 0:
            time.sleep(0.04)
        out = self.inner.run(batch)
        self.finished.append(index)
        return out

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class UnevenSegmenter(Segmenter):
    """Every worker (the segmenter's own and the spawned ones) is an UnevenBackend."""

    def __init__(self, artifact, count: int) -> None:
        self.finished: list[int] = []
        self.spawned: list[UnevenBackend] = []
        probe = Segmenter(artifact)
        keys = {}
        src = NumberedFrames(count)
        while (frame := src.read()) is not None:
            keys[float(probe.preprocess(frame.image)[0][0, 0, 0, 0])] = len(keys)
        assert len(keys) == count, "frames must be told apart by their first input value"
        self.keys = keys
        super().__init__(UnevenBackend(probe.backend, keys, self.finished))

    def spawn_backend(self) -> Backend:
        backend = UnevenBackend(
            OnnxRuntimeBackend(self.backend.path, BackendOptions(threads=1)), self.keys, self.finished
        )
        self.spawned.append(backend)
        return backend


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_return_every_frame_in_capture_order(tiny_onnx, workers):
    model = tiny_onnx(size=(32, 48))
    seg = UnevenSegmenter(model, count=12)
    results = list(Pipeline(seg, NumberedFrames(12), workers=workers).stream())
    assert [r.index for r in results] == list(range(12))
    assert seg.finished != sorted(seg.finished), "the workers should have finished out of order"
    assert sorted(seg.finished) == list(range(12))
    reference = Segmenter(model)
    for r in results:  # each result belongs to its own frame, at that frame's size
        assert r.class_map.shape == r.frame.shape[:2] and r.dropped_before == 0
        np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))
    assert len(seg.spawned) == workers - 1 and all(b.closed for b in seg.spawned)
    assert not seg.backend.closed  # the caller's backend stays usable


def test_workers_keep_latest_frame_semantics_on_live_sources(tiny_onnx):
    seg = UnevenSegmenter(tiny_onnx(), count=1)  # keys unused: every camera frame maps to one index
    seg.keys.clear()

    class Slow(Backend):
        name = "slow"

        def __init__(self, inner: Backend) -> None:
            self.inner, self.path, self.card = inner, inner.path, inner.card

        def run_impl(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(0.03)
            return self.inner.run(batch)

    seg.backend = Slow(OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1)))
    seg.spawn_backend = lambda: Slow(OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1)))
    pipe = Pipeline(seg, PacedCamera(count=60, period=0.003), workers=2)
    results = list(pipe.stream())
    stats = pipe.stats
    assert stats.captured == 60 and stats.dropped > 0
    assert stats.processed + stats.dropped == stats.captured
    indices = [r.index for r in results]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert sum(r.dropped_before for r in results) + (59 - indices[-1]) == stats.dropped


def test_two_real_workers_match_one(tiny_onnx, tmp_path):
    """Plain Segmenter: the spawned worker is loaded from the same artifact with the same options."""
    write_video(tmp_path / "v.mp4", 15, size=(40, 56))
    from edgeseg.runtime.sources import VideoSource

    model = tiny_onnx()
    one = [
        r.class_map
        for r in Pipeline(
            Segmenter(model, BackendOptions(threads=1)), VideoSource(tmp_path / "v.mp4")
        ).stream()
    ]
    pipe = Pipeline(Segmenter(model, BackendOptions(threads=1)), VideoSource(tmp_path / "v.mp4"), workers=2)
    two = [r.class_map for r in pipe.stream()]
    assert len(one) == len(two) == 15
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert pipe.report()["workers"] == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("edgeseg-inference")]
    via_stream = [r.class_map for r in stream(model, video=tmp_path / "v.mp4", workers=2)]
    assert len(via_stream) == 15 and all(np.array_equal(a, b) for a, b in zip(one, via_stream))


def test_workers_spawn_from_any_backend_and_need_a_positive_count(tiny_onnx):
    backend = OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1))
    stats = Pipeline(Segmenter(backend), NumberedFrames(6), workers=2).run()  # a Backend object, not a path
    assert stats.processed == 6
    spawned = backend.spawn()
    assert spawned is not backend and spawned.path == backend.path and spawned.options.threads == 1
    spawned.close()
    with pytest.raises(EdgesegError, match="at least 1"):
        Pipeline(Segmenter(backend), NumberedFrames(3), workers=0)


def test_an_in_memory_model_refuses_a_second_worker_clearly():
    torch = pytest.importorskip("torch")
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.runtime.backends.torch import TorchBackend

    card = ModelCard(model="m", classes=["a", "b"], palette=default_palette(2), input_size=(16, 16))
    backend = TorchBackend.from_model(torch.nn.Conv2d(3, 2, 1), BackendOptions(card=card, device="cpu"))
    with pytest.raises(EdgesegError, match="in-memory PyTorch model serves one inference worker"):
        Pipeline(Segmenter(backend), NumberedFrames(3), workers=2).run()


def test_an_in_memory_model_takes_backend_options_like_a_checkpoint():
    """`from_model` takes one BackendOptions as every backend does: the card is required (a live
    module carries none), device=None leaves the module where it is, a device moves it."""
    torch = pytest.importorskip("torch")
    from edgeseg.card import ModelCard, default_palette
    from edgeseg.runtime.backends.torch import TorchBackend

    card = ModelCard(model="m", classes=["a", "b"], palette=default_palette(2), input_size=(16, 16))
    net = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(
        EdgesegError, match=r"^an in-memory PyTorch model needs its card: BackendOptions\(card="
    ):
        TorchBackend.from_model(net, BackendOptions(device=None))
    with pytest.raises(EdgesegError, match="backend options are a BackendOptions, got dict"):
        TorchBackend.from_model(net, {"card": card})
    kept = TorchBackend.from_model(net, BackendOptions(card=card, device=None))
    assert kept.model is net and kept.device == next(net.parameters()).device
    assert kept.options.card is card and kept.path.name == "<in-memory m>"
    out = TorchBackend.from_model(torch.nn.Conv2d(3, 2, 1), BackendOptions(card=card, device="cpu"))
    assert out.device.type == "cpu"
    assert Segmenter(out).infer(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16)


def test_worker_plan():
    cpu_file = {"live": False, "splits_threads": True}
    assert plan_workers(None, threads=None, cores=2, **cpu_file) == WorkerPlan(2, 1)
    assert plan_workers(None, threads=None, cores=8, **cpu_file) == WorkerPlan(2, 4)
    assert plan_workers(None, threads=6, cores=8, **cpu_file) == WorkerPlan(2, 3)
    assert plan_workers(None, threads=1, cores=8, **cpu_file) == WorkerPlan(1, 1)  # nothing to split
    assert plan_workers(None, threads=None, cores=1, **cpu_file) == WorkerPlan(1, None)
    # live sources want latency: one worker with every thread
    live = plan_workers(None, threads=None, cores=8, live=True, splits_threads=True)
    assert live == WorkerPlan(1, None, paced=True)  # paced: the backend waits for frames without spinning
    # explicit counts win; threads are never split below one per worker
    assert plan_workers(3, threads=2, cores=8, **cpu_file) == WorkerPlan(3, 1)
    assert plan_workers(1, threads=None, cores=8, **cpu_file) == WorkerPlan(1, None)
    # heavy artifacts keep one worker: a second copy of the weights for no throughput
    big = AUTO_MAX_MODEL_BYTES + 1
    assert plan_workers(None, threads=None, cores=8, model_bytes=big, **cpu_file) == WorkerPlan(1, None)
    assert plan_workers(2, threads=None, cores=8, model_bytes=big, **cpu_file) == WorkerPlan(2, 4)
    # GPU or PyTorch backends: one worker unless asked, and the thread setting passes through untouched
    assert plan_workers(None, threads=4, cores=8, live=False, splits_threads=False) == WorkerPlan(1, 4)
    assert plan_workers(2, threads=4, cores=8, live=False, splits_threads=False) == WorkerPlan(2, 4)
    with pytest.raises(EdgesegError, match="--workers"):
        plan_workers(0, threads=None, live=False, splits_threads=True)
    with pytest.raises(
        EdgesegError, match="--threads must be at least 1, got 0"
    ):  # checked once, in BackendOptions
        BackendOptions(threads=0)  # what plan_inference gets its threads from


def test_cli_workers_option(tiny_onnx, tmp_path):
    write_video(tmp_path / "v.mp4", 9)
    model = str(tiny_onnx())
    r = run_cli("--model", model, "--video", str(tmp_path / "v.mp4"), "--workers", "3", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["workers"] == 3 and report["frames"]["processed"] == 9
    r = run_cli("--model", model, "--video", str(tmp_path / "v.mp4"), "--workers", "0")
    assert r.exit_code != 0 and "--workers must be at least 1" in r.output
    assert "Traceback" not in r.output


class AsyncBackend(Backend):
    """Stands in for a GPU backend with double buffering: `submit` returns at once, the work finishes
    `delay` s later on a device thread, `result` waits for the oldest. Records what the pipeline does."""

    name = "async"
    max_in_flight = 2

    def __init__(self, inner: Backend, delay: float) -> None:
        import concurrent.futures

        self.inner, self.path, self.card, self.delay = inner, inner.path, inner.card, delay
        self.device = concurrent.futures.ThreadPoolExecutor(1)
        self.pending: list = []
        self.most_in_flight = 0
        self.threads: dict[str, set[str]] = {"activate": set(), "submit": set(), "deactivate": set()}

    def activate(self) -> None:
        self.threads["activate"].add(threading.current_thread().name)

    def deactivate(self) -> None:
        self.threads["deactivate"].add(threading.current_thread().name)

    def _work(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return self.inner.run(batch)

    def run_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._work(batch)

    def submit_impl(self, batch: np.ndarray) -> None:
        self.threads["submit"].add(threading.current_thread().name)
        self.pending.append(self.device.submit(self._work, batch.copy()))
        self.most_in_flight = max(self.most_in_flight, len(self.pending))
        assert len(self.pending) <= self.max_in_flight

    def result(self) -> np.ndarray:
        return self.pending.pop(0).result()

    def close(self) -> None:
        self.device.shutdown()


def test_pipeline_keeps_two_frames_in_flight_on_a_double_buffered_backend(tiny_onnx):
    model = tiny_onnx(size=(32, 48))
    backend = AsyncBackend(OnnxRuntimeBackend(model, BackendOptions(threads=1)), delay=0.01)
    results = list(Pipeline(Segmenter(backend), NumberedFrames(12), queue_size=4).stream())
    assert [r.index for r in results] == list(range(12))
    assert backend.most_in_flight == 2  # a file source keeps the device fed: n+1 staged while n runs
    reference = Segmenter(model)
    for r in results:
        np.testing.assert_array_equal(r.class_map, reference.infer(r.frame))
    assert backend.threads["activate"] == backend.threads["submit"] == backend.threads["deactivate"]
    assert backend.threads["submit"] == {"edgeseg-inference"}
    backend.close()


class CollectedCamera(Source):
    """A camera slower than the device on any machine: frame k+1 comes only once result k was collected
    (or after `patience` seconds, counted in `waited_out`: a pipeline holding result k back)."""

    kind = "camera"
    live = True

    def __init__(self, count: int, patience: float = 30.0) -> None:
        self.count, self.patience, self.i, self.waited_out = count, patience, 0, 0
        self.collected = threading.Semaphore(0)

    def open(self) -> None:
        self.i = 0

    def read(self) -> Frame | None:
        if self.i >= self.count:
            return None
        if self.i and not self.collected.acquire(timeout=self.patience):
            self.waited_out += 1
        self.i += 1
        return Frame(np.full((24, 32, 3), self.i % 255, np.uint8), f"cam_{self.i:06d}")


def test_a_live_source_never_waits_behind_a_staged_frame(tiny_onnx):
    """With a camera slower than the device, each frame is collected as soon as it is done, not held
    until the next frame arrives to fill the second slot."""
    backend = AsyncBackend(OnnxRuntimeBackend(tiny_onnx(), BackendOptions(threads=1)), delay=0.005)
    camera = CollectedCamera(count=8, patience=10.0)
    results = []
    for r in Pipeline(Segmenter(backend), camera).stream():
        results.append(r)
        camera.collected.release()
    # a frame held back for the next camera frame would never be collected before that one came (the
    # camera waits it out), and would put two in flight when it came
    assert len(results) == 8 and camera.waited_out == 0 and backend.most_in_flight == 1
    backend.close()
