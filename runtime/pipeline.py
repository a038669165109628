"""The streaming pipeline: capture -> preprocess -> inference -> postprocess -> output, each stage on
its own thread, joined by small bounded channels, so decoding and drawing overlap inference.

Live sources (camera, url, gst) use latest-frame semantics: the channels in front of inference hold
one frame and a newer frame replaces an older one, which is counted as dropped; lag never builds up.
File sources (video, images, synthetic) block instead, so every frame is processed.

    with Pipeline(Segmenter("model.onnx"), open_source(camera=0)) as pipe:
        for result in pipe.stream():
            use(result.class_map)                   # H x W uint8 class ids at the frame's size

A backend is driven by one thread. `workers=N` runs N inference threads, each with its own backend
for the same artifact (the segmenter's plus N-1 spawned copies), on consecutive frames; results are
put back in capture order before postprocessing. On a CPU, N single-threaded sessions keep the cores
busier than one N-threaded session once decoding and drawing share those cores: a stalled thread then
delays only its own frame instead of every operator of an intra-op parallel run (docs/runtime.md).
`plan_workers` in runtime/workers.py picks N and the threads per worker.

The Pipeline only assembles parts (runtime/streaming/): a Capture, Preprocess, Postprocess and Output
stage joined by channels, and an inference step behind the stream's `InferencePort` - a WorkerPool
here, or, for one stream of several, the MultiStream's shared Batcher (runtime/multistream.py).

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
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.runtime.draw import Renderer
from edgeseg.runtime.report import RunReport
from edgeseg.runtime.run_stats import RunStats
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import LabelLookup, Source
from edgeseg.runtime.streaming.channel import Channel
from edgeseg.runtime.streaming.driver import StreamDriver
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.inference import InferencePort, InferenceStep, Stage, WorkerPool
from edgeseg.runtime.streaming.reconnect import Reconnect
from edgeseg.runtime.streaming.stages import Capture, Output, Postprocess, Preprocess, close_all

__all__ = ["FrameResult", "Pipeline", "Reconnect"]

JOIN_TIMEOUT = 0.8  # per stage on shutdown; stages poll the stop flag every POLL seconds
SINK_CLOSE_TIMEOUT = 60.0  # finalising outputs on shutdown (a long video's index, a copy to a FIFO)


class Pipeline(StreamDriver):
    """Threaded streaming of `source` through `segmenter` into `sinks`, measuring everything.

    `inference`: the inference step (default: a WorkerPool of `workers` threads). `stats`: where to
    count (default: a new RunStats). `on_stop`: called whenever this stream stops (a stage failed,
    stop() was called), so a run made of several streams stops with it."""

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
        inference: InferenceStep | None = None,
        stats: RunStats | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.inference = inference if inference is not None else WorkerPool(segmenter, workers)
        self.segmenter = segmenter
        self.owns_segmenter = owns_segmenter  # close it in finish() (pipelines assembled by open_pipeline)
        self.source = source
        self.sinks = list(sinks)
        self.labels = labels  # ground truth by frame name
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
        self.stats = stats if stats is not None else RunStats(classes=list(card.classes))
        self.stats.live = self.live
        for sink in self.sinks:
            sink.attach(self.stats)
        # channels: capture -> pre -> [port: infer -> post] -> out [-> consumer]
        self._c_pre = Channel(1 if self.live else queue_size, latest=self.live)
        self.port = InferencePort(
            Channel(1 if self.live else queue_size, latest=self.live), Channel(queue_size)
        )
        self._c_out = Channel(queue_size)
        self._c_user: Channel | None = None
        self._channels = [self._c_pre, self.port.frames, self.port.results, self._c_out]
        self.inference.connect(self.port)
        self._on_stop = on_stop
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inference_threads: list[threading.Thread] = []
        self._output: Output | None = None
        self._error: BaseException | None = None
        self._finished = False
        self._backend_info: dict[str, Any] | None = None

    @property
    def workers(self) -> int:
        return self.inference.workers

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self, *, consumer: bool = False) -> None:
        """Open the source (errors surface here, in the caller's thread) and start the stages."""
        if self.started:
            raise EdgesegError("a Pipeline runs once; create a new one for another run")
        self.started = True
        if consumer:
            self._c_user = Channel(2)
            self._channels.append(self._c_user)
        capture = Capture(
            self.source,
            self._c_pre,
            self.stats,
            self._stop,
            reconnect=self.reconnect,
            labels=self.labels,
            max_frames=self.max_frames,
            realtime=self.realtime,
            live=self.live,
        )
        self._backend_info = self.segmenter.backend.describe()  # the report outlives an owned backend
        try:
            self.inference.open()
            capture.open()
            for sink in self.sinks:
                sink.start(self.source)
        except BaseException:
            self.inference.close()
            close_all(self.sinks)
            if self.owns_segmenter:
                self.segmenter.close()
            raise  # the open/start error itself is what the caller sees
        self.stats.started = time.perf_counter()
        self.stats.cpu_started = time.process_time()
        needs_class_map = consumer or self.renderer is not None or any(s.needs_class_map for s in self.sinks)
        self._output = Output(
            self._c_out,
            self.sinks,
            self.stats,
            consumer=self._c_user,
            dropped=lambda: self.dropped,
            expects_gt=self.labels is not None or self.source.pairs_labels,
            fail=self._fail,
            ended=self._ended,
        )
        post = Postprocess(
            self.segmenter,
            self.port.results,
            self._c_out,
            keep_logits=self.keep_logits,
            needs_class_map=needs_class_map,
            renderer=self.renderer,
        )
        front: list[Stage] = [
            ("capture", capture.run),
            ("preprocess", Preprocess(self.segmenter, self._c_pre, self.port.frames).run),
        ]
        inference = self.inference.stages()
        back: list[Stage] = [("postprocess", post.run), ("output", self._output.run)]
        self._start_threads(front)
        self._inference_threads = self._start_threads(inference)
        self._start_threads(back)

    def _start_threads(self, stages: list[Stage]) -> list[threading.Thread]:
        started = []
        for name, target in stages:
            t = threading.Thread(
                target=self._guard, args=(name.split("-")[0], target), name=f"edgeseg-{name}", daemon=True
            )
            self._threads.append(t)
            started.append(t)
            t.start()
        return started

    def stop(self) -> None:
        """Ask every stage to stop now (in-flight frames are discarded)."""
        self._stop.set()
        for ch in self._channels:
            ch.close()
        if self._on_stop is not None:
            self._on_stop()

    @property
    def ended(self) -> bool:
        """The output stage has finished: the source ended, a stage failed, or stop() was called."""
        return self._ended.is_set()

    @property
    def streamed(self) -> bool:
        """Whether the stream got going (the source opened and the stages started)."""
        return bool(self._threads)

    @property
    def sources(self) -> list[Source]:
        return [self.source]

    @property
    def dropped(self) -> int:
        """Frames replaced by newer ones before inference (live), and those the source itself lost."""
        return self._c_pre.dropped + self.port.frames.dropped + self.source.dropped

    def finish(self) -> RunStats:
        """Join the stages, close sinks and source, and raise the first stage error if any."""
        if not self._finished:
            self._finished = True
            deadline = time.perf_counter() + JOIN_TIMEOUT * 2
            for t in self._threads:
                t.join(max(0.0, deadline - time.perf_counter()))
            if self._threads:  # the output stage finalises the files (a video's index): let it finish
                self._ended.wait(SINK_CLOSE_TIMEOUT)
            if self._output is not None and self._output.close_error is not None and self._error is None:
                self._error = self._output.close_error
            self.stats.dropped = self.dropped
            if not any(t.is_alive() for t in self._inference_threads):
                self.inference.close()  # a worker stuck in a run keeps its backend; the process ends soon
                if self.owns_segmenter:
                    with contextlib.suppress(Exception):  # releasing must not hide the run's result
                        self.segmenter.close()
        if self._error is not None:
            err, self._error = self._error, None
            self.stats.error = err  # the report says what failed
            raise err
        return self.stats

    def pumps(self) -> list[Callable[[], None]]:
        return [s.pump for s in self.sinks if s.pumps]

    def quit_requested(self) -> bool:
        return any(s.quit_requested for s in self.sinks)

    def wait_ended(self, timeout: float) -> bool:
        return self._ended.wait(timeout)

    def consumer(self) -> Channel:
        assert self._c_user is not None, "start(consumer=True) first"
        return self._c_user

    def run_report(self) -> RunReport:
        """What ran (model, backend, source, outputs) and the stats."""
        return RunReport(
            card=self.segmenter.card,
            backend=self._backend_info or self.segmenter.backend.describe(),
            workers=self.workers,
            source=self.source.describe(),
            outputs=[s.describe() for s in self.sinks],
            stats=self.stats,
        )

    def report(self) -> dict[str, Any]:
        """The JSON form of `run_report()`."""
        return self.run_report().to_dict()

    # --- failures ----------------------------------------------------------------------------------
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
