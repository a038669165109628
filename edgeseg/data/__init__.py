"""edgeseg.data: dataset readers (plain folder, Pascal VOC, Cityscapes), the procedural scene
generator, and training augmentations. Torch-free except `edgeseg.data.torch_dataset`.

`open_dataset(spec, split)` is the one entry point: `spec` is a folder (layout auto-detected) or
``synth`` / ``synth:N`` / ``synth:N@HxW`` for generated scenes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

__all__ = ["open_dataset", "detect_format", "FORMATS"]

FORMATS = ("plain", "voc", "cityscapes", "synth")


def detect_format(root: Path) -> str:
    """Which on-disk layout `root` holds; one-line error listing what was looked for otherwise."""
    from edgeseg.data import cityscapes, plain, voc

    if voc.find_voc_root(root) is not None:
        return "voc"
    if cityscapes.is_cityscapes(root):
        return "cityscapes"
    if plain.is_plain(root):
        return "plain"
    raise EdgesegError(
        f"unknown dataset layout in {root}: expected images/ + masks/ (plain), "
        "JPEGImages/ + SegmentationClass/ (Pascal VOC) or leftImg8bit/ + gtFine/ (Cityscapes)"
    )


def open_dataset(spec: str | Path, split: str | None = None, **kwargs: Any) -> Any:
    """A dataset with `classes`, `palette`, `len`, `ds[i] -> (rgb, mask)`, `name(i)`, `listing_hash()`.

    kwargs: `height`, `width`, `seed`, `num` for synth specs; `format` to force a folder layout.
    """
    from edgeseg.data.synthset import is_synth_spec, open_synth

    text = str(spec)
    if is_synth_spec(text):
        return open_synth(text, split, **kwargs)
    root = Path(text).expanduser()
    if not root.exists():
        raise EdgesegError(f"dataset not found: {root} (a folder, or synth / synth:N for generated scenes)")
    if not root.is_dir():
        raise EdgesegError(f"dataset must be a folder, not a file: {root}")
    fmt = kwargs.pop("format", None) or detect_format(root)
    if kwargs:
        raise EdgesegError(f"options {sorted(kwargs)} only apply to synth datasets")
    if fmt == "plain":
        from edgeseg.data.plain import open_plain

        return open_plain(root, split)
    if fmt == "voc":
        from edgeseg.data.voc import open_voc

        return open_voc(root, split)
    if fmt == "cityscapes":
        from edgeseg.data.cityscapes import open_cityscapes

        return open_cityscapes(root, split)
    raise EdgesegError(f"unknown dataset format {fmt!r} (one of {', '.join(FORMATS)})")
