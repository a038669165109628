"""Several streams through one model: `edgeseg run --camera 0 --camera 1`, `open_multistream(...)`.

    with open_multistream("model.onnx", [open_source(camera=0), open_source(camera=1)]) as multi:
        for r in multi.stream():                 # results of every stream, each stream in capture order
            use(r.stream, r.class_map)              # "camera0" / "camera1", H x W class ids

Each stream is a `Lane`: a Pipeline with its own capture, preprocess, postprocess and output threads,
so latest-frame dropping, reconnects, ground truth, sinks and per-stream stats are exactly those of a
single stream, but whose inference step has no threads of its own (`DrivenElsewhere`). One `Batcher`
thread (runtime/batcher.py) drives the one backend instead, through each stream's `InferencePort`: it takes the frame each stream has ready (never waiting for the others, so a
slow stream never holds back a fast one), stacks them into one batch (batch = streams with a frame
ready, up to the model's limit), runs it and hands each result back to its own stream. A stream
whose outputs fall behind is skipped until they catch up, so a slow sink slows (or, live, drops
frames of) only its own stream. A model whose batch axis is fixed at 1 runs the ready frames one at
a time and says so once. On a CPU, where the model was opened for several requests at once
(`BackendOptions.streams`, set by launch.cpu_streams), a `RequestPool` (runtime/request_pool.py)
takes the batcher's place: a thread per request, each taking the next ready frame of any stream.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgeseg.console import warn
from edgeseg.errors import EdgesegError
from edgeseg.runtime.batcher import Batcher, plan_batches
from edgeseg.runtime.draw import Renderer
from edgeseg.runtime.pipeline import JOIN_TIMEOUT, Pipeline
from edgeseg.runtime.report import Batching, RunReport, StreamReport
from edgeseg.runtime.request_pool import RequestPool
from edgeseg.runtime.run_stats import RunStats
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import Source, open_source
from edgeseg.runtime.streaming.channel import END, Channel
from edgeseg.runtime.streaming.driver import StreamDriver
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.inference import DrivenElsewhere, InferencePort
from edgeseg.runtime.tiles import Tiler

STREAM_FIELD = "{stream}"  # replaced by each stream's name in per-stream output paths

PerStream = Union["Callable[[str], Any]", "Mapping[str, Any]", None]  # a value per stream name (3.8: no `|`)


# ------------------------------------------------------------------------------------------ naming
def stream_names(sources: Sequence[Source]) -> list[str]:
    """A short, file-name-safe, unique name per source: camera0, drive (a video's stem), images,
    url-10.0.0.2, gst, synthetic; repeated names are numbered in order (synthetic-0, synthetic-1)."""
    bases = [_base_name(s) for s in sources]
    counts = Counter(bases)
    seen: Counter[str] = Counter()
    names = []
    for base in bases:
        if counts[base] > 1:
            names.append(f"{base}-{seen[base]}")
            seen[base] += 1
        else:
            names.append(base)
    return names


def _base_name(source: Source) -> str:
    info = source.describe()
    if "device" in info:
        raw = f"camera{info['device']}"
    elif "path" in info:
        raw = Path(info["path"]).stem
    elif "spec" in info:
        raw = Path(str(info["spec"]).split("*")[0] or "images").name or "images"
    elif "url" in info:
        raw = "url-" + re.sub(r"^[a-z0-9+.-]+://", "", str(info["url"]), flags=re.I).split("/")[0]
    else:
        raw = source.kind
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw).strip("._") or source.kind


def stream_path(template: str | Path, name: str) -> Path:
    """`template` with `{stream}` replaced by the stream's name (out_{stream}.mp4 -> out_camera0.mp4)."""
    return Path(str(template).replace(STREAM_FIELD, name))


def open_sources(streams: Sequence[Mapping[str, Any] | Source], **common: Any) -> list[Source]:
    """Sources for several streams: each entry a Source or `open_source` keywords ({"camera": 0});
    `common` goes to every `open_source` call (loop, synthetic_size, ...). Synthetic streams after the
    first get their own held-out seeds, so two synthetic cameras do not show the same street."""
    from edgeseg.data import synth  # torch-free; only its seed constants are used here

    sources: list[Source] = []
    synthetic = 0
    for spec in streams:
        if isinstance(spec, Source):
            sources.append(spec)
            continue
        kwargs = {**common, **spec}
        if kwargs.get("synthetic") is not None:
            if synthetic and kwargs.get("seed") is None:
                kwargs["seed"] = synth.HELDOUT_SEED + synthetic
            synthetic += 1
        sources.append(open_source(**kwargs))
    return sources


# ------------------------------------------------------------------------------------------ lanes
@dataclass
class LaneStats(RunStats):
    """One stream's stats; every result, histogram and thread's CPU time also counts in `total`."""

    total: RunStats | None = field(default=None, repr=False)

    def record(self, timings: dict[str, float], latency_ms: float, done: float) -> None:
        super().record(timings, latency_ms, done)
        if self.total is not None:
            self.total.record(timings, latency_ms, done)

    def add_thread_cpu(self, stage: str, seconds: float) -> None:
        super().add_thread_cpu(stage, seconds)
        if self.total is not None:
            self.total.add_thread_cpu(stage, seconds)

    def add_histogram(self, hist: np.ndarray) -> None:
        super().add_histogram(hist)
        if self.total is not None:
            self.total.add_histogram(hist)

    def cpu(self) -> dict[str, Any] | None:
        return None  # process CPU time cannot be split between streams; the total reports it


@dataclass(frozen=True)
class Lane:
    """One stream of a MultiStream: its name, its Pipeline (every stage but inference) and the port
    through which the Batcher takes its frames and hands back their results."""

    name: str
    pipeline: Pipeline
    port: InferencePort

    @property
    def stats(self) -> RunStats:
        return self.pipeline.stats


class _Forward(Sink):
    """Hands a stream's results to the MultiStream's consumer; the last stream to close ends it."""

    records = True  # after the timings are final, like a Pipeline's own consumer

    def __init__(self, channel: Channel, closing: Callable[[], None]) -> None:
        self.channel, self.closing, self.closed = channel, closing, False

    def write(self, result: FrameResult) -> None:
        self.channel.put(result)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.closing()


def _for_stream(value: PerStream, name: str) -> Any:
    if value is None:
        return None
    return value(name) if callable(value) else value.get(name)


def _check_per_stream(value: Any, what: str) -> None:
    if value is not None and not callable(value) and not isinstance(value, Mapping):
        raise EdgesegError(
            f"{what} for several streams: a function of the stream's name or a {{name: ...}} mapping, "
            f"got {type(value).__name__}"
        )


def cpu_requests(backend: Any) -> int:
    """How many requests at once the model was opened for on a CPU (each driven by its own thread,
    runtime/request_pool.py); 1: the streams' frames go to the batcher."""
    streams = getattr(backend.options, "streams", None) or 1
    shares = getattr(backend, "shares_session", True)  # OpenVINO: every spawn shares the compiled model
    return int(streams) if streams > 1 and backend.computes_on_cpu and shares else 1


# ------------------------------------------------------------------------------------------ the run
class MultiStream(StreamDriver):
    """Several sources through one model with batched inference; per-stream and total stats.

    `sources`: a list (named by `stream_names`) or a {name: Source} mapping. `sinks` and `labels`:
    a function of the stream's name or a {name: value} mapping (per-stream outputs; LabelLookup).
    `tile`: a sink (VideoSink, WindowSink) or several that get every stream's newest annotated frame
    side by side. `max_batch`: at most this many frames per inference (default: the number of streams, within
    the model's limits). Other options as for Pipeline, applied to every stream.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        sources: Sequence[Source] | Mapping[str, Source],
        sinks: PerStream = None,
        *,
        tile: Sink | Sequence[Sink] | None = None,
        labels: PerStream = None,
        max_batch: int | None = None,
        renderer: Renderer | None = None,
        owns_segmenter: bool = False,
        **pipeline_options: Any,
    ) -> None:
        if isinstance(sources, Mapping):
            names, items = [str(k) for k in sources], list(sources.values())
        else:
            names, items = stream_names(sources), list(sources)
        if not items:
            raise EdgesegError("a MultiStream needs at least one source")
        if len(set(names)) != len(names):
            raise EdgesegError(f"stream names must differ, got {names}")
        pipeline_options.pop("workers", None)
        _check_per_stream(sinks, "sinks")
        _check_per_stream(labels, "labels")
        self.segmenter = segmenter
        self.owns_segmenter = owns_segmenter
        backend = segmenter.backend
        self.requests = cpu_requests(backend)
        self.plan = plan_batches(backend, len(items), 1 if self.requests > 1 else max_batch)
        card = segmenter.card
        self.stats = RunStats(classes=list(card.classes))
        self.tiler = Tiler(tile, names) if tile is not None else None
        if self.tiler is not None:
            self.tiler.attach(self.stats)  # a live view of the tiles shows the total
        self.wake = threading.Event()
        renderer = renderer or Renderer(card.palette, card.classes)  # stateless: shared by the streams
        self.lanes: list[Lane] = []
        for i, (name, source) in enumerate(zip(names, items)):
            lane_sinks = list(_for_stream(sinks, name) or [])
            if self.tiler is not None:
                lane_sinks.append(self.tiler.cell(i))
            needs_render = any(s.needs_render for s in lane_sinks)
            # room for a result per batch in flight beside the one waiting, so handing back never blocks
            step = DrivenElsewhere(self.wake, room=max(self.requests, backend.max_in_flight))
            pipe = Pipeline(
                segmenter,
                source,
                lane_sinks,
                labels=_for_stream(labels, name),
                renderer=renderer if needs_render else None,
                inference=step,
                stats=LaneStats(classes=list(card.classes), total=self.stats),
                on_stop=self.stop,  # a stream that stops (a stage failed) stops the whole run
                **pipeline_options,
            )
            assert step.port is not None
            self.lanes.append(Lane(name, pipe, step.port))
        self.stats.live = all(lane.pipeline.live for lane in self.lanes)
        ports = [(lane.name, lane.port) for lane in self.lanes]
        self.batcher: Batcher | RequestPool = (
            RequestPool([backend], ports, self.wake, on_error=self.stop)  # more requests at start()
            if self.requests > 1
            else Batcher(backend, ports, self.plan.max_batch, self.wake)
        )
        self._thread: threading.Thread | None = None
        self._consumer_channel: Channel | None = None
        self._open_streams = len(self.lanes)
        self._lock = threading.Lock()
        self._finished = self._stopping = False
        self._error: BaseException | None = None

    @property
    def names(self) -> list[str]:
        return [lane.name for lane in self.lanes]

    @property
    def sources(self) -> list[Source]:
        return [lane.pipeline.source for lane in self.lanes]

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, *, consumer: bool = False) -> None:
        """Open every source and sink (errors surface here) and start the streams and the batcher."""
        if self.started:
            raise EdgesegError("a MultiStream runs once; create a new one for another run")
        self.started = True
        if consumer:
            self._consumer_channel = Channel(2 * len(self.lanes))
            for lane in self.lanes:
                lane.pipeline.sinks.append(_Forward(self._consumer_channel, self._stream_closed))
        started: list[Pipeline] = []
        try:
            if isinstance(self.batcher, RequestPool):  # a request per core on the one model
                spawned = [self.segmenter.spawn_backend() for _ in range(self.requests - 1)]
                self.batcher.backends += spawned  # they share its weights (closed in _release)
            for lane in self.lanes:
                lane.pipeline.start()
                started.append(lane.pipeline)
        except BaseException as exc:
            self._stopping = True  # the lanes that did start are stopped here, not through on_stop
            failed: Exception | None = None
            for pipe in started:
                pipe.stop()
                try:
                    pipe.finish()
                except Exception as lane_error:
                    failed = failed or lane_error
            self._release()
            if failed is not None and isinstance(exc, KeyboardInterrupt):
                # a running stream failed (a full disk) while another still waited for its camera, and
                # its stop ended that wait: the failure is what happened, not an interruption
                raise failed from None
            raise
        if self.tiler is not None:
            self.tiler.start()  # every source is open: the tiles' video runs at the fastest one's rate
        if self.plan.note:
            warn(self.plan.note)
        now, cpu = time.perf_counter(), time.process_time()
        for stats in [self.stats, *(lane.stats for lane in self.lanes)]:
            stats.started, stats.cpu_started = now, cpu  # every stream's clock starts once all are open
        self._thread = threading.Thread(target=self._infer, name="edgeseg-batcher", daemon=True)
        self._thread.start()

    def _infer(self) -> None:
        try:
            self.batcher.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            if not self._stopping:
                self.batcher.error = exc
            self.stop()
        finally:
            helpers = self.batcher.helper_cpu if isinstance(self.batcher, RequestPool) else 0.0
            self.stats.add_thread_cpu("inference", time.thread_time() + helpers)

    def _stream_closed(self) -> None:
        with self._lock:
            self._open_streams -= 1
            last = self._open_streams == 0
        if last and self._consumer_channel is not None:
            self._consumer_channel.put(END)

    def stop(self) -> None:
        """Stop every stream now (in-flight frames are discarded)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        for lane in self.lanes:
            lane.pipeline.stop()
        if self._consumer_channel is not None:
            self._consumer_channel.close()

    def finish(self) -> RunStats:
        """Join the batcher and every stream, finalise all outputs, raise the first error if any."""
        if not self._finished:
            self._finished = True
            errors: list[BaseException] = []
            if self._thread is not None:
                self._thread.join(JOIN_TIMEOUT * 2)
            if self.batcher.error is not None:
                errors.append(self.batcher.error)
            for lane in self.lanes:
                try:
                    lane.pipeline.finish()
                except BaseException as exc:  # noqa: BLE001 - finish every stream, raise the first
                    errors.append(exc)
            self._refresh()
            if self._thread is None or not self._thread.is_alive():
                try:
                    self._release()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
            self._error = errors[0] if errors else None
        if self._error is not None:
            err, self._error = self._error, None
            self.stats.error = err  # the report says what failed
            raise err
        return self.stats

    @property
    def streamed(self) -> bool:
        """Whether the streams got going (every source opened and the threads started)."""
        return any(lane.pipeline.streamed for lane in self.lanes)

    def _release(self) -> None:
        try:
            if isinstance(self.batcher, RequestPool):
                for backend in self.batcher.backends[1:]:  # the spawned requests; the model is below
                    with contextlib.suppress(Exception):
                        backend.close()
            if self.tiler is not None:
                self.tiler.close()
        finally:
            if self.owns_segmenter:
                with contextlib.suppress(Exception):  # releasing must not hide the run's result
                    self.segmenter.close()

    def pumps(self) -> list[Callable[[], None]]:
        pumps = [pump for lane in self.lanes for pump in lane.pipeline.pumps()]
        if self.tiler is not None and self.tiler.pumps:
            pumps.append(self.tiler.pump)
        return pumps

    def quit_requested(self) -> bool:
        tiler = self.tiler is not None and self.tiler.quit_requested
        return tiler or any(lane.pipeline.quit_requested() for lane in self.lanes)

    def wait_ended(self, timeout: float) -> bool:
        """True once every stream has ended (waiting up to `timeout` s in all)."""
        deadline = time.perf_counter() + timeout
        return all(lane.pipeline.wait_ended(max(0.0, deadline - time.perf_counter())) for lane in self.lanes)

    def consumer(self) -> Channel:
        assert self._consumer_channel is not None, "start(consumer=True) first"
        return self._consumer_channel

    def current_stats(self) -> RunStats:
        return self._refresh()

    # --- reporting ---------------------------------------------------------------------------------
    def _refresh(self) -> RunStats:
        """Totals the streams keep themselves: frames captured and dropped, unlabelled, ground truth."""
        total = self.stats
        total.captured = sum(lane.stats.captured for lane in self.lanes)
        total.dropped = sum(lane.pipeline.dropped for lane in self.lanes)
        total.unlabeled = sum(lane.stats.unlabeled for lane in self.lanes)
        summed: np.ndarray | None = None
        for lane in self.lanes:
            matrix = lane.stats.confusion_matrix()
            if matrix is not None:
                summed = matrix if summed is None else summed + matrix
        total.set_confusion(summed)
        # a stream that lost its live source or read a damaged file decides the exit status
        total.source_lost = next(
            (lane.stats.source_lost for lane in self.lanes if lane.stats.source_lost), None
        )
        total.input_problem = next(
            (lane.stats.input_problem for lane in self.lanes if lane.stats.input_problem), None
        )
        return total

    def batching(self) -> Batching:
        """How the frames were batched: sizes run, their mean, the limit and why."""
        return Batching(
            max_batch=self.plan.max_batch,
            # requests run side by side (CPU: a core each)
            in_flight=self.requests if self.requests > 1 else self.segmenter.backend.max_in_flight,
            model_batch=self.plan.model_limits,
            sizes=dict(self.batcher.sizes),
            note=self.plan.note,
        )

    def run_report(self) -> RunReport:
        """The total (frames, FPS, latency, CPU, mIoU over every stream), the batching, and one entry
        per stream with its own frames, drops, FPS, latency, gaps and mIoU."""
        self._refresh()
        first = self.lanes[0].pipeline.run_report()
        streams = [
            StreamReport(
                name=lane.name,
                source=lane.pipeline.source.describe(),
                outputs=[
                    s.describe() for s in lane.pipeline.sinks if not isinstance(s, (_Forward, Tiler.Cell))
                ],
                stats=lane.stats,
            )
            for lane in self.lanes
        ]
        return RunReport(
            card=first.card,
            backend=first.backend,
            workers=1,
            source={"kind": f"{len(self.lanes)} streams", "streams": self.names},
            batching=self.batching(),
            streams=streams,
            outputs=[self.tiler.describe()] if self.tiler is not None else [],
            stats=self.stats,
        )

    def report(self) -> dict[str, Any]:
        """The JSON form of `run_report()`."""
        return self.run_report().to_dict()
