"""A model card from what a user knows about a net made elsewhere (`edgeseg card`). Torch-free.

The values are checked the way the runtime will use them: mean/std in the 0..1 RGB scale the card
uses everywhere (a 0..255 value such as 123.675 is refused with the conversion to make), one colour
per class, output kind and channel order from their fixed vocabularies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeseg.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard, default_palette
from edgeseg.errors import EdgesegError

RGB = tuple[int, int, int]


def parse_triple(text: str, what: str) -> tuple[float, float, float]:
    """'0.485,0.456,0.406' -> three floats in 0..1 (the card's scale), or one clear error."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise EdgesegError(f"{what} must be three numbers such as 0.485,0.456,0.406, got {text!r}") from None
    if len(values) != 3:
        raise EdgesegError(f"{what} must be three numbers (R,G,B), got {len(values)}")
    if any(v > 1.0 for v in values):
        scaled = ",".join(f"{v / 255:.4g}" for v in values)
        raise EdgesegError(
            f"{what} is in the 0..1 scale of RGB pixels; {text} looks like 0..255: use {scaled}"
        )
    if what == "--std" and any(v <= 0 for v in values):
        raise EdgesegError(f"--std values must be positive, got {text}")
    return values  # type: ignore[return-value]


def read_palette(path: Path) -> list[RGB]:
    """One colour per line: 'R G B' or 'R,G,B', integers 0..255 (blank lines and # comments skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"cannot read palette {path}: {exc}") from None
    colours: list[RGB] = []
    for no, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise EdgesegError(f"{path}:{no}: expected three integers 0..255, got {line!r}")
        colours.append((int(parts[0]), int(parts[1]), int(parts[2])))
    if not colours:
        raise EdgesegError(f"{path} lists no colours")
    return colours


def make_card(
    model: str,
    classes: list[str],
    *,
    palette: list[RGB] | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    input_size: tuple[int, int] = (512, 1024),
    output: str = "logits",
    color_order: str = "RGB",
    dynamic: bool = False,
    dynamic_batch: bool = False,
    extra: dict[str, Any] | None = None,
) -> ModelCard:
    """A checked ModelCard; colours default to the Pascal VOC colour map."""
    if not classes:
        raise EdgesegError("a model card needs at least one class")
    if output not in ("logits", "labels"):
        raise EdgesegError(f"--output must be logits or labels, got {output!r}")
    color_order = color_order.upper()
    if color_order not in ("RGB", "BGR"):
        raise EdgesegError(f"--color-order must be RGB or BGR, got {color_order!r}")
    if palette is not None and len(palette) < len(classes):
        raise EdgesegError(f"the palette has {len(palette)} colours for {len(classes)} classes")
    return ModelCard(
        model=model,
        classes=list(classes),
        palette=list(palette[: len(classes)]) if palette else default_palette(len(classes)),
        input_size=input_size,
        mean=mean,
        std=std,
        color_order=color_order,  # type: ignore[arg-type]
        output=output,  # type: ignore[arg-type]
        dynamic=dynamic,
        dynamic_batch=dynamic_batch,
        extra=dict(extra or {}),
    )
