"""torchvision's segmentation models as data: recognise their checkpoints, and map the ones edgeseg's zoo
really matches.

torchvision's own registry (`torchvision.models.list_models(module=segmentation)`, `get_model`,
`get_model_weights`) is the source of truth: a state_dict is identified by building each candidate on
the meta device (no memory, no download) and comparing key names, then shapes.

Which torchvision nets are an edgeseg zoo model (checked layer by layer, and by equal outputs in
tests/test_byom_torchvision.py):
- deeplabv3_resnet50/101 = edgeseg `deeplabv3 --backbone resnet50/101 -o output_stride=8`: the same
  dilated ResNet (torchvision's `replace_stride_with_dilation=[False, True, True]` is the same atrous
  surgery), ASPP rates 12/24/36, 3x3 conv + BN + ReLU, 1x1 classifier, bilinear upsampling.
- deeplabv3_mobilenet_v3_large is not: its ASPP uses rates 12/24/36 at output stride 16 (edgeseg: 6/12/18)
  and its dilated MobileNetV3 dilates the formerly strided block too.
- fcn_resnet50/101 is not edgeseg's FCN family: torchvision's FCN is a dilated stride-8 ResNet with a
  3x3 conv head and bilinear upsampling; edgeseg's fcn32s/16s/8s score the stride-32 map with 1x1
  convs and learnable transposed-conv upsampling, as in Long et al.
- lraspp_mobilenet_v3_large: edgeseg has no LR-ASPP.
Those export through `edgeseg export torchvision:NAME --weights FILE` instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from edgeseg.errors import EdgesegError
from edgeseg.lazy import require

AUX_PREFIX = "aux_classifier."


@dataclass(frozen=True)
class TorchvisionMatch:
    """A state_dict recognised as torchvision's `name` with `num_classes` outputs (and an aux head)."""

    name: str
    num_classes: int
    aux: bool


@dataclass(frozen=True)
class ZooEquivalent:
    """The edgeseg zoo model a torchvision net is, and how its keys are renamed (first prefix wins;
    None drops the key: the aux head only serves training)."""

    model: str
    backbone: str
    options: dict[str, Any] = field(default_factory=dict)
    renames: tuple[tuple[str, str | None], ...] = ()

    def command(self) -> str:
        opts = "".join(f" -o {k}={v}" for k, v in self.options.items())
        return f"{self.model} --backbone {self.backbone}{opts}"


_DEEPLAB_RENAMES: tuple[tuple[str, str | None], ...] = (
    ("backbone.", "backbone.body."),
    ("classifier.0.convs.4.1.", "aspp.branches.4.proj.0."),  # image pooling: pool, conv, bn, relu
    ("classifier.0.convs.4.2.", "aspp.branches.4.proj.1."),
    ("classifier.0.convs.", "aspp.branches."),
    ("classifier.0.project.0.", "aspp.project.0.0."),
    ("classifier.0.project.1.", "aspp.project.0.1."),
    ("classifier.1.", "fuse.0."),
    ("classifier.2.", "fuse.1."),
    ("classifier.4.", "classifier."),
    (AUX_PREFIX, None),
)

ZOO_EQUIVALENTS: dict[str, ZooEquivalent] = {
    f"deeplabv3_{bb}": ZooEquivalent("deeplabv3", bb, {"output_stride": 8}, _DEEPLAB_RENAMES)
    for bb in ("resnet50", "resnet101")
}

NO_ZOO_EQUIVALENT: dict[str, str] = {
    "deeplabv3_mobilenet_v3_large": (
        "its ASPP uses rates 12/24/36 at output stride 16 (edgeseg's deeplabv3: 6/12/18) and its dilated "
        "MobileNetV3 differs"
    ),
    "fcn_resnet50": (
        "torchvision's FCN is a dilated stride-8 ResNet with a 3x3 conv head and bilinear upsampling, "
        "edgeseg's fcn32s/16s/8s score the stride-32 map and upsample with learnable transposed convs"
    ),
    "fcn_resnet101": "torchvision's FCN is a dilated stride-8 ResNet with a 3x3 conv head, unlike edgeseg's FCNs",
    "lraspp_mobilenet_v3_large": "edgeseg has no LR-ASPP model",
}


def segmentation_names() -> list[str]:
    """torchvision's segmentation builders, from its own registry."""
    require("torchvision", purpose="torchvision's segmentation models")
    import torchvision.models as tvm
    from torchvision.models import segmentation

    return list(tvm.list_models(module=segmentation))


def build(name: str, num_classes: int, aux: bool = False) -> Any:
    """torchvision's builder with random weights: edgeseg never downloads (weights and backbone weights None)."""
    import torchvision.models as tvm

    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
    if aux:
        kwargs["aux_loss"] = True
    return tvm.get_model(name, **kwargs)


def categories(name: str) -> list[str]:
    """Class names of torchvision's published weights for `name` (data shipped inside torchvision).

    torchvision calls class 0 '__background__'; edgeseg's Pascal VOC reader calls it 'background', so
    the names are made to match edgeseg's and a VOC evaluation compares by name.
    """
    import torchvision.models as tvm

    names = list(tvm.get_model_weights(name).DEFAULT.meta["categories"])
    return ["background" if n == "__background__" else n for n in names]


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of torchvision's preprocessing preset for `name` (0..1 RGB scale)."""
    import torchvision.models as tvm

    preset = tvm.get_model_weights(name).DEFAULT.transforms()
    return tuple(preset.mean), tuple(preset.std)


def looks_torchvision(state: dict[str, Any]) -> bool:
    """torchvision's segmentation nets keep their trunk directly under `backbone.` and have a
    `classifier.`; edgeseg's zoo keeps it under `backbone.body.`."""
    return any(k.startswith("classifier.") for k in state) and any(
        k.startswith("backbone.") and not k.startswith("backbone.body.") for k in state
    )


def _learned(keys: Any) -> set[str]:
    """Key names without BatchNorm's step counters (older state_dicts lack them)."""
    return {k for k in keys if not k.endswith("num_batches_tracked")}


@functools.cache
def _key_names(name: str, aux: bool) -> frozenset[str]:
    torch = require("torch")
    with torch.device("meta"):
        return frozenset(build(name, 2, aux).state_dict())


def identify(state: dict[str, Any], names: list[str] | None = None) -> TorchvisionMatch | None:
    """Which torchvision segmentation net `state` is (key names, then class count and every shape)."""
    from edgeseg.models.state_dict import classes_in, fit_problem

    torch = require("torch")
    aux = any(k.startswith(AUX_PREFIX) for k in state)
    keys = _learned(state)
    for name in names or segmentation_names():
        if name.startswith("lraspp") and aux:
            continue  # torchvision: "This model does not use auxiliary loss"
        if _learned(_key_names(name, aux)) != keys:
            continue
        n = classes_in(lambda k, name=name: build(name, k, aux), state)
        if n is None:
            continue
        with torch.device("meta"):
            ref = build(name, n, aux).state_dict()
        if fit_problem(ref, state) is None:
            return TorchvisionMatch(name, n, aux)
    return None


def to_zoo(match: TorchvisionMatch, state: dict[str, Any], model: str, kwargs: dict[str, Any], source: str):
    """`state` renamed for the edgeseg zoo model `model` built with `kwargs`, or one line saying why not."""
    eq = ZOO_EQUIVALENTS.get(match.name)
    if eq is None:
        why = NO_ZOO_EQUIVALENT.get(match.name, "edgeseg's zoo has no model with its layers")
        raise EdgesegError(
            f"{source} is torchvision's {match.name}, which no edgeseg zoo model matches ({why}); "
            f"export it as it is: edgeseg export torchvision:{match.name} --weights {source}"
        )
    have = {"backbone": kwargs.get("backbone"), **{k: kwargs.get(k) for k in eq.options}}
    want = {"backbone": eq.backbone, **eq.options}
    if model != eq.model or have != want:
        got = ", ".join(f"{k} {v}" for k, v in have.items()) if model == eq.model else f"not {model}"
        raise EdgesegError(
            f"{source} is torchvision's {match.name}, which is edgeseg's {eq.command()} ({got})"
        )
    out: dict[str, Any] = {}
    for key, value in state.items():
        for old, new in eq.renames:
            if key.startswith(old):
                if new is not None:
                    out[new + key[len(old) :]] = value
                break
        else:
            out[key] = value
    return out


def implied_options(match: TorchvisionMatch, model: str) -> dict[str, Any]:
    """Backbone and options a torchvision checkpoint implies for the zoo model it equals (else none)."""
    eq = ZOO_EQUIVALENTS.get(match.name)
    if eq is None or eq.model != model:
        return {}
    return {"backbone": eq.backbone, **eq.options}
