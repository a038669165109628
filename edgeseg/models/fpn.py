"""Semantic FPN (Kirillov et al., Panoptic Feature Pyramid Networks, CVPR 2019; simplified head).

1x1 laterals bring strides 4..32 to 256 channels; the top-down path upsamples by nearest 2x (to the
lateral's exact size, so odd inputs work) and adds; a 3x3 conv smooths each level. Each level is then
bilinearly upsampled to stride 4 and the levels are summed; a 3x3 conv + BN + ReLU and a 1x1 classifier
score the stride-4 map, which is upsampled to the input.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import conv_bn_relu, resize_to
from edgeseg.models.registry import register_model

FPN_BACKBONES = ("resnet50", "resnet18", "resnet34", "resnet101", "mobilenet_v3_large", "efficientnet_lite0")


class SemanticFPN(nn.Module):
    LEVELS = (1, 2, 3, 4)  # stage indices for strides 4, 8, 16, 32

    def __init__(self, num_classes: int, backbone: str, channels: int = 256, head_channels: int = 128):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=32)
        self.lateral = nn.ModuleList(nn.Conv2d(self.backbone.channels[i], channels, 1) for i in self.LEVELS)
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in self.LEVELS)
        self.head = conv_bn_relu(channels, head_channels)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        laterals = [lat(feats[i]) for lat, i in zip(self.lateral, self.LEVELS)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse to fine
            laterals[i - 1] = laterals[i - 1] + resize_to(laterals[i], laterals[i - 1], mode="nearest")
        levels = [sm(lat) for sm, lat in zip(self.smooth, laterals)]
        fused = levels[0]
        for level in levels[1:]:
            fused = fused + resize_to(level, levels[0])
        return resize_to(self.classifier(self.head(fused)), x)


@register_model(
    "fpn",
    backbones=FPN_BACKBONES,
    default_output_stride=4,
    paper="Kirillov et al., Panoptic Feature Pyramid Networks, CVPR 2019",
)
def fpn(num_classes: int, backbone: str = "resnet50") -> SemanticFPN:
    """Semantic FPN: top-down pyramid, all levels summed at stride 4."""
    return SemanticFPN(num_classes, backbone)
