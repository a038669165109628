"""DeepLabV2 (Chen, Papandreou, Kokkinos, Murphy & Yuille, arXiv 1606.00915, TPAMI 2017).

A dilated trunk at output stride 8 (the last two stages atrous, as `Backbone(output_stride=8)` does for
every trunk) and ASPP-L: four parallel 3x3 atrous branches with rates 6, 12, 18 and 24, each ending in
its own classifier; the four class-score maps are summed (V3 concatenates and adds image pooling instead)
and bilinearly upsampled to the input size (the paper's test-time 8x interpolation, here to the exact
input size so odd sizes work).

Branch per trunk, as the paper's two models:
- ResNet (and every trunk but VGG): one 3x3 atrous conv straight to the classes, with bias, initialised
  N(0, 0.01) (the released DeepLab-v2 ResNet-101 `fc1_*` layers).
- VGG-16: fc6 = 3x3 atrous conv to 1024 + ReLU + dropout, fc7 = 1x1 to 1024 + ReLU + dropout, fc8 = 1x1
  to the classes (the paper's Fig. 4b).

Differences from the Caffe release: torchvision's ResNet strides in the 3x3 conv (v1.5; Caffe's ResNet-101
in the 1x1) and pools without ceil mode; VGG's 2x2 pools are dropped where the trunk no longer downsamples
(DeepLab replaced them with 3x3 stride-1 pools). Multi-scale input fusion (the paper's MSC) and the
fully connected CRF are not part of the net: the CRF is `edgeseg.crf` (post-processing, `eval --crf`).
Output stride 16 is an edgeseg option (not in the paper): the rates halve so each branch keeps its field
of view in input pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import resize_to
from edgeseg.models.registry import register_model

DEEPLABV2_BACKBONES = (
    "resnet101",
    "vgg16",
    "resnet50",
    "resnet18",
    "mobilenet_v3_large",
    "efficientnet_lite0",
    "xception65",
)
ASPP_L_RATES = {8: (6, 12, 18, 24), 16: (3, 6, 9, 12)}
VGG_FC = 1024  # fc6/fc7 width of DeepLab's VGG-16 branches
CHEN2016 = (
    "Chen et al., DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, "
    "and Fully Connected CRFs, arXiv 2016"
)


def _classifier(cin: int, num_classes: int, k: int = 1, rate: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, num_classes, k, padding=rate * (k - 1) // 2, dilation=rate)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def _vgg_branch(cin: int, num_classes: int, rate: int, dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, VGG_FC, 3, padding=rate, dilation=rate),  # fc6
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Conv2d(VGG_FC, VGG_FC, 1),  # fc7
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        _classifier(VGG_FC, num_classes),  # fc8
    )


class ASPPL(nn.Module):
    """Parallel atrous branches, each scoring the classes; their scores are summed."""

    def __init__(self, cin: int, num_classes: int, rates: tuple[int, ...], vgg: bool):
        super().__init__()
        self.branches = nn.ModuleList(
            _vgg_branch(cin, num_classes, r) if vgg else _classifier(cin, num_classes, 3, r) for r in rates
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class DeepLabV2(nn.Module):
    def __init__(self, num_classes: int, backbone: str, output_stride: int = 8):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=output_stride)
        self.aspp = ASPPL(
            self.backbone.channels[-1], num_classes, ASPP_L_RATES[output_stride], vgg=backbone == "vgg16"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(self.aspp(self.backbone(x)[-1]), x)


@register_model(
    "deeplabv2",
    backbones=DEEPLABV2_BACKBONES,
    output_strides=(8, 16),
    default_output_stride=8,
    paper=CHEN2016,
)
def deeplabv2(num_classes: int, backbone: str = "resnet101", output_stride: int = 8) -> DeepLabV2:
    """DeepLabV2: ASPP-L (rates 6/12/18/24, one classifier per branch, scores summed) at stride 8."""
    return DeepLabV2(num_classes, backbone, output_stride)
