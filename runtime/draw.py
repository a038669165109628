"""Postprocessing that has to stay cheap next to inference: argmax, LUT colouring, OpenCV blending,
and a legend drawn once and pasted per frame.

Visual modes: `overlay` (class colours blended over the frame with `alpha`), `mask` (colours only),
`side-by-side` (the frame and the overlay next to each other).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from edgeseg.errors import EdgesegError
from edgeseg.preprocess import Geometry, labels_to_frame
from edgeseg.visual import color_lut

MODES = ("overlay", "mask", "side-by-side")


def fast_argmax(logits: np.ndarray) -> np.ndarray:
    """Class map from C x H x W logits (or 1 x C x H x W), identical to `argmax(axis=0)` incl. ties.

    NumPy's argmax over the leading axis walks memory with a stride of H*W; one pass over the
    classes keeping a running maximum, and writing a class id where it is strictly greater (so the
    lowest id wins a tie, as in NumPy), is far cheaper with OpenCV's SIMD kernels for float32.
    """
    if logits.ndim == 4:
        if logits.shape[0] != 1:
            raise EdgesegError(f"expected one image of logits, got batch {logits.shape[0]}")
        logits = logits[0]
    classes = logits.shape[0]
    if classes > 255:
        return logits.argmax(axis=0).astype(np.uint16)
    if logits.dtype != np.float32:
        return _argmax_numpy(logits)
    best = logits[0].copy()
    out = np.zeros(logits.shape[1:], dtype=np.uint8)
    zero = np.zeros_like(out)
    for c in range(1, classes):
        greater = cv2.compare(logits[c], best, cv2.CMP_GT)
        cv2.max(best, logits[c], dst=best)
        cv2.add(zero, c, dst=out, mask=greater)  # out[greater] = c
    return out


def _argmax_numpy(logits: np.ndarray) -> np.ndarray:
    """Same result for dtypes OpenCV lacks (float16): max reduction, then classes in descending order."""
    best = logits.max(axis=0)
    out = np.zeros(logits.shape[1:], dtype=np.uint8)
    hit = np.empty(logits.shape[1:], dtype=bool)
    for c in range(logits.shape[0] - 1, -1, -1):  # descending, so the lowest index wins a tie
        np.equal(logits[c], best, out=hit)
        np.copyto(out, np.uint8(c), where=hit)
    return out


def class_histogram(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class id (length >= num_classes; ids beyond it are kept, never dropped)."""
    if labels.dtype == np.uint8 and labels.size < (1 << 24):  # float32 counts are exact below 2^24
        counts = cv2.calcHist([labels], [0], None, [256], [0, 256]).reshape(-1).astype(np.int64)
        top = max(num_classes, int(np.flatnonzero(counts)[-1]) + 1 if counts.any() else 0)
        return counts[:top]
    return np.bincount(labels.reshape(-1), minlength=num_classes)


def frame_class_histogram(net_labels: np.ndarray, geom: Geometry, num_classes: int) -> np.ndarray:
    """`class_histogram(labels_to_frame(net_labels, geom))`, without building the frame-size map when
    the frame is a whole multiple of the net's content (512x1024 from 256x512): nearest-neighbour
    upscaling then repeats every net pixel the same number of times, so counting at net resolution
    and multiplying is exact. Saves a resize and a 4x larger count on headless runs."""
    repeats = _uniform_repeats(geom.content_hw, geom.frame_hw)
    if repeats is None:
        return class_histogram(labels_to_frame(net_labels, geom), num_classes)
    top, left = geom.offset
    ch, cw = geom.content_hw
    crop = np.ascontiguousarray(net_labels[top : top + ch, left : left + cw])
    return class_histogram(crop, num_classes) * repeats


@functools.lru_cache(maxsize=32)
def _uniform_repeats(content_hw: tuple[int, int], frame_hw: tuple[int, int]) -> int | None:
    """Pixels each content pixel becomes under OpenCV's INTER_NEAREST resize, if that is the same
    for all of them; asked of OpenCV itself (its index rounding is not plain division)."""
    total = 1
    for src, dst in zip(content_hw, frame_hw):
        if dst % src:
            return None
        ramp = np.arange(src, dtype=np.float32).reshape(1, src)
        picked = cv2.resize(ramp, (dst, 1), interpolation=cv2.INTER_NEAREST).astype(np.int64).reshape(-1)
        counts = np.bincount(picked, minlength=src)
        if counts.min() != counts.max():
            return None
        total *= int(counts[0])
    return total


class Renderer:
    """Turns (frame, class map) into the annotated image for windows and videos."""

    def __init__(
        self,
        palette: list[tuple[int, int, int]],
        classes: list[str] | None = None,
        *,
        mode: str = "overlay",
        alpha: float = 0.5,
        legend: bool = False,
    ) -> None:
        if mode not in MODES:
            raise EdgesegError(f"unknown visual mode {mode!r}; choose one of {', '.join(MODES)}")
        if not 0.0 <= alpha <= 1.0:
            raise EdgesegError(f"--alpha must be between 0 and 1, got {alpha}")
        self.mode, self.alpha = mode, alpha
        self.lut = color_lut(palette)  # 256 x 3, BGR
        self.lut_cv = np.ascontiguousarray(self.lut.reshape(256, 1, 3))
        self.classes = classes or []
        self.legend = legend_image(self.classes, palette) if legend and self.classes else None

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        if labels.dtype != np.uint8:
            labels = np.minimum(labels, 255).astype(np.uint8)
        return cv2.applyColorMap(labels, self.lut_cv)  # one pass with a user colour map

    def render(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        colours = self.colorize(labels)
        if self.mode == "mask":
            out = colours
        else:
            blended = cv2.addWeighted(frame, 1.0 - self.alpha, colours, self.alpha, 0.0)
            out = blended if self.mode == "overlay" else cv2.hconcat([frame, blended])
        if self.legend is not None:
            out = paste_legend(out, self.legend)
        return out


def legend_image(
    classes: list[str], palette: list[tuple[int, int, int]], *, scale: float = 0.45
) -> np.ndarray:
    """A small BGR panel: one colour swatch and name per class."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, text_h), base = cv2.getTextSize("Hg", font, scale, 1)
    row = text_h + base + 6
    widths = [cv2.getTextSize(name, font, scale, 1)[0][0] for name in classes]
    swatch = row - 6
    width = 8 + swatch + 6 + (max(widths) if widths else 0) + 8
    panel = np.full((row * len(classes) + 8, width, 3), 32, dtype=np.uint8)
    for i, name in enumerate(classes):
        r, g, b = palette[i]
        top = 4 + i * row
        cv2.rectangle(panel, (8, top + 3), (8 + swatch, top + 3 + swatch), (int(b), int(g), int(r)), -1)
        cv2.putText(
            panel, name, (8 + swatch + 6, top + text_h + 4), font, scale, (240, 240, 240), 1, cv2.LINE_AA
        )
    return panel


def paste_legend(image: np.ndarray, legend: np.ndarray, margin: int = 8) -> np.ndarray:
    """Legend in the top-right corner, cropped if the image is smaller than the panel."""
    h = min(legend.shape[0], image.shape[0] - margin)
    w = min(legend.shape[1], image.shape[1] - margin)
    if h <= 0 or w <= 0:
        return image
    out = image if image.flags.writeable else image.copy()
    x0 = out.shape[1] - w - margin
    out[margin : margin + h, x0 : x0 + w] = legend[:h, :w]
    return out
