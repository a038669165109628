"""Several streams side by side in one video or window (`edgeseg run --camera 0 --camera 1 --tile`).

Each stream's output thread hands its newest annotated frame to its cell; the tiler composes a grid
(2 streams: 1 x 2, 3-4: 2 x 2, ...) with each stream's name in its corner, and writes one grid frame
per round: when every stream still running has a new frame, or when a stream brings its next frame
before the others caught up (a slow stream then shows its previous frame, so it never holds the video
back). Cells take the size of the largest frame of the first round; others are letterboxed into it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgeseg.preprocess import fit
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.streaming.frame import FrameResult

if TYPE_CHECKING:
    from edgeseg.runtime.run_stats import RunStats
    from edgeseg.runtime.sources import Source


class Tiler:
    """Composes the streams' newest annotated frames into one grid for inner sinks (video, window)."""

    def __init__(self, inner: Sink | Sequence[Sink], names: Sequence[str]) -> None:
        self.inner = [inner] if isinstance(inner, Sink) else list(inner)
        self.names = list(names)
        n = len(self.names)
        self.cols = math.ceil(math.sqrt(n))
        self.rows = math.ceil(n / self.cols)
        self.latest: list[np.ndarray | None] = [None] * n
        self.fresh = [False] * n  # a frame not written yet
        self.running = [True] * n
        self.sources: list[Source | None] = [None] * n
        self.cell_hw: tuple[int, int] | None = None
        self.written = 0
        self._started = self._closed = False
        self._lock = threading.Lock()

    # --- the inner sinks' life ----------------------------------------------------------------------
    def attach(self, stats: RunStats) -> None:
        for sink in self.inner:
            sink.attach(stats)

    def start(self) -> None:
        """Once every stream's source is open: start the inner sinks with the fastest source (its
        frame rate becomes the tiled video's)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            known = [s for s in self.sources if s is not None]
            fastest = max(known, key=lambda s: s.fps or 0.0) if known else None
            for sink in self.inner:
                if fastest is not None:
                    sink.start(fastest)

    @property
    def pumps(self) -> bool:
        return any(s.pumps for s in self.inner)

    def pump(self) -> None:
        for sink in self.inner:
            if sink.pumps:
                sink.pump()

    @property
    def quit_requested(self) -> bool:
        return any(s.quit_requested for s in self.inner)

    # --- cells -------------------------------------------------------------------------------------
    class Cell(Sink):
        """One stream's place in the grid (a sink in that stream's pipeline)."""

        needs_render = True

        def __init__(self, tiler: Tiler, index: int) -> None:
            self.tiler, self.index = tiler, index

        def start(self, source: Source) -> None:
            self.tiler.sources[self.index] = source

        def write(self, result: FrameResult) -> None:
            assert result.rendered is not None
            self.tiler.put(self.index, result.rendered)

        def close(self) -> None:
            self.tiler.stream_ended(self.index)

        def describe(self) -> dict[str, Any]:
            return {"sink": "tile", "stream": self.tiler.names[self.index]}

    def cell(self, index: int) -> Sink:
        return Tiler.Cell(self, index)

    def put(self, index: int, image: np.ndarray) -> None:
        with self._lock:
            if self._closed:
                return
            if self.fresh[index]:  # its previous frame was never written: write it before replacing it
                self._flush()
            self.latest[index], self.fresh[index] = image, True
            if all(f or not r for f, r in zip(self.fresh, self.running)):
                self._flush()

    def stream_ended(self, index: int) -> None:
        with self._lock:
            self.running[index] = False
            if any(self.fresh) and all(f or not r for f, r in zip(self.fresh, self.running)):
                self._flush()
        if not any(self.running):
            self.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if any(self.fresh):
                    self._flush()
            finally:
                first: BaseException | None = None
                for sink in self.inner:  # close every one, raise the first failure
                    try:
                        sink.close()
                    except BaseException as exc:  # noqa: BLE001
                        first = first or exc
                if first is not None:
                    raise first

    # --- composing ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        grid = self.compose()
        self.fresh = [False] * len(self.fresh)
        now = time.time()
        tile = FrameResult(
            self.written, f"tile_{self.written:06d}", grid, now, time.perf_counter(), rendered=grid
        )
        self.written += 1
        for sink in self.inner:
            sink.write(tile)

    def compose(self) -> np.ndarray:
        """The grid of the newest frames (black where a stream has shown nothing yet), names in corners."""
        if self.cell_hw is None:  # the largest frame of the first round; later ones are fitted into it
            first = max(
                (img for img in self.latest if img is not None), key=lambda img: img.shape[0] * img.shape[1]
            )
            self.cell_hw = (int(first.shape[0]), int(first.shape[1]))
        h, w = self.cell_hw
        grid = np.zeros((self.rows * h, self.cols * w, 3), np.uint8)
        for i, (name, image) in enumerate(zip(self.names, self.latest)):
            top, left = (i // self.cols) * h, (i % self.cols) * w
            cell = grid[top : top + h, left : left + w]
            if image is not None:
                cell[:] = image if image.shape[:2] == (h, w) else fit(image, (h, w), "letterbox")[0]
            _label(cell, name)
        return grid

    def describe(self) -> dict[str, Any]:
        return {
            "sink": "tiles",
            "grid": [self.rows, self.cols],
            "streams": self.names,
            "frames": self.written,
            "outputs": [s.describe() for s in self.inner],
        }


def _label(cell: np.ndarray, text: str) -> None:
    """The stream's name in the top-left corner, white on a dark outline (readable on any scene).

    The outline is the same thin text shifted one pixel each way: OpenCV advances each Hershey glyph by
    the stroke thickness too, so text drawn thicker underneath runs wider than the text on top and
    the outline drifts right of it letter by letter ("synthetiic-000")."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (_, th), _ = cv2.getTextSize(text, font, scale, 1)
    x, y = 6, 6 + th
    for dx, dy in ((-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)):
        cv2.putText(cell, text, (x + dx, y + dy), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(cell, text, (x, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
