"""Real rosbag2 bags for tests, written with `rosbags` itself (no edgeseg code on the writing side),
and camera images packed in each ROS encoding by hand, independently of edgeseg's decoder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_HUMBLE)
T = STORE.types
Image, CompressedImage = T["sensor_msgs/msg/Image"], T["sensor_msgs/msg/CompressedImage"]
Header, Time, String = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"], T["std_msgs/msg/String"]
PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
EPOCH = 1_700_000_000 * 10**9  # a plausible robot clock, ns


def header(stamp: int, frame_id: str = "camera_optical") -> object:
    return Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)


def raw_image(pixels: np.ndarray, encoding: str, stamp: int, *, pad: int = 0, frame_id: str = "camera_optical",
              bigendian: bool = False) -> object:  # fmt: skip
    """An Image message with the bytes of `pixels` as they are (rows padded by `pad` junk bytes)."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).view(np.uint8) if pixels.dtype != np.uint8 else pixels.reshape(h, -1)
    if pad:
        rows = np.hstack([rows, np.full((h, pad), 0xAB, np.uint8)])
    return Image(header=header(stamp, frame_id), height=h, width=w, encoding=encoding,
                 is_bigendian=int(bigendian), step=rows.shape[1], data=np.ascontiguousarray(rows).reshape(-1))  # fmt: skip


def compressed_image(bgr: np.ndarray, fmt: str, stamp: int) -> object:
    ok, data = cv2.imencode(".png" if fmt == "png" else ".jpg", bgr)
    assert ok
    return CompressedImage(header=header(stamp), format=fmt, data=data.reshape(-1))


def pack_yuv422(y: np.ndarray, u: np.ndarray, v: np.ndarray, order: str) -> np.ndarray:
    """H x W x 2 packed 4:2:2 from full-resolution planes (chroma taken from even columns).
    'uyvy' bytes: U0 Y0 V0 Y1; 'yuyv': Y0 U0 Y1 V0 (the ROS encodings yuv422 / yuv422_yuy2)."""
    h, w = y.shape
    out = np.empty((h, w, 2), np.uint8)
    chroma = np.empty((h, w), np.uint8)
    chroma[:, 0::2], chroma[:, 1::2] = u[:, 0::2], v[:, 0::2]
    if order == "uyvy":
        out[:, :, 0], out[:, :, 1] = chroma, y
    else:
        out[:, :, 0], out[:, :, 1] = y, chroma
    return out


def bayer_mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """Sample a BGR image through a colour filter array named top-left first (e.g. 'rggb')."""
    channel = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = bgr[dy::2, dx::2, channel[pattern[k]]]
    return out


def write_bag(path: Path, topics: dict[str, list[tuple[int, object]]], storage: str = "mcap") -> Path:
    """A rosbag2 folder with, per topic, (receive time ns, message) pairs written in the given order."""
    with Writer(path, version=8, storage_plugin=PLUGINS[storage]) as writer:
        for topic, messages in topics.items():
            msgtype = messages[0][1].__msgtype__
            conn = writer.add_connection(topic, msgtype, typestore=STORE)
            for t, msg in messages:
                writer.write(conn, t, STORE.serialize_cdr(msg, msgtype))
    return path


def camera_frames(n: int, size: tuple[int, int] = (24, 32), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(n)]


def camera_bag(path: Path, frames: list[np.ndarray], *, storage: str = "mcap", period_ns: int = 100_000_000,
               labels: dict[int, np.ndarray] | None = None, topic: str = "/camera/image_raw") -> Path:  # fmt: skip
    """bgr8 frames every `period_ns` (receive time 2 ms after the stamp), optional mono8 labels by
    frame index on /camera/labels with the same stamps."""
    msgs = [
        (EPOCH + i * period_ns + 2_000_000, raw_image(f, "bgr8", EPOCH + i * period_ns))
        for i, f in enumerate(frames)
    ]
    topics: dict[str, list[tuple[int, object]]] = {topic: msgs}
    if labels:
        topics["/camera/labels"] = [
            (EPOCH + i * period_ns + 5_000_000, raw_image(m, "mono8", EPOCH + i * period_ns)) for i, m in sorted(labels.items())
        ]  # fmt: skip
    return write_bag(path, topics, storage)
