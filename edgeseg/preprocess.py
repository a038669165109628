"""Deterministic preprocessing, defined once and shared by training, evaluation, calibration and the
runtime (torch-free: numpy + OpenCV).

A frame of any size is mapped to the net's input (stretch or letterbox), normalised with the card's
mean/std, and the predicted class map is mapped back to the frame's own size with the inverse
geometry, so callers always get labels aligned with the pixels they passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeseg.card import MAX_INPUT_SIDE, MIN_INPUT_SIDE, NATIVE, ModelCard
from edgeseg.errors import EdgesegError

STRIDE = 32  # frames run at their own size (`native_size`) are padded to a multiple of this


@dataclass(frozen=True)
class Geometry:
    """How a frame was placed into the net input; enough to invert it."""

    frame_hw: tuple[int, int]
    net_hw: tuple[int, int]
    content_hw: tuple[int, int]  # size of the resized frame inside the net input
    offset: tuple[int, int]  # (top, left) padding before the content


def runs_native(card: ModelCard) -> bool:
    """Frames run at their own size (padded to the stride): asked for (`native_size`), on a net whose
    height and width are dynamic. Otherwise every frame is resized to `card.input_size`."""
    return card.dynamic and card.native_size


def net_input_hw(card: ModelCard, frame_hw: tuple[int, int]) -> tuple[int, int]:
    """Input size for a frame: the card's input size (a fixed net's, or the stated inference size of a
    net with dynamic height and width), or with `native_size` the frame rounded up to the stride."""
    if runs_native(card):
        h, w = frame_hw
        return (-(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE)
    return card.input_size


def at_inference_size(card: ModelCard, size: tuple[int, int] | str | None) -> ModelCard:
    """The card a run uses when it asks for an inference size (`edgeseg run --input-size HxW` or
    `--native-size`): None keeps the card's; (h, w) resizes every frame to it; NATIVE runs each frame
    at its own size. Only a net with dynamic height and width takes a size other than its own."""
    if size is None:
        return card
    h, w = card.input_size
    if not card.dynamic:
        if size != NATIVE and tuple(size) == (h, w):
            return card
        asked = "--native-size" if size == NATIVE else f"--input-size {size[0]}x{size[1]}"
        raise EdgesegError(
            f"{asked} needs a model exported with --dynamic-hw: {card.model} has a fixed height and width "
            f"and takes {h}x{w} frames only (every frame is resized to that)"
        )
    if size == NATIVE:
        return card.replace(native_size=True)
    sh, sw = (int(size[0]), int(size[1]))
    if not (MIN_INPUT_SIDE <= sh <= MAX_INPUT_SIDE and MIN_INPUT_SIDE <= sw <= MAX_INPUT_SIDE):
        raise EdgesegError(f"--input-size sides must be {MIN_INPUT_SIDE}..{MAX_INPUT_SIDE}, got {sh}x{sw}")
    return card.replace(input_size=(sh, sw), native_size=False)


def inference_size(card: ModelCard) -> dict[str, object]:
    """Which size frames run at, for a run's report: `size` ([h, w], or "native") and `how`."""
    if runs_native(card):
        return {"size": NATIVE, "how": f"each frame at its own size, padded to a multiple of {STRIDE}"}
    h, w = card.input_size
    if card.dynamic:
        how = f"every frame resized to {h}x{w} ({card.resize}); the model's height and width are dynamic"
        if card.predates_dynamic_hw:
            how += "; its card is older than --dynamic-hw: edgeseg then ran each frame at its own size, as --native-size does"
    else:
        how = f"every frame resized to {h}x{w} ({card.resize}), the model's fixed size"
    return {"size": [h, w], "how": how}


def fit(
    image: np.ndarray,
    net_hw: tuple[int, int],
    mode: str = "stretch",
    *,
    interpolation: int = cv2.INTER_LINEAR,
    pad_value: int = 0,
) -> tuple[np.ndarray, Geometry]:
    """Resize `image` (HxW or HxWxC) into `net_hw` by stretching or letterboxing."""
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise EdgesegError(f"expected an HxW or HxWxC image, got shape {image.shape}")
    fh, fw = image.shape[:2]
    nh, nw = net_hw
    if mode == "stretch":
        content = (nh, nw)
        offset = (0, 0)
    elif mode == "letterbox":
        scale = min(nh / fh, nw / fw)
        content = (max(1, round(fh * scale)), max(1, round(fw * scale)))
        offset = ((nh - content[0]) // 2, (nw - content[1]) // 2)
    elif mode == "pad":  # dynamic nets: keep pixels 1:1, pad bottom/right to the stride
        content = (fh, fw)
        offset = (0, 0)
    else:
        raise EdgesegError(f"unknown resize mode {mode!r} (stretch, letterbox, pad)")
    if (fh, fw) != content:
        resized = cv2.resize(image, (content[1], content[0]), interpolation=interpolation)
    else:
        resized = image
    if content != (nh, nw):
        top, left = offset
        bottom, right = nh - content[0] - top, nw - content[1] - left
        resized = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=pad_value)
    return resized, Geometry((fh, fw), (nh, nw), content, offset)


class Normalizer:
    """uint8 HxWx3 -> float32 3xHxW with `(x/255 - mean) / std`.

    A uint8 channel has only 256 values, so each output plane is one table lookup (`cv2.LUT` into
    the plane of the CHW result): a single pass instead of transpose, convert, multiply and add.
    `swap_rb` reads the channels in reverse order (BGR frames for an RGB net) without a copy.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        mean_arr = np.asarray(mean, dtype=np.float64)
        std_arr = np.asarray(std, dtype=np.float64)
        levels = np.arange(256, dtype=np.float64) / 255.0
        self.tables = [
            ((levels - m) / s).astype(np.float32).reshape(1, 256) for m, s in zip(mean_arr, std_arr)
        ]

    def __call__(self, image: np.ndarray, *, swap_rb: bool = False) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise EdgesegError(f"expected an HxWx3 colour image, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise EdgesegError(f"expected a uint8 image, got {image.dtype}")
        planes = cv2.split(np.ascontiguousarray(image))
        if swap_rb:
            planes = planes[::-1]
        chw = np.empty((3, *image.shape[:2]), dtype=np.float32)
        for plane, table, out in zip(planes, self.tables, chw):
            cv2.LUT(plane, table, dst=out)
        return chw


class Preprocessor:
    """Frame (OpenCV BGR by default) -> network input batch of one, plus the geometry to undo it."""

    def __init__(self, card: ModelCard, *, input_bgr: bool = True) -> None:
        self.card = card
        self.swap = input_bgr != (card.color_order == "BGR")
        self.normalize = Normalizer(card.mean, card.std)
        self.mode = "pad" if runs_native(card) else card.resize

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim != 3 or frame.shape[2] not in (3, 4):
            raise EdgesegError(f"expected an HxWx3 frame, got shape {frame.shape}")
        if frame.shape[2] == 4:
            frame = frame[:, :, :3]
        if frame.dtype != np.uint8:
            raise EdgesegError(f"expected a uint8 frame, got {frame.dtype}")
        net_hw = net_input_hw(self.card, frame.shape[:2])
        fitted, geom = fit(frame, net_hw, self.mode)
        return self.normalize(fitted, swap_rb=self.swap)[None], geom


def labels_to_frame(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map an HxW class map at net resolution back to the frame's size (nearest neighbour)."""
    top, left = geom.offset
    ch, cw = geom.content_hw
    crop = labels[top : top + ch, left : left + cw]
    if crop.shape != geom.frame_hw:
        if crop.dtype not in (np.uint8, np.uint16, np.int16, np.float32):
            crop = crop.astype(np.uint16 if crop.max(initial=0) > 255 else np.uint8)
        crop = cv2.resize(crop, (geom.frame_hw[1], geom.frame_hw[0]), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(crop)
