"""The inference step: the one variable part of a stream. A stream's preprocessed frames wait at its
`InferencePort`; an `InferenceStep` takes them, runs the backend and hands the results back through
the same port. One stream runs a `WorkerPool` (N threads, each with its own backend, on consecutive
frames); several streams share one batching step instead (`Batcher`, runtime/batcher.py), as
DeepStream's streams share one `nvstreammux`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Protocol, Tuple

from edgeseg.errors import EdgesegError
from edgeseg.runtime.backends import Backend
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.streaming.channel import EMPTY, END, Channel, Marker
from edgeseg.runtime.streaming.frame import FrameResult

Stage = Tuple[str, "Callable[[], None]"]  # a thread's name and what it runs (typing's forms: Python 3.8)


class InferencePort:
    """Where one stream's frames meet the inference step: `take` the next preprocessed frame (numbered
    in the order taken, so the stream can put results back in capture order), `hand_back` its result,
    `end` once every frame taken has been handed back."""

    def __init__(self, frames: Channel, results: Channel) -> None:
        self.frames = frames  # preprocess -> inference
        self.results = results  # inference -> postprocess
        self._lock = threading.Lock()  # frames (and their numbers) are taken one at a time
        self._taken = 0
        self._ended = False

    def take(self, block: bool = True) -> FrameResult | Marker:
        """The next frame, or `END` (to every taker, once the stream ended); `block=False` (or another
        thread taking right now): `EMPTY` when no frame can be had at once."""
        if not self._lock.acquire(blocking=block):
            return EMPTY  # another worker is waiting for the next frame: this one hands on its own
        try:
            if self._ended:
                return END
            item = self.frames.get(block)
            if item is EMPTY:
                return EMPTY
            if item is END:
                self._ended = True
                return END
            item.seq, self._taken = self._taken, self._taken + 1
            return item
        finally:
            self._lock.release()

    def hand_back(self, item: FrameResult) -> bool:
        """False if the stream is stopping (the result goes with it)."""
        return self.results.put(item)

    def end(self) -> None:
        """Every frame taken has been handed back: the end follows them."""
        self.results.put(END)

    def has_room(self, held: int) -> bool:
        """Whether a result can be handed back without waiting, with `held` more already on their way."""
        return len(self.results) + held < self.results.capacity

    def wake_on(self, event: threading.Event, room: int) -> None:
        """Set `event` whenever a frame arrives or a result is taken, and make room for `room` more
        results (one per batch in flight), for a step that serves several ports from one thread."""
        self.frames.wake = self.results.wake = event
        self.results.capacity += room


class StreamPorts:
    """The ports of several streams as the one step serving them all sees them (the `Batcher` on a
    GPU, the `RequestPool` on a CPU): whose turn it is, each stream's frames out at inference, which
    streams have ended, and when a stream's end is due (once, after its last result). Not thread-safe:
    a caller with several threads holds its own lock around `take` and `returned`."""

    def __init__(self, ports: Sequence[tuple[str, InferencePort]]) -> None:
        """`ports`: each stream's name and port."""
        self.names = [name for name, _ in ports]
        self.ports = [port for _, port in ports]
        self._held: Counter[int] = Counter()  # per stream: frames taken and not yet handed back
        self._ended: set[int] = set()  # streams whose frames have all been taken
        self._closed: set[int] = set()  # streams whose end has been handed on (or that stopped)
        self._turn = 0

    @property
    def all_ended(self) -> bool:
        return len(self._ended) == len(self.ports)

    def rotation(self) -> list[int]:
        """Every stream, starting with the one whose turn it is (see `advance`)."""
        n = len(self.ports)
        return [(self._turn + k) % n for k in range(n)]

    def advance(self, past: int) -> None:
        """The next `rotation` starts with the stream after `past`."""
        self._turn = (past + 1) % len(self.ports)

    def take(self, i: int, ending: list[InferencePort]) -> FrameResult | None:
        """Stream i's ready frame, named after its stream, if its postprocessing has room for the
        result; else None (its frames wait or, live, get replaced upstream). A stream found ended
        with nothing out has its port added to `ending`: the caller calls `end()` on it."""
        port = self.ports[i]
        if i in self._ended or not port.has_room(self._held[i]):
            return None
        item = port.take(block=False)
        if item is EMPTY:
            return None
        if item is END:
            self._ended.add(i)
            if self._end_due(i):
                ending.append(port)
            return None
        assert isinstance(item, FrameResult)
        item.stream = self.names[i]
        self._held[i] += 1
        return item

    def returned(self, i: int, handed: bool) -> bool:
        """Stream i's frame came back from inference (`handed`: its port took the result; False when
        that stream is stopping, whose frames go with it). True when the caller is to `end()` the
        port now."""
        self._held[i] -= 1
        if not handed:
            self._ended.add(i)
            self._closed.add(i)
        return self._end_due(i)

    def _end_due(self, i: int) -> bool:
        """Whether stream i's end is due now and not yet handed on; marks it handed on."""
        if i in self._ended and not self._held[i] and i not in self._closed:
            self._closed.add(i)
            return True
        return False


class InferenceStep(Protocol):
    """What a Pipeline needs from its inference step."""

    workers: int  # inference threads (reported)

    def connect(self, port: InferencePort) -> None:
        """The stream's port (called once, when the Pipeline is made)."""

    def open(self) -> None:
        """Acquire what the threads need (backends for extra workers); errors surface in start()."""

    def stages(self) -> list[Stage]:
        """The threads the Pipeline starts for this step (none when another part drives the port)."""

    def close(self) -> None:
        """Release what `open` acquired."""


class WorkerPool:
    """One stream's inference: `workers` threads, each the only one touching its own backend (the
    segmenter's plus spawned copies for the same artifact), on consecutive frames. Each keeps up to
    `backend.max_in_flight` frames submitted (TensorRT stages frame n+1 while n runs), but never holds
    a finished frame back waiting for a newer one."""

    def __init__(self, segmenter: Segmenter, workers: int = 1) -> None:
        if workers < 1:
            raise EdgesegError(f"workers must be at least 1, got {workers}")
        self.segmenter = segmenter
        self.workers = workers
        self._port: InferencePort | None = None
        self._spawned: list[Backend] = []  # the extra workers' backends
        self._left = workers  # workers still handing back frames
        self._left_lock = threading.Lock()

    def connect(self, port: InferencePort) -> None:
        self._port = port

    def open(self) -> None:
        self._spawned = [self.segmenter.spawn_backend() for _ in range(self.workers - 1)]

    def stages(self) -> list[Stage]:
        backends = [self.segmenter.backend, *self._spawned]
        return [
            (f"inference-{i}" if i else "inference", functools.partial(self._work, backend))
            for i, backend in enumerate(backends)
        ]

    def close(self) -> None:
        spawned, self._spawned = self._spawned, []
        for backend in spawned:
            with contextlib.suppress(Exception):  # releasing a copy must not hide the run's result
                backend.close()

    def _work(self, backend: Backend) -> None:
        """One worker: the only thread that touches `backend`."""
        port = self._port
        assert port is not None, "connect() first"
        backend.activate()
        try:
            in_flight: deque[tuple[float, FrameResult]] = deque()  # (submitted at, frame)
            while True:
                full = len(in_flight) >= backend.max_in_flight
                item = EMPTY if full else port.take(block=not in_flight)
                if item is END:
                    break
                if item is EMPTY:  # nothing new to stage: hand on the oldest frame
                    if not self._collect(backend, port, *in_flight.popleft()):
                        return
                    continue
                assert isinstance(item, FrameResult)
                submitted = time.perf_counter()
                backend.submit(item.batch)
                item.batch = None
                in_flight.append((submitted, item))
            while in_flight:
                if not self._collect(backend, port, *in_flight.popleft()):
                    return
            with self._left_lock:
                self._left -= 1
                last = self._left == 0
            if last:  # every worker has handed on its frames: the end may follow them
                port.end()
        finally:
            backend.deactivate()

    @staticmethod
    def _collect(backend: Backend, port: InferencePort, submitted: float, item: FrameResult) -> bool:
        item.raw = backend.result()
        item.timings["inference"] = (time.perf_counter() - submitted) * 1000.0
        return port.hand_back(item)


class DrivenElsewhere:
    """The inference step of one stream among several: no threads of its own; the shared `Batcher`
    (runtime/batcher.py) takes frames from this stream's port and hands results back."""

    workers = 1

    def __init__(self, wake: threading.Event, room: int) -> None:
        self.wake, self.room = wake, room
        self.port: InferencePort | None = None

    def connect(self, port: InferencePort) -> None:
        port.wake_on(self.wake, self.room)
        self.port = port

    def open(self) -> None:
        pass

    def stages(self) -> list[Stage]:
        return []

    def close(self) -> None:
        pass
