"""Backbones as data: which torchvision constructor, which modules form each stride stage, channels.

Every backbone is cut into five stages ending at strides 2, 4, 8, 16, 32; a head picks the stage
outputs it needs. Output stride 8/16 is obtained by one generic surgery (`_dilate_stage`) applied to
the stages past the target stride, for every family alike (ResNet basic/bottleneck blocks, MobileNetV3
inverted residuals, DenseNet blocks): strided ops become stride 1, the formerly strided 3x3 keeps the
previous rate, every later k>1 conv gets the new rate with matching padding (DeepLab's recipe).

The torchvision module tree is kept intact under `body` (classification head removed), so a
torchvision-format state_dict loads into `body` unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from edgeseg.errors import EdgesegError

STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone table.

    `stages` lists, per stride in STRIDES, the module paths run in order; "features[a:b]" expands to
    features.a .. features.(b-1). `drop` are classification-head modules removed from the trunk.
    `ceil_pools` switches plain k2/s2 pools to ceil mode so every stage is ceil(H/stride) (what the
    transposed-conv heads assume; Caffe's FCN VGG pooled this way too).
    """

    name: str
    builder: str  # "torchvision:<constructor>" or "edgeseg:<module>:<function>"
    stages: tuple[tuple[str, ...], ...]
    channels: tuple[int, ...]
    drop: tuple[str, ...] = ()
    ceil_pools: bool = False
    append: dict[str, str] = field(default_factory=dict)  # path -> parameter-free module added to trunk
    paper: str = ""


def _rn(name: str, wide: int) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        builder=f"torchvision:{name}",
        stages=(("conv1", "bn1", "relu"), ("maxpool", "layer1"), ("layer2",), ("layer3",), ("layer4",)),
        channels=(64, 64 * wide, 128 * wide, 256 * wide, 512 * wide),
        drop=("avgpool", "fc"),
        paper="He et al., Deep Residual Learning, CVPR 2016",
    )


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="vgg16",
            builder="torchvision:vgg16",
            stages=(
                ("features[0:5]",),
                ("features[5:10]",),
                ("features[10:17]",),
                ("features[17:24]",),
                ("features[24:31]",),
            ),
            channels=(64, 128, 256, 512, 512),
            drop=("avgpool", "classifier"),
            ceil_pools=True,
            paper="Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015",
        ),
        _rn("resnet18", 1),
        _rn("resnet34", 1),
        _rn("resnet50", 4),
        _rn("resnet101", 4),
        BackboneSpec(
            name="mobilenet_v3_large",
            builder="torchvision:mobilenet_v3_large",
            stages=(
                ("features[0:2]",),
                ("features[2:4]",),
                ("features[4:7]",),
                ("features[7:13]",),
                ("features[13:17]",),
            ),
            channels=(16, 24, 40, 112, 960),
            drop=("avgpool", "classifier"),
            paper="Howard et al., Searching for MobileNetV3, ICCV 2019",
        ),
        BackboneSpec(
            name="densenet121",
            builder="torchvision:densenet121",
            stages=(
                ("features.conv0", "features.norm0", "features.relu0"),
                ("features.pool0", "features.denseblock1"),
                ("features.transition1", "features.denseblock2"),
                ("features.transition2", "features.denseblock3"),
                ("features.transition3", "features.denseblock4", "features.norm5", "features.relu5"),
            ),
            channels=(64, 256, 512, 1024, 1024),
            drop=("classifier",),
            ceil_pools=True,
            append={"features.relu5": "relu"},
            paper="Huang et al., Densely Connected Convolutional Networks, CVPR 2017",
        ),
        BackboneSpec(
            name="efficientnet_lite0",
            builder="edgeseg:edgeseg.models.efficientnet_lite:efficientnet_lite0",
            stages=(("_conv_stem", "_bn0", "_act0", "_blocks[0:1]"),)
            + tuple((f"_blocks[{a}:{b}]",) for a, b in ((1, 3), (3, 5), (5, 11), (11, 16))),
            channels=(16, 24, 40, 112, 320),
            drop=("_conv_head", "_bn1", "_fc"),
            paper="Tan & Le, EfficientNet, ICML 2019 (Lite variant: ReLU6, no SE)",
        ),
        BackboneSpec(
            name="xception65",
            builder="edgeseg:edgeseg.models.xception:xception65",
            stages=(("stem",), ("block1",), ("block2",), ("block3", "middle"), ("exit",)),
            channels=(64, 128, 256, 728, 2048),
            paper="Chen et al., DeepLabV3+ (aligned Xception-65), ECCV 2018",
        ),
    )
}

_PARAM_FREE = {"relu": lambda: nn.ReLU(inplace=True)}
_SLICE = re.compile(r"^(?P<base>[\w.]+)\[(?P<a>\d+):(?P<b>\d+)\]$")


def get_backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        from edgeseg.models.registry import suggest

        raise EdgesegError(
            f"unknown backbone {name!r}{suggest(name, BACKBONES)}; valid: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name]


def _expand(path: str) -> list[str]:
    m = _SLICE.match(path)
    if not m:
        return [path]
    return [f"{m['base']}.{i}" for i in range(int(m["a"]), int(m["b"]))]


def _construct(builder: str) -> nn.Module:
    kind, _, target = builder.partition(":")
    if kind == "torchvision":
        import torchvision.models as tvm

        return getattr(tvm, target)(weights=None)  # random init: edgeseg never downloads
    module_name, _, fn = target.partition(":")
    import importlib

    return getattr(importlib.import_module(module_name), fn)()


def _delete(root: nn.Module, path: str) -> None:
    parent, _, leaf = path.rpartition(".")
    owner = root.get_submodule(parent) if parent else root
    delattr(owner, leaf)


def _add(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    (root.get_submodule(parent) if parent else root).add_module(leaf, module)


def _strided(m: nn.Module) -> bool:
    s = getattr(m, "stride", 1)
    s = s[0] if isinstance(s, tuple) else s
    return isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and s > 1


def _dilate_stage(stage: list[nn.Module], prev_rate: int, rate: int) -> None:
    """Remove this stage's downsampling and dilate its convolutions (DeepLab's atrous surgery).

    A conv up to and including the stage's first downsampling op still sees the previous resolution and
    keeps `prev_rate`; every later one gets `rate`. ResNet-like stages downsample first (the first
    block's 3x3), VGG's and Xception's last (pool4, the block's third separable conv), so VGG's conv4
    keeps rate 1 and only conv5 is dilated, as in DeepLab. Modules are visited in registration order,
    which is their execution order in every trunk of the table.
    """
    downsampled = False
    for top in stage:
        for m in list(top.modules()):
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0]
                was_strided = m.stride[0] > 1
                m.stride = (1, 1)
                if k > 1:
                    d = rate if downsampled and not was_strided else prev_rate
                    m.dilation = (d, d)
                    m.padding = (d * (k - 1) // 2, d * (k - 1) // 2)
                downsampled = downsampled or was_strided
            elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and _strided(m):
                downsampled = True
                # a k3/s2/p1 max pool at stride 1 keeps the size; k2/s2 pools just go away
                k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                m.stride = 1
                if k % 2 == 0:
                    m.kernel_size, m.padding = 1, 0


class Backbone(nn.Module):
    """A trunk (torchvision or edgeseg) cut into five stride stages; `forward` returns all five outputs."""

    def __init__(self, name: str, output_stride: int = 32):
        super().__init__()
        spec = get_backbone_spec(name)
        if output_stride not in (8, 16, 32):
            raise EdgesegError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        body = _construct(spec.builder)
        for path in spec.drop:
            _delete(body, path)
        for path, kind in spec.append.items():
            _add(body, path, _PARAM_FREE[kind]())
        if spec.ceil_pools:
            for m in body.modules():
                if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and m.kernel_size in (2, (2, 2)):
                    m.ceil_mode = True
        self.name = name
        self.body = body
        # Module paths, not module references: deepcopy/EMA/state_dict see each module once.
        self._stage_paths = [[p for entry in stage for p in _expand(entry)] for stage in spec.stages]
        self.channels = list(spec.channels)
        self.strides = []
        rate = 1
        for stride, paths in zip(STRIDES, self._stage_paths):
            if stride > output_stride:
                prev, rate = rate, rate * 2
                _dilate_stage([body.get_submodule(p) for p in paths], prev, rate)
            self.strides.append(min(stride, output_stride))
        self.output_stride = output_stride

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for paths in self._stage_paths:
            for p in paths:
                x = self.body.get_submodule(p)(x)
            feats.append(x)
        return feats
