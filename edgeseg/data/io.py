"""Reading and writing images and label masks, with one-line errors naming the bad file.

Images are returned as RGB uint8 (OpenCV reads BGR; we convert once here so nothing else has to
care). Masks are single-channel class ids; palette-mode ('P') PNGs such as Pascal VOC's are read
through PIL so the stored *indices* come back, not the colours OpenCV would convert them to.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from edgeseg.atomic import atomic_path
from edgeseg.errors import EdgesegError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_EXTS = (".png", ".bmp", ".tif", ".tiff")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """RGB uint8 HxWx3 from any image file OpenCV reads (grey and alpha are converted).

    EXIF orientation is ignored: masks are drawn on the stored pixel grid, and rotating only the
    photo would misalign (or mis-size) every pair taken with a phone held sideways.
    """
    p = Path(path)
    data = _read_bytes(p)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None or img.size == 0:
        raise EdgesegError(f"cannot decode image {p} (corrupt or unsupported format)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike[str], palette: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Class ids uint8 HxW. Palette PNGs give their indices; colour-coded (RGB) masks are mapped
    through `palette` (class i = palette[i]) when one is given, and refused otherwise."""
    p = Path(path)
    data = _read_bytes(p)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and _png_color_type(data) == 3:
        return _read_palette_png(p)
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.size == 0:
        raise EdgesegError(f"cannot decode mask {p} (corrupt or unsupported format)")
    if mask.ndim == 3:
        if (
            mask.shape[2] >= 3
            and np.array_equal(mask[:, :, 0], mask[:, :, 1])
            and np.array_equal(mask[:, :, 1], mask[:, :, 2])
        ):
            mask = mask[:, :, 0]
        elif palette is not None and mask.shape[2] in (3, 4) and mask.dtype == np.uint8:
            return colors_to_ids(mask[:, :, 2::-1], palette, p)
        else:
            raise EdgesegError(
                f"mask {p} has {mask.shape[2]} colour channels; masks must be single-channel class ids "
                "(or a palette PNG)"
            )
    if mask.dtype != np.uint8:
        if mask.dtype.kind not in "ui" or mask.max(initial=0) > 255 or mask.min(initial=0) < 0:
            raise EdgesegError(f"mask {p} holds {mask.dtype} values outside 0..255; expected uint8 class ids")
        mask = mask.astype(np.uint8)
    return mask


def colors_to_ids(rgb: np.ndarray, palette: list[tuple[int, int, int]], path: Path) -> np.ndarray:
    """Map an RGB colour-coded mask to class ids; a colour not in the palette is an error."""
    keys = np.asarray([(r << 16) | (g << 8) | b for r, g, b in palette], np.int64)
    if len(set(keys.tolist())) != len(keys):
        raise EdgesegError(f"cannot decode colour mask {path}: the class colours are not all distinct")
    order = np.argsort(keys)
    sorted_keys = keys[order]
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pos = np.clip(np.searchsorted(sorted_keys, flat), 0, len(keys) - 1)
    known = sorted_keys[pos] == flat
    if not known.all():
        bad = np.unique(flat[~known])[:3]
        shown = ", ".join(str(((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255)) for k in bad)
        raise EdgesegError(f"colour mask {path} has colours that are no class's colour: {shown}")
    return order[pos].astype(np.uint8)


def write_image(path: str | os.PathLike[str], rgb: np.ndarray, *, quality: int = 95) -> None:
    """Atomically write an RGB uint8 image; the format follows the suffix."""
    p = Path(path)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    write_bgr(p, bgr, [cv2.IMWRITE_JPEG_QUALITY, quality] if p.suffix.lower() in (".jpg", ".jpeg") else [])


def write_bgr(path: Path, bgr: np.ndarray, params: list[int] | None = None) -> None:
    """Atomically write a BGR uint8 image in the format its suffix names (none: PNG); a suffix OpenCV
    cannot encode is one line naming it."""
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", bgr, params or [])
    except cv2.error:
        ok = False
    if not ok:
        raise EdgesegError(f"cannot write an image with suffix {path.suffix!r}: {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Atomically write a single-channel uint8 class-id PNG (lossless)."""
    p = Path(path)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise EdgesegError(f"a mask must be HxW uint8, got {mask.shape} {mask.dtype}")
    ok, buf = cv2.imencode(".png", mask)
    if not ok:
        raise EdgesegError(f"cannot encode mask {p}")
    with atomic_path(p) as tmp:
        tmp.write_bytes(buf.tobytes())


def _read_bytes(p: Path) -> bytes:
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise EdgesegError(f"file not found: {p}") from None
    except OSError as exc:
        raise EdgesegError(f"cannot read {p}: {exc.strerror or exc}") from None
    if not data:
        raise EdgesegError(f"file is empty: {p}")
    return data


def _png_color_type(data: bytes) -> int:
    """PNG colour type from the IHDR chunk (3 = palette)."""
    return data[25] if len(data) > 25 and data[12:16] == b"IHDR" else -1


def _read_palette_png(p: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - PIL comes with torchvision and matplotlib
        from edgeseg.lazy import require

        require("PIL", purpose="reading palette-mode PNG masks")
        raise
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode != "P":
                im = im.convert("L")
            return np.asarray(im, dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError) as exc:
        raise EdgesegError(f"cannot decode mask {p} (corrupt PNG: {exc})") from None
