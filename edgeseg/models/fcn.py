"""Fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015) and the small FCN-8 variant.

FCN-32s/16s/8s differ only in how many skips are fused, so one class covers them, driven by the
list of skip strides. With VGG16 the classifier is "convolutionalised": fc6 = 7x7 conv to 4096,
fc7 = 1x1 conv to 4096 (both ReLU + dropout), then a 1x1 score layer. Skip score layers (1x1 on
pool4 / pool3) start at zero so training starts from the coarser net; every upsampling is a learnable
transposed conv initialised to bilinear; fusion is an element-wise sum after cropping.

One deliberate difference from the Caffe release: Caffe pads conv1_1 by 100 and runs fc6 unpadded so
that its crop offsets stay positive. Here fc6 is 'same'-padded (padding 3) and every feature map is
ceil(H/stride), so the bilinear kernels align at the top-left and a bottom/right crop is exact.
The parameter count is unchanged (134M for VGG16 with 21 classes), the compute is much lower.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeseg.errors import EdgesegError
from edgeseg.models.backbones import STRIDES, Backbone
from edgeseg.models.layers import BilinearUp, conv_bn_relu, crop_to
from edgeseg.models.registry import register_model

FCN_BACKBONES = ("vgg16", "resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "efficientnet_lite0")
LONG2015 = "Long, Shelhamer & Darrell, Fully Convolutional Networks for Semantic Segmentation, CVPR 2015"


class FCN(nn.Module):
    """FCN with skips at the given strides (() -> 32s, (16,) -> 16s, (16, 8) -> 8s)."""

    def __init__(self, num_classes: int, backbone: str, skips: tuple[int, ...]):
        super().__init__()
        self.backbone = Backbone(backbone, output_stride=32)
        self.skips = skips
        c32 = self.backbone.channels[-1]
        if backbone == "vgg16":
            self.head = nn.Sequential(
                nn.Conv2d(c32, 4096, 7, padding=3),  # fc6
                nn.ReLU(inplace=True),
                nn.Dropout(),
                nn.Conv2d(4096, 4096, 1),  # fc7
                nn.ReLU(inplace=True),
                nn.Dropout(),
            )
            c_head = 4096
        else:  # ResNet / MobileNet trunks end in their own feature layer: score it directly
            self.head = nn.Identity()
            c_head = c32
        self.score_fr = nn.Conv2d(c_head, num_classes, 1)
        self.score_skip = nn.ModuleList()
        self.up_skip = nn.ModuleList()
        for s in skips:
            score = nn.Conv2d(self.backbone.channels[STRIDES.index(s)], num_classes, 1)
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
            self.score_skip.append(score)
            self.up_skip.append(BilinearUp(num_classes, 2))
        final = skips[-1] if skips else 32
        self.up_final = BilinearUp(num_classes, final)

    def torchvision_extra(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """VGG16's fc6/fc7 Linear weights reshaped into the conv layers (the paper's convolutionalisation)."""
        if not isinstance(self.head, nn.Sequential) or "classifier.0.weight" not in state:
            return {}
        fc6, fc7 = self.head[0], self.head[3]
        return {
            "head.0.weight": state["classifier.0.weight"].reshape(fc6.weight.shape),
            "head.0.bias": state["classifier.0.bias"],
            "head.3.weight": state["classifier.3.weight"].reshape(fc7.weight.shape),
            "head.3.bias": state["classifier.3.bias"],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        y = self.score_fr(self.head(feats[-1]))
        for s, score, up in zip(self.skips, self.score_skip, self.up_skip):
            skip = feats[STRIDES.index(s)]
            y = up(y, skip) + score(skip)
        return self.up_final(y, x)


@register_model("fcn32s", backbones=FCN_BACKBONES, default_output_stride=32, paper=LONG2015)
def fcn32s(num_classes: int, backbone: str = "vgg16") -> FCN:
    """FCN-32s: score the stride-32 map, one 32x learnable bilinear upsampling."""
    return FCN(num_classes, backbone, ())


@register_model("fcn16s", backbones=FCN_BACKBONES, default_output_stride=16, paper=LONG2015)
def fcn16s(num_classes: int, backbone: str = "vgg16") -> FCN:
    """FCN-16s: FCN-32s plus a zero-initialised pool4 skip, 16x upsampling."""
    return FCN(num_classes, backbone, (16,))


@register_model("fcn8s", backbones=FCN_BACKBONES, default_output_stride=8, paper=LONG2015)
def fcn8s(num_classes: int, backbone: str = "vgg16") -> FCN:
    """FCN-8s: pool4 and pool3 skips (zero-initialised), 8x upsampling."""
    return FCN(num_classes, backbone, (16, 8))


class FCN8sLite(nn.Module):
    """The small FCN-8 of the design notes: an AlexNet-width trunk, concat fusion at stride 8.

    Five conv/BN/ReLU/max-pool stages (96 | 256 | 384-384-256 | 512-512 | num_classes), so stride 32
    already holds class scores. At stride 8 it concatenates pool3, the 2x-upsampled stage-4 output
    and the 4x-upsampled scores, then transposed convs 4x and 2x back to full resolution and a 7x7
    classifier. The fusion upsamplers are bilinear-initialised depthwise transposed convs; the decoder
    ones change width, so they start from the default (Kaiming) init.
    At full width it is ~10M parameters but ~420 GFLOPs at 512x1024 (wide 3x3 convs at strides 2-8);
    `width` scales the trunk channels (0.5: 3.5M params, 152 GFLOPs; the decoder stays full width).
    """

    WIDTHS = ((96,), (256,), (384, 384, 256), (512, 512))
    DECODER = (64, 32)

    def __init__(self, num_classes: int, width: float = 1.0):
        super().__init__()
        if not 0 < width <= 4:
            raise EdgesegError(f"fcn8s_lite width must be in (0, 4], not {width}")
        widths_all = [[max(8, round(w * width)) for w in stage] for stage in self.WIDTHS]
        stages, cin = [], 3
        for widths in widths_all:
            layers: list[nn.Module] = []
            for w in widths:
                layers.append(conv_bn_relu(cin, w))
                cin = w
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        stages.append(nn.Sequential(conv_bn_relu(cin, num_classes), nn.MaxPool2d(2, 2, ceil_mode=True)))
        self.stages = nn.ModuleList(stages)
        c3, c4 = widths_all[2][-1], widths_all[3][-1]
        self.up4_feat = BilinearUp(c4, 2, depthwise=True)
        self.up_scores = BilinearUp(num_classes, 4, depthwise=True)
        d1, d2 = self.DECODER
        self.up_a = nn.Sequential(
            nn.ConvTranspose2d(c3 + c4 + num_classes, d1, 8, stride=4, padding=2, bias=False),
            nn.BatchNorm2d(d1),
            nn.ReLU(inplace=True),
        )
        self.up_b = nn.Sequential(
            nn.ConvTranspose2d(d1, d2, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(d2),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(d2, num_classes, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        y = x
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        pool3, stage4, scores = feats[2], feats[3], feats[4]
        fused = torch.cat([pool3, self.up4_feat(stage4, pool3), self.up_scores(scores, pool3)], dim=1)
        y = self.up_b(self.up_a(fused))
        return self.classifier(crop_to(y, x))


@register_model(
    "fcn8s_lite",
    default_output_stride=8,
    paper="edgeseg design notes (FCN-8 concat variant, after Long et al. 2015)",
    cite="edgeseg design",
)
def fcn8s_lite(num_classes: int, width: float = 1.0) -> FCN8sLite:
    """Small FCN-8 with concatenation fusion, for edge devices."""
    return FCN8sLite(num_classes, width=width)
