"""Cityscapes fine annotations: leftImg8bit/{split}/{city}/*_leftImg8bit.png with
gtFine/{split}/{city}/*_gtFine_labelIds.png, label ids mapped to the 19 evaluation train ids
(everything else -> 255 = ignore), as in the official cityscapesScripts label table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.card import IGNORE_INDEX
from edgeseg.data.base import FileDataset, files_by_stem, pair_by_stem
from edgeseg.errors import EdgesegError

# (name, train id, RGB) of the 19 evaluated classes, in train-id order.
CITYSCAPES_TRAIN: list[tuple[str, tuple[int, int, int]]] = [
    ("road", (128, 64, 128)), ("sidewalk", (244, 35, 232)), ("building", (70, 70, 70)),
    ("wall", (102, 102, 156)), ("fence", (190, 153, 153)), ("pole", (153, 153, 153)),
    ("traffic light", (250, 170, 30)), ("traffic sign", (220, 220, 0)), ("vegetation", (107, 142, 35)),
    ("terrain", (152, 251, 152)), ("sky", (70, 130, 180)), ("person", (220, 20, 60)), ("rider", (255, 0, 0)),
    ("car", (0, 0, 142)), ("truck", (0, 0, 70)), ("bus", (0, 60, 100)), ("train", (0, 80, 100)),
    ("motorcycle", (0, 0, 230)), ("bicycle", (119, 11, 32)),
]  # fmt: skip
CITYSCAPES_CLASSES = [n for n, _ in CITYSCAPES_TRAIN]
CITYSCAPES_PALETTE = [c for _, c in CITYSCAPES_TRAIN]

# label id -> train id for the ids 0..33 (official table; unlisted ids are ignored).
ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
NUM_LABEL_IDS = 34
SPLITS = ("train", "val", "test")
IMG_SUFFIX = "_leftImg8bit"
GT_SUFFIX = "_gtFine_labelIds"
TRAIN_ID_SUFFIX = "_gtFine_labelTrainIds"  # written by cityscapesScripts' createTrainIdLabelImgs


def label_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def is_cityscapes(root: Path) -> bool:
    return (root / "leftImg8bit").is_dir() and (root / "gtFine").is_dir()


def open_cityscapes(root: Path, split: str | None = None) -> FileDataset:
    if not is_cityscapes(root):
        raise EdgesegError(f"{root} is not a Cityscapes folder (leftImg8bit/ and gtFine/ missing)")
    if split is not None and split not in SPLITS:
        raise EdgesegError(f"unknown Cityscapes split {split!r} (train, val, test)")
    # Without a split: train + val (test ground truth is withheld by the benchmark).
    splits = [split] if split else [s for s in ("train", "val") if (root / "gtFine" / s).is_dir()]
    # Raw label ids are the official format; pre-converted train-id PNGs are used only when no
    # labelIds file exists at all (a mix would be ambiguous).
    have_ids = any(
        next((root / "gtFine" / s).glob(f"*/*{GT_SUFFIX}.png"), None)
        for s in splits
        if (root / "gtFine" / s).is_dir()
    )
    suffix = GT_SUFFIX if have_ids else TRAIN_ID_SUFFIX
    items = []
    for s in splits:
        img_dir, gt_dir = root / "leftImg8bit" / s, root / "gtFine" / s
        if not img_dir.is_dir() or not gt_dir.is_dir():
            raise EdgesegError(f"Cityscapes split {s!r} missing: need {img_dir} and {gt_dir}")
        cities = sorted(
            {d.name for d in img_dir.iterdir() if d.is_dir()}
            | {d.name for d in gt_dir.iterdir() if d.is_dir()}
        )
        for city in cities:
            images = (
                files_by_stem(img_dir / city, (".png",), strip=IMG_SUFFIX)
                if (img_dir / city).is_dir()
                else {}
            )
            masks = files_by_stem(gt_dir / city, (".png",), strip=suffix) if (gt_dir / city).is_dir() else {}
            items.extend(pair_by_stem(images, masks, f"{s}/{city}"))
    return FileDataset(
        root,
        items,
        CITYSCAPES_CLASSES,
        CITYSCAPES_PALETTE,
        format="cityscapes",
        split=split,
        label_map=label_lut() if have_ids else None,
        raw_labels=NUM_LABEL_IDS if have_ids else None,
    )
