"""Frame sources: camera, video file, image folder/glob, network stream, GStreamer pipeline, and the
synthetic scene generator (with ground truth).

A source is *live* (camera, url, gst) or not (files, folders, synthetic). The pipeline gives live
sources latest-frame semantics and processes every frame of the others. `read()` returns None when a
file source has ended or a live source stopped delivering; reconnecting is the pipeline's job
(`Source.open()` again), so every source can be reopened. The contract (`Source`, `Frame`) is in
runtime/source_base.py, below this module and the bag source alike; `open_source` turns options
into a source here.

FFmpeg's own messages (a line per damaged frame or dropped connection) are off unless
OPENCV_FFMPEG_LOGLEVEL is set: edgeseg reports such problems itself, in one line.
"""

from __future__ import annotations

import abc
import glob as globlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.console import warn
from edgeseg.errors import EdgesegError
from edgeseg.runtime.source_base import NETWORK_TIMEOUT_MS, Frame, Source, quiet_opencv

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class _CvCaptureSource(Source):
    """Common code for everything OpenCV's VideoCapture reads."""

    def __init__(self, *, loop: bool = False) -> None:
        self.cap: cv2.VideoCapture | None = None
        self.loop = loop
        self.index = 0
        self._stem = self.kind

    @abc.abstractmethod
    def _capture(self) -> cv2.VideoCapture:
        """A VideoCapture for this source (may be unopened; open() checks)."""

    @abc.abstractmethod
    def _open_error(self) -> str:
        """Why opening failed, in one actionable line."""

    def open(self) -> None:
        self.close()
        with quiet_opencv():
            cap = self._capture()
        if not cap.isOpened():
            cap.release()
            raise EdgesegError(self._open_error())
        self.cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = count if count > 0 and not self.live else None

    def read(self) -> Frame | None:
        if self.cap is None:
            return None
        with quiet_opencv():  # a stream timeout or a damaged frame: the pipeline reports it in one line
            ok, image = self.cap.read()
            if (not ok or image is None) and self.loop and not self.live:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self.index = 0  # names are positions in the file, so labels still pair on every pass
                ok, image = self.cap.read()
        if not ok or image is None:
            return None
        frame = Frame(image, f"{self._stem}_{self.index:06d}")
        self.index += 1
        return frame

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class CameraSource(_CvCaptureSource):
    kind = "camera"
    live = True

    def __init__(self, device: int) -> None:
        self.device = device
        super().__init__()
        self._stem = f"camera{device}"

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.device)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # best effort: drivers that honour it keep no stale frames
        return cap

    def _open_error(self) -> str:
        return f"camera {self.device} could not be opened (no such device, busy, or no permission)"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.device}


class VideoSource(_CvCaptureSource):
    kind = "video"

    def __init__(self, path: str | Path, *, loop: bool = False) -> None:
        self.path = Path(path)
        super().__init__(loop=loop)
        self._stem = self.path.stem
        self._first: np.ndarray | None = None
        self.frames_read: int | None = None  # set when the file ended short of its frame count

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(str(self.path))

    def _open_error(self) -> str:
        return f"cannot read video {self.path}: OpenCV cannot decode it (corrupt or unsupported format)"

    def open(self) -> None:
        if not self.path.is_file():
            raise EdgesegError(_not_a_file(self.path))
        super().open()
        assert self.cap is not None
        ok, first = self.cap.read()  # a container with no decodable frame must fail now, not "end" quietly
        if not ok or first is None:
            self.close()
            raise EdgesegError(f"cannot read video {self.path}: no decodable frames")
        self._first = first
        self.index = 0

    def read(self) -> Frame | None:
        if self._first is not None:
            frame, self._first = Frame(self._first, f"{self._stem}_{self.index:06d}"), None
            self.index += 1
            return frame
        reached = self.index
        frame = super().read()
        rewound = frame is not None and self.index == 1  # --loop started the file again
        if (frame is None or rewound) and self.problem is None:
            self._check_complete(reached)
        return frame

    def _check_complete(self, reached: int) -> None:
        """A pass that ends well short of the container's frame count is a truncated or damaged file:
        say so once, with the count reached (the frames read were processed)."""
        expected = self.length or 0
        if reached and expected and reached + max(2, expected // 100) <= expected:
            self.problem = (
                f"video {self.path} ended after {reached} of its {expected} frames (truncated or damaged); "
                f"the {reached} frames read were processed"
            )
            self.frames_read = reached

    def describe(self) -> dict[str, Any]:
        info = {**super().describe(), "path": str(self.path), "loop": self.loop}
        return {**info, "frames_read": self.frames_read} if self.frames_read is not None else info


class StreamSource(_CvCaptureSource):
    """rtsp://, http(s)://, or any URL FFMPEG understands; live (latest-frame) semantics."""

    kind = "url"
    live = True

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__()
        self._stem = "stream"
        self.timeout_ms = NETWORK_TIMEOUT_MS  # FFmpeg gives up an open or a read after this long

    def limit_wait(self, seconds: float) -> None:
        self.timeout_ms = max(100, min(self.timeout_ms, int(seconds * 1000)))

    def _capture(self) -> cv2.VideoCapture:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self.timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self.timeout_ms,
        ]
        return cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)

    def _open_error(self) -> str:
        return f"cannot open stream {self.url} (unreachable, wrong URL or unsupported protocol)"

    def open(self) -> None:
        super().open()
        self.decoded = 0  # frames decoded since this (re)open

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is not None:
            self.decoded += 1
            self.problem = None
        elif not getattr(self, "decoded", 1):  # connected, yet not one frame decoded
            self.problem = (
                f"stream {self.url} answered, but FFmpeg decoded no frame from what it sent "
                "(not a video stream, or a damaged one)"
            )
        return frame

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.url, "timeout_s": self.timeout_ms / 1000}


def opencv_has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class GstSource(_CvCaptureSource):
    """A GStreamer pipeline ending in `appsink` (e.g. Jetson CSI `nvarguscamerasrc ! ... ! appsink`)."""

    kind = "gst"
    live = True

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        super().__init__()
        self._stem = "gst"

    def open(self) -> None:
        if not opencv_has_gstreamer():
            raise EdgesegError(
                "--gst needs OpenCV built with GStreamer, and this one is not (pip wheels never are); "
                "use the system OpenCV (e.g. JetPack's python3-opencv) or --url/--camera"
            )
        super().open()

    def _capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.pipeline, cv2.CAP_GSTREAMER)

    def _open_error(self) -> str:
        return f"GStreamer pipeline did not start (check it with gst-launch-1.0): {self.pipeline}"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pipeline": self.pipeline}


class ImageSource(Source):
    """A folder of images (sorted by name) or a glob pattern; every image is processed.

    Unreadable files are skipped with a warning; a folder where no file can be read is an error, not
    a run that quietly processes nothing."""

    kind = "images"

    def __init__(self, spec: str | Path, *, loop: bool = False) -> None:
        self.spec = str(spec)
        self.loop = loop
        self.files: list[Path] = []
        self.position = 0
        self.skipped = 0
        self.delivered = 0
        self._unreadable: list[Path] = []  # found before the first readable image: warned about then
        self._first_pass = True
        self._pass_delivered = 0

    def open(self) -> None:
        path = Path(self.spec)
        if path.is_dir():
            files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
        elif any(ch in self.spec for ch in "*?["):
            files = [Path(p) for p in globlib.glob(self.spec) if Path(p).suffix.lower() in IMAGE_EXTS]
        elif path.is_file():
            files = [path]
        else:
            raise EdgesegError(f"no such image folder or file: {self.spec}")
        if not files:
            raise EdgesegError(f"no images ({', '.join(IMAGE_EXTS[:4])}, ...) found in {self.spec}")
        self.files = sorted(files)
        self.length = len(self.files)
        self.position = 0
        self._first_pass = True
        self._pass_delivered = 0  # images read in the current pass over the files

    def read(self) -> Frame | None:
        while True:
            if self.position >= len(self.files):
                if not self.delivered:
                    first = self._unreadable[0] if self._unreadable else self.spec
                    raise EdgesegError(
                        f"no readable image in {self.spec}: none of its {len(self.files)} file(s) "
                        f"decodes (corrupt or not an image, e.g. {first})"
                    )
                if not self.loop or self._pass_delivered == 0 and not self._first_pass:
                    return None  # the end, or a whole looped pass found nothing readable any more
                self.position = 0
                self._first_pass = False
                self._pass_delivered = 0
            path = self.files[self.position]
            self.position += 1
            with quiet_opencv():
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                self._skip(path)
                continue
            if self._unreadable:
                names = ", ".join(p.name for p in self._unreadable[:3])
                more = f" and {len(self._unreadable) - 3} more" if len(self._unreadable) > 3 else ""
                warn(f"skipping {len(self._unreadable)} unreadable image(s) in {self.spec}: {names}{more}")
                self._unreadable = []
            self.delivered += 1
            self._pass_delivered += 1
            return Frame(image, path.stem)

    def _skip(self, path: Path) -> None:
        if not self._first_pass:  # a later --loop pass: warned about on the first
            return
        self.skipped += 1
        if self.delivered:
            warn(f"skipping unreadable image {path}")
        else:
            self._unreadable.append(path)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "spec": self.spec, "skipped": self.skipped}


class SyntheticSource(Source):
    """The scene generator's temporally coherent video, with its ground-truth masks."""

    kind = "synthetic"

    def __init__(
        self, frames: int = 300, *, height: int = 256, width: int = 512, seed: int | None = None
    ) -> None:
        if frames < 1:
            raise EdgesegError("--frames must be at least 1 for the synthetic stream")
        self.length = frames
        self.height, self.width, self.seed = height, width, seed
        self.fps = 15.0
        self._frames: Iterator[tuple[np.ndarray, np.ndarray]] | None = None
        self.index = 0
        self.classes: list[str] = []

    def open(self) -> None:
        from edgeseg.data import synth  # torch-free scene generator, imported only when used

        if self.seed is None:  # the held-out seed: never a scene the default model was trained on
            self.seed = synth.HELDOUT_SEED
        gen = synth.SceneGenerator(self.height, self.width, seed=self.seed)
        self.classes = list(synth.SYNTH_CLASSES)
        self._frames = iter(gen.video(self.length, fps=self.fps))
        self.index = 0

    def read(self) -> Frame | None:
        if self._frames is None:
            return None
        try:
            rgb, mask = next(self._frames)
        except StopIteration:
            return None
        frame = Frame(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), f"synth_{self.index:06d}", gt=mask)
        self.index += 1
        return frame

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "size": [self.height, self.width], "seed": self.seed}


def open_source(
    *,
    camera: int | None = None,
    video: str | Path | None = None,
    images: str | Path | None = None,
    url: str | None = None,
    gst: str | None = None,
    synthetic: int | None = None,
    bag: str | Path | None = None,
    topic: str | None = None,
    labels_topic: str | None = None,
    loop: bool = False,
    synthetic_size: tuple[int, int] = (256, 512),
    seed: int | None = None,
) -> Source:
    """Build (not yet open) the one source the caller asked for."""
    given = {
        k: v
        for k, v in {
            "camera": camera,
            "video": video,
            "images": images,
            "url": url,
            "gst": gst,
            "synthetic": synthetic,
            "bag": bag,
        }.items()
        if v is not None
    }
    if len(given) != 1:
        names = ", ".join(f"--{k}" for k in given) if given else "none"
        raise EdgesegError(
            "choose exactly one source (--camera, --video, --images, --url, --gst, --synthetic, --bag); "
            f"got {names}"
        )
    if bag is not None:
        from edgeseg.runtime.bag import BagSource  # rosbags is optional: imported when a bag is read

        return BagSource(bag, topic, labels_topic=labels_topic, loop=loop)
    if topic is not None or labels_topic is not None:
        raise EdgesegError("--topic and --labels-topic select topics of a --bag")
    if camera is not None:
        if int(camera) < 0:  # OpenCV's V4L2 backend crashes the interpreter on a negative index
            raise EdgesegError(f"--camera must be a device index 0 or more (/dev/video<N>), got {camera}")
        return CameraSource(int(camera))
    if video is not None:
        return VideoSource(video, loop=loop)
    if images is not None:
        return ImageSource(images, loop=loop)
    if url is not None:
        if "://" not in url:
            raise EdgesegError(f"--url needs a scheme (rtsp://, http://, ...): {url}")
        return StreamSource(url)
    if gst is not None:
        return GstSource(gst)
    assert synthetic is not None
    return SyntheticSource(synthetic, height=synthetic_size[0], width=synthetic_size[1], seed=seed)


class LabelLookup:
    """Ground-truth masks in a folder, paired with frames by file stem (video frames are named
    `<video stem>_<index:06d>`). Single-channel PNGs hold class ids (255 = ignore); colour-coded
    masks are mapped through the model's palette (unknown colours -> ignore)."""

    def __init__(self, directory: str | Path, palette: list[tuple[int, int, int]]) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise EdgesegError(f"--labels folder not found: {self.directory}")
        self.by_stem = {
            p.stem: p
            for p in sorted(self.directory.iterdir())
            if p.suffix.lower() in IMAGE_EXTS and p.is_file()
        }
        if not self.by_stem:
            raise EdgesegError(f"no label images found in {self.directory}")
        keys = np.array([(r << 16) | (g << 8) | b for r, g, b in palette], dtype=np.int64)
        order = np.argsort(keys)
        self._keys, self._ids = keys[order], order.astype(np.uint8)
        self.matched = 0

    def get(self, name: str, frame_hw: tuple[int, int]) -> np.ndarray | None:
        path = self.by_stem.get(name)
        if path is None:
            return None
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise EdgesegError(f"cannot read label image {path}")
        if mask.ndim == 3:
            mask = self._from_colours(mask[:, :, :3])
        if mask.shape != tuple(frame_hw):
            raise EdgesegError(
                f"label {path.name} is {mask.shape[1]}x{mask.shape[0]} but frame {name} is "
                f"{frame_hw[1]}x{frame_hw[0]}"
            )
        self._check_ids(mask, path)
        self.matched += 1
        return mask.astype(np.uint8, copy=False)

    def _check_ids(self, mask: np.ndarray, path: Path) -> None:
        """Ground truth that cannot match the model is refused, never wrapped or scored: a 16-bit
        mask's 256..65535 and class ids the model does not have (255 is 'ignore')."""
        n = len(self._keys)
        if mask.dtype.kind not in "ui":
            raise EdgesegError(f"label {path} holds {mask.dtype} values; expected integer class ids")
        bad = (mask >= n) & (mask != IGNORE_INDEX)
        if bad.any():
            raise EdgesegError(
                f"label {path} holds class id {int(mask[bad].max())} but the model has {n} classes "
                f"(ids 0..{n - 1}, {IGNORE_INDEX} = ignore): labels of another label set?"
            )

    def _from_colours(self, bgr: np.ndarray) -> np.ndarray:
        b, g, r = (bgr[:, :, i].astype(np.int64) for i in range(3))
        key = (r << 16) | (g << 8) | b
        pos = np.clip(np.searchsorted(self._keys, key), 0, len(self._keys) - 1)
        return np.where(self._keys[pos] == key, self._ids[pos], 255).astype(np.uint8)


def _not_a_file(path: Path) -> str:
    """Why video `path` cannot be read: missing, a folder, or a device/FIFO (/dev/zero never ends)."""
    if not os.path.exists(path):
        return f"video not found: {path}"
    if path.is_dir():
        return f"video {path} is a folder, not a video file (--images reads a folder of images)"
    return f"video {path} is not a regular file (a device or FIFO)"
