"""Pure state_dict helpers: what a state_dict holds and whether it fits a module, in one line.

Below both the zoo (`registry.py`, `weights.py`) and the torchvision matcher (`torchvision_seg.py`),
which all use them; this module imports no other model module, so none of them import each other in
a circle.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError


def as_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state_dict file, unwrapped and with legacy names made current."""
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise EdgesegError(f"{path} is neither an edgeseg checkpoint nor a state_dict of tensors")
    return {_LEGACY_DENSENET.sub(r"\1\2", k.removeprefix("module.")): v for k, v in raw.items()}


# torchvision's published DenseNet files predate its module names: "denselayer1.norm.1.weight" is
# today's "denselayer1.norm1.weight" (torchvision renames them the same way when it loads them).
_LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def check_shapes(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    for k, v in source.items():
        if k in target and target[k].shape != v.shape:
            raise EdgesegError(
                f"{path}: {what} key {k!r} has shape {tuple(v.shape)}, the model expects {tuple(target[k].shape)}"
            )


def _first(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def fit_problem(expected: dict[str, Any], state: dict[str, Any]) -> str | None:
    """What keeps `state` from loading into a module whose state_dict is `expected`, in one line (None: fits).

    Names the first mismatched shapes, then missing and unexpected keys. BatchNorm step counters
    (`num_batches_tracked`) may be absent: older state_dicts do not have them.
    """
    shapes = [
        f"{k!r} has shape {tuple(state[k].shape)}, the model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    parts = shapes[:2] + ([f"+{len(shapes) - 2} more shape(s)"] if len(shapes) > 2 else [])
    if missing:
        parts.append(f"missing {_first(missing)}")
    if unexpected:
        parts.append(f"unexpected {_first(unexpected)}")
    return "; ".join(parts) or None


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], source: Any, what: str) -> None:
    """Load every tensor of `module` from `state`, or fail with one line naming the first mismatches."""
    problem = fit_problem(module.state_dict(), state)
    if problem:
        raise EdgesegError(f"{source} does not fit {what}: {problem}")
    module.load_state_dict(state, strict=False)  # strictness checked above (num_batches_tracked may miss)


def classes_in(build: Callable[[int], nn.Module], state: dict[str, Any]) -> int | None:
    """The class count `state` was trained with, for a net made by `build(num_classes)`.

    Builds the net twice on the meta device (no memory, no weights) with 2 and 3 classes: the tensors
    whose shapes differ are the class-dependent ones, and `state` holds their real size.
    """
    with torch.device("meta"):
        two, three = build(2).state_dict(), build(3).state_dict()
    for key, a in two.items():
        b = three.get(key)
        if b is None or a.shape == b.shape or key not in state:
            continue
        dim = next(i for i, (x, y) in enumerate(zip(a.shape, b.shape)) if x != y)
        if state[key].ndim > dim:
            return int(state[key].shape[dim])
    return None
