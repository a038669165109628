"""DenseASPP (Yang et al., DenseASPP for Semantic Segmentation in Street Scenes, CVPR 2018).

On a dilated trunk at output stride 8, five atrous layers with rates 3, 6, 12, 18, 24; each layer
sees the concatenation of the trunk features and every earlier layer's output (dense connections),
and is BN-ReLU-1x1 (bottleneck) then BN-ReLU-3x3 dilated, as in the authors' DenseASPP121 (bottleneck
128, growth 64). The concatenation of everything is classified by a 1x1 conv and bilinearly upsampled.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import resize_to
from edgeseg.models.registry import register_model

DENSEASPP_BACKBONES = ("densenet121", "resnet18", "resnet50", "resnet101", "mobilenet_v3_large")
RATES = (3, 6, 12, 18, 24)


class DenseASPPLayer(nn.Sequential):
    def __init__(self, cin: int, bottleneck: int, growth: int, rate: int, dropout: float):
        super().__init__(
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, bottleneck, 1),
            nn.BatchNorm2d(bottleneck),
            nn.ReLU(inplace=True),
            nn.Conv2d(bottleneck, growth, 3, padding=rate, dilation=rate),
            nn.Dropout2d(dropout),
        )


class DenseASPP(nn.Module):
    def __init__(
        self,
        num_classes: int,
        backbone: str,
        output_stride: int = 8,
        bottleneck: int = 128,
        growth: int = 64,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=output_stride)
        c = self.backbone.channels[-1]
        layers = []
        for rate in RATES:
            layers.append(DenseASPPLayer(c, bottleneck, growth, rate, dropout))
            c += growth
        self.layers = nn.ModuleList(layers)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(c, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.backbone(x)[-1]
        for layer in self.layers:
            y = torch.cat([y, layer(y)], dim=1)
        return resize_to(self.classifier(y), x)


@register_model(
    "denseaspp",
    backbones=DENSEASPP_BACKBONES,
    output_strides=(8, 16),
    default_output_stride=8,
    paper="Yang et al., DenseASPP for Semantic Segmentation in Street Scenes, CVPR 2018",
)
def denseaspp(num_classes: int, backbone: str = "densenet121", output_stride: int = 8) -> DenseASPP:
    """DenseASPP: densely connected atrous layers (rates 3-24) on a dilated trunk."""
    return DenseASPP(num_classes, backbone, output_stride)
