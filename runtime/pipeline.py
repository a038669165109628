"""The streaming pipeline: capture -> preprocess -> inference -> postprocess -> output, each stage on
its own thread, joined by small bounded channels, so decoding and drawing overlap inference.

Live sources (camera, url, gst) use latest-frame semantics: the channels in front of inference hold
one frame and a newer frame replaces an older one, which is counted as dropped; lag never builds up.
File sources (video, images, synthetic) block instead, so every frame is processed.

    with Pipeline(Segmenter("model.onnx"), open_source(camera=0)) as pipe:
        for result in pipe.stream():
            use(result.labels)                   # H x W uint8 class ids at the frame's size

A backend is driven by one thread. `workers=N` runs N inference threads, each with its own backend
for the same artifact (the segmenter's plus N-1 spawned copies), on consecutive frames; results are
put back in capture order before postprocessing. On a CPU, N single-threaded sessions keep the cores
busier than one N-threaded session once decoding and drawing share those cores: a stalled thread then
delays only its own frame instead of every operator of an intra-op parallel run (docs/runtime.md).
`plan_workers` in runtime/workers.py picks N and the threads per worker.

Stop with `stop()`, Ctrl-C inside `run()`, or by leaving the `stream()` loop; sinks are always closed
(videos finalised).

A process that owns its threads (the `edgeseg run` command, the benchmarks) calls
`share_cores_with(backend)` (runtime/launch.py) first: with a CPU backend, OpenCV's worker pool would
compete with the backend's threads for the same cores (~1 ms of CPU per 512x1024 frame on 2 cores,
docs/runtime.md). The Pipeline itself never changes that process-wide setting; `open_pipeline` plans
the workers and assembles a Pipeline from an artifact.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.errors import EdgesegError, SourceLost
from edgeseg.metrics import ConfusionMatrix, metrics_from_confusion
from edgeseg.preprocess import Geometry, labels_to_frame
from edgeseg.runtime.backends import Backend
from edgeseg.runtime.draw import Renderer, class_histogram, frame_class_histogram
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import LabelLookup, Source
from edgeseg.runtime.stats import Gap, RunStats
from edgeseg.signals import signal_name

_END = object()  # end of stream marker travelling through the channels
_EMPTY = object()  # a non-blocking get found nothing
JOIN_TIMEOUT = 0.8  # per stage on shutdown; stages poll the stop flag every POLL seconds
SINK_CLOSE_TIMEOUT = 60.0  # finalising outputs on shutdown (a long video's index, a copy to a FIFO)
POLL = 0.05


class Channel:
    """Bounded hand-off between two stages.

    `latest=True`: `put` never blocks; when full, the oldest frame is discarded and counted in
    `dropped`. Otherwise `put` waits for room (back-pressure). `close()` aborts both ends.

    `wake`: an event set after every put, get and close, so one thread can wait on several channels
    (the multi-stream batcher, runtime/batcher.py).
    """

    def __init__(self, capacity: int = 2, *, latest: bool = False) -> None:
        self.capacity = max(1, capacity)
        self.latest = latest
        self.dropped = 0
        self.closed = False
        self.wake: threading.Event | None = None
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    def _woken(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def put(self, item: Any) -> bool:
        """False if the channel was closed (the pipeline is stopping)."""
        with self._cond:
            if self.latest and item is not _END:
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self.closed:
                    self._cond.wait(POLL)
            if self.closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
        self._woken()
        return True

    def get(self, block: bool = True) -> Any:
        """Next item, or the end marker once closed (`block=False`: `_EMPTY` when there is none yet)."""
        with self._cond:
            while not self._items and not self.closed:
                if not block:
                    return _EMPTY
                self._cond.wait(POLL)
            if self.closed:
                return _END
            item = self._items.popleft()
            self._cond.notify_all()
        self._woken()
        return item

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._items.clear()
            self._cond.notify_all()
        self._woken()


@dataclass
class Reconnect:
    """What to do when a live source stops delivering, or is not there yet at start-up: reopen with
    exponential backoff until `timeout` seconds have passed without a frame. At least one reopen is
    tried, and a URL stream's open or read never blocks longer than a quarter of the timeout
    (`Source.limit_wait`: a frozen stream must not eat the budget), so a short timeout still gets its
    attempts; a camera's read is bounded by V4L2's own select timeout."""

    enabled: bool = False
    initial: float = 0.5  # seconds before the first reopen attempt
    factor: float = 2.0
    max_delay: float = 5.0
    timeout: float | None = 30.0  # give up after this long without a frame (None: never)

    def wait_limit(self) -> float | None:
        """The longest one open or read may block, or None to leave the source's own limit."""
        if not self.enabled or self.timeout is None:
            return None
        return max(0.25, self.timeout / 4)


@dataclass
class FrameResult:
    """One processed frame. `labels` is the raw class map at the frame's own size; it is made only when
    something reads it (a `stream()` consumer, a sink, ground truth), so headless runs skip it."""

    index: int  # capture sequence number, 0-based (gaps = dropped frames)
    name: str
    frame: np.ndarray
    wall_time: float  # time.time() at capture, or the recorded capture time (stamp_ns) when known
    t_capture: float  # time.perf_counter() at capture
    gt: np.ndarray | None = None
    stamp_ns: int | None = None  # recorded capture time (ROS header stamp), when the source has one
    frame_id: str = ""  # the source's coordinate frame (ROS header), for the outputs' headers
    labels: np.ndarray | None = None
    logits: np.ndarray | None = None  # C x H x W at net resolution, only with keep_logits=True
    rendered: np.ndarray | None = None  # annotated frame, when a visual sink asked for it
    histogram: np.ndarray | None = None
    confusion: np.ndarray | None = None  # this frame's confusion matrix, when GT is known
    timings: dict[str, float] = field(default_factory=dict)  # ms per stage
    t_done: float | None = None
    dropped_before: int = 0
    running_miou: float | None = None
    stream: str = ""  # the stream's name when several run through one model (runtime/multistream.py)
    # internal hand-offs between stages
    batch: np.ndarray | None = field(default=None, repr=False)
    geom: Geometry | None = field(default=None, repr=False)
    raw: np.ndarray | None = field(default=None, repr=False)
    seq: int = field(default=-1, repr=False)  # order taken by the inference workers (no gaps)

    @property
    def latency_ms(self) -> float | None:
        """Capture-to-result latency."""
        return None if self.t_done is None else (self.t_done - self.t_capture) * 1000.0

    @property
    def frame_miou(self) -> float | None:
        if self.confusion is None:
            return None
        m = metrics_from_confusion(self.confusion).miou
        return None if np.isnan(m) else m

    def to_record(self, classes: Sequence[str]) -> dict[str, Any]:
        """The per-frame JSONL record."""
        rec: dict[str, Any] = {
            "index": self.index,
            "name": self.name,
            "captured_at": round(self.wall_time, 6),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "stages_ms": {k: round(v, 3) for k, v in self.timings.items()},
            "dropped_before": self.dropped_before,
            "size": [int(self.frame.shape[0]), int(self.frame.shape[1])],
        }
        if self.stamp_ns is not None:
            rec["stamp_ns"] = self.stamp_ns
        if self.frame_id:
            rec["frame_id"] = self.frame_id
        if self.stream:
            rec["stream"] = self.stream
        if self.histogram is not None:
            rec["class_pixels"] = {
                (classes[i] if i < len(classes) else str(i)): int(n)
                for i, n in enumerate(self.histogram)
                if n
            }
        if self.confusion is not None:
            rec["miou"] = self.frame_miou
            rec["running_miou"] = self.running_miou
        return rec


class StreamDriver:
    """What `run()`, `stream()` and `with` do, shared by Pipeline and MultiStream: drive GUI pumps on the
    caller's thread, stop on Ctrl-C / SIGTERM (recorded in the stats) or a closed window, and always
    finalise every output. Subclasses provide start/stop/finish and the hooks below."""

    stats: RunStats
    _started: bool

    def start(self, *, consumer: bool = False) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def finish(self) -> RunStats:
        raise NotImplementedError

    def _pumps(self) -> list[Callable[[], None]]:
        """Main-thread work of the outputs (GUI windows)."""
        return []

    def _quit_requested(self) -> bool:
        return False

    def _wait_ended(self, timeout: float) -> bool:
        """True once every stage has finished (waiting up to `timeout` s)."""
        raise NotImplementedError

    def _consumer(self) -> Channel:
        """The channel `stream()` reads results from (made by `start(consumer=True)`)."""
        raise NotImplementedError

    def _current_stats(self) -> RunStats:
        return self.stats

    def run(self, status: Callable[[RunStats], None] | None = None, interval: float = 0.25) -> RunStats:
        """Run to the end of the source(s), or Ctrl-C / SIGTERM; return the stats. Outputs are finalised."""
        pumps = self._pumps()
        tick = 0.01 if pumps else interval
        try:
            self.start()
            last = 0.0
            while not self._wait_ended(tick):
                for pump in pumps:
                    pump()
                now = time.perf_counter()
                if status is not None and now - last >= interval:
                    status(self._current_stats())
                    last = now
                if self._quit_requested():
                    self.stats.interrupted = True
                    break
            if status is not None:
                status(self._current_stats())
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM as `Terminated` (edgeseg.signals)
            self.stats.interrupted = True
            self.stats.signal = signal_name(exc)
        finally:
            self.stop()
            self.finish()
        return self.stats

    def stream(self) -> Iterator[FrameResult]:
        """Yield results as they are produced (sinks still get them first); the caller's thread drives
        the windows."""
        self.start(consumer=True)
        results = self._consumer()
        pumps = self._pumps()
        try:
            while (item := results.get()) is not _END:
                for pump in pumps:
                    pump()
                if self._quit_requested():
                    self.stats.interrupted = True
                    break
                yield item
        except GeneratorExit:
            self.stats.interrupted = not self._wait_ended(0.0)
            raise
        finally:
            self.stop()
            self.finish()

    def __enter__(self) -> StreamDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._started:
            self.finish()


class Pipeline(StreamDriver):
    """Threaded streaming of `source` through `segmenter` into `sinks`, measuring everything."""

    def __init__(
        self,
        segmenter: Segmenter,
        source: Source,
        sinks: Sequence[Sink] = (),
        *,
        labels: LabelLookup | None = None,
        max_frames: int | None = None,
        live: bool | None = None,
        reconnect: Reconnect | None = None,
        renderer: Renderer | None = None,
        keep_logits: bool = False,
        queue_size: int = 1,
        realtime: bool = False,
        workers: int = 1,
        owns_segmenter: bool = False,
    ) -> None:
        if workers < 1:
            raise EdgesegError(f"workers must be at least 1, got {workers}")
        self.segmenter = segmenter
        self.owns_segmenter = owns_segmenter  # close it in finish() (pipelines assembled by open_pipeline)
        self.source = source
        self.sinks = list(sinks)
        self.labels = labels
        self.max_frames = max_frames
        # realtime: replay a file at its frame rate with camera semantics ("what would the robot see")
        self.realtime = realtime
        self.live = (source.live or realtime) if live is None else live
        self.reconnect = reconnect or Reconnect()
        self.keep_logits = keep_logits
        card = segmenter.card
        if renderer is None and any(s.needs_render for s in self.sinks):
            renderer = Renderer(card.palette, card.classes)
        self.renderer = renderer
        self.stats = RunStats(classes=list(card.classes), live=self.live)
        for sink in self.sinks:
            sink.attach(self.stats)
        # channels: capture -> pre -> infer -> post -> out [-> consumer]
        self._c_pre = Channel(1 if self.live else queue_size, latest=self.live)
        self._c_infer = Channel(1 if self.live else queue_size, latest=self.live)
        self._c_post = Channel(queue_size)
        self._c_out = Channel(queue_size)
        self._c_user: Channel | None = None
        self._channels = [self._c_pre, self._c_infer, self._c_post, self._c_out]
        self._stop = threading.Event()
        self._done = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._started = False
        self._finished = False
        self._last_index = -1
        self._needs_labels = True  # decided in start()
        self._backend_info: dict[str, Any] | None = None
        self.workers = workers
        self._spawned: list[Backend] = []  # the extra workers' backends, closed by finish()
        self._take_lock = threading.Lock()  # inference workers take frames (and a seq) one at a time
        self._taken = 0
        self._infer_ended = False
        self._workers_left = workers

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, *, consumer: bool = False) -> None:
        """Open the source (errors surface here, in the caller's thread) and start the stages."""
        if self._started:
            raise EdgesegError("a Pipeline runs once; create a new one for another run")
        self._started = True
        if consumer:
            self._c_user = Channel(2)
            self._channels.append(self._c_user)
        self._needs_labels = consumer or self.renderer is not None or any(s.needs_labels for s in self.sinks)
        self._backend_info = self.segmenter.backend.describe()  # the report outlives an owned backend
        try:
            self._spawned = [self.segmenter.spawn_backend() for _ in range(self.workers - 1)]
            self._open_source()
            for sink in self.sinks:
                sink.start(self.source)
        except BaseException:
            self._close_spawned()
            self._close_sinks()
            if self.owns_segmenter:
                self.segmenter.close()
            self._error = None  # the open/start error itself is what the caller sees
            raise
        self.stats.started = time.perf_counter()
        self.stats.cpu_started = time.process_time()
        for name, target in self._stages():
            t = threading.Thread(
                target=self._guard, args=(name.split("-")[0], target), name=f"edgeseg-{name}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _stages(self) -> list[tuple[str, Callable[[], None]]]:
        """The threads `start()` runs, upstream first (a multi-stream lane leaves inference out)."""
        backends = [self.segmenter.backend, *self._spawned]
        return [
            ("capture", self._capture),
            ("preprocess", self._preprocess),
            *(
                (f"inference-{i}" if i else "inference", functools.partial(self._inference, backend))
                for i, backend in enumerate(backends)
            ),
            ("postprocess", self._postprocess),
            ("output", self._output),
        ]

    def _open_source(self) -> None:
        """Open the source; a live one with --reconnect that is not up yet (a camera or RTSP server
        starting after the robot's perception) is retried within the reconnect timeout, and that
        wait is recorded as a gap ending at 0 s, where the run's clock starts."""
        limit = self.reconnect.wait_limit() if self.source.live else None
        if limit is not None:
            self.source.limit_wait(limit)
        since = time.perf_counter()
        try:
            self.source.open()
            return
        except EdgesegError as exc:
            if not (self.source.live and self.reconnect.enabled):
                raise
            gap = Gap(since, reason=str(exc))
        self.stats.gaps.append(gap)
        opened = self._reopen(gap, since)
        waited = time.perf_counter() - since
        gap.start, gap.end, gap.recovered = -waited, 0.0, opened  # before the run's clock starts at 0
        if not opened:
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.stats.source_lost = _lost(gap, self.reconnect)
            raise SourceLost(f"live source lost: {self.stats.source_lost}")

    def stop(self) -> None:
        """Ask every stage to stop now (in-flight frames are discarded)."""
        self._stop.set()
        for ch in self._channels:
            ch.close()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def ended(self) -> bool:
        """The output stage has finished: the source ended, a stage failed, or stop() was called."""
        return self._done.is_set()

    @property
    def streamed(self) -> bool:
        """Whether the stream got going (the source opened and the stages started)."""
        return bool(self._threads)

    def finish(self) -> RunStats:
        """Join the stages, close sinks and source, and raise the first stage error if any."""
        if not self._finished:
            self._finished = True
            deadline = time.perf_counter() + JOIN_TIMEOUT * 2
            for t in self._threads:
                t.join(max(0.0, deadline - time.perf_counter()))
            if self._threads:  # the output stage finalises the files (a video's index): let it finish
                self._done.wait(SINK_CLOSE_TIMEOUT)
            self.stats.dropped = self._dropped()
            if not any(t.name.startswith("edgeseg-inference") and t.is_alive() for t in self._threads):
                self._close_spawned()  # a worker stuck in a run keeps its backend; the process ends soon
                if self.owns_segmenter:
                    with contextlib.suppress(Exception):  # releasing must not hide the run's result
                        self.segmenter.close()
        if self._error is not None:
            err, self._error = self._error, None
            self.stats.error = err  # the report says what failed
            raise err
        return self.stats

    def _pumps(self) -> list[Callable[[], None]]:
        return [s.pump for s in self.sinks if s.pumps]

    def _quit_requested(self) -> bool:
        return any(s.quit_requested for s in self.sinks)

    def _wait_ended(self, timeout: float) -> bool:
        return self._done.wait(timeout)

    def _consumer(self) -> Channel:
        assert self._c_user is not None, "start(consumer=True) first"
        return self._c_user

    def report(self) -> dict[str, Any]:
        """Stats plus what ran: model, backend, source, outputs."""
        card = self.segmenter.card
        return {
            "model": {
                "name": card.model,
                "precision": card.precision,
                "input_size": list(card.input_size),
                "dynamic": card.dynamic,
                "classes": len(card.classes),
            },
            "backend": self._backend_info or self.segmenter.backend.describe(),
            "workers": self.workers,
            "source": self.source.describe(),
            "outputs": [s.describe() for s in self.sinks],
            **self.stats.to_dict(),
        }

    # --- stages ------------------------------------------------------------------------------------
    def _guard(self, stage: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            self._fail(exc)
        finally:
            self.stats.add_thread_cpu(stage, time.thread_time())

    def _fail(self, exc: BaseException) -> None:
        """Keep the first failure (for finish() to raise) and stop every stage."""
        if self._error is None and not self._stop.is_set():
            self._error = exc
        self.stop()

    def _dropped(self) -> int:
        return self._c_pre.dropped + self._c_infer.dropped + self.source.dropped

    def _capture(self) -> None:
        """Read frames; the source is closed here, on its own thread (VideoCapture is not thread-safe,
        and a read blocked on a dead stream must not race a release from another thread)."""
        try:
            self._capture_loop()
        finally:
            with contextlib.suppress(Exception):  # a release failure must not hide the run's result
                self.source.close()

    def _capture_loop(self) -> None:
        index = 0
        gap: Gap | None = None
        period = 1.0 / (self.source.fps or 30.0) if self.realtime and not self.source.live else 0.0
        first = last_frame = time.perf_counter()
        while not self._stop.is_set():
            if self.max_frames is not None and index >= self.max_frames:
                break
            if period:
                offset = self.source.recorded_offset()
                due = first + (index * period if offset is None else offset) - time.perf_counter()
                if due > 0 and self._stop.wait(due):
                    break
            t0 = time.perf_counter()
            frame = self.source.read()
            if frame is None:
                if self._stop.is_set():  # a source woken up by the stop is no gap
                    break
                if not self.source.live:
                    self.stats.input_problem = self.source.problem
                    break
                if gap is None:  # the source went quiet when its last frame came, not when we noticed
                    gap = Gap(last_frame - self.stats.started, reason=self._silence(t0, last_frame))
                    self.stats.gaps.append(gap)
                if not self.reconnect.enabled or not self._reopen(gap, self.stats.started + gap.start):
                    if not self._stop.is_set():
                        gap.end = time.perf_counter() - self.stats.started
                        self.stats.source_lost = _lost(gap, self.reconnect)
                    break
                continue
            t1 = last_frame = time.perf_counter()
            if gap is not None:
                gap.end, gap.recovered, gap = t1 - self.stats.started, True, None
            gt = frame.gt
            if gt is None and self.labels is not None:
                gt = self.labels.get(frame.name, frame.image.shape[:2])
            # live: the frame exists when read returns; one that waited for us counts from its arrival
            t_capture = t1 if self.live else t0
            if frame.received is not None:
                t_capture = frame.received
            item = FrameResult(
                index=index,
                name=frame.name,
                frame=frame.image,
                wall_time=frame.stamp_ns / 1e9 if frame.stamp_ns else time.time(),
                t_capture=t_capture,
                gt=gt,
                stamp_ns=frame.stamp_ns,
                frame_id=frame.frame_id,
            )
            item.timings["capture"] = (t1 - t0) * 1000.0
            index += 1
            self.stats.captured = index
            if not self._c_pre.put(item):
                return
        self._c_pre.put(_END)

    @staticmethod
    def _silence(t_read: float, last_frame: float) -> str:
        """Why a live source returned nothing: a read that blocked until the source's timeout is a
        frozen stream; a quick failure is a dropped connection or an unplugged device."""
        now = time.perf_counter()
        if now - t_read >= 0.5:
            return f"no frame for {now - last_frame:.1f} s (the stream froze or the connection was lost)"
        return "source stopped delivering"

    def _reopen(self, gap: Gap, since: float) -> bool:
        """Reopen the live source with backoff until it opens, `since` + the timeout passes, or we
        stop. The first attempt is always made, however long the failing read took."""
        rc = self.reconnect
        delay = rc.initial
        while not self._stop.is_set():
            if gap.attempts and rc.timeout is not None:
                left = since + rc.timeout - time.perf_counter()
                if left <= 0:
                    return False
                delay = min(delay, left)
            if self._stop.wait(delay):
                return False
            gap.attempts += 1
            try:
                self.source.open()
                return True
            except EdgesegError as exc:
                gap.last_error = str(exc)
                delay = min(delay * rc.factor, rc.max_delay)
        return False

    def _preprocess(self) -> None:
        pre = self.segmenter.preprocess
        while True:
            item = self._c_pre.get()
            if item is _END:
                break
            t0 = time.perf_counter()
            item.batch, item.geom = pre(item.frame)
            item.timings["preprocess"] = (time.perf_counter() - t0) * 1000.0
            if not self._c_infer.put(item):
                return
        self._c_infer.put(_END)

    def _inference(self, backend: Backend) -> None:
        """One inference worker: the only thread that touches `backend`. It keeps up to
        `backend.max_in_flight` frames submitted (TensorRT stages frame n+1 while n runs), but never
        holds a finished frame back waiting for a newer one."""
        backend.activate()
        try:
            in_flight: deque[FrameResult] = deque()
            while True:
                full = len(in_flight) >= backend.max_in_flight
                item = _EMPTY if full else self._take(block=not in_flight)
                if item is _END:
                    break
                if item is _EMPTY:  # nothing new to stage: hand on the oldest frame
                    if not self._collect(backend, in_flight.popleft()):
                        return
                    continue
                item.timings["inference"] = time.perf_counter()  # start; made a duration by _collect
                backend.submit(item.batch)
                item.batch = None
                in_flight.append(item)
            while in_flight:
                if not self._collect(backend, in_flight.popleft()):
                    return
            with self._take_lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:  # every worker has handed on its frames: the end may follow them
                self._c_post.put(_END)
        finally:
            backend.deactivate()

    def _collect(self, backend: Backend, item: FrameResult) -> bool:
        item.raw = backend.result()
        item.timings["inference"] = (time.perf_counter() - item.timings["inference"]) * 1000.0
        return self._c_post.put(item)

    def _take(self, block: bool = True) -> Any:
        """Next frame for a worker, numbered in the order taken, or the end marker (for every worker);
        `block=False`: `_EMPTY` when no frame is waiting."""
        if not self._take_lock.acquire(blocking=block):
            return _EMPTY  # another worker is waiting for the next frame: this one hands on its own
        try:
            if self._infer_ended:
                return _END
            item = self._c_infer.get(block)
            if item is _EMPTY:
                return _EMPTY
            if item is _END:
                self._infer_ended = True
                return _END
            item.seq, self._taken = self._taken, self._taken + 1
            return item
        finally:
            self._take_lock.release()

    def _postprocess(self) -> None:
        n = self.segmenter.card.num_classes
        for item in self._in_order(self._c_post):
            t0 = time.perf_counter()
            net_labels, logits = self.segmenter.net_labels(item.raw)
            item.raw = None
            item.logits = logits if self.keep_logits else None
            if self._needs_labels or item.gt is not None:
                item.labels = labels_to_frame(net_labels, item.geom)
                item.histogram = class_histogram(item.labels, n)
            else:
                item.histogram = frame_class_histogram(net_labels, item.geom, n)
            if item.gt is not None:
                cm = ConfusionMatrix(n)
                cm.update(item.labels, item.gt)
                item.confusion = cm.matrix
            if self.renderer is not None:
                item.rendered = self.renderer.render(item.frame, item.labels)
            item.timings["postprocess"] = (time.perf_counter() - t0) * 1000.0
            if not self._c_out.put(item):
                return
        self._c_out.put(_END)

    @staticmethod
    def _in_order(channel: Channel) -> Iterator[FrameResult]:
        """Frames from the inference workers, back in the order they were taken (= capture order)."""
        pending: dict[int, FrameResult] = {}
        next_seq = 0
        while (item := channel.get()) is not _END:
            pending[item.seq] = item
            while next_seq in pending:
                yield pending.pop(next_seq)
                next_seq += 1

    def _output(self) -> None:
        stats = self.stats
        try:
            while True:
                item = self._c_out.get()
                if item is _END:
                    break
                t0 = time.perf_counter()
                item.dropped_before = item.index - self._last_index - 1
                self._last_index = item.index
                if item.confusion is not None:
                    with stats._lock:
                        if stats.confusion is None:
                            stats.confusion = ConfusionMatrix(len(stats.classes))
                        stats.confusion.matrix += item.confusion
                        item.running_miou = _nan_to_none(stats.confusion.compute().miou)
                elif self.labels is not None or self.source.pairs_labels:
                    stats.unlabeled += 1
                if item.histogram is not None:
                    stats.add_histogram(item.histogram)
                for sink in self.sinks:
                    if not sink.records:
                        sink.write(item)
                done = time.perf_counter()
                item.timings["output"] = (done - t0) * 1000.0
                item.t_done = done
                stats.dropped = self._dropped()
                stats.record(item.timings, (done - item.t_capture) * 1000.0, done)
                for sink in self.sinks:
                    if sink.records:
                        sink.write(item)
                if self._c_user is not None and not self._c_user.put(item):
                    return
        except BaseException as exc:  # a failed write is the run's error, not what closing says after
            self._fail(exc)
            raise
        finally:
            self._close_sinks()
            if self._c_user is not None:
                self._c_user.put(_END)
            self._done.set()

    def _close_spawned(self) -> None:
        spawned, self._spawned = self._spawned, []
        for backend in spawned:
            with contextlib.suppress(Exception):  # releasing a copy must not hide the run's result
                backend.close()

    def _close_sinks(self) -> None:
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # noqa: BLE001 - close every sink, report the first failure
                first = first or exc
        if first is not None and self._error is None:
            self._error = first


def _lost(gap: Gap, reconnect: Reconnect) -> str:
    """Why a live source was given up, in one line: what happened and what was tried."""
    if not reconnect.enabled:
        return f"{gap.reason} (no --reconnect)"
    last = f"; last attempt: {gap.last_error}" if gap.last_error else ""
    return (
        f"{gap.reason}; {gap.attempts} reconnect attempt(s) in {reconnect.timeout:g} s "
        f"(--reconnect-timeout){last}"
    )


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
