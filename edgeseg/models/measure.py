"""Measure parameters and FLOPs of every zoo entry; regenerates `catalog.json`, the data behind the
torch-free `edgeseg models`.

Costs are counted on the meta device (no memory, no arithmetic), so measuring the whole zoo at
512x1024 takes seconds. FLOPs are `torch.utils.flop_counter.FlopCounterMode`'s count: 2 per
multiply-accumulate of convolutions and matmuls (resizes, pooling and activations are not counted).

    python -m edgeseg.models.measure            # print the rows
    python -m edgeseg.models.measure --write    # rewrite edgeseg/models/catalog.json
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from edgeseg.atomic import write_json
from edgeseg.models.catalog import CATALOG_CLASSES, CATALOG_PATH, CATALOG_SIZE
from edgeseg.models.registry import create_model, get_spec, list_models

# (model, backbone or None) -> (parameters, GFLOPs)
CostFn = Callable[[str, str | None], tuple[int, float]]


def measure(
    name: str,
    backbone: str | None = None,
    num_classes: int = CATALOG_CLASSES,
    size: tuple[int, int] = CATALOG_SIZE,
) -> tuple[int, float]:
    """(parameters, GFLOPs for one size x size image) of a zoo model, counted on the meta device."""
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, backbone=backbone).eval()
        params = sum(p.numel() for p in model.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, 3, *size))
    return params, counter.get_total_flops() / 1e9


def rows(cost: CostFn = measure) -> list[dict[str, Any]]:
    """One row per built-in model and backbone: the registry's facts plus `cost`'s numbers."""
    out = []
    for name in list_models(builtin_only=True):
        spec = get_spec(name)
        for bb in spec.backbones or (None,):
            params, gflops = cost(name, bb)
            out.append(
                {
                    "model": name,
                    "backbone": bb or "-",
                    "default": bb == spec.default_backbone,
                    "params": params,
                    "gflops": round(gflops, 2),
                    "output_stride": spec.default_output_stride,
                    "output_strides": list(spec.output_strides),
                    "paper": spec.paper,
                    "cite": spec.cite,
                    "summary": spec.summary,
                    "options": _options(spec, bb),
                }
            )
    return out


def _options(spec: Any, backbone: str | None) -> dict[str, Any]:
    """Builder options beyond num_classes/backbone that `backbone` takes, with their defaults (shown
    by `edgeseg models NAME`)."""
    skip = ("num_classes", "backbone")
    return {
        p.name: p.default
        for p in inspect.signature(spec.builder).parameters.values()
        if p.name not in skip
        and p.default is not inspect.Parameter.empty
        and spec.takes_option(p.name, backbone)
    }


def document(data: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of catalog.json: the conditions the rows were measured at, then the rows."""
    return {"num_classes": CATALOG_CLASSES, "input_size": list(CATALOG_SIZE), "models": data}


def write(path: Path = CATALOG_PATH) -> Path:
    """Measure the zoo and (atomically) rewrite the catalog at `path`."""
    write_json(path, document(rows()))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite edgeseg/models/catalog.json")
    args = parser.parse_args()
    if args.write:
        write()
    else:
        for row in rows():
            print(row)


if __name__ == "__main__":
    main()
