"""Aligned Xception-65, the DeepLabV3+ trunk (Chen et al., ECCV 2018, Fig. 4; after Chollet, CVPR 2017).

Every max pool of Xception is a stride-2 separable conv (so atrous surgery applies to it), the middle
flow is 16 blocks, and each 3x3 depthwise conv is followed by BN + ReLU as the paper describes.
Entry flow 32-64 | 128 | 256 | 728, middle 16 x 728, exit 728-1024-1024 then 1536-1536-2048.
No ImageNet weights exist offline; it trains from scratch (or from a full state_dict of itself).
"""

from __future__ import annotations

import torch
from torch import nn


class SepConv(nn.Sequential):
    """Depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class XceptionBlock(nn.Module):
    """Three separable convs (the last one may stride) plus a residual: 1x1 conv, identity or none."""

    def __init__(self, cin: int, widths: tuple[int, int, int], stride: int = 1, skip: str = "conv"):
        super().__init__()
        convs, c = [], cin
        for i, w in enumerate(widths):
            convs.append(SepConv(c, w, stride if i == len(widths) - 1 else 1))
            c = w
        self.convs = nn.Sequential(*convs)
        self.skip_kind = skip
        if skip == "conv":
            self.skip = nn.Sequential(nn.Conv2d(cin, c, 1, stride=stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        if self.skip_kind == "conv":
            return y + self.skip(x)
        if self.skip_kind == "identity":
            return y + x
        return y


class AlignedXception(nn.Module):
    def __init__(self, middle_blocks: int = 16):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 64, 3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.block1 = XceptionBlock(64, (128, 128, 128), stride=2)
        self.block2 = XceptionBlock(128, (256, 256, 256), stride=2)
        self.block3 = XceptionBlock(256, (728, 728, 728), stride=2)
        self.middle = nn.Sequential(
            *(XceptionBlock(728, (728, 728, 728), skip="identity") for _ in range(middle_blocks))
        )
        self.exit = nn.Sequential(
            XceptionBlock(728, (728, 1024, 1024), stride=2),
            XceptionBlock(1024, (1536, 1536, 2048), skip="none"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit(self.middle(self.block3(self.block2(self.block1(self.stem(x))))))


def xception65() -> AlignedXception:
    return AlignedXception(middle_blocks=16)
