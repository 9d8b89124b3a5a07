"""``Decay``: y' = -k y with k = 0.5 (float64), the field the adjoint/checkpoint pin tests share.

It counts its evaluations in ``calls``; ``unused=True`` adds a parameter the field never reads,
whose gradient must come out zero."""

from __future__ import annotations

import torch

F64 = dict(dtype=torch.float64)


class Decay(torch.nn.Module):
    def __init__(self, unused: bool = False):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(0.5, **F64))
        if unused:
            self.unused = torch.nn.Parameter(torch.ones(2, **F64))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return -self.k * y
