"""The ODE-Net vector field as it was before the CPU work of issue 13 (commit 30531f0), kept
so benchmarks can time old against new in one process. Same parameter names and shapes as
``nodezoo.nn.ConvODEField``, so one state dict loads into both."""

from __future__ import annotations

import torch
from torch import nn

from nodezoo.nn.fields import group_norm


class LegacyConcatConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch + 1, out_ch, 3, 1, 1)

    def forward(self, t, x):
        tt = torch.ones_like(x[:, :1]) * t
        return self.conv(torch.cat([tt, x], dim=1))


class LegacyConvODEField(nn.Module):
    def __init__(self, channels: int, augment_channels: int = 0):
        super().__init__()
        width = channels + augment_channels
        self.norm1 = group_norm(width)
        self.conv1 = LegacyConcatConv2d(width, width)
        self.norm2 = group_norm(width)
        self.conv2 = LegacyConcatConv2d(width, width)
        self.norm3 = group_norm(width)
        self.act = nn.ReLU()

    def forward(self, t, x):
        out = self.conv1(t, self.act(self.norm1(x)))
        out = self.conv2(t, self.act(self.norm2(out)))
        return self.norm3(out)
