"""The output containers segmentation nets use, reduced to the logits tensor. Torch-free.

torchvision returns {"out": ..., "aux": ...}; smp with an aux head and some user nets return tuples
(main output first); edgeseg's zoo returns the tensor itself.
"""

from __future__ import annotations

from typing import Any


def logits_of(net: Any, batch: Any) -> Any:
    """Run a torch segmentation net and return its N x C x H x W logits whatever its output container
    (KeyError for a dict without "out")."""
    y = net(batch)
    if isinstance(y, dict):
        return y["out"]
    if isinstance(y, (tuple, list)):
        return y[0]
    return y
