"""Vector fields ``f(t, x)`` for ODE blocks: the paper's conv field, an MLP field, and the
zero-channel augmentation (Augmented Neural ODEs) that widens an ODE state."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "elu": nn.ELU, "relu": nn.ReLU, "softplus": nn.Softplus}


def group_norm(channels: int) -> nn.GroupNorm:
    """The paper's ``GroupNorm(min(32, C), C)``; ``gcd(32, C)`` groups give the same layer for
    every width that works there, and still a valid one for widths like 64 + 5 augmented."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


class ConcatConv2d(nn.Module):
    """A conv that sees time: ``t`` is appended as one constant input channel, so the field can
    depend on ``t`` without a separate time embedding (torchdiffeq's ``odenet_mnist``).

    The weights are those of ``Conv2d(in_ch + 1, out_ch)`` with the time channel first, but the
    time channel is never built: the conv is linear, so its share is ``t`` times the conv of an
    all-ones image (zero-padded like the input) with the time slice of the weight, a
    ``(1, out_ch, H, W)`` map added to the conv of ``x`` over the other ``in_ch`` channels. This
    saves concatenating a copy of ``x`` on every call, and oneDNN's kernels work in blocks of 16
    channels, so a 64-channel state no longer pays for 80 padded input channels in the big conv
    (about 20% of a 65-channel conv's time; ``benchmarks/results/``).
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_ch + 1, out_ch, kernel_size, stride=stride, padding=padding)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        weight = conv.weight
        out = F.conv2d(x, weight[:, 1:], None, conv.stride, conv.padding)
        ones = x.new_ones((1, 1, *x.shape[2:]))
        time_map = F.conv2d(ones, weight[:, :1], None, conv.stride, conv.padding)
        if isinstance(t, torch.Tensor) and t.dim() == 1:  # one time per sample (solve_independent)
            t = t.view(-1, 1, 1, 1)
        return out + (time_map * t + conv.bias[:, None, None])


class ConvODEField(nn.Module):
    """The paper's image ODE function: GN-ReLU-ConcatConv-GN-ReLU-ConcatConv-GN.

    The state has ``channels + augment_channels`` channels: the extra ones are the zeros that
    :class:`AugmentChannels` appends in front of the ODE block, giving the flow room to avoid
    crossing trajectories (Dupont et al. 2019).
    """

    def __init__(self, channels: int, augment_channels: int = 0):
        super().__init__()
        if channels < 1 or augment_channels < 0:
            raise ValueError(
                f"ConvODEField needs channels >= 1 and augment_channels >= 0, "
                f"got {channels} and {augment_channels}."
            )
        width = channels + augment_channels
        self.norm1 = group_norm(width)
        self.conv1 = ConcatConv2d(width, width, 3, 1, 1)
        self.norm2 = group_norm(width)
        self.conv2 = ConcatConv2d(width, width, 3, 1, 1)
        self.norm3 = group_norm(width)
        self.act = nn.ReLU()

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(t, self.act(self.norm1(x)))
        out = self.conv2(t, self.act(self.norm2(out)))
        return self.norm3(out)


class AugmentChannels(nn.Module):
    """Appends ``channels`` zero channels (dim 1) to the input: the whole augmentation
    mechanism of Augmented Neural ODEs. The layers after the ODE block see all channels."""

    def __init__(self, channels: int):
        super().__init__()
        if channels < 0:
            raise ValueError(f"augment channels must be >= 0, got {channels}.")
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels == 0:
            return x
        zeros = x.new_zeros((x.shape[0], self.channels, *x.shape[2:]))
        return torch.cat([x, zeros], dim=1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class MLPField(nn.Module):
    """An MLP vector field ``dim -> hidden (x layers) -> dim``.

    ``layers`` counts hidden layers (torchdiffeq's latent-ODE field 4-20-20-4 is ``layers=2``).
    With ``time_dependent`` the input is ``[x, t]``; otherwise ``t`` is ignored (autonomous).
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        layers: int = 2,
        activation: str = "tanh",
        time_dependent: bool = False,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {', '.join(ACTIVATIONS)}.")
        if dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                f"MLPField needs dim, hidden and layers >= 1, got {dim}, {hidden}, {layers}."
            )
        self.time_dependent = time_dependent
        sizes = [dim + int(time_dependent)] + [hidden] * layers
        modules: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(sizes):
            modules += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
        modules.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*modules)

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        if self.time_dependent:
            if isinstance(t, torch.Tensor) and t.dim() == 1 and x.dim() > 1:
                t = t.view(-1, *[1] * (x.dim() - 1))  # one time per sample (solve_independent)
            tt = torch.ones_like(x[..., :1]) * t
            x = torch.cat([x, tt], dim=-1)
        return self.net(x)
