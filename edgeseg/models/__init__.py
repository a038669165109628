"""edgeseg.models: the segmentation model zoo (torch).

This package's `__init__` stays torch-free so the catalog (`edgeseg.models.catalog`, used by
`edgeseg models`) can be imported without torch; the torch API is loaded on first attribute access:

    from edgeseg.models import create_model, list_models, register_model
"""

from __future__ import annotations

from typing import Any

_TORCH_API = {
    "create_model": "registry",
    "list_models": "registry",
    "register_model": "registry",
    "get_spec": "registry",
    "ModelSpec": "registry",
    "load_weights": "weights",
    "Backbone": "backbones",
    "BACKBONES": "backbones",
}

__all__ = sorted(_TORCH_API)


def __getattr__(name: str) -> Any:
    if name in _TORCH_API:
        import importlib

        from edgeseg.lazy import require

        require("torch", purpose="the model zoo")
        module = importlib.import_module(f"{__name__}.{_TORCH_API[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
