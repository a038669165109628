"""Parsers for option values that several commands share."""

from __future__ import annotations

from typing import Any

from edgeseg.errors import EdgesegError


def parse_hw(text: str, minimum: int = 16) -> tuple[int, int]:
    """'256x512' -> (256, 512), or one clear error."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgesegError(f"expected HxW such as 256x512, got {text!r}") from None
    if h < minimum or w < minimum:
        raise EdgesegError(f"size must be at least {minimum}x{minimum}, got {text}")
    return h, w


def card_option() -> Any:
    """`--card CARD.json`, for every command that reads an artifact made elsewhere."""
    import typer

    return typer.Option(
        None, "--card", help="Model card JSON for an artifact made elsewhere (`edgeseg card` writes one)."
    )


def allow_other_gpu_option() -> Any:
    """`--allow-other-gpu`, for commands that run a TensorRT engine."""
    import typer

    return typer.Option(
        False,
        "--allow-other-gpu",
        help="TensorRT: run an engine built on another module of the same GPU (same name and compute "
        "capability, other SM count or memory, e.g. Orin AGX vs NX).",
    )
