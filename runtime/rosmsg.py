"""ROS 2 image messages <-> NumPy, shared by the bag source/sink and the ROS 2 node.

Works on any object with the fields of `sensor_msgs/msg/Image` or `CompressedImage`, so the same
code reads messages deserialised by `rosbags` (whose `uint8[]` is a NumPy array) and by rclpy
(`array.array('B')`). Building messages goes through a `MessageKit`: the message classes of one of
those two bindings, and how it stores `uint8[]`.

Written here rather than taken from `rosbags-image`, which ignores `step` (rows padded by the
driver come out sheared) and asserts on undecodable data; a camera message needs one clear line.
Encodings follow ROS 2's `sensor_msgs/image_encodings.hpp` (`yuv422` is UYVY, `yuv422_yuy2` is YUYV;
newer distros also name them `uyvy` / `yuyv`); Bayer names map to OpenCV's codes as cv_bridge does.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeseg.errors import EdgesegError

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)

# encoding -> (channels, bytes per channel, OpenCV conversion to BGR or None)
_COLOUR: dict[str, tuple[int, int, int | None]] = {
    "bgr8": (3, 1, None),
    "8UC3": (3, 1, None),  # cv_bridge reads an untyped 3-channel image as BGR
    "rgb8": (3, 1, cv2.COLOR_RGB2BGR),
    "bgra8": (4, 1, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, 1, cv2.COLOR_RGBA2BGR),
    "mono8": (1, 1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, 1, cv2.COLOR_GRAY2BGR),
    "mono16": (1, 2, cv2.COLOR_GRAY2BGR),  # scaled to 8 bits (high byte)
    "yuv422": (2, 1, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": (2, 1, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2BGR_YUYV),
    "yuyv": (2, 1, cv2.COLOR_YUV2BGR_YUYV),
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGB2BGR),
}
IMAGE_ENCODINGS = tuple(_COLOUR)
LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")


def _bytes(data: Any) -> np.ndarray:
    """A message's `uint8[]` as a flat uint8 array, without copying where the binding allows."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _pixels(msg: Any, channels: int, depth: int) -> np.ndarray:
    """The H x W (x C) array of a raw Image, honouring `step` (padded rows) and `is_bigendian`."""
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels * depth
    if h < 1 or w < 1:
        raise EdgesegError(f"image message is {w}x{h}: nothing to segment")
    if step < row:
        raise EdgesegError(f"image message step {step} is shorter than a {msg.encoding} row ({row} bytes)")
    data = _bytes(msg.data)
    if data.size < step * (h - 1) + row:
        raise EdgesegError(
            f"image message holds {data.size} bytes, but {w}x{h} {msg.encoding} with step {step} "
            f"needs {step * (h - 1) + row}"
        )
    rows = np.lib.stride_tricks.as_strided(data, shape=(h, row), strides=(step, 1))
    if depth == 1:
        out = rows
    else:
        order = ">" if msg.is_bigendian else "<"
        out = np.ascontiguousarray(rows).view(np.dtype(f"{order}u{depth}")).astype(f"=u{depth}", copy=False)
    return out.reshape((h, w, channels) if channels > 1 else (h, w))


def is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def image_from_msg(msg: Any) -> np.ndarray:
    """A camera message (Image or CompressedImage) as a BGR uint8 H x W x 3 frame."""
    if is_compressed(msg):
        return _decode_compressed(msg, cv2.IMREAD_COLOR)
    encoding = str(msg.encoding)
    spec = _COLOUR.get(encoding)
    if spec is None:
        raise EdgesegError(
            f"image encoding {encoding!r} is not supported; supported: {', '.join(IMAGE_ENCODINGS)}, "
            "or CompressedImage (JPEG/PNG)"
        )
    channels, depth, code = spec
    pixels = _pixels(msg, channels, depth)
    if depth == 2:
        pixels = (pixels >> 8).astype(np.uint8)
    if code is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def labels_from_msg(msg: Any) -> np.ndarray:
    """A ground-truth message as H x W class ids: mono8/8UC1 (or 16-bit) Image, or a PNG CompressedImage."""
    if is_compressed(msg):
        ids = _decode_compressed(msg, cv2.IMREAD_UNCHANGED)
        if ids.ndim != 2:
            raise EdgesegError("label CompressedImage must be single-channel (class ids), not colour")
        return ids
    encoding = str(msg.encoding)
    if encoding not in LABEL_ENCODINGS:
        raise EdgesegError(
            f"label encoding {encoding!r} is not class ids; use {', '.join(LABEL_ENCODINGS)} (255 = ignore)"
        )
    depth = 2 if "16" in encoding else 1
    return np.array(_pixels(msg, 1, depth))  # a copy: the message buffer may be reused


def _decode_compressed(msg: Any, flags: int) -> np.ndarray:
    fmt = str(msg.format)
    if "compressedDepth" in fmt:
        raise EdgesegError(f"CompressedImage format {fmt!r} (depth) is not a camera image")
    image = cv2.imdecode(_bytes(msg.data), flags)
    if image is None:
        raise EdgesegError(f"cannot decode CompressedImage (format {fmt!r}): not a JPEG/PNG OpenCV reads")
    return image


def stamp_ns(header: Any) -> int:
    """A header's stamp in nanoseconds since the epoch (0 when the driver left it unset)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def encoding_for(array: np.ndarray) -> str:
    """The encoding a result image goes out with: class ids mono8/mono16, colour images bgr8."""
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return "bgr8"
    if array.ndim == 2 and array.dtype == np.uint8:
        return "mono8"
    if array.ndim == 2 and array.dtype == np.uint16:
        return "mono16"
    raise EdgesegError(f"cannot send a {array.dtype} array of shape {array.shape} as an image message")


@dataclass(frozen=True)
class MessageKit:
    """The message classes of one ROS 2 Python binding, and how it wants `uint8[]` filled."""

    image: type
    compressed_image: type
    header: type
    time: type
    string: type
    byte_array: Callable[[np.ndarray], Any]

    def make_header(self, stamp: int, frame_id: str) -> Any:
        sec, nanosec = divmod(int(stamp), 1_000_000_000)
        return self.header(stamp=self.time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def make_image(self, array: np.ndarray, stamp: int, frame_id: str) -> Any:
        """`sensor_msgs/msg/Image` for a class map (mono8/mono16) or a BGR image (bgr8)."""
        encoding = encoding_for(array)
        array = np.ascontiguousarray(array)
        h, w = array.shape[:2]
        return self.image(
            header=self.make_header(stamp, frame_id),
            height=h,
            width=w,
            encoding=encoding,
            is_bigendian=int(array.dtype.itemsize > 1 and sys.byteorder == "big"),
            step=w * (array.shape[2] if array.ndim == 3 else 1) * array.dtype.itemsize,
            data=self.byte_array(array.reshape(-1).view(np.uint8)),
        )

    def make_string(self, text: str) -> Any:
        return self.string(data=text)
