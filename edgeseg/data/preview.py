"""A contact sheet of dataset items (image | colour-coded labels) to eyeball a dataset's labelling.

The quickest check that a reader maps labels correctly (VOC palette indices, Cityscapes train ids,
a plain folder's classes file) is to look at the masks in the dataset's own colours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.errors import EdgesegError
from edgeseg.visual import color_lut

# ignore pixels are hatched black and white: no class colour can be mistaken for that (a grey one could,
# and street palettes have grey buildings); STRIPE is the hatch width in pixels
STRIPE = 3


def preview_grid(ds: Any, indices: list[int], tile_width: int = 384) -> np.ndarray:
    """BGR image with one row per item: the image, then its labels in the dataset's palette."""
    if not indices:
        raise EdgesegError("nothing to preview: the dataset is empty")
    lut = color_lut(ds.palette)
    rows = []
    for i in indices:
        rgb, mask = ds[i]
        h, w = mask.shape
        th = max(1, round(h * tile_width / w))
        img = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (tile_width, th), interpolation=cv2.INTER_AREA)
        small = cv2.resize(mask, (tile_width, th), interpolation=cv2.INTER_NEAREST)
        lab = lut[small]
        lab[small == IGNORE_INDEX] = 0
        lab[(small == IGNORE_INDEX) & _hatch(th, tile_width)] = 255
        row = np.concatenate([img, lab], axis=1)
        cv2.putText(row, str(ds.name(i))[:40], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        rows.append(row)
    return np.concatenate(rows, axis=0)


def _hatch(h: int, w: int) -> np.ndarray:
    """Diagonal stripes, True on every other band of STRIPE pixels."""
    y, x = np.mgrid[0:h, 0:w]
    return ((x + y) // STRIPE) % 2 == 0


def write_preview(ds: Any, out: str | Path, num: int = 6, tile_width: int = 384) -> Path:
    """Evenly spaced items of `ds` as a PNG/JPEG contact sheet at `out` (written atomically)."""
    from edgeseg.data.io import write_bgr

    n = len(ds)
    count = max(1, min(int(num), n))
    indices = sorted({int(round(k * (n - 1) / max(1, count - 1))) for k in range(count)}) if n else []
    out = Path(out)
    write_bgr(out, preview_grid(ds, indices, tile_width))
    return out
