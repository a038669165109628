"""The source contract: `Source` (what the capture stage reads) and `Frame` (what it gets), and
OpenCV's quieting shared with the sinks. Below runtime/sources.py and runtime/bag.py, so the
factory in sources.py may open a bag source and the bag source may implement the contract without
either importing the other's module.

FFmpeg's own messages (a line per damaged frame or dropped connection) are off unless
OPENCV_FFMPEG_LOGLEVEL is set: edgeseg reports such problems itself, in one line.
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

NETWORK_TIMEOUT_MS = 5000  # a dead or frozen stream must not block a read for FFMPEG's default 30 s
# read by OpenCV when it first opens something with FFmpeg; AV_LOG_QUIET
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# seconds a V4L2 camera read waits for a frame (OpenCV's cap_v4l.cpp reads it once, default 10): a
# stalled camera is noticed as soon as a frozen network stream
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(NETWORK_TIMEOUT_MS // 1000))


@dataclass
class Frame:
    """One captured frame: BGR uint8 image, a name (pairs it with labels and mask files), optional GT.

    Sources that know more say so: `stamp_ns` is the capture time recorded with the frame (a ROS
    header stamp, ns since the epoch), `frame_id` the camera's coordinate frame (carried to the
    outputs' headers), `received` the `time.perf_counter()` at which the frame reached this process
    when that was before `read()` (a ROS message waiting for the capture thread)."""

    image: np.ndarray
    name: str
    gt: np.ndarray | None = None
    stamp_ns: int | None = None
    frame_id: str = ""
    received: float | None = None


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved = 0


@contextlib.contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV prints multi-line warnings when a device or file fails to open or a write fails; we
    print one line. Its log level is process-wide and the stage threads overlap, so the first to enter
    silences it and the last to leave restores it."""
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                cv2.utils.logging.setLogLevel(_quiet_saved)


class Source(abc.ABC):
    """A stream of BGR frames of any size."""

    kind: str = "source"
    live: bool = False
    fps: float | None = None  # nominal frame rate, when the source knows it
    length: int | None = None  # frames in one pass, when known
    dropped: int = 0  # frames discarded before read() (a newer ROS message replaced a waiting one)
    pairs_labels: bool = False  # attaches ground truth to some frames: the others count as unlabelled
    problem: str | None = None  # what was wrong with the input, found while reading (e.g. truncated)

    @abc.abstractmethod
    def open(self) -> None:
        """(Re)open; raise EdgesegError with one clear line if impossible."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """Next frame, or None at the end (file) / when the stream stopped delivering (live)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device or file."""

    def recorded_offset(self) -> float | None:
        """Seconds from the first frame to the next frame's recorded time, for sources that know it
        (bags), so `--realtime` replays at the recorded speed; None: paced by `fps`."""
        return None

    def limit_wait(self, seconds: float) -> None:  # noqa: B027 - optional hook
        """Let no single open() or read() block longer than `seconds`, where the backend can promise
        it: a frozen stream is then noticed in time for reconnect attempts."""

    def describe(self) -> dict[str, Any]:
        info = {"kind": self.kind, "live": self.live, "fps": self.fps, "frames": self.length}
        return {**info, "problem": self.problem} if self.problem else info

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
