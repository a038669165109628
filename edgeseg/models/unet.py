"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) and a ResNet-encoder U-Net.

Classic: four down levels of two 3x3 conv (+BN +ReLU; 'same' padding, so no cropping of skips is
needed), widths 64-128-256-512 and a 1024 bottleneck; four up levels of 2x2 transposed conv, concat
with the skip, two 3x3 convs. Odd sizes: max pools use ceil mode and each upsampled map is cropped to
its skip, so the output is exactly the input size.

ResNet encoder: the trunk's stride 2/4/8/16/32 stages are the skips; each decoder level upsamples
bilinearly to the skip, concatenates, and runs two 3x3 convs; a last level returns to full size.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import conv_bn_relu, crop_to, resize_to
from edgeseg.models.registry import register_model

UNET_BACKBONES = ("classic", "resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "efficientnet_lite0")


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class ClassicUNet(nn.Module):
    def __init__(self, num_classes: int, base: int = 64, depth: int = 4):
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]  # 64 .. 1024
        self.inc = double_conv(3, widths[0])
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.down = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.dec = nn.ModuleList(double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(self.pool(skips[-1])))
        y = skips.pop()
        for up, dec in zip(self.up, self.dec):
            skip = skips.pop()
            y = dec(torch.cat([skip, crop_to(up(y), skip)], dim=1))
        return self.classifier(y)


class ResNetUNet(nn.Module):
    DECODER = (256, 128, 64, 32, 16)  # widths at strides 16, 8, 4, 2, 1

    def __init__(self, num_classes: int, backbone: str):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=32)
        ch = self.backbone.channels
        cin = ch[-1]
        blocks = []
        for i, width in enumerate(self.DECODER):
            skip_c = ch[-2 - i] if i < len(ch) - 1 else 0
            blocks.append(double_conv(cin + skip_c, width))
            cin = width
        self.dec = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        y = feats[-1]
        skips = feats[-2::-1]
        for i, block in enumerate(self.dec):
            if i < len(skips):
                y = block(torch.cat([resize_to(y, skips[i]), skips[i]], dim=1))
            else:
                y = block(resize_to(y, x))
        return self.classifier(y)


@register_model(
    "unet",
    backbones=UNET_BACKBONES,
    default_output_stride=1,
    paper="Ronneberger, Fischer & Brox, U-Net, MICCAI 2015",
)
def unet(num_classes: int, backbone: str = "classic") -> nn.Module:
    """U-Net: four-level encoder-decoder with concatenation skips (classic or ResNet encoder)."""
    if backbone == "classic":
        return ClassicUNet(num_classes)
    return ResNetUNet(num_classes, backbone)
