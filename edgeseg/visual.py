"""Colour maps and overlays (torch-free, OpenCV): lookup tables, not per-pixel Python."""

from __future__ import annotations

import cv2
import numpy as np


def color_lut(palette: list[tuple[int, int, int]], *, bgr: bool = True) -> np.ndarray:
    """256 x 3 uint8 lookup table; unknown ids (e.g. 255 = ignore) map to black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    pal = np.asarray(palette[:256], dtype=np.uint8).reshape(-1, 3)
    lut[: len(pal)] = pal[:, ::-1] if bgr else pal
    return lut


def colorize(labels: np.ndarray, palette: list[tuple[int, int, int]], *, bgr: bool = True) -> np.ndarray:
    """H x W class ids -> H x W x 3 colour image (BGR for OpenCV by default)."""
    return color_lut(palette, bgr=bgr)[labels.astype(np.uint8, copy=False)]


def overlay(
    frame: np.ndarray, labels: np.ndarray, palette: list[tuple[int, int, int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend the colourised class map over a BGR frame."""
    return cv2.addWeighted(frame, 1.0 - alpha, colorize(labels, palette), alpha, 0.0)
