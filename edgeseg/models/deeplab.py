"""DeepLabV3 (Chen et al. 2017) and DeepLabV3+ (Chen et al., ECCV 2018).

ASPP: a 1x1 branch, three 3x3 atrous branches (rates 6/12/18 at output stride 16, doubled at 8) and
image pooling, each to 256 + BN + ReLU; concatenated and fused by 1x1 to 256 + BN + ReLU + dropout.
Image pooling is AdaptiveAvgPool2d(1), which exports as GlobalAveragePool, and is broadcast back with
a bilinear resize to the feature size (export-friendly for any input size).

DeepLabV3 head (as torchvision's DeepLabHead): ASPP, 3x3 conv 256 + BN + ReLU, 1x1 classifier.
DeepLabV3+ decoder: the stride-4 low-level features projected to 48 channels (1x1 + BN + ReLU),
concatenated with the 4x-upsampled ASPP output, two 3x3 conv 256 + BN + ReLU, 1x1 classifier, then
bilinear upsampling to the input. The image-pooling branch has BatchNorm, so train with batch >= 2.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import conv_bn_relu, resize_to
from edgeseg.models.registry import register_model

DEEPLAB_BACKBONES = (
    "resnet50",
    "resnet18",
    "resnet101",
    "mobilenet_v3_large",
    "efficientnet_lite0",
    "xception65",
)
ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class ASPPPooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, resized back."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = conv_bn_relu(cin, cout, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:  # BatchNorm over one 1x1 value per channel is undefined
            raise EdgesegError("DeepLab's image-pooling branch needs a batch size >= 2 in training")
        return resize_to(self.proj(self.pool(x)), x)


class ASPP(nn.Module):
    def __init__(self, cin: int, rates: tuple[int, ...], cout: int = 256, dropout: float = 0.5):
        super().__init__()
        branches: list[nn.Module] = [conv_bn_relu(cin, cout, k=1)]
        branches += [conv_bn_relu(cin, cout, k=3, dilation=r) for r in rates]
        branches.append(ASPPPooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(conv_bn_relu(cout * len(branches), cout, k=1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DeepLab(nn.Module):
    """DeepLabV3 (`decoder=False`) or DeepLabV3+ (`decoder=True`) on any registered trunk."""

    LOW_LEVEL_STRIDE_INDEX = 1  # stage ending at stride 4
    LOW_LEVEL_CHANNELS = 48

    def __init__(self, num_classes: int, backbone: str, output_stride: int, decoder: bool):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=output_stride)
        self.aspp = ASPP(self.backbone.channels[-1], ASPP_RATES[output_stride])
        self.decoder = decoder
        if decoder:
            low_c = self.backbone.channels[self.LOW_LEVEL_STRIDE_INDEX]
            self.low_proj = conv_bn_relu(low_c, self.LOW_LEVEL_CHANNELS, k=1)
            self.fuse = nn.Sequential(
                conv_bn_relu(256 + self.LOW_LEVEL_CHANNELS, 256), conv_bn_relu(256, 256)
            )
        else:
            self.fuse = conv_bn_relu(256, 256)
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        y = self.aspp(feats[-1])
        if self.decoder:
            low = self.low_proj(feats[self.LOW_LEVEL_STRIDE_INDEX])
            y = torch.cat([resize_to(y, low), low], dim=1)
        return resize_to(self.classifier(self.fuse(y)), x)


@register_model(
    "deeplabv3plus",
    backbones=DEEPLAB_BACKBONES,
    output_strides=(16, 8),
    default_output_stride=16,
    paper="Chen et al., Encoder-Decoder with Atrous Separable Convolution, ECCV 2018",
)
def deeplabv3plus(num_classes: int, backbone: str = "resnet50", output_stride: int = 16) -> DeepLab:
    """DeepLabV3+: ASPP + stride-4 decoder."""
    return DeepLab(num_classes, backbone, output_stride, decoder=True)


@register_model(
    "deeplabv3",
    backbones=DEEPLAB_BACKBONES,
    output_strides=(16, 8),
    default_output_stride=16,
    paper="Chen et al., Rethinking Atrous Convolution for Semantic Image Segmentation, arXiv 2017",
)
def deeplabv3(num_classes: int, backbone: str = "resnet50", output_stride: int = 16) -> DeepLab:
    """DeepLabV3: ASPP head, bilinear upsampling from the output stride."""
    return DeepLab(num_classes, backbone, output_stride, decoder=False)
