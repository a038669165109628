"""ROS 2 bags (rosbag2, MCAP or SQLite) as a frame source and as a results sink, with `rosbags`.

`rosbags` is pure Python and needs no ROS installation; it is imported on first use (extra `ros`).

Source: the messages of one image topic in recorded order. A frame's capture time is its header
stamp (the driver's capture time; the bag's receive time when the stamp is unset), `--realtime`
replays at the recorded (receive) times, and a labels topic pairs ground truth by header stamp,
the ROS convention for messages about the same image.

Sink: a new bag with the class map (`sensor_msgs/msg/Image` mono8, mono16 beyond 256 classes), the
optional overlay (bgr8) and a per-frame stats record (`std_msgs/msg/String` holding the JSON of the
`--log` line: a standard type every ROS 2 tool can echo, where a custom message would need its
package built on every machine that reads the bag). Each message carries the source frame's header
(stamp and frame_id) and is logged at that stamp, so the results line up with the input bag. The bag
is written in a hidden folder and renamed when closed, so a bag under its final name is complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeseg.errors import EdgesegError, ExitCode
from edgeseg.lazy import require
from edgeseg.runtime.rosmsg import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    IMAGE_TYPES,
    MessageKit,
    image_from_msg,
    is_compressed,
    labels_from_msg,
    stamp_ns,
)
from edgeseg.runtime.sinks import Sink
from edgeseg.runtime.source_base import Frame, Source

if TYPE_CHECKING:
    from edgeseg.runtime.streaming.frame import FrameResult

STORAGES = ("mcap", "sqlite3")
TYPESTORE = "ROS2_HUMBLE"  # the message definitions written into new bags (JetPack 6 ships Humble)
CLASS_MAP_TOPIC = "/edgeseg/class_map"
OVERLAY_TOPIC = "/edgeseg/overlay"
STATS_TOPIC = "/edgeseg/stats"
# metadata.yaml version 8: Humble's rosbag2 reads `offered_qos_profiles` as a string, which version 9
# turned into a list (rosbag2 humble/jazzy metadata_io / yaml.hpp); Jazzy and later read both
BAG_VERSION = 8
REPAIR_HINT = "corrupt, or a recording that was cut off (`ros2 bag reindex` or `mcap recover` repair one)"


def _rosbags() -> Any:
    return require("rosbags.highlevel", purpose="ROS 2 bags (rosbag2: MCAP and SQLite)")


def _read_errors() -> tuple[type[BaseException], ...]:
    """What rosbags raises on a damaged bag (plus what its decoders let through on garbage)."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError

    return (AnyReaderError, ReaderError, ValueError, IndexError, KeyError, struct.error, OSError, EOFError)


def typestore() -> Any:
    """The message definitions edgeseg writes (and falls back to for bags that carry none)."""
    _rosbags()
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(getattr(Stores, TYPESTORE))


def rosbags_kit(store: Any | None = None) -> MessageKit:
    """Message classes from a rosbags type store: real definitions, serialisable to CDR."""
    store = store or typestore()
    types = store.types
    return MessageKit(
        image=types[IMAGE_TYPE],
        compressed_image=types[COMPRESSED_TYPE],
        header=types["std_msgs/msg/Header"],
        time=types["builtin_interfaces/msg/Time"],
        string=types["std_msgs/msg/String"],
        byte_array=lambda a: np.ascontiguousarray(a, dtype=np.uint8).reshape(-1),
    )


def open_reader(path: str | Path) -> Any:
    """An open rosbags AnyReader for a bag folder (or its .mcap/.db3 file), or one clear error."""
    highlevel = _rosbags()
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise EdgesegError(
            f"{path} has no metadata.yaml: not a rosbag2 folder (pass the bag folder or its .mcap/.db3 file)"
        )
    try:
        reader = highlevel.AnyReader([path], default_typestore=typestore())
        reader.open()
    except _read_errors() as exc:
        raise EdgesegError(f"cannot read bag {path}: {_reason(exc)} ({REPAIR_HINT})") from None
    return reader


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.rstrip(".")


@dataclass
class TopicSummary:
    """One topic of a bag, for `edgeseg data bag`."""

    topic: str
    msgtype: str
    count: int
    encoding: str | None = None  # of the first message (format for CompressedImage)
    size: tuple[int, int] | None = None  # (width, height) of the first message, raw images only

    @property
    def is_image(self) -> bool:
        return self.msgtype in IMAGE_TYPES

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "type": self.msgtype,
            "messages": self.count,
            "encoding": self.encoding,
            "size": None if self.size is None else list(self.size),
        }


def bag_topics(path: str | Path) -> tuple[list[TopicSummary], dict[str, Any]]:
    """Every topic with its type and count; image topics also with their first message's encoding
    and size (reading one message per image topic, not the whole bag). Plus the bag's span."""
    reader = open_reader(path)
    try:
        summaries = []
        for topic, info in sorted(reader.topics.items()):
            summary = TopicSummary(topic, info.msgtype or "?", int(info.msgcount))
            if summary.is_image and summary.count:
                msg = _first_message(reader, path, topic)
                if is_compressed(msg):
                    summary.encoding = str(msg.format) or "?"
                else:
                    summary.encoding = str(msg.encoding)
                    summary.size = (int(msg.width), int(msg.height))
            summaries.append(summary)
        span = {
            "path": str(path),
            "messages": int(reader.message_count),
            "duration_s": round(reader.duration / 1e9, 3) if reader.message_count else 0.0,
        }
    finally:
        reader.close()
    return summaries, span


def _first_message(reader: Any, path: str | Path, topic: str) -> Any:
    conns = [c for c in reader.connections if c.topic == topic]
    try:
        for conn, _, raw in reader.messages(connections=conns):
            return reader.deserialize(raw, conn.msgtype)
    except _read_errors() as exc:
        raise EdgesegError(f"cannot read {topic} in bag {path}: {_reason(exc)} ({REPAIR_HINT})") from None
    raise EdgesegError(f"topic {topic} in bag {path} has no messages")


def _image_topic(reader: Any, path: Path, topic: str | None, what: str, exclude: str | None = None) -> str:
    """Check `topic` exists and carries images; with None, the bag's only image topic (besides `exclude`)."""
    topics = reader.topics
    images = sorted(t for t, info in topics.items() if info.msgtype in IMAGE_TYPES and t != exclude)
    listing = ", ".join(images) if images else "none"
    if topic is None:
        if len(images) == 1:
            return images[0]
        raise EdgesegError(f"bag {path} has {len(images)} image topics ({listing}); choose one with --topic")
    info = topics.get(topic)
    if info is None:
        raise EdgesegError(f"no {what} {topic} in bag {path}; its image topics: {listing}")
    if info.msgtype not in IMAGE_TYPES:
        raise EdgesegError(f"{what} {topic} carries {info.msgtype}, not {IMAGE_TYPE} or {COMPRESSED_TYPE}")
    return topic


class _TopicReader:
    """The messages of one topic of a bag, in recorded order, deserialised, with one-line errors."""

    def __init__(self, path: Path, topic: str | None, what: str, exclude: str | None = None) -> None:
        self.path = path
        self.reader = open_reader(path)
        try:
            self.topic = _image_topic(self.reader, path, topic, what, exclude)
        except EdgesegError:
            self.reader.close()
            raise
        self.count = int(self.reader.topics[self.topic].msgcount)
        self._iter: Iterator[tuple[Any, int, bytes]] | None = None
        self.position = 0

    def restart(self) -> None:
        conns = [c for c in self.reader.connections if c.topic == self.topic]
        self._iter = self.reader.messages(connections=conns)
        self.position = 0

    def next_raw(self) -> tuple[Any, int, bytes] | None:
        """(connection, receive time ns, CDR bytes) of the next message, or None at the end."""
        assert self._iter is not None
        try:
            item = next(self._iter, None)
        except _read_errors() as exc:
            raise self._damaged(exc) from None
        if item is not None:
            self.position += 1
        return item

    def decode(self, raw: tuple[Any, int, bytes]) -> Any:
        conn, _, data = raw
        try:
            return self.reader.deserialize(data, conn.msgtype)
        except _read_errors() as exc:
            raise self._damaged(exc) from None

    def _damaged(self, exc: BaseException) -> EdgesegError:
        return EdgesegError(
            f"cannot read message {self.position + 1} of {self.topic} in bag {self.path}: "
            f"{_reason(exc)} ({REPAIR_HINT})"
        )

    def close(self) -> None:
        self._iter = None
        with contextlib.suppress(Exception):
            self.reader.close()


class BagSource(Source):
    """Frames from an image topic of a rosbag2 bag; `labels_topic` pairs mono8 class-id masks."""

    kind = "bag"

    def __init__(
        self,
        path: str | Path,
        topic: str | None = None,
        *,
        labels_topic: str | None = None,
        loop: bool = False,
    ) -> None:
        self.path = Path(path)
        self.topic = topic
        self.labels_topic = labels_topic
        self.pairs_labels = labels_topic is not None
        self.loop = loop
        self.index = 0
        self.labelled = 0
        self._images: _TopicReader | None = None
        self._labels: _TopicReader | None = None
        self._next: tuple[Any, int, bytes] | None = None
        self._label: tuple[int, Any] | None = None  # (stamp, message) of the next unmatched label
        self._first_t: int | None = None
        self._last_t = 0
        self._pass_offset = 0.0  # seconds of earlier passes (--loop --realtime)

    def open(self) -> None:
        self.close()
        if self.labels_topic is not None:
            if self.labels_topic == self.topic:
                raise EdgesegError("--labels-topic must differ from --topic")
            self._labels = _TopicReader(self.path, self.labels_topic, "labels topic")
        try:
            self._images = _TopicReader(self.path, self.topic, "topic", exclude=self.labels_topic)
        except EdgesegError:
            self.close()
            raise
        self.topic = self._images.topic
        self.length = self._images.count
        duration = self._images.reader.duration / 1e9
        self.fps = (self.length - 1) / duration if self.length > 1 and duration > 0 else None
        self._rewind()
        self._first_t = None if self._next is None else self._next[1]
        if self._next is None:
            self.close()
            raise EdgesegError(f"topic {self.topic} in bag {self.path} has no messages")
        try:  # an unsupported encoding must fail here, in the caller's thread, not frames later
            image_from_msg(self._images.decode(self._next))
        except EdgesegError as exc:
            self.close()
            raise EdgesegError(f"{self.topic} in bag {self.path}: {exc}") from None

    def _rewind(self) -> None:
        assert self._images is not None
        self._images.restart()
        self._next = self._images.next_raw()
        self.index = 0
        if self._labels is not None:
            self._labels.restart()
            self._label = None
            self._advance_label()

    def _advance_label(self) -> None:
        assert self._labels is not None
        raw = self._labels.next_raw()
        if raw is None:
            self._label = None
            return
        msg = self._labels.decode(raw)
        self._label = (stamp_ns(msg.header) or raw[1], msg)

    def recorded_offset(self) -> float | None:
        if self._next is None or self._first_t is None:
            return None
        return self._pass_offset + (self._next[1] - self._first_t) / 1e9

    def read(self) -> Frame | None:
        if self._images is None:
            return None
        if self._next is None:
            if not self.loop:
                return None
            period = 1.0 / self.fps if self.fps else 0.0
            self._pass_offset += (self._last_t - (self._first_t or 0)) / 1e9 + period
            self._rewind()
            if self._next is None:
                return None
        raw, self._next = self._next, None
        msg = self._images.decode(raw)
        self._next = self._images.next_raw()
        self._last_t = raw[1]
        try:
            image = image_from_msg(msg)
        except EdgesegError as exc:
            raise EdgesegError(
                f"message {self.index + 1} of {self.topic} in bag {self.path}: {exc}"
            ) from None
        stamp = stamp_ns(msg.header) or raw[1]
        stem = self.topic.strip("/").replace("/", "_") or "bag"  # type: ignore[union-attr]
        frame = Frame(
            image,
            f"{stem}_{self.index:06d}",
            gt=self._ground_truth(stamp, image.shape[:2]),
            stamp_ns=stamp,
            frame_id=str(msg.header.frame_id),
        )
        self.index += 1
        return frame

    def _ground_truth(self, stamp: int, frame_hw: tuple[int, ...]) -> np.ndarray | None:
        """The label with this stamp, if any: labels older than the frame are skipped for good."""
        if self._labels is None:
            return None
        while self._label is not None and self._label[0] < stamp:
            self._advance_label()
        if self._label is None or self._label[0] != stamp:
            return None
        msg = self._label[1]
        self._advance_label()
        try:
            gt = labels_from_msg(msg)
        except EdgesegError as exc:
            raise EdgesegError(f"{self.labels_topic} in bag {self.path}: {exc}") from None
        if gt.shape != tuple(frame_hw):
            raise EdgesegError(
                f"label on {self.labels_topic} is {gt.shape[1]}x{gt.shape[0]} but its frame on "
                f"{self.topic} is {frame_hw[1]}x{frame_hw[0]} (stamp {stamp})"
            )
        self.labelled += 1
        return gt

    def close(self) -> None:
        for reader in (self._images, self._labels):
            if reader is not None:
                reader.close()
        self._images = self._labels = None
        self._next = self._label = None

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "path": str(self.path), "topic": self.topic, "loop": self.loop}
        if self.labels_topic is not None:
            d.update(labels_topic=self.labels_topic, labelled=self.labelled)
        return d


def _write_errors() -> tuple[type[Exception], ...]:
    """What a failing bag write raises: the OS's errors, SQLite's (a full disk under sqlite3 storage)
    and rosbags' own."""
    import sqlite3

    from rosbags.rosbag2 import WriterError

    return (OSError, sqlite3.Error, WriterError)


def _bag_failed(what: str, path: Path, exc: Exception) -> EdgesegError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return EdgesegError(f"cannot {what} bag {path}: {reason}", exit_code=ExitCode.OUTPUT_FAILED)


class BagSink(Sink):
    """Writes results as a new rosbag2 bag (see the module docstring for the topics)."""

    records = True  # a recording of the results, written once the frame's timings are final

    def __init__(
        self,
        path: str | Path,
        classes: list[str],
        *,
        storage: str = "mcap",
        overlay: bool = False,
    ) -> None:
        self.path = Path(path)
        if storage not in STORAGES:
            raise EdgesegError(f"unknown bag storage {storage!r}; choose {' or '.join(STORAGES)}")
        if self.path.exists():
            raise EdgesegError(
                f"--save-bag {self.path} exists; a bag is never overwritten (choose a new name)"
            )
        _rosbags()  # a missing extra fails before the run, not at the first frame
        self.classes = list(classes)
        self.storage = storage
        self.needs_render = overlay
        self.frames = 0
        self._tmp: Path | None = None
        self._writer: Any = None
        self._store: Any = None
        self._kit: MessageKit | None = None
        self._conns: dict[str, Any] = {}
        self._failed = False

    def _open(self) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        from edgeseg.staging import remove_stale_staging, staging_prefix

        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.path.parent, self.path.name)  # a killed run's half bag
        self._tmp = Path(
            tempfile.mkdtemp(prefix=staging_prefix(self.path.name), suffix=".partial", dir=self.path.parent)
        )
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        # the bag folder inside keeps the final name, so its storage file is <name>.mcap / <name>_0.db3
        self._writer = Writer(self._tmp / self.path.name, version=BAG_VERSION, storage_plugin=plugin)
        self._writer.set_custom_data("edgeseg.classes", json.dumps(self.classes))
        self._writer.open()
        self._store = typestore()
        self._kit = rosbags_kit(self._store)
        topics = {CLASS_MAP_TOPIC: IMAGE_TYPE, STATS_TOPIC: "std_msgs/msg/String"}
        if self.needs_render:
            topics[OVERLAY_TOPIC] = IMAGE_TYPE
        for topic, msgtype in topics.items():
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self._store)

    def write(self, result: FrameResult) -> None:
        if self._failed:
            return
        assert result.class_map is not None
        try:
            if self._writer is None:
                self._open()
            assert self._kit is not None
            stamp = result.stamp_ns if result.stamp_ns is not None else int(result.wall_time * 1e9)
            messages = [(CLASS_MAP_TOPIC, self._kit.make_image(result.class_map, stamp, result.frame_id))]
            if self.needs_render:
                assert result.rendered is not None, "BagSink(overlay=True) needs rendered frames"
                messages.append(
                    (OVERLAY_TOPIC, self._kit.make_image(result.rendered, stamp, result.frame_id))
                )
            messages.append((STATS_TOPIC, self._kit.make_string(json.dumps(result.to_record(self.classes)))))
            for topic, msg in messages:
                conn = self._conns[topic]
                self._writer.write(conn, stamp, self._store.serialize_cdr(msg, conn.msgtype))
        except _write_errors() as exc:
            self._failed = True  # a bag missing part of a frame never takes the final name
            raise _bag_failed("write", self.path, exc) from None
        self.frames += 1

    def close(self) -> None:
        writer, self._writer = self._writer, None
        tmp, self._tmp = self._tmp, None
        if tmp is None:
            return
        try:
            if writer is not None:
                try:
                    writer.close()  # writes the MCAP summary / SQLite metadata and metadata.yaml
                except _write_errors() as exc:
                    if not self._failed:
                        raise _bag_failed("finish", self.path, exc) from None
            if self.frames and not self._failed:
                try:
                    os.replace(tmp / self.path.name, self.path)
                except OSError as exc:
                    raise _bag_failed("finish", self.path, exc) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        topics = [CLASS_MAP_TOPIC, *([OVERLAY_TOPIC] if self.needs_render else []), STATS_TOPIC]
        return {"sink": "bag", "path": str(self.path), "storage": self.storage, "topics": topics,
                "frames": self.frames}  # fmt: skip
