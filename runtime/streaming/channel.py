"""Bounded hand-off between two stages, and the two markers that travel through channels."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Final

POLL: Final = 0.05  # how often a waiting stage looks at the stop flag, seconds


class Marker:
    """A value that is not a frame: `END` of the stream, or `EMPTY` (a non-blocking get found nothing)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END: Final = Marker("END")
EMPTY: Final = Marker("EMPTY")


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
            if self.latest and item is not END:
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
        """Next item, or `END` once closed (`block=False`: `EMPTY` when there is none yet)."""
        with self._cond:
            while not self._items and not self.closed:
                if not block:
                    return EMPTY
                self._cond.wait(POLL)
            if self.closed:
                return END
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
