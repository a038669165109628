"""Outputs of a run: window, annotated video, class-id PNGs, per-frame JSONL. Headless is no sink.

Files are written atomically: the video and the JSONL go to a hidden partial file that replaces the
target on `close()` (which the pipeline calls on normal end, error, Ctrl-C and SIGTERM alike), so a
finished file is always playable / parseable.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import cv2
import numpy as np

from edgeseg.atomic import write_bytes
from edgeseg.errors import EdgesegError

if TYPE_CHECKING:
    from edgeseg.runtime.pipeline import FrameResult
    from edgeseg.runtime.sources import Source

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class Sink(abc.ABC):
    """Consumes results on the output thread, in frame order."""

    needs_render: bool = False  # wants `result.rendered` (the annotated frame)
    needs_labels: bool = True  # reads `result.labels` (the class map at the frame's size)
    pumps: bool = False  # needs `pump()` called from the main thread (GUI event loops)
    quit_requested: bool = False  # the user asked to stop (window closed, q pressed)
    records: bool = False  # writes after the frame's timings are final (logs), outside the timed stage

    @abc.abstractmethod
    def write(self, result: FrameResult) -> None: ...

    def start(self, source: Source) -> None:  # noqa: B027 - optional hook
        """Called once the source is open (its fps and size hints are known)."""

    def pump(self) -> None:  # noqa: B027 - optional hook
        """Main-thread work (GUI toolkits require it); called about every 10 ms by Pipeline.run()."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Finalise; must be safe to call twice and after a failed write."""

    def describe(self) -> dict[str, Any]:
        return {"sink": type(self).__name__}


def _partial(target: Path) -> Path:
    """Hidden sibling keeping the suffix, because OpenCV picks the container from it."""
    return target.with_name(f".{target.stem}.partial{target.suffix}")


class VideoSink(Sink):
    """Annotated video; frames of another size than the first are resized to it."""

    needs_render = True

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        codec = VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise EdgesegError(
                f"--save needs a video file name ({', '.join(VIDEO_CODECS)}), got {self.path.name}"
            )
        self.fourcc = cv2.VideoWriter_fourcc(*codec)
        self.fps = float(fps) if fps else None  # None: the source's rate, else 30
        self.tmp = _partial(self.path)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def start(self, source: Source) -> None:
        if self.fps is None:
            self.fps = source.fps or 30.0

    def write(self, result: FrameResult) -> None:
        image = result.rendered
        assert image is not None, "VideoSink needs rendered frames"
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.writer = cv2.VideoWriter(str(self.tmp), self.fourcc, self.fps or 30.0, self.size)
            if not self.writer.isOpened():
                self.writer = None
                raise EdgesegError(f"cannot write video {self.path} (codec or folder not writable)")
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the container index: the file is playable from here on
            self.writer = None
            if self.frames:
                os.replace(self.tmp, self.path)
        if self.tmp.exists():
            self.tmp.unlink()

    def describe(self) -> dict[str, Any]:
        return {"sink": "video", "path": str(self.path), "frames": self.frames, "fps": self.fps}


class MaskSink(Sink):
    """Raw class ids as 8-bit (16-bit beyond 256 classes) PNGs named after the frame."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise EdgesegError(f"--save-masks needs a folder, and {self.directory} is a file")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written = 0

    def write(self, result: FrameResult) -> None:
        ok, png = cv2.imencode(".png", result.labels)
        if not ok:
            raise EdgesegError(f"cannot encode class map for frame {result.name} as PNG")
        write_bytes(self.directory / f"{result.name}.png", png.tobytes())
        self.written += 1

    def describe(self) -> dict[str, Any]:
        return {"sink": "masks", "path": str(self.directory), "frames": self.written}


class JsonlSink(Sink):
    """One JSON object per frame: index, name, timestamps, per-stage ms, latency, drops, histogram, mIoU."""

    records = True
    needs_labels = False  # class pixel counts come from `result.histogram`

    def __init__(self, path: str | Path, classes: list[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _partial(self.path)
        self.classes = classes
        self.fh: IO[str] | None = None  # opened with the first frame: a run that never starts leaves nothing
        self.lines = 0

    def write(self, result: FrameResult) -> None:
        if self.fh is None:
            self.fh = open(self.tmp, "w")  # noqa: SIM115 - closed in close()
        self.fh.write(json.dumps(result.to_record(self.classes)) + "\n")
        self.lines += 1

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
            os.replace(self.tmp, self.path)

    def describe(self) -> dict[str, Any]:
        return {"sink": "log", "path": str(self.path), "frames": self.lines}


def display_problem() -> str | None:
    """Why a window cannot be shown here, or None if it can."""
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip()
    if gui.upper() == "NONE":
        return "--show needs OpenCV with GUI support; this one is headless (pip install opencv-python)"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set (run headless or --save)"
        )
    return None


class WindowSink(Sink):
    """An OpenCV window showing the newest annotated frame; `q` or Esc stops the run.

    `write` (output thread) only hands the frame over; `pump` (main thread, where GUI toolkits want
    to be called) shows it, so a slow display never holds up the pipeline.
    """

    needs_render = True
    pumps = True

    def __init__(self, title: str = "edgeseg") -> None:
        problem = display_problem()
        if problem:
            raise EdgesegError(problem)
        self.title = title
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._open = False

    def write(self, result: FrameResult) -> None:
        assert result.rendered is not None
        with self._lock:
            self._latest = result.rendered

    def pump(self) -> None:
        with self._lock:
            image, self._latest = self._latest, None
        if image is not None:
            cv2.imshow(self.title, image)
            self._open = True
        if self._open and cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.quit_requested = True

    def close(self) -> None:
        if self._open:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
            self._open = False
