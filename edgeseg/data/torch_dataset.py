"""torch `Dataset` adapter: any edgeseg dataset -> (float32 3xHxW tensor, int64 HxW mask tensor).

The only module of `edgeseg.data` that imports torch. Fixed-size outputs for batching come from
`edgeseg.preprocess.fit` (the deployed resize, stretch or letterbox, masks nearest with 255 padding)
and, when augmenting, from random crops of exactly that size; normalisation is the shared
`Normalizer`, so train-time tensors match what the runtime feeds the exported net.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from edgeseg.data.augment import AugmentConfig, apply, train_augment
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.preprocess import Normalizer, fit

torch = require("torch")


class SegmentationTorchDataset(torch.utils.data.Dataset):
    """Wraps ``ds[i] -> (rgb uint8, mask uint8)``; yields ``(x float32 3xHxW, y int64 HxW)``.

    size: (H, W) of every output (needed to batch); None keeps each item's own size.
    augment: False, True (default `AugmentConfig`) or an `AugmentConfig`; random crops are `crop`.
    crop: (H, W) of the training crops taken from the `size` image (default: `size`). Smaller crops
        of a full-size frame keep the deployed scale and cost less per step.
    resize: how items are first brought to `size` ("stretch" | "letterbox"), as the runtime does.
    """

    def __init__(
        self,
        dataset: Any,
        size: tuple[int, int] | None = None,
        *,
        augment: bool | AugmentConfig = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        resize: str = "stretch",
        seed: int = 0,
        crop: tuple[int, int] | None = None,
    ) -> None:
        if augment and size is None:
            raise EdgesegError("augmentation crops need a fixed output size")
        if crop is not None and not augment:
            raise EdgesegError("a crop size needs augmentation (crops are random)")
        self.dataset = dataset
        self.size = (int(size[0]), int(size[1])) if size is not None else None
        self.resize = resize
        self.mean, self.std = tuple(mean), tuple(std)
        self.normalize = Normalizer(mean, std)
        cfg = AugmentConfig() if augment is True else (augment or None)
        out = (int(crop[0]), int(crop[1])) if crop is not None else self.size
        self.augment = train_augment(*out, cfg, seed=seed) if cfg is not None and out else None

    def __len__(self) -> int:
        return len(self.dataset)

    def reseed(self, seed: int) -> None:
        """Make the augmentation stream a function of `seed` (call per epoch and per worker)."""
        if self.augment is not None:
            self.augment.set_random_seed(int(seed) % (2**32))

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Item i after resize and augmentation, still uint8 (for inspection and tests)."""
        rgb, mask = self.dataset[i]
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != mask.shape[:2]:
            raise EdgesegError(f"item {i}: image {rgb.shape} and mask {mask.shape} do not match")
        if self.size is not None:
            rgb, _ = fit(rgb, self.size, self.resize)
            mask, _ = fit(
                mask, self.size, self.resize, interpolation=cv2.INTER_NEAREST, pad_value=IGNORE_INDEX
            )
        if self.augment is not None:
            rgb, mask = apply(self.augment, rgb, mask)
        return rgb, mask

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        rgb, mask = self.sample(i)
        x = torch.from_numpy(self.normalize(rgb))
        y = torch.from_numpy(mask.astype(np.int64))
        return x, y


def worker_init_fn(worker_id: int) -> None:
    """DataLoader hook: give each worker its own augmentation stream (derived from torch's seed)."""
    info = torch.utils.data.get_worker_info()
    if info is not None and hasattr(info.dataset, "reseed"):
        info.dataset.reseed(info.seed)
