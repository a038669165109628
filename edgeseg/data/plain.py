"""The plain-folder format: ``images/`` + ``masks/`` paired by stem, and a classes file.

Layout::

    root/classes.json      {"classes": [{"name": "road", "color": [128, 64, 128]}, ...]}
      or root/classes.txt  one class per line: ``name`` or ``name R G B``
    root/images/*.jpg|png  RGB images
    root/masks/*.png       single-channel class ids (255 = ignore), same stem and size as the image,
                           or RGB masks in the classes' colours (every colour must be a class colour)

Splits: ``root/<split>/images`` + ``root/<split>/masks`` if present, else a stem list
``root/<split>.txt`` (or ``root/splits/<split>.txt``), else a fixed 90/10 train/val split by a hash
of the stem (stable when files are added, no file needed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgeseg.atomic import write_json
from edgeseg.card import default_palette
from edgeseg.data.base import FileDataset, Item, files_by_stem, pair_by_stem
from edgeseg.data.io import IMAGE_EXTS, MASK_EXTS
from edgeseg.errors import EdgesegError, not_a_file

CLASS_FILES = ("classes.json", "classes.txt")
HASH_SPLITS = ("train", "val")
VAL_PERCENT = 10


def is_plain(root: Path) -> bool:
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return True
    return any((d / "images").is_dir() and (d / "masks").is_dir() for d in _subdirs(root))


def write_classes_file(root: str | Path, classes: list[str], palette: list[tuple[int, int, int]]) -> Path:
    """Write ``classes.json`` (names and RGB colours) atomically."""
    path = Path(root) / "classes.json"
    write_json(path, {"classes": [{"name": n, "color": list(map(int, c))} for n, c in zip(classes, palette)]})
    return path


def read_classes_file(root: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and colours from classes.json / classes.txt (colours default to a distinct palette)."""
    for name in CLASS_FILES:
        path = root / name
        if path.is_file():
            break
    else:
        raise EdgesegError(
            f"no classes.json or classes.txt in {root}; write one class name per line (optionally 'name R G B')"
        )
    return read_class_list(path)


def read_class_list(path: Path) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Names and colours from one classes file: JSON as classes.json, anything else as classes.txt."""
    if not path.is_file():
        raise not_a_file(path, "classes file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"cannot read {path}: {exc}") from None
    entries = _parse_json(text, path) if path.suffix == ".json" else _parse_txt(text, path)
    if not entries:
        raise EdgesegError(f"{path} lists no classes")
    if len(entries) > 255:
        raise EdgesegError(
            f"{path} lists {len(entries)} classes; at most 255 fit uint8 masks with 255 = ignore"
        )
    names = [n for n, _ in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EdgesegError(f"{path} repeats class name(s): {', '.join(dupes)}")
    fallback = default_palette(len(entries))
    palette = [c if c is not None else fallback[i] for i, (_, c) in enumerate(entries)]
    return names, palette


def _color(value, path: Path, name: str) -> tuple[int, int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 3
        or not all(isinstance(v, int) and 0 <= v <= 255 for v in value)
    ):
        raise EdgesegError(f"{path}: colour of class {name!r} must be three integers 0..255, got {value!r}")
    return (value[0], value[1], value[2])


def _parse_json(text: str, path: Path) -> list[tuple[str, tuple[int, int, int] | None]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EdgesegError(f"{path} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    palette = None
    if isinstance(data, dict):
        palette = data.get("palette")
        data = data.get("classes")
    if not isinstance(data, list):
        raise EdgesegError(f"{path}: expected a list of classes or {{'classes': [...]}}")
    out: list[tuple[str, tuple[int, int, int] | None]] = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            name, color = entry, None
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, color = entry["name"], entry.get("color", entry.get("colour"))
        else:
            raise EdgesegError(f"{path}: class #{i} must be a name or {{'name': ..., 'color': [r, g, b]}}")
        if color is None and isinstance(palette, list) and i < len(palette):
            color = palette[i]
        out.append((name, _color(color, path, name) if color is not None else None))
    return out


def _parse_txt(text: str, path: Path) -> list[tuple[str, tuple[int, int, int] | None]]:
    out: list[tuple[str, tuple[int, int, int] | None]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 1:
            out.append((parts[0], None))
        elif len(parts) == 4 and all(p.isdigit() for p in parts[1:]):
            out.append((parts[0], _color([int(p) for p in parts[1:]], path, parts[0])))
        else:
            raise EdgesegError(f"{path}:{lineno}: expected 'name' or 'name R G B', got {raw.strip()!r}")
    return out


def _subdirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _pairs(folder: Path) -> list[Item]:
    images = files_by_stem(folder / "images", IMAGE_EXTS)
    masks = files_by_stem(folder / "masks", MASK_EXTS)
    return pair_by_stem(images, masks, str(folder))


def _stem_list(root: Path, split: str) -> list[str] | None:
    for path in (root / f"{split}.txt", root / "splits" / f"{split}.txt"):
        if path.is_file():
            return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return None


def in_val_split(stem: str) -> bool:
    """The hash split: ~VAL_PERCENT% of stems are validation, independent of which others exist."""
    return int(hashlib.sha1(stem.encode()).hexdigest()[:8], 16) % 100 < VAL_PERCENT


def open_plain(root: Path, split: str | None = None) -> FileDataset:
    classes, palette = read_classes_file(root)
    has_flat = (root / "images").is_dir() and (root / "masks").is_dir()
    split_dirs = [d for d in _subdirs(root) if (d / "images").is_dir() and (d / "masks").is_dir()]
    if split is not None and (root / split / "images").is_dir():
        items = _pairs(root / split)
    elif split is None:
        items = _pairs(root) if has_flat else [it for d in split_dirs for it in _pairs(d)]
    else:
        if not has_flat:
            names = ", ".join(d.name for d in split_dirs)
            raise EdgesegError(f"no split {split!r} in {root} (found: {names})")
        items = _pairs(root)
        stems = _stem_list(root, split)
        if stems is not None:
            known = {it.name: it for it in items}
            missing = [s for s in stems if s not in known]
            if missing:
                raise EdgesegError(
                    f"split {split!r} of {root} lists {len(missing)} unknown stem(s): {missing[:5]}"
                )
            items = [known[s] for s in stems]
        elif split in HASH_SPLITS:
            items = [it for it in items if in_val_split(it.name) == (split == "val")]
            if not items:  # tiny folders: better to validate on the training images than on nothing
                items = _pairs(root)
        elif split not in ("all", "trainval"):
            raise EdgesegError(f"no split {split!r} in {root}: use train, val, all, or add {split}.txt")
    names = [it.name for it in items]
    if len(set(names)) != len(names):
        raise EdgesegError(f"the same image name appears in several splits of {root}; names must be unique")
    return FileDataset(root, items, classes, palette, format="plain", split=split, color_masks=True)
