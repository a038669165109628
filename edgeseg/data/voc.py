"""Pascal VOC 2012 segmentation: JPEGImages/*.jpg, SegmentationClass/*.png (palette-mode PNGs whose
indices are the class ids, 255 = border/ignore), ImageSets/Segmentation/{train,val,trainval}.txt.

The root may be the VOC2012 folder itself, or a folder containing ``VOC2012`` or ``VOCdevkit/VOC2012``.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.card import default_palette
from edgeseg.data.base import FileDataset, Item, short_list
from edgeseg.errors import EdgesegError

VOC_CLASSES: list[str] = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


VOC_PALETTE = default_palette(len(VOC_CLASSES))  # the VOC colour map


def find_voc_root(root: Path) -> Path | None:
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir() and (cand / "SegmentationClass").is_dir():
            return cand
    return None


def _read_ids(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"cannot read split file {path}: {exc}") from None
    return [ln.strip() for ln in lines if ln.strip()]


def open_voc(root: Path, split: str | None = None) -> FileDataset:
    base = find_voc_root(root)
    if base is None:
        raise EdgesegError(f"{root} is not a Pascal VOC folder (JPEGImages/ and SegmentationClass/ missing)")
    sets = base / "ImageSets" / "Segmentation"
    if split is not None:
        split_file = sets / f"{split}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise EdgesegError(
                f"no VOC split {split!r}: {split_file} missing (found: {', '.join(have) or 'none'})"
            )
        ids = _read_ids(split_file)
    elif (sets / "trainval.txt").is_file():
        ids = _read_ids(sets / "trainval.txt")
    else:  # no split files: every annotated image
        ids = sorted(p.stem for p in (base / "SegmentationClass").glob("*.png"))
    items, missing_img, missing_mask = [], [], []
    for i in ids:
        img = base / "JPEGImages" / f"{i}.jpg"
        mask = base / "SegmentationClass" / f"{i}.png"
        if not img.is_file():
            missing_img.append(i)
        if not mask.is_file():
            missing_mask.append(i)
        items.append(Item(i, img, mask))
    if missing_img or missing_mask:
        parts = []
        if missing_img:
            parts.append(f"{len(missing_img)} without JPEGImages/<id>.jpg: {short_list(missing_img)}")
        if missing_mask:
            parts.append(
                f"{len(missing_mask)} without SegmentationClass/<id>.png: {short_list(missing_mask)}"
            )
        raise EdgesegError(f"VOC {split or 'trainval'} ids in {base}: " + "; ".join(parts))
    return FileDataset(base, items, VOC_CLASSES, VOC_PALETTE, format="voc", split=split)
