"""Adams multistep methods (torchdiffeq's ``explicit_adams`` and ``implicit_adams``).

``Adams`` has the ``step`` interface of ``rk.RungeKutta``, so the fixed-step loop of
``rk.integrate`` runs it (grids, ``perturb``, callbacks, events). It keeps the derivatives of
the previous steps: with fewer than three it takes a Runge–Kutta (3/8 rule) step, then an
Adams–Bashforth step over all it has (up to ``max_order - 1``); ``implicit_adams`` corrects
that prediction with Adams–Moulton by functional iteration (at most ``max_iters`` evaluations,
until the change is within rtol/atol; if it does not converge, the oldest stored derivative is
dropped, lowering the order, as in torchdiffeq). The weights integrate the polynomial through the
stored derivatives at their actual times, so uneven grids (output times between steps) keep
the method's order; torchdiffeq uses fixed equal-step weights.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch

from .errors import SolverConfigError
from .rk import RungeKutta, _combine
from .tableaus import RK4

MAX_ORDER = 12
MIN_ORDER = 4


@lru_cache(maxsize=256)
def _weights(nodes: tuple[float, ...]) -> tuple[float, ...]:
    """w_j = integral over s in [0, 1] of the Lagrange basis polynomial of node s_j (nodes
    are times in units of the step, relative to the step's start)."""
    out = []
    for j, sj in enumerate(nodes):
        basis = np.poly1d([1.0])
        for i, si in enumerate(nodes):
            if i != j:
                basis *= np.poly1d([1.0, -si]) / (sj - si)
        antiderivative = basis.integ()
        out.append(float(antiderivative(1.0) - antiderivative(0.0)))
    return tuple(out)


def _key(values) -> tuple[float, ...]:
    return tuple(round(v, 10) for v in values)


class Adams:
    """Adams–Bashforth(–Moulton) with a growing history; one instance per solve."""

    adaptive = False

    def __init__(
        self,
        dtype: torch.dtype,
        device: torch.device,
        *,
        implicit: bool,
        rtol=1e-7,
        atol=1e-9,
        max_iters: int = 4,
        max_order: int = MAX_ORDER,
    ):
        if not 1 <= int(max_order) <= MAX_ORDER:
            raise SolverConfigError(
                f"max_order must be between 1 and {MAX_ORDER}, got {max_order}."
            )
        if int(max_order) < MIN_ORDER:
            warnings.warn(
                f"max_order={max_order} is below {MIN_ORDER}, so the method reduces to rk4; "
                f"give max_order >= {MIN_ORDER} for Adams steps.",
                stacklevel=3,
            )
        if int(max_iters) < 1:
            raise SolverConfigError(f"max_iters must be at least 1, got {max_iters}.")
        self.dtype, self.device = dtype, device
        self.implicit = implicit
        self.rtol, self.atol = rtol, atol
        self.max_iters = int(max_iters)
        self.max_history = int(max_order) - 1
        self.starter = RungeKutta(RK4, dtype, device)
        self.history: list[tuple[float, torch.Tensor]] = []  # (t, f), newest first
        self._weight_tensors: dict[tuple[float, ...], torch.Tensor] = {}
        self.busy = False

    def claim(self) -> Adams:
        self.history = []
        self.busy = True
        return self

    def step(self, f, t, h, y, f0, grad, last_stage=None, ends_on_jump=False):
        if not self.history or self.history[0][0] != t:
            self.history.insert(0, (t, f0))
            del self.history[self.max_history :]
        if len(self.history) < MIN_ORDER - 1:
            return self.starter.step(f, t, h, y, f0, grad, ends_on_jump=ends_on_jump)
        nodes = _key((tj - t) / h for tj, _ in self.history)
        F = torch.stack([fj for _, fj in self.history]).t()  # (n, history), rows contiguous
        y1 = _combine(y, F, self._tensor(_weights(nodes)), h)
        if not self.implicit:
            return y1, None
        weights = _weights((1.0, *nodes))
        known = torch.addmv(y, F, self._tensor(weights[1:]), alpha=h)
        toward = t if ends_on_jump else None
        converged = False
        for _ in range(self.max_iters):
            f1 = f(t + h, y1, toward=toward)
            y_new = torch.add(known, f1, alpha=h * weights[0])
            with torch.no_grad():
                scale = torch.maximum(y1.abs(), y_new.abs()) * self.rtol + self.atol
                converged = bool(((y_new - y1).abs() / scale).max() < 1)
            y1 = y_new
            if converged:
                break
        if not converged:  # as torchdiffeq: one order lower from here on
            del self.history[-1:]
            warnings.warn(
                f"implicit_adams: the corrector did not converge in {self.max_iters} iterations "
                f"at t={t:.6g}; use a smaller step_size or raise options['max_iters'].",
                stacklevel=2,
            )
        return y1, None

    def _tensor(self, weights: tuple[float, ...]) -> torch.Tensor:
        w = self._weight_tensors.get(weights)
        if w is None:
            w = torch.tensor(weights, dtype=self.dtype, device=self.device)
            if len(self._weight_tensors) < 256:
                self._weight_tensors[weights] = w
        return w
