"""Generated scenes as a dataset (``synth``, ``synth:N``, ``synth:N@HxW``), rendered on access.

Training draws from `TRAIN_SEED`, the ``val`` split (model selection) from `VAL_SEED`, and
everything else -- evaluation, ``synth:N`` without a split -- from `HELDOUT_SEED`, so the reported
held-out scenes were neither trained on nor used to pick the best checkpoint. Nothing is written to disk; items are pure
functions of (seed, index), so the "listing hash" is a hash of the parameters.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from edgeseg.data.synth import (
    GENERATOR_VERSION,
    HELDOUT_SEED,
    SYNTH_CLASSES,
    SYNTH_PALETTE,
    TRAIN_SEED,
    VAL_SEED,
    SceneGenerator,
)
from edgeseg.errors import EdgesegError

DEFAULT_SIZE = (256, 512)
DEFAULT_COUNT = {"train": 2000}
DEFAULT_HELDOUT_COUNT = 100
_SPEC = re.compile(r"^synth(?::(?P<n>\d+))?(?:@(?P<h>\d+)x(?P<w>\d+))?$")


class SynthDataset:
    """``ds[i] -> (rgb, mask)`` for scene i of a seed; same interface as the file datasets."""

    format = "synth"

    def __init__(self, num: int, height: int, width: int, seed: int, split: str | None = None) -> None:
        if num < 1:
            raise EdgesegError(f"a synth dataset needs at least 1 scene, got {num}")
        self.gen = SceneGenerator(height, width, seed)
        self.num, self.height, self.width, self.seed, self.split = (
            int(num),
            int(height),
            int(width),
            int(seed),
            split,
        )
        self.classes = list(SYNTH_CLASSES)
        self.palette = list(SYNTH_PALETTE)
        self.root = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -self.num <= i < self.num:
            raise IndexError(i)
        return self.gen.scene(i % self.num)

    def __iter__(self):
        for i in range(self.num):
            yield self[i]

    def load_mask(self, i: int) -> np.ndarray:
        return self[i][1]

    def name(self, i: int) -> str:
        return f"synth{self.seed}_{i:06d}"

    def listing_hash(self) -> str:
        key = f"synth/{GENERATOR_VERSION}/{self.seed}/{self.num}/{self.height}x{self.width}"
        return hashlib.sha256(key.encode()).hexdigest()

    def describe(self) -> dict:
        return {
            "format": "synth",
            "seed": self.seed,
            "split": self.split,
            "images": self.num,
            "size": [self.height, self.width],
            "classes": self.classes,
        }

    def __repr__(self) -> str:
        return f"<SynthDataset seed={self.seed} n={self.num} {self.height}x{self.width}>"


def is_synth_spec(spec: str) -> bool:
    return spec == "synth" or spec.startswith(("synth:", "synth@"))


def open_synth(
    spec: str,
    split: str | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
    seed: int | None = None,
    num: int | None = None,
) -> SynthDataset:
    """Parse ``synth[:N][@HxW]``; keyword arguments fill in what the spec leaves out."""
    m = _SPEC.match(spec.strip())
    if m is None:
        raise EdgesegError(
            f"bad synthetic data spec {spec!r}: use synth, synth:N or synth:N@HxW (e.g. synth:200@256x512)"
        )
    n = int(m["n"]) if m["n"] else num
    if n is None:
        n = DEFAULT_COUNT.get(split or "", DEFAULT_HELDOUT_COUNT)
    h = int(m["h"]) if m["h"] else (height or DEFAULT_SIZE[0])
    w = int(m["w"]) if m["w"] else (width or DEFAULT_SIZE[1])
    if seed is None:
        seed = {"train": TRAIN_SEED, "val": VAL_SEED}.get(split or "", HELDOUT_SEED)
    return SynthDataset(n, h, w, seed, split)
