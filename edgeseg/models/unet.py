"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) and a ResNet-encoder U-Net.

Classic: four down levels of two 3x3 conv (+BN +ReLU; 'same' padding, so no cropping of skips is
needed), widths 64-128-256-512 and a 1024 bottleneck; four up levels of 2x2 transposed conv, concat
with the skip, two 3x3 convs. Odd sizes: max pools use ceil mode and each upsampled map is cropped to
its skip, so the output is exactly the input size.

ResNet encoder: the trunk's stride 2/4/8/16/32 stages are the skips; each decoder level upsamples
bilinearly to the skip, concatenates, and runs two 3x3 convs; a last level returns to full size.

Compact (edgeseg's edge design, the shipped default model): a U-Net whose levels start at stride 2,
with dilated 3x3 convs (rates 2/4/8) for context at stride 16 instead of a fifth level, one 3x3 conv
per decoder level, and the scores upsampled bilinearly from stride 2. Only plain 3x3 convs (no
depthwise, no squeeze-excite), so ONNX Runtime's INT8 kernels and TensorRT speed all of it up; ~1 M
parameters; the stride-2 decoder keeps 1-3 px lane markings.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models.backbones import Backbone
from edgeseg.models.layers import conv_bn_relu, crop_to, resize_to
from edgeseg.models.registry import register_model

UNET_BACKBONES = (
    "classic",
    "compact",
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_lite0",
)


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


class CompactUNet(nn.Module):
    ENCODER = ((24, 1), (48, 1), (96, 2), (128, 3))  # (width, convs after the strided one) per level
    DILATIONS = ((), (), (1, 2), (2, 4, 8))  # of the convs after the strided one
    DECODER = (96, 48, 32)  # widths at strides 8, 4, 2

    def __init__(self, num_classes: int, width: float = 1.0):
        super().__init__()
        if not 0 < width <= 4:
            raise EdgesegError(f"unet compact width must be in (0, 4], not {width}")
        enc = [max(8, round(w * width)) for w, _ in self.ENCODER]
        dec = [max(8, round(w * width)) for w in self.DECODER]
        levels, cin = [], 3
        for cout, (_, n), rates in zip(enc, self.ENCODER, self.DILATIONS):
            rates = rates or (1,) * n
            levels.append(
                nn.Sequential(
                    conv_bn_relu(cin, cout, stride=2), *(conv_bn_relu(cout, cout, dilation=r) for r in rates)
                )
            )
            cin = cout
        self.encoder = nn.ModuleList(levels)
        blocks = []
        for skip_c, cout in zip(reversed(enc[:-1]), dec):
            blocks.append(conv_bn_relu(cin + skip_c, cout))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        y = x
        for level in self.encoder:
            y = level(y)
            skips.append(y)
        y = skips.pop()
        for block in self.decoder:
            skip = skips.pop()
            y = block(torch.cat([resize_to(y, skip), skip], dim=1))
        return resize_to(self.classifier(y), x)


@register_model(
    "unet",
    backbones=UNET_BACKBONES,
    default_output_stride=1,
    paper="Ronneberger, Fischer & Brox, U-Net, MICCAI 2015",
    option_backbones={"width": ("compact",)},
)
def unet(num_classes: int, backbone: str = "classic", width: float = 1.0) -> nn.Module:
    """U-Net: four-level encoder-decoder with concatenation skips (classic, compact or ResNet encoder)."""
    if backbone == "compact":
        return CompactUNet(num_classes, width)
    if width != 1.0:
        raise EdgesegError("the width option applies to `unet --backbone compact` only")
    if backbone == "classic":
        return ClassicUNet(num_classes)
    return ResNetUNet(num_classes, backbone)
