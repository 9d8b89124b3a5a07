"""Reversible residual blocks (RevNet, Gomez et al. 2017) and a stack that stores no activations.

A block splits channels ``x = (x1, x2)`` and computes ``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)``.
Its input can be rebuilt from its output, so :class:`ReversibleSequence` keeps only the stack's
output for backward and, block by block from the top, rebuilds each input and recomputes
``F`` and ``G`` to get the gradients: activation memory is O(1) in depth instead of O(depth),
for about one extra forward pass of compute.

``F`` and ``G`` must be deterministic (no dropout) and keep no running statistics (use GroupNorm,
not BatchNorm), since they run twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() < 2 or x.shape[1] % 2:
        raise ValueError(
            f"A reversible block splits dim 1 into two halves; it needs an even size there, "
            f"got input shape {tuple(x.shape)}."
        )
    x1, x2 = x.chunk(2, dim=1)
    return x1, x2


class ReversibleBlock(nn.Module):
    """``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` over the two channel halves of ``x``.

    ``forward`` is ordinary autograd (stores activations); wrap blocks in
    :class:`ReversibleSequence` for the memory saving.
    """

    def __init__(self, f: nn.Module, g: nn.Module):
        super().__init__()
        self.f = f
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = _split(x)
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return torch.cat([y1, y2], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = _split(y)
        x2 = y2 - self.g(y1)
        x1 = y1 - self.f(x2)
        return torch.cat([x1, x2], dim=1)

    def backward_pass(
        self, y: torch.Tensor, dy: torch.Tensor, params: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor | None, ...]]:
        """From output ``y`` and its gradient ``dy``, rebuild the input ``x`` and return
        ``(x, dx, grads of params)``. ``params`` are this block's trainable parameters."""
        y1, y2 = _split(y)
        dy1, dy2 = _split(dy)
        with torch.enable_grad():
            y1_ = y1.detach().requires_grad_(True)
            gy1 = self.g(y1_)
            g_grads = torch.autograd.grad(gy1, (y1_, *params), dy2, allow_unused=True)
        dy1_total = dy1 + g_grads[0]
        x2 = y2 - gy1.detach()
        with torch.enable_grad():
            x2_ = x2.detach().requires_grad_(True)
            fx2 = self.f(x2_)
            f_grads = torch.autograd.grad(fx2, (x2_, *params), dy1_total, allow_unused=True)
        x1 = y1 - fx2.detach()
        dx = torch.cat([dy1_total, dy2 + f_grads[0]], dim=1)
        grads = tuple(_add(a, b) for a, b in zip(g_grads[1:], f_grads[1:]))
        return torch.cat([x1, x2], dim=1), dx, grads


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


class _ReversibleFunction(torch.autograd.Function):
    """Runs the blocks without a graph; backward rebuilds inputs from the saved output."""

    @staticmethod
    def forward(ctx, x, blocks, block_params, *flat_params):
        ctx.blocks = blocks
        ctx.block_params = block_params
        y = x
        for block in blocks:
            y = block(y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        grads: list[torch.Tensor | None] = []
        for block, params in zip(reversed(ctx.blocks), reversed(ctx.block_params)):
            y, dy, block_grads = block.backward_pass(y, dy, params)
            grads[:0] = block_grads
        return (dy, None, None, *grads)


class ReversibleSequence(nn.Module):
    """A stack of :class:`ReversibleBlock` that keeps only its output for backward.

    ``memory_efficient=False`` runs the same blocks with ordinary autograd: the reference the
    tests and benchmarks compare against.
    """

    def __init__(self, blocks: Sequence[ReversibleBlock], memory_efficient: bool = True):
        super().__init__()
        for i, block in enumerate(blocks):
            if not isinstance(block, ReversibleBlock):
                raise TypeError(
                    f"blocks[{i}] is a {type(block).__name__}; ReversibleSequence needs "
                    "ReversibleBlock(f, g) instances."
                )
        self.blocks = nn.ModuleList(blocks)
        self.memory_efficient = memory_efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.memory_efficient and torch.is_grad_enabled()):
            for block in self.blocks:
                x = block(x)
            return x
        block_params = [tuple(p for p in b.parameters() if p.requires_grad) for b in self.blocks]
        flat = [p for params in block_params for p in params]
        return _ReversibleFunction.apply(x, list(self.blocks), block_params, *flat)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.blocks):
            y = block.inverse(y)
        return y
