"""The zoo as data, torch-free: what `edgeseg models` prints without importing torch.

The rows live in `catalog.json` beside this module (package data), written by
`python -m edgeseg.models.measure --write` for 21 classes at a 512x1024 input;
`tests/test_models_catalog.py` recomputes them from the real models, so the table cannot drift from
the code. GFLOPs = 2 x multiply-accumulates of convolutions and matmuls (torch.utils.flop_counter),
output stride = stride of the finest map the head scores.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from edgeseg.errors import EdgesegError

CATALOG_CLASSES = 21
CATALOG_SIZE = (512, 1024)
COLUMNS = ("model", "backbone", "params", "gflops", "output_stride", "paper")
CATALOG_PATH = Path(__file__).resolve().with_name("catalog.json")


def entries(model: str | None = None, *, all_backbones: bool = True) -> list[dict[str, Any]]:
    """Catalog rows (copies), optionally one model's, optionally only each model's default backbone."""
    return [
        dict(r) for r in _rows() if (model is None or r["model"] == model) and (all_backbones or r["default"])
    ]


def model_names() -> list[str]:
    return list(dict.fromkeys(r["model"] for r in _rows()))


@functools.cache
def _rows() -> tuple[dict[str, Any], ...]:
    try:
        data = json.loads(CATALOG_PATH.read_text())
    except (OSError, ValueError) as exc:
        raise EdgesegError(
            f"the model catalog {CATALOG_PATH} is missing or unreadable ({exc}); reinstall edgeseg"
        ) from None
    return tuple(data["models"])
