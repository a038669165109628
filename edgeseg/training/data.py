"""The torch side of training data: dataset items (RGB uint8, mask uint8) -> (float CHW, long HW).

Geometry and normalisation reuse `edgeseg.preprocess` (the same `fit` + `Normalizer` the runtime uses),
so a net sees at training time exactly the pixels it will see when deployed. Random augmentation
(scale, crop, flip, colour jitter) is albumentations, seeded explicitly per epoch so `--resume` replays
the same sample stream.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.preprocess import Normalizer, fit


def build_augment(height: int, width: int) -> Any:
    """Random scale 0.5-1.75x, crop back to the input size (padding labelled ignore), flip, colour jitter."""
    A = require("albumentations")
    return A.Compose(
        [
            A.RandomScale(scale_limit=(-0.5, 0.75), p=1.0),
            A.PadIfNeeded(
                min_height=height,
                min_width=width,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE_INDEX,
            ),
            A.RandomCrop(height=height, width=width),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02, p=0.8),
        ],
        seed=0,
    )


class TrainSet:
    """Map-style torch dataset over an `edgeseg.data` dataset, at the card's input size."""

    def __init__(
        self,
        dataset: Any,
        input_hw: tuple[int, int],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        *,
        augment: bool = True,
    ) -> None:
        self.dataset = dataset
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.normalize = Normalizer(mean, std)
        self.augment = build_augment(*self.input_hw) if augment else None

    def __len__(self) -> int:
        return len(self.dataset)

    def reseed(self, seed: int) -> None:
        """Make the augmentation stream a function of `seed` (called per epoch and per loader worker)."""
        if self.augment is not None:
            self.augment.set_random_seed(int(seed) % (2**32))

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        torch = require("torch")
        rgb, mask = self.dataset[i]
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != mask.shape[:2]:
            raise EdgesegError(f"training item {i}: image {rgb.shape} and mask {mask.shape} do not match")
        # The deterministic part is the deployed preprocessing: stretch/letterbox to the net input.
        rgb, _ = fit(rgb, self.input_hw, "stretch")
        mask, _ = fit(mask, self.input_hw, "stretch", interpolation=cv2.INTER_NEAREST, pad_value=IGNORE_INDEX)
        if self.augment is not None:
            out = self.augment(image=rgb, mask=mask)
            rgb, mask = out["image"], out["mask"]
        x = torch.from_numpy(self.normalize(np.ascontiguousarray(rgb)))
        y = torch.from_numpy(np.ascontiguousarray(mask).astype(np.int64))
        return x, y


def worker_init(worker_id: int) -> None:
    """DataLoader workers get a seed derived from the (per-epoch seeded) main RNG: reproducible."""
    torch = require("torch")
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(torch.initial_seed())
