"""`python:MODULE:CALLABLE`: any nn.Module a callable of the user's returns (`-o key=value` are passed
to it as keyword arguments), optionally loaded from `--weights`.

This imports and runs the user's code, as `python -c` would: the current directory is put on the
import path first, so `python:my_pkg.models:build_net` works from the project folder. The net must
return a tensor or a dict with "out" (tuples: the first item), N x C x H x W logits at the input size;
one forward pass at the export size checks that and reads C.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from edgeseg.card import ModelCard
from edgeseg.errors import EdgesegError
from edgeseg.lazy import require
from edgeseg.models.foreign import (
    Imported,
    ImportRequest,
    export_name,
    import_record,
    load_into,
    register_importer,
    seeded,
)


@register_importer("python", extra="train", usage="python:MODULE:CALLABLE")
def load_python(request: ImportRequest) -> Imported:
    module_name, sep, attr = request.target.rpartition(":")
    if not sep or not module_name or not attr:
        raise EdgesegError(
            f"python:{request.target}: write python:MODULE:CALLABLE, e.g. python:my_pkg.models:build_net"
        )
    fn = _callable(module_name, attr)
    choice = request.choice
    if choice.backbone:
        raise EdgesegError("python: pass the backbone to your callable as an option (-o backbone=NAME)")
    _check_arguments(fn, choice.options, request.target)
    torch = require("torch")

    def build() -> Any:
        try:
            net = fn(**choice.options)
        except EdgesegError:
            raise
        except Exception as exc:  # the user's code may raise anything
            raise EdgesegError(f"python:{request.target} raised {type(exc).__name__}: {exc}") from None
        if not isinstance(net, torch.nn.Module):
            raise EdgesegError(
                f"python:{request.target} returned {type(net).__name__}, not a torch nn.Module"
            )
        return net

    net = build() if request.weights is not None else seeded(build)
    what = f"python:{request.target}"
    if request.weights is not None:
        load_into(net, request.weights, what)
    _to_eval(net, what)
    size = choice.size(ModelCard.input_size)  # the size the export runs at
    n = _probe_classes(net, size, what)
    random = request.weights is None
    card = choice.card(
        export_name(attr),
        choice.class_names(n, random_weights=random),
        extra={
            "import": import_record(f"python:{request.target}", request),
            **({"random_weights": True} if random else {}),
        },
    )
    description = f"{what}, " + (f"weights {request.weights}" if not random else "its own initial weights")
    return Imported(net, card, description, request.weights, random_weights=random)


def _to_eval(net: Any, what: str) -> None:
    """Switch the user's module to eval mode, and say so when that changes what it computes: BatchNorm
    in training mode normalises with each batch's statistics instead of its running ones."""
    torch = require("torch")
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    net.eval()
    if norms:
        from edgeseg.console import warn

        warn(
            f"{what} returned a module in training mode; switched to eval() for export, so its "
            f"{len(norms)} BatchNorm layer(s) use their running statistics"
        )


def _callable(module_name: str, attr: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EdgesegError(f"python:{module_name}:{attr}: cannot import {module_name!r} ({exc})") from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise EdgesegError(f"python:{module_name}:{attr}: {module_name} has no callable {attr!r}")
    return fn


def _check_arguments(fn: Any, options: dict[str, Any], target: str) -> None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # builtins without a signature: let the call decide
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    for key in options:
        if key not in params:
            raise EdgesegError(
                f"python:{target} takes no argument {key!r}; it takes: {', '.join(params) or 'nothing'}"
            )


def _probe_classes(net: Any, size: tuple[int, int], what: str) -> int:
    """Run one forward pass at the export size: the output must be 1 x C x H x W at that size."""
    torch = require("torch")
    from edgeseg.models.outputs import logits_of

    h, w = size
    with torch.no_grad():
        try:
            y = logits_of(net, torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)))
        except KeyError:
            raise EdgesegError(f"{what} returned a dict without 'out'") from None
        except Exception as exc:
            raise EdgesegError(f"{what} failed on a 1x3x{h}x{w} input: {type(exc).__name__}: {exc}") from None
    if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[0] != 1 or tuple(y.shape[2:]) != (h, w):
        shape = "x".join(map(str, y.shape)) if isinstance(y, torch.Tensor) else type(y).__name__
        raise EdgesegError(
            f"{what} must return N x C x H x W logits at the input size; got {shape} for a 1x3x{h}x{w} input "
            "(upsample inside the module)"
        )
    return int(y.shape[1])
