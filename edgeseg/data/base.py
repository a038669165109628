"""The dataset every reader returns: a sorted list of (image, mask) file pairs plus class metadata.

Readers only *find* files and decide class names/colours; loading, size checks, label remapping
(e.g. Cityscapes ids -> train ids) and label validation happen here, once, so every format fails
the same way: one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.data.io import read_image, read_mask
from edgeseg.errors import EdgesegError


@dataclass(frozen=True)
class Item:
    name: str  # stem, unique within the dataset
    image: Path
    mask: Path


class FileDataset:
    """A segmentation dataset on disk: ``ds[i] -> (rgb uint8 HxWx3, mask uint8 HxW, 255 = ignore)``."""

    def __init__(
        self,
        root: Path,
        items: list[Item],
        classes: list[str],
        palette: list[tuple[int, int, int]],
        *,
        format: str,
        split: str | None = None,
        label_map: np.ndarray | None = None,
        raw_labels: int | None = None,
        color_masks: bool = False,
    ) -> None:
        if not items:
            where = f" (split {split!r})" if split else ""
            raise EdgesegError(f"no image/mask pairs found in {root}{where}")
        self.root = Path(root)
        self.items = items
        self.classes = list(classes)
        self.palette = [tuple(int(c) for c in rgb) for rgb in palette]
        self.format = format
        self.split = split
        if label_map is not None and (label_map.shape != (256,) or label_map.dtype != np.uint8):
            raise ValueError("label_map must be a uint8 lookup table of 256 entries")
        self.label_map = label_map
        self.raw_labels = raw_labels  # with a label_map: raw ids must be < raw_labels (or 255)
        self.color_masks = color_masks  # RGB masks are decoded through the palette
        self._hash: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        return self.items[i].name

    def files(self, i: int) -> tuple[Path, Path]:
        item = self.items[i]
        return item.image, item.mask

    def load_mask(self, i: int) -> np.ndarray:
        """The validated, remapped mask alone (class statistics need no image decoding)."""
        item = self.items[i]
        mask = read_mask(item.mask, self.palette if self.color_masks else None)
        if self.label_map is not None:
            if self.raw_labels is not None:
                self._check_labels(mask, item.mask, self.raw_labels, "raw label ids")
            mask = self.label_map[mask]
        self._check_labels(mask, item.mask, self.num_classes, "classes")
        return mask

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        item = self.items[i]
        rgb = read_image(item.image)
        mask = self.load_mask(i)
        if mask.shape != rgb.shape[:2]:
            raise EdgesegError(
                f"mask {item.mask} is {mask.shape[1]}x{mask.shape[0]} but image {item.image} is "
                f"{rgb.shape[1]}x{rgb.shape[0]}"
            )
        return rgb, mask

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    @staticmethod
    def _check_labels(mask: np.ndarray, path: Path, limit: int, what: str) -> None:
        if int(mask.max(initial=0)) < limit:
            return
        present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
        bad = present[(present >= limit) & (present != IGNORE_INDEX)]
        if bad.size:
            shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            raise EdgesegError(
                f"mask {path} has label values {shown} outside 0..{limit - 1} "
                f"(and {IGNORE_INDEX} = ignore) for {limit} {what}"
            )

    def listing_hash(self) -> str:
        """sha256 of the sorted (relative path, size) listing: changes when files are added/replaced."""
        if self._hash is None:
            h = hashlib.sha256()
            h.update(f"{self.format}\n{self.split}\n{self.classes}\n".encode())
            entries = []
            for item in self.items:
                for p in (item.image, item.mask):
                    try:
                        size = p.stat().st_size
                    except OSError:
                        raise EdgesegError(f"file not found: {p}") from None
                    entries.append(f"{_rel(p, self.root)}\t{size}")
            for e in sorted(entries):
                h.update(e.encode())
                h.update(b"\n")
            self._hash = h.hexdigest()
        return self._hash

    def describe(self) -> dict:
        return {
            "format": self.format,
            "root": str(self.root),
            "split": self.split,
            "images": len(self),
            "classes": self.classes,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} {self.root} split={self.split} n={len(self)}>"


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def pair_by_stem(images: dict[str, Path], masks: dict[str, Path], where: str) -> list[Item]:
    """Pair files with equal stems; name the unpaired ones (the usual cause of a broken dataset)."""
    only_img = sorted(images.keys() - masks.keys())
    only_mask = sorted(masks.keys() - images.keys())
    if only_img or only_mask:
        parts = []
        if only_img:
            parts.append(f"{len(only_img)} image(s) without a mask: {short_list(only_img)}")
        if only_mask:
            parts.append(f"{len(only_mask)} mask(s) without an image: {short_list(only_mask)}")
        raise EdgesegError(f"unpaired files in {where}: " + "; ".join(parts))
    return [Item(stem, images[stem], masks[stem]) for stem in sorted(images)]


def short_list(stems: list[str], limit: int = 5) -> str:
    return ", ".join(stems[:limit]) + (f" ... (+{len(stems) - limit})" if len(stems) > limit else "")


def files_by_stem(folder: Path, exts: tuple[str, ...], *, strip: str = "") -> dict[str, Path]:
    """{stem: path} for files in `folder` with one of `exts`; `strip` removes a suffix like '_gtFine_labelIds'."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.suffix.lower() not in exts or p.name.startswith("."):
            continue
        stem = p.stem
        if strip:
            if not stem.endswith(strip):
                continue
            stem = stem[: -len(strip)]
        if stem in out:
            raise EdgesegError(f"two files share the name {stem!r} in {folder}: {out[stem].name}, {p.name}")
        out[stem] = p
    return out
