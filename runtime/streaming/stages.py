"""The stages of one stream, each run on its own thread and joined by channels:
capture -> preprocess -> [inference step] -> postprocess -> output.

Each stage is a small object with a `run()` (the thread's body) that reads its input channel and puts
into its output channel, ending by passing `END` on; a closed channel (the stream is stopping) ends it
early."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from edgeseg.errors import EdgesegError, SourceLost
from edgeseg.metrics import ConfusionMatrix
from edgeseg.preprocess import labels_to_frame
from edgeseg.runtime.draw import Renderer, class_histogram, frame_class_histogram
from edgeseg.runtime.run_stats import Gap, RunStats
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.sources import LabelLookup, Source
from edgeseg.runtime.streaming.channel import END, Channel
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.reconnect import Reconnect, silence


class Capture:
    """Reads frames from `source` into `out`, with ground truth when known. The source is opened on
    the caller's thread (`open`, errors surface there) and closed on this stage's own thread
    (VideoCapture is not thread-safe, and a read blocked on a dead stream must not race a release
    from another thread)."""

    def __init__(
        self,
        source: Source,
        out: Channel,
        stats: RunStats,
        stop: threading.Event,
        *,
        reconnect: Reconnect,
        labels: LabelLookup | None,
        max_frames: int | None,
        realtime: bool,
        live: bool,
    ) -> None:
        self.source, self.out, self.stats, self.stop = source, out, stats, stop
        self.reconnect, self.labels, self.max_frames = reconnect, labels, max_frames
        self.realtime, self.live = realtime, live

    def open(self) -> None:
        """Open the source; a live one with --reconnect that is not up yet (a camera or RTSP server
        starting after the robot's perception) is retried within the reconnect timeout, and that
        wait is recorded as a gap ending at 0 s, where the run's clock starts."""
        source, reconnect = self.source, self.reconnect
        limit = reconnect.wait_limit() if source.live else None
        if limit is not None:
            source.limit_wait(limit)
        since = time.perf_counter()
        try:
            source.open()
            return
        except EdgesegError as exc:
            if not (source.live and reconnect.enabled):
                raise
            gap = Gap(since, reason=str(exc))
        self.stats.gaps.append(gap)
        opened = reconnect.reopen(source, gap, since, self.stop)
        waited = time.perf_counter() - since
        gap.start, gap.end, gap.recovered = -waited, 0.0, opened  # before the run's clock starts at 0
        if not opened:
            if self.stop.is_set():
                raise KeyboardInterrupt
            self.stats.source_lost = reconnect.lost(gap)
            raise SourceLost(f"live source lost: {self.stats.source_lost}")

    def run(self) -> None:
        try:
            self._loop()
        finally:
            with contextlib.suppress(Exception):  # a release failure must not hide the run's result
                self.source.close()

    def _loop(self) -> None:
        source, stats, stop = self.source, self.stats, self.stop
        index = 0
        gap: Gap | None = None
        period = 1.0 / (source.fps or 30.0) if self.realtime and not source.live else 0.0
        first = last_frame = time.perf_counter()
        while not stop.is_set():
            if self.max_frames is not None and index >= self.max_frames:
                break
            if period:
                offset = source.recorded_offset()
                due = first + (index * period if offset is None else offset) - time.perf_counter()
                if due > 0 and stop.wait(due):
                    break
            t0 = time.perf_counter()
            frame = source.read()
            if frame is None:
                if stop.is_set():  # a source woken up by the stop is no gap
                    break
                if not source.live:
                    stats.input_problem = source.problem
                    break
                if gap is None:  # the source went quiet when its last frame came, not when we noticed
                    gap = Gap(last_frame - stats.started, reason=source.problem or silence(t0, last_frame))
                    stats.gaps.append(gap)
                if not self.reconnect.enabled or not self.reconnect.reopen(
                    source, gap, stats.started + gap.start, stop
                ):
                    if not stop.is_set():
                        gap.end = time.perf_counter() - stats.started
                        stats.source_lost = self.reconnect.lost(gap)
                    break
                continue
            t1 = last_frame = time.perf_counter()
            if gap is not None:
                gap.end, gap.recovered, gap = t1 - stats.started, True, None
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
            stats.captured = index
            if not self.out.put(item):
                return
        self.out.put(END)


class Preprocess:
    """Fits each frame to the net's input (`Segmenter.preprocess`)."""

    def __init__(self, segmenter: Segmenter, inbox: Channel, out: Channel) -> None:
        self.segmenter, self.inbox, self.out = segmenter, inbox, out

    def run(self) -> None:
        pre = self.segmenter.preprocess
        while (item := self.inbox.get()) is not END:
            t0 = time.perf_counter()
            item.batch, item.geom = pre(item.frame)
            item.timings["preprocess"] = (time.perf_counter() - t0) * 1000.0
            if not self.out.put(item):
                return
        self.out.put(END)


class Postprocess:
    """Net output -> class map at the frame's size (only when something reads it), class histogram,
    the frame's confusion matrix when its ground truth is known, and the annotated frame for visual
    sinks; results come back from the inference step in any order and leave in capture order."""

    def __init__(
        self,
        segmenter: Segmenter,
        inbox: Channel,
        out: Channel,
        *,
        keep_logits: bool,
        needs_class_map: bool,
        renderer: Renderer | None,
    ) -> None:
        self.segmenter, self.inbox, self.out = segmenter, inbox, out
        self.keep_logits, self.needs_class_map, self.renderer = keep_logits, needs_class_map, renderer

    def run(self) -> None:
        n = self.segmenter.card.num_classes
        for item in in_order(self.inbox):
            t0 = time.perf_counter()
            net_labels, logits = self.segmenter.net_labels(item.raw)
            item.raw = None
            item.logits = logits if self.keep_logits else None
            if self.needs_class_map or item.gt is not None:
                item.class_map = labels_to_frame(net_labels, item.geom)
                item.histogram = class_histogram(item.class_map, n)
            else:
                item.histogram = frame_class_histogram(net_labels, item.geom, n)
            if item.gt is not None:
                cm = ConfusionMatrix(n)
                cm.update(item.class_map, item.gt)
                item.confusion = cm.matrix
            if self.renderer is not None:
                item.rendered = self.renderer.render(item.frame, item.class_map)
            item.timings["postprocess"] = (time.perf_counter() - t0) * 1000.0
            if not self.out.put(item):
                return
        self.out.put(END)


def in_order(channel: Channel) -> Iterator[FrameResult]:
    """Frames from the inference step, back in the order they were taken (= capture order)."""
    pending: dict[int, FrameResult] = {}
    next_seq = 0
    while (item := channel.get()) is not END:
        pending[item.seq] = item
        while next_seq in pending:
            yield pending.pop(next_seq)
            next_seq += 1


class Output:
    """Counts each result into the stats (running mIoU, histogram, timings) and writes it to the sinks:
    files and windows first, then the record-keeping sinks (JSONL) once the timings are final, then
    the `stream()` consumer. Closes every sink when the stream ends, however it ends."""

    def __init__(
        self,
        inbox: Channel,
        sinks: Sequence[Sink],
        stats: RunStats,
        *,
        consumer: Channel | None,
        dropped: Callable[[], int],
        expects_gt: bool,
        fail: Callable[[BaseException], None],
        ended: threading.Event,
    ) -> None:
        self.inbox, self.sinks, self.stats, self.consumer = inbox, list(sinks), stats, consumer
        self.dropped, self.expects_gt, self.fail, self.ended = dropped, expects_gt, fail, ended
        self.close_error: BaseException | None = None  # the first sink that failed to close
        self._last_index = -1

    def run(self) -> None:
        try:
            while (item := self.inbox.get()) is not END:
                self._write(item)
                if self.consumer is not None and not self.consumer.put(item):
                    return
        except BaseException as exc:  # a failed write is the run's error, not what closing says after
            self.fail(exc)
            raise
        finally:
            self.close_error = close_all(self.sinks)
            if self.consumer is not None:
                self.consumer.put(END)
            self.ended.set()

    def _write(self, item: FrameResult) -> None:
        stats = self.stats
        t0 = time.perf_counter()
        item.dropped_before = item.index - self._last_index - 1
        self._last_index = item.index
        if item.confusion is not None:
            item.running_miou = _nan_to_none(stats.add_confusion(item.confusion))
        elif self.expects_gt:
            stats.unlabeled += 1
        if item.histogram is not None:
            stats.add_histogram(item.histogram)
        for sink in self.sinks:
            if not sink.records:
                sink.write(item)
        done = time.perf_counter()
        item.timings["output"] = (done - t0) * 1000.0
        item.t_done = done
        stats.dropped = self.dropped()
        stats.record(item.timings, (done - item.t_capture) * 1000.0, done)
        for sink in self.sinks:
            if sink.records:
                sink.write(item)


def close_all(sinks: Sequence[Sink]) -> BaseException | None:
    """Close every sink; the first failure, if any."""
    first: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - close every sink, report the first failure
            first = first or exc
    return first


def _nan_to_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
