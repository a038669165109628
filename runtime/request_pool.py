"""Several streams on a CPU (runtime/multistream.py): one model, a request per core, each request
driven by its own thread that takes the next ready frame of any stream, runs it and hands it back.

A GPU gains from batching the streams' ready frames (the `Batcher`, runtime/batcher.py); a CPU does
not: a request per core, a frame each, costs the CPU per frame of separate processes while holding
one copy of the weights (docs/benchmarks.md). Driving those requests from the one batcher thread
cost a thread hand-off per frame and left a core idle whenever the newer request finished first,
because the batcher waited for the oldest. Here each thread is the only one touching its request
(the model's backend or a `spawn()` of it, which shares the weights: one ONNX Runtime session, one
OpenVINO compiled model), as a single stream's `WorkerPool` does, but over every stream's port.

Frames of one stream may run on two requests at once; the stream's postprocess puts results back in
capture order (`InferencePort.take` numbers them). A stream whose postprocessing is behind is skipped
until it catches up, as the batcher does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

from edgeseg.runtime.backends import Backend
from edgeseg.runtime.streaming.channel import POLL
from edgeseg.runtime.streaming.frame import FrameResult
from edgeseg.runtime.streaming.inference import InferencePort, StreamPorts


class RequestPool:
    """`backends`: one per request, each used by one thread only (the first is the model's own, the
    others spawned from it). `ports`: each stream's name and port; `wake` is set when any has news."""

    def __init__(
        self,
        backends: Sequence[Backend],
        ports: Sequence[tuple[str, InferencePort]],
        wake: threading.Event,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.backends = list(backends)
        self.streams = StreamPorts(ports)
        self.wake = wake
        self.on_error = on_error  # stops the run when a request fails
        self.sizes: Counter[int] = Counter()  # frames per inference -> inferences (always 1 here)
        self.error: BaseException | None = None
        self.helper_cpu = 0.0  # CPU seconds of the threads run() started beside its own
        self._lock = threading.Lock()  # `streams` and the counts above, shared by every request's thread

    @property
    def in_flight(self) -> int:
        return len(self.backends)

    def run(self) -> None:
        """Drive every request until every stream has ended: the first on the calling thread, the
        others on threads of their own; the first error is raised once all have stopped."""
        helpers = [
            threading.Thread(target=self._helper, args=(b,), name=f"edgeseg-request-{k}", daemon=True)
            for k, b in enumerate(self.backends[1:], start=1)
        ]
        for thread in helpers:
            thread.start()
        try:
            self._work(self.backends[0])
        except BaseException as exc:  # noqa: BLE001 - raised below, after the helpers stopped
            self._failed(exc)
        for thread in helpers:
            thread.join()
        if self.error is not None:
            raise self.error

    def _helper(self, backend: Backend) -> None:
        try:
            self._work(backend)
        except BaseException as exc:  # noqa: BLE001 - handed to run()'s caller
            self._failed(exc)
        finally:
            with self._lock:
                self.helper_cpu += time.thread_time()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = self.error is None
            if first:
                self.error = exc
        if first:
            self.on_error()  # the streams stop; the other requests then see every port end

    def _work(self, backend: Backend) -> None:
        backend.activate()
        try:
            while True:
                with self._lock:
                    if self.streams.all_ended or self.error is not None:
                        return
                    self.wake.clear()  # before looking: a frame arriving after the look sets it again
                    taken, ending = self._take()
                for port in ending:
                    port.end()
                if taken is None:
                    self.wake.wait(POLL)
                    continue
                self.wake.set()  # another idle request may find another stream's frame
                i, item = taken
                submitted = time.perf_counter()
                item.raw = backend.run(item.batch)  # type: ignore[arg-type]
                item.timings["inference"] = (time.perf_counter() - submitted) * 1000.0
                item.batch = None
                self._hand_back(i, item)
        finally:
            backend.deactivate()

    def _take(self) -> tuple[tuple[int, FrameResult] | None, list[InferencePort]]:
        """The next ready frame, looking at a different stream first each time, and the ports whose end
        is due (under the lock; their `end()` is called after it)."""
        ending: list[InferencePort] = []
        for i in self.streams.rotation():
            item = self.streams.take(i, ending)
            if item is not None:
                self.sizes[1] += 1
                self.streams.advance(past=i)
                return (i, item), ending
        return None, ending

    def _hand_back(self, i: int, item: FrameResult) -> None:
        port = self.streams.ports[i]
        handed = port.hand_back(item)  # never waits: there was room when it was taken
        with self._lock:
            due = self.streams.returned(i, handed)
        if due:
            port.end()
