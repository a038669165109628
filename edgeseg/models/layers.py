"""Small building blocks shared by the segmentation heads.

Resizing is written so that it exports cleanly: bilinear with `align_corners=False` everywhere (ONNX
Resize `half_pixel`, which TensorRT and ONNX Runtime both implement), and the target size taken from a
tensor's shape so the ONNX graph carries Resize with `sizes` and works for any input size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ALIGN_CORNERS = False  # the one choice used by every model (ONNX Resize half_pixel)


def conv_bn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias, BN follows) + BN + ReLU with 'same' padding for odd kernels."""
    pad = dilation * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def resize_to(x: torch.Tensor, ref: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resize `x` to the spatial size of `ref` (exported as Resize with `sizes` from Shape)."""
    if mode == "nearest":
        return F.interpolate(x, size=ref.shape[-2:], mode="nearest")
    return F.interpolate(x, size=ref.shape[-2:], mode=mode, align_corners=ALIGN_CORNERS)


def crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Top-left crop of `x` to `ref`'s spatial size.

    Transposed-conv upsampling by f of a ceil(H/s)-sized map gives >= H pixels, and the bilinear
    kernel with padding ceil((f-1)/2) aligns output pixel 0 with input pixel 0, so the extra rows
    and columns are always at the bottom/right. Slicing (not F.pad) keeps this one traced path
    valid for every input size in ONNX.
    """
    return x[:, :, : ref.shape[2], : ref.shape[3]]


def bilinear_kernel(channels_in: int, channels_out: int, k: int, groups: int = 1) -> torch.Tensor:
    """ConvTranspose2d weight (Cin, Cout/groups, k, k) that performs bilinear upsampling per channel.

    The classic FCN initialisation: a separable tent filter centred in the kernel, placed on the
    diagonal (channel i -> channel i), zero elsewhere.
    """
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    weight = torch.zeros(channels_in, channels_out // groups, k, k)
    if groups == 1:
        for i in range(min(channels_in, channels_out)):
            weight[i, i] = filt
    else:
        weight[:] = filt
    return weight


class BilinearUp(nn.Module):
    """Learnable transposed-conv upsampling by an integer factor, initialised to bilinear (Long et al.).

    kernel = 2f - f % 2, stride = f, padding = ceil((f - 1) / 2): output = f x input exactly for
    even f; the result is cropped to the reference map so any input size works.
    `depthwise=True` upsamples each channel independently (cheap for wide maps).
    """

    def __init__(
        self, channels: int, factor: int, *, depthwise: bool = False, out_channels: int | None = None
    ):
        super().__init__()
        out_channels = channels if out_channels is None else out_channels
        k = 2 * factor - factor % 2
        groups = channels if depthwise else 1
        if depthwise and out_channels != channels:
            raise ValueError("depthwise upsampling keeps the channel count")
        self.factor = factor
        self.up = nn.ConvTranspose2d(
            channels,
            out_channels,
            k,
            stride=factor,
            padding=math.ceil((factor - 1) / 2),
            groups=groups,
            bias=False,
        )
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(channels, out_channels, k, groups))

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return crop_to(self.up(x), ref)
