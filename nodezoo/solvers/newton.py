"""Newton's method for implicit stage equations: Jacobians, reused LU factors, counts.

Implicit methods solve ``G(Z) = 0`` for their stage increments ``Z`` (``s x n``) by simplified
Newton iterations: the iteration matrix ``M = I - h (A ⊗ J)`` uses one Jacobian ``J = df/dy``
for every stage and is LU-factorised once, then reused across iterations and steps. ``J`` is
recomputed when convergence slows (a contraction rate above ``refresh_rate``) or Newton fails;
``M`` is refactorised when ``h`` or ``J`` changes.

``J`` comes from autograd: one evaluation of ``f`` and one batched vector-Jacobian product
(``is_grads_batched``, a vmap over the rows of the identity), so the state may be a whole batch
of problems. A field that autograd cannot see through (the adjoint's augmented system, which
detaches its outputs) gets forward differences instead; simplified Newton needs only an
approximate Jacobian.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import NewtonFailed

__all__ = ["IterationMatrix", "NewtonCounts", "NewtonFailed", "jacobian"]


@dataclass
class NewtonCounts:
    """What the implicit solves cost besides function evaluations (copied into SolveStats)."""

    newton_iterations: int = 0
    jacobian_evaluations: int = 0
    lu_decompositions: int = 0
    newton_failures: int = 0


def jacobian(f, t: float, y: torch.Tensor, toward: float | None = None) -> torch.Tensor:
    """``df/dy`` at (t, y) as a dense ``n x n`` matrix (no graph kept)."""
    n = y.shape[0]
    with torch.enable_grad():
        yv = y.detach().requires_grad_(True)
        out = f(t, yv, toward)
        if out.requires_grad:
            eye = torch.eye(n, dtype=y.dtype, device=y.device)
            try:
                (rows,) = torch.autograd.grad(out, yv, eye, is_grads_batched=True)
            except RuntimeError:  # an operation without a batching rule: one row at a time
                rows = torch.stack(
                    [torch.autograd.grad(out, yv, e, retain_graph=True)[0] for e in eye]
                )
            return rows.detach()  # rows[i] = d out_i / dy: the Jacobian itself
    with torch.no_grad():
        return _forward_differences(f, t, y.detach(), out.detach(), toward)


def _forward_differences(f, t, y, fy, toward):
    eps = torch.finfo(y.dtype).eps ** 0.5
    cols = []
    for j in range(y.shape[0]):
        dy = eps * max(1.0, float(y[j].abs()))
        yj = y.clone()
        yj[j] += dy
        cols.append((f(t, yj, toward) - fy) / dy)
    return torch.stack(cols, dim=1)


class IterationMatrix:
    """``M = I - h (A ⊗ J)`` for the implicit stages, LU-factorised, with its reuse policy."""

    def __init__(self, A: torch.Tensor, counts: NewtonCounts):
        self.A = A  # (m, m): the coefficients among the implicit stages
        self.counts = counts
        self.J: torch.Tensor | None = None
        self.lu = None
        self.h: float | None = None

    def update_jacobian(self, f, t: float, y: torch.Tensor, toward: float | None = None) -> None:
        self.J = jacobian(f, t, y, toward)
        self.counts.jacobian_evaluations += 1
        self.lu = None

    def solve(self, h: float, rhs: torch.Tensor) -> torch.Tensor:
        """``M^{-1} rhs`` for ``rhs`` of shape ``(m, n)``, factorising M if h or J changed."""
        # a step size changed by roundoff only (t_next - t on a grid) keeps the factors
        if self.lu is None or abs(h - self.h) > 1e-9 * abs(h):
            m, n = self.A.shape[0], self.J.shape[0]
            M = torch.kron(self.A * (-h), self.J)
            M.diagonal().add_(1.0)
            self.lu = torch.linalg.lu_factor(M)
            self.h = h
            self.counts.lu_decompositions += 1
            self._mn = (m, n)
        m, n = self._mn
        return torch.linalg.lu_solve(*self.lu, rhs.reshape(m * n, 1)).view(m, n)
