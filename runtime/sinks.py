"""Outputs of a run: window, live view over HTTP, annotated video, class-id PNGs, per-frame JSONL.
Headless is no sink.

Files are written atomically (`edgeseg.atomic`): the video and the JSONL go to a hidden partial file
that replaces the target on `close()` (which the pipeline calls on normal end, error, Ctrl-C and
SIGTERM alike), so a finished file is always playable / parseable. A write that fails (disk full,
unwritable path) raises `OutputFailed`: that sink's partial file is dropped, the run stops, and the
other sinks are still finalised.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import cv2
import numpy as np

from edgeseg.atomic import PendingFile, destination, disk_full, write_bytes
from edgeseg.errors import EdgesegError, OutputFailed, output_failed
from edgeseg.runtime.draw import Renderer
from edgeseg.runtime.source_base import quiet_opencv

if TYPE_CHECKING:
    from edgeseg.runtime.run_stats import RunStats
    from edgeseg.runtime.source_base import Source
    from edgeseg.runtime.streaming.frame import FrameResult

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


class Sink(abc.ABC):
    """Consumes results on the output thread, in frame order."""

    needs_render: bool = False  # wants `result.rendered` (the annotated frame)
    needs_class_map: bool = True  # reads `result.class_map` (the class map at the frame's size)
    pumps: bool = False  # needs `pump()` called from the main thread (GUI event loops)
    quit_requested: bool = False  # the user asked to stop (window closed, q pressed)
    records: bool = False  # writes after the frame's timings are final (logs), outside the timed stage

    @abc.abstractmethod
    def write(self, result: FrameResult) -> None: ...

    def start(self, source: Source) -> None:  # noqa: B027 - optional hook
        """Called once the source is open (its fps and size hints are known)."""

    def attach(self, stats: RunStats) -> None:  # noqa: B027 - optional hook
        """Called by the Pipeline with the run's live statistics (sinks that show them keep it)."""

    def pump(self) -> None:  # noqa: B027 - optional hook
        """Main-thread work (GUI toolkits require it); called about every 10 ms by Pipeline.run()."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Finalise; must be safe to call twice and after a failed write."""

    def describe(self) -> dict[str, Any]:
        return {"sink": type(self).__name__}


class FileSink(Sink):
    """A sink writing one file through `edgeseg.atomic.PendingFile`: a failed write drops the partial
    file (the target keeps what it had) and keeps the error for the report; close() commits it."""

    path: Path
    pending: PendingFile | None = None
    error: str | None = None
    written = False

    def _release(self) -> None:
        """Let go of the open writer or file handle (after a failure; errors are ignored)."""

    def _fail(self, error: OutputFailed) -> NoReturn:
        self.error = str(error)
        self._release()
        if self.pending is not None:
            self.pending.discard()
        raise error

    def _commit(self) -> None:
        if self.pending is not None:
            try:
                self.pending.commit()
            except OutputFailed as exc:
                self.error = str(exc)
                raise
        self.written = True


class VideoSink(FileSink):
    """Annotated video; frames of another size than the first are resized to it.

    OpenCV's writer reports no write errors (a full disk only logs warnings and leaves a file without
    its index), so the sink watches the free space while writing and decodes the finished file before
    it takes the target's name: a video that would not play is removed and reported, never kept.
    """

    needs_render = True
    SPACE_CHECK_S = 1.0  # how often the free space is looked at while writing

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.fourcc = cv2.VideoWriter_fourcc(*self.codec_for(self.path))
        self.fps = float(fps) if fps else None  # None: the source's rate, else 30
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._next_space_check = 0.0

    @staticmethod
    def codec_for(path: Path) -> str:
        """The FourCC OpenCV writes for this file name, or one clear error."""
        codec = VIDEO_CODECS.get(path.suffix.lower())
        if codec is None:
            raise EdgesegError(f"--save needs a video file name ({', '.join(VIDEO_CODECS)}), got {path.name}")
        return codec

    def start(self, source: Source) -> None:
        if self.fps is None:
            self.fps = source.fps or 30.0

    def write(self, result: FrameResult) -> None:
        image = result.rendered
        assert image is not None, "VideoSink needs rendered frames"
        if self.writer is None:
            self.size = (image.shape[1], image.shape[0])
            self.pending = PendingFile(self.path, suffix=self.path.suffix)
            self.writer = cv2.VideoWriter(str(self.pending.path), self.fourcc, self.fps or 30.0, self.size)
            if not self.writer.isOpened():
                self.writer = None
                self._fail(OutputFailed(f"cannot write video {self.path} (codec or folder not writable)"))
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        with quiet_opencv():  # a failing write logs one warning per frame; the check below says it once
            self.writer.write(image)
        self.frames += 1
        now = time.monotonic()
        if now >= self._next_space_check:
            self._next_space_check = now + self.SPACE_CHECK_S
            self._check_space()

    def _check_space(self) -> None:
        assert self.pending is not None
        if disk_full(self.pending.path.parent):
            self._fail(OutputFailed(f"cannot write video {self.path}: no space left on device"))

    def _release(self) -> None:
        if self.writer is not None:
            with quiet_opencv():
                self.writer.release()
            self.writer = None

    def close(self) -> None:
        if self.writer is None or self.pending is None:
            return
        with quiet_opencv():
            self.writer.release()  # writes the container index: the file is playable from here on
        self.writer = None
        if not self.frames:
            self.pending.discard()
            return
        if not _plays(self.pending.path):
            self._fail(OutputFailed(f"cannot finish video {self.path}: the file does not play (disk full?)"))
        self._commit()

    def describe(self) -> dict[str, Any]:
        return {
            "sink": "video", "path": str(self.path), "frames": self.frames, "fps": self.fps,
            "written": self.written, "error": self.error,
        }  # fmt: skip


def _plays(path: Path) -> bool:
    """The finished file opens and its first frame decodes (a lost index fails here)."""
    with quiet_opencv():
        cap = cv2.VideoCapture(str(path))
        try:
            return bool(cap.isOpened() and cap.read()[0])
        finally:
            cap.release()


class MaskSink(Sink):
    """Raw class ids as 8-bit (16-bit beyond 256 classes) PNGs named after the frame; each file is
    written atomically, so the folder holds complete masks only, whatever stops the run."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise EdgesegError(f"--save-masks needs a folder, and {self.directory} is a file")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_failed(self.directory, exc) from None
        self.written = 0
        self.error: str | None = None

    def write(self, result: FrameResult) -> None:
        ok, png = cv2.imencode(".png", result.class_map)
        if not ok:
            raise EdgesegError(f"cannot encode class map for frame {result.name} as PNG")
        try:
            write_bytes(self.directory / f"{result.name}.png", png.tobytes())
        except OutputFailed as exc:
            self.error = str(exc)
            raise
        self.written += 1

    def describe(self) -> dict[str, Any]:
        return {"sink": "masks", "path": str(self.directory), "frames": self.written, "error": self.error}


class JsonlSink(FileSink):
    """One JSON object per frame: index, name, timestamps, per-stage ms, latency, drops, histogram, mIoU.

    The log takes its name when the run ends (a FIFO or /dev/stdout gets the lines as they come); a
    log whose disk filled is dropped whole, so a file never ends in half a line."""

    records = True
    needs_class_map = False  # class pixel counts come from `result.histogram`

    def __init__(self, path: str | Path, classes: list[str]) -> None:
        self.path = Path(path)
        self.classes = classes
        self.fh: IO[str] | None = None  # opened with the first frame: a run that never starts leaves nothing
        self.lines = 0

    def write(self, result: FrameResult) -> None:
        try:
            if self.fh is None:
                dest = destination(self.path)
                if dest.replace:
                    self.pending = PendingFile(self.path, suffix=self.path.suffix)
                    self.fh = open(self.pending.path, "w")  # noqa: SIM115 - closed in close()
                else:
                    self.fh = dest.open_in_place("w")
            self.fh.write(json.dumps(result.to_record(self.classes)) + "\n")
        except OSError as exc:
            self._fail(output_failed(self.path, exc))
        except OutputFailed as exc:
            self._fail(exc)
        self.lines += 1

    def _release(self) -> None:
        if self.fh is not None:
            with contextlib.suppress(OSError):
                self.fh.close()
            self.fh = None

    def close(self) -> None:
        if self.fh is None:
            return
        try:
            self.fh.close()  # the last buffered lines: a full disk may refuse them here
        except OSError as exc:
            self.fh = None
            self._fail(output_failed(self.path, exc))
        self.fh = None
        self._commit()

    def describe(self) -> dict[str, Any]:
        return {
            "sink": "log", "path": str(self.path), "frames": self.lines, "written": self.written,
            "error": self.error,
        }  # fmt: skip


_GUI_TOOLKITS = ("GTK", "QT", "WIN32 UI", "COCOA", "WAYLAND", "FRAMEBUFFER")


def opencv_gui(build_info: str | None = None) -> str | None:
    """The GUI backend of this OpenCV build (GTK3, QT5, ...), None if it has none (headless).

    pip's opencv-python-headless has none; opencv-python and JetPack's OpenCV have one. OpenCV 4.6+
    prints `GUI: GTK3` (or `GUI: NONE`); older builds print an empty `GUI:` followed by one indented
    line per toolkit (`GTK+: YES (ver 3.24.20)`, `QT: NO`), as their CMakeLists.txt status block does.
    """
    lines = (cv2.getBuildInformation() if build_info is None else build_info).splitlines()
    for i, line in enumerate(lines):
        if not line.strip().startswith("GUI:"):
            continue
        value = line.split(":", 1)[1].strip()
        if value:
            return None if value.upper() in ("NONE", "NO") else value
        indent = len(line) - len(line.lstrip())
        for sub in lines[i + 1 :]:
            if not sub.strip() or len(sub) - len(sub.lstrip()) <= indent:
                break
            key, _, status = sub.strip().partition(":")
            if key.strip().upper().startswith(_GUI_TOOLKITS) and status.strip().upper().startswith("YES"):
                return key.strip()
        return None
    return None


def display_problem() -> str | None:
    """Why a window cannot be shown here, or None if it can."""
    if opencv_gui() is None:
        return "--show needs OpenCV with GUI support; this one is headless (use --serve for a browser view)"
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set "
            "(--serve :8080 shows the run in a browser instead, or run headless or --save)"
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


class DrawSink(Sink):
    """Every frame drawn, then dropped (GStreamer's `fakesink`): a run that pays for drawing with no
    window or encoder attached, which is how the benchmarks time what drawing costs."""

    needs_render = True

    def write(self, result: FrameResult) -> None:
        assert result.rendered is not None


LIVE_FPS_WINDOW = 2.0  # seconds of results behind the live FPS figure


class LiveViewSink(Sink):
    """Serves the run over HTTP (runtime/liveserver.py) for machines without a display: the annotated
    stream as MJPEG and a page with live FPS, latency percentiles, class shares and mIoU.

    Binds when created, so a port in use fails before the run starts; `url` says where to look.
    `write` only hands the newest result over: drawing (with `renderer`, unless another sink already
    drew the frame) and JPEG encoding happen on a viewer's thread, and only while someone watches.
    """

    records = True  # runs after the frame's timings are final: serving is never timed as output work

    def __init__(
        self, address: str = "127.0.0.1:8080", *, renderer: Renderer, title: str = "edgeseg"
    ) -> None:
        from edgeseg.runtime.liveserver import LiveFeed, LiveServer, parse_address

        host, port = parse_address(address)
        self.renderer = renderer
        self.feed = LiveFeed(self._draw)
        self.server = LiveServer(self.feed, self.snapshot, host=host, port=port, title=title)
        self._stats: RunStats | None = None
        self._lock = threading.Lock()
        self._latest: FrameResult | None = None
        self._done: collections.deque[float] = collections.deque()
        self._written = 0
        self._closed = False

    @property
    def url(self) -> str:
        return self.server.url

    def attach(self, stats: RunStats) -> None:
        self._stats = stats

    def start(self, source: Source) -> None:
        self.server.start()

    def write(self, result: FrameResult) -> None:
        now = result.t_done or time.perf_counter()
        with self._lock:
            self._latest = result
            self._written += 1
            self._done.append(now)
            while self._done and self._done[0] < now - LIVE_FPS_WINDOW:
                self._done.popleft()
        self.feed.publish(result)

    def _draw(self, result: FrameResult) -> np.ndarray:
        if result.rendered is not None:
            return result.rendered
        if result.class_map is None:
            return result.frame
        return self.renderer.render(result.frame, result.class_map)

    def snapshot(self) -> dict[str, Any]:
        """What /stats.json serves: the live numbers of the run."""
        now = time.perf_counter()
        with self._lock:
            latest = self._latest
            recent = [t for t in self._done if t >= now - LIVE_FPS_WINDOW]
        fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 else 0.0
        stats = self._stats
        empty = {"p50": None, "p95": None, "p99": None, "mean": None, "max": None}
        classes = stats.classes if stats is not None else self.renderer.classes
        snap: dict[str, Any] = {
            "running": not self._closed,
            "fps": fps,
            "fps_run": stats.fps if stats is not None else 0.0,
            "frames": {
                "processed": stats.processed if stats is not None else self._written,
                "captured": stats.captured if stats is not None else self._written,
                "dropped": stats.dropped if stats is not None else 0,
            },
            "latency_ms": stats.latency.summary() if stats is not None else empty,
            "inference_ms": stats.stages["inference"].summary() if stats is not None else empty,
            "frame": {"index": None, "size": None},
            "miou": None,
            "frame_miou": None,
            "class_share": [],
            "connections": self.server.clients,
        }
        if latest is not None:
            snap["frame"] = {"index": latest.index, "size": [int(d) for d in latest.frame.shape[:2]]}
            snap["miou"] = latest.running_miou
            snap["frame_miou"] = latest.frame_miou
            if latest.histogram is not None and latest.histogram.sum():
                total = float(latest.histogram.sum())
                snap["class_share"] = [
                    {
                        "name": classes[i] if i < len(classes) else str(i),
                        "share": float(n) / total,
                        "color": "#{2:02x}{1:02x}{0:02x}".format(*self.renderer.lut[min(i, 255)]),
                    }
                    for i, n in enumerate(latest.histogram)
                ]
        return snap

    def close(self) -> None:
        self._closed = True
        self.server.close()

    def describe(self) -> dict[str, Any]:
        return {"sink": "live view", "url": self.url, "frames_streamed": self.server.frames_sent}


@dataclass(frozen=True)
class ViewPlan:
    """Where a run is shown: an OpenCV window, the live view over HTTP, both or neither."""

    window: bool = False
    serve: str | None = None  # listen address for the live view
    open_browser: bool = False  # --show without a GUI: open the live view in the user's browser
    note: str | None = None  # why the plan differs from what was asked

    def sinks(self, renderer: Renderer, *, title: str, say: Any = None) -> list[Sink]:
        """The sinks for this plan. `say(line)` gets the live view's URL (and the browser note)."""
        out: list[Sink] = []
        if self.window:
            out.append(WindowSink(title))
        if self.serve is not None:
            live = LiveViewSink(self.serve, renderer=renderer, title=title)
            out.append(live)
            if say is not None:
                if self.note:
                    say(self.note)
                say(f"live view: {live.url}{_wide_hint(live.server.host)}")
            if self.open_browser:
                opened = open_in_browser(live.url)
                if say is not None and not opened:
                    say(f"no browser could be opened here; open {live.url} in one while the run lasts")
        return out


def plan_view(*, show: bool, serve: str | None, has_gui: bool | None = None) -> ViewPlan:
    """`--show` / `--serve` -> what to open. `--show` is an OpenCV window when this OpenCV has a GUI
    (JetPack's build, opencv-python); with pip's headless wheel it becomes the live view on
    127.0.0.1 (any free port, or the `--serve` address) opened in the user's browser.

    `has_gui`: whether OpenCV can open windows (default: asked of the installed OpenCV)."""
    if not show:
        return ViewPlan(serve=serve)
    if has_gui is None:
        has_gui = opencv_gui() is not None
    if has_gui:
        return ViewPlan(window=True, serve=serve)
    return ViewPlan(
        serve=serve if serve is not None else "127.0.0.1:0",
        open_browser=True,
        note="--show: this OpenCV has no GUI (pip's opencv-python-headless), so the run is shown "
        "in your web browser instead, for as long as the run lasts (a file or --synthetic ends in "
        "seconds: pace it with --realtime, lengthen it with --frames N or --loop)",
    )


def open_in_browser(url: str) -> bool:
    """Open `url` in the desktop's browser; False where there is none (no display: Python's
    `webbrowser` would fall back to a text browser in this terminal, which would hold the run up)."""
    import webbrowser

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        return bool(webbrowser.open(url, new=2))
    except webbrowser.Error:
        return False


def _wide_hint(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return " (listening on every interface: use this machine's address from elsewhere)"
    return ""
