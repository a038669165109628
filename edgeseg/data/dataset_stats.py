"""Dataset statistics for `edgeseg data info`: class pixel frequencies and image sizes.

Reading every mask validates the whole dataset as a side effect (unpaired, corrupt, mis-sized or
out-of-range files all raise the same one-line errors training would hit later, but up front).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.progress import Progress


@dataclass
class DatasetStats:
    format: str
    images: int
    scanned: int
    classes: list[str]
    palette: list[tuple[int, int, int]]
    pixels: np.ndarray  # per class
    ignored: int
    sizes: Counter = field(default_factory=Counter)  # (H, W) -> count
    listing_hash: str = ""

    @property
    def total(self) -> int:
        return int(self.pixels.sum()) + self.ignored

    def frequencies(self) -> np.ndarray:
        labelled = self.pixels.sum()
        return self.pixels / labelled if labelled else np.zeros_like(self.pixels, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        freq = self.frequencies()
        return {
            "format": self.format,
            "images": self.images,
            "scanned": self.scanned,
            "listing_hash": self.listing_hash,
            "num_classes": len(self.classes),
            "ignored_pixels": self.ignored,
            "ignored_fraction": self.ignored / self.total if self.total else 0.0,
            "sizes": [{"height": h, "width": w, "count": n} for (h, w), n in self.sizes.most_common()],
            "classes": [
                {"id": i, "name": n, "color": list(c), "pixels": int(p), "frequency": float(f)}
                for i, (n, c, p, f) in enumerate(zip(self.classes, self.palette, self.pixels, freq))
            ],
        }


def dataset_stats(
    ds: Any,
    *,
    limit: int | None = None,
    check_images: bool = True,
    progress: Progress | None = None,
) -> DatasetStats:
    """Scan the first `limit` items (all by default). With `check_images` images are decoded too,
    which also verifies image/mask sizes; without it only masks are read (faster)."""
    n = len(ds) if limit is None else min(len(ds), max(0, int(limit)))
    counts = np.zeros(256, np.int64)
    sizes: Counter = Counter()
    for i in range(n):
        if check_images or not hasattr(ds, "load_mask"):
            _, mask = ds[i]
        else:
            mask = ds.load_mask(i)
        counts += np.bincount(mask.ravel(), minlength=256)
        sizes[mask.shape[:2]] += 1
        if progress is not None:
            progress("scanning", i + 1, n)
    k = len(ds.classes)
    return DatasetStats(
        format=getattr(ds, "format", type(ds).__name__),
        images=len(ds),
        scanned=n,
        classes=list(ds.classes),
        palette=[tuple(c) for c in ds.palette],
        pixels=counts[:k].copy(),
        ignored=int(counts[IGNORE_INDEX]) if k <= IGNORE_INDEX else 0,
        sizes=sizes,
        listing_hash=ds.listing_hash(),
    )
