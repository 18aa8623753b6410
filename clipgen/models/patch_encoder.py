"""An encoder whose every code is a function of its own f×f pixel patch and nothing else.

A convolutional encoder's receptive field spans far beyond its patch, so a plain background
patch gets one of many codes depending on where the object is: codes that carry no picture of
their own but that the condition transformer must still predict, one nat per token of noise on
shapes-zh (BENCHMARKS.md, "tokenizer"). Here the image is cut into f×f patches (pixel unshuffle)
and each goes through the same small MLP (1×1 convolutions), so equal patches always get equal
codes and a token means what its pixels show. The decoder keeps its full receptive field, which
is what lets it draw an outline from several neighbouring codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clipgen.models.blocks import swish


class _PointwiseResidual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Conv2d(width, width, 1)
        self.fc2 = nn.Conv2d(width, width, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(swish(self.fc1(swish(h))))


class PatchEncoder(nn.Module):
    def __init__(self, in_channels: int, factor: int, width: int, depth: int, z_channels: int):
        super().__init__()
        self.factor = factor
        self.conv_in = nn.Conv2d(in_channels * factor * factor, width, 1)
        self.blocks = nn.Sequential(*(_PointwiseResidual(width) for _ in range(depth)))
        self.conv_out = nn.Conv2d(width, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(F.pixel_unshuffle(x, self.factor))
        return self.conv_out(swish(self.blocks(h)))
