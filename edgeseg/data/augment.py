"""Training augmentations (random scale, crop, flip, colour jitter) built on albumentations.

Only the *random* part lives here. The deterministic part -- resize/letterbox to the net input and
mean/std normalisation -- is `edgeseg.preprocess` (shared with evaluation, calibration and the
runtime), so augmentation never changes what a deployed net sees, only which crops it sees.

Geometry is applied to image and mask together: masks use nearest-neighbour interpolation and any
padding is labelled 255 (ignore), so no invented label enters the loss. albumentations is imported
lazily (it belongs to the `train` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require


@dataclass(frozen=True)
class AugmentConfig:
    """What `train_augment` randomises; the defaults suit road scenes (no vertical flip)."""

    scale: tuple[float, float] = (0.5, 2.0)  # resize factor range applied before cropping
    hflip: float = 0.5  # probability
    brightness: float = 0.3  # ColorJitter strengths (0 disables)
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.03
    jitter_p: float = 0.8


def train_augment(
    height: int, width: int, config: AugmentConfig | None = None, *, seed: int | None = None
) -> Any:
    """An albumentations pipeline yielding `height` x `width` crops: ``aug(image=rgb, mask=mask)``.

    Pass `seed` for a reproducible stream (reseed per epoch/worker with ``aug.set_random_seed``).
    """
    A = require("albumentations")
    cfg = config or AugmentConfig()
    if height < 1 or width < 1:
        raise EdgesegError(f"augmentation crop size must be positive, got {height}x{width}")
    lo, hi = cfg.scale
    if not 0 < lo <= hi:
        raise EdgesegError(f"augmentation scale range must satisfy 0 < min <= max, got {cfg.scale}")
    steps: list[Any] = []
    if (lo, hi) != (1.0, 1.0):
        # albumentations' scale_limit is relative to 1 (factor = 1 + limit).
        steps.append(
            A.RandomScale(
                scale_limit=(lo - 1.0, hi - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    steps += [
        A.PadIfNeeded(
            min_height=height,
            min_width=width,
            position="random",
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            fill_mask=IGNORE_INDEX,
        ),
        A.RandomCrop(height=height, width=width),
    ]
    if cfg.hflip > 0:
        steps.append(A.HorizontalFlip(p=cfg.hflip))
    if max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) > 0 and cfg.jitter_p > 0:
        steps.append(
            A.ColorJitter(
                brightness=_around_one(cfg.brightness),
                contrast=_around_one(cfg.contrast),
                saturation=_around_one(cfg.saturation),
                hue=(-cfg.hue, cfg.hue),
                p=cfg.jitter_p,
            )
        )
    return A.Compose(steps, seed=seed)


def _around_one(strength: float) -> tuple[float, float]:
    return (max(0.0, 1.0 - strength), 1.0 + strength)


def apply(aug: Any, rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run `aug` on an (rgb, mask) pair and check the result is still aligned and uint8."""
    if rgb.shape[:2] != mask.shape[:2]:
        raise EdgesegError(f"image {rgb.shape[:2]} and mask {mask.shape[:2]} differ in size")
    out = aug(image=rgb, mask=mask)
    img, msk = out["image"], out["mask"]
    return np.ascontiguousarray(img, dtype=np.uint8), np.ascontiguousarray(msk, dtype=np.uint8)
