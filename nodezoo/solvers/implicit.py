"""Implicit Runge–Kutta methods (torchdiffeq's ``implicit_euler`` ... ``trbdf2``) for stiff ODEs.

``ImplicitRungeKutta`` has the ``step`` interface of ``rk.RungeKutta``, so the fixed-step loop
of ``rk.integrate`` runs it (grids, ``perturb``, callbacks, events), and ``gradients`` replays
it for checkpointed gradients. Each step solves for the stage increments ``Z_i = Y_i - y``::

    Z_i = h * sum_j a_ij f(t + c_j h, y + Z_j)

by simplified Newton iterations (``newton``). A first stage with a zero row of ``A``
(trapezoid, trbdf2) is explicit: it is ``f0``, and only the other stages are unknowns. The
solution needs no further evaluation of f: ``y1 = y + d·Z + h (b_0 - d·a_0) f0`` with
``d = b A^{-1}`` over the implicit stages.

Gradients (backprop, and the checkpoint mode's replay) go through the converged solution, not
through the iterations: ``Z`` is found without a graph, then one Newton step with the exact
block Jacobian ``I - h [a_ij J(Y_j)]`` is recorded by autograd. Its value is Z to within the
Newton tolerance, and by the implicit function theorem its derivative with respect to y and
the parameters is exactly dZ/d(y, theta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import SolverConfigError
from .newton import IterationMatrix, NewtonCounts, NewtonFailed, jacobian


@dataclass(frozen=True)
class ImplicitTableau:
    """An implicit Butcher tableau: ``a`` (s x s, any structure), ``b``, ``c``, its order."""

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    fsal: bool = False  # read by the checkpoint replay; implicit steps are never FSAL

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def explicit_first(self) -> bool:
        return all(v == 0.0 for v in self.a[0])


_S2, _S3, _S6, _S15 = math.sqrt(2), math.sqrt(3), math.sqrt(6), math.sqrt(15)
_G_SDIRK = (2 - _S2) / 2
_G_TRBDF = 1 - _S2 / 2
_B_TRBDF = _S2 / 4


def _tableau(name, order, a, b=None, c=None):
    s = len(a)
    a = tuple(tuple(row) + (0.0,) * (s - len(row)) for row in a)
    return ImplicitTableau(
        name, order, a, tuple(b if b is not None else a[-1]), tuple(c or (sum(r) for r in a))
    )


IMPLICIT_METHODS: dict[str, ImplicitTableau] = {
    t.name: t
    for t in (
        _tableau("implicit_euler", 1, [[1.0]]),
        _tableau("implicit_midpoint", 2, [[0.5]], b=[1.0]),
        _tableau("trapezoid", 2, [[0.0, 0.0], [0.5, 0.5]]),
        _tableau(
            "gl4",
            4,
            [[1 / 4, 1 / 4 - _S3 / 6], [1 / 4 + _S3 / 6, 1 / 4]],
            b=[1 / 2, 1 / 2],
        ),
        _tableau(
            "gl6",
            6,
            [
                [5 / 36, 2 / 9 - _S15 / 15, 5 / 36 - _S15 / 30],
                [5 / 36 + _S15 / 24, 2 / 9, 5 / 36 - _S15 / 24],
                [5 / 36 + _S15 / 30, 2 / 9 + _S15 / 15, 5 / 36],
            ],
            b=[5 / 18, 4 / 9, 5 / 18],
        ),
        _tableau("radauIIA3", 3, [[5 / 12, -1 / 12], [3 / 4, 1 / 4]]),
        _tableau(
            "radauIIA5",
            5,
            [
                [11 / 45 - 7 * _S6 / 360, 37 / 225 - 169 * _S6 / 1800, -2 / 225 + _S6 / 75],
                [37 / 225 + 169 * _S6 / 1800, 11 / 45 + 7 * _S6 / 360, -2 / 225 - _S6 / 75],
                [4 / 9 - _S6 / 36, 4 / 9 + _S6 / 36, 1 / 9],
            ],
        ),
        _tableau("sdirk2", 2, [[_G_SDIRK], [1 - _G_SDIRK, _G_SDIRK]]),
        _tableau("trbdf2", 2, [[0.0], [_G_TRBDF, _G_TRBDF], [_B_TRBDF, _B_TRBDF, _G_TRBDF]]),
    )
}


class ImplicitRungeKutta:
    """One implicit method on one dtype/device; one instance per solve (it keeps the
    Jacobian and LU factors between steps, and the Newton counts).

    ``max_iters``: Newton iterations per attempt (torchdiffeq's option). ``rtol``/``atol``
    scale the Newton increments; iterations stop when the estimated remaining error
    ``theta/(1-theta) * ||dZ||`` is below ``newton_tol`` in that scale.
    """

    adaptive = False

    def __init__(
        self,
        tableau: ImplicitTableau,
        dtype: torch.dtype,
        device: torch.device,
        *,
        rtol=1e-7,
        atol=1e-9,
        max_iters: int = 100,
        newton_tol: float = 1e-2,
        refresh_rate: float = 0.3,
    ):
        if int(max_iters) < 1:
            raise SolverConfigError(f"max_iters must be at least 1, got {max_iters}.")
        self.tableau = tableau
        self.dtype, self.device = dtype, device
        eps = torch.finfo(dtype).eps
        # Newton cannot resolve increments below roundoff: floor the relative scale.
        self.rtol = _as_float_or_tensor(rtol, lambda r: max(r, 100 * eps))
        self.atol = atol
        self.max_iters = int(max_iters)
        self.newton_tol = float(newton_tol)
        self.refresh_rate = float(refresh_rate)
        tab = tableau
        as_t = lambda v: torch.tensor(v, dtype=torch.float64)
        A = as_t(tab.a)
        first = 1 if tab.explicit_first else 0
        self.first = first
        self.idx = list(range(first, tab.stages))
        A_imp = A[first:, first:]
        b_imp = as_t(tab.b[first:])
        d = torch.linalg.solve(A_imp.t(), b_imp)  # d = b A^{-1}
        to = dict(dtype=dtype, device=device)
        self.A = A_imp.to(**to)
        self.d = d.to(**to)
        self.c = tab.c[first:]
        if first:
            a0 = as_t([row[0] for row in tab.a[1:]])
            self.a0 = a0.to(**to)
            self.b0_eff = float(tab.b[0] - d @ a0)
        self.counts = NewtonCounts()
        self.matrix = IterationMatrix(self.A, self.counts)
        self.eta = 1.0
        self.stale = True
        self.busy = False

    def claim(self) -> ImplicitRungeKutta:
        self.busy = True
        return self

    # -- the stage equations ------------------------------------------------------------
    def _stage_values(self, f, t, h, y, Z, ends_on_jump):
        """F (m x n): f at every implicit stage."""
        rows = []
        for ci, zi in zip(self.c, Z, strict=True):
            toward = t if ends_on_jump and ci == 1.0 else None
            rows.append(f(t + h if toward is not None else t + ci * h, y + zi, toward))
        return torch.stack(rows)

    def _residual(self, f, t, h, y, f0, Z, ends_on_jump):
        G = Z - h * (self.A @ self._stage_values(f, t, h, y, Z, ends_on_jump))
        if self.first:
            G = G - h * torch.outer(self.a0, f0)
        return G

    def _scale(self, y):
        """atol + rtol |y|, but never below roundoff in the state's largest entry (where
        Newton's increments stagnate)."""
        abs_y = y.abs()
        floor = 100 * torch.finfo(y.dtype).eps * float(abs_y.max()) + torch.finfo(y.dtype).tiny
        return (abs_y * self.rtol + self.atol).clamp_min(floor)

    def _iterate(self, f, t, h, y, f0, Z, ends_on_jump):
        """Simplified Newton from Z; returns (Z, converged, worst contraction rate)."""
        scale = self._scale(y)
        previous = None
        theta_max = 0.0
        eta = max(self.eta, 1e-3) ** 0.8
        for _ in range(self.max_iters):
            G = self._residual(f, t, h, y, f0, Z, ends_on_jump)
            dZ = self.matrix.solve(h, -G)
            self.counts.newton_iterations += 1
            Z = Z + dZ
            size = float((dZ / scale).pow(2).mean().sqrt())
            if not math.isfinite(size):
                return Z, False, math.inf
            if previous is not None:
                theta = size / previous if previous > 0 else 0.0
                theta_max = max(theta_max, theta)
                if theta >= 1.0 and size > self.newton_tol:
                    return Z, False, theta
                eta = theta / (1.0 - theta) if theta < 1.0 else 1.0
            previous = size
            if eta * size <= self.newton_tol or size <= 1e-3 * self.newton_tol:
                self.eta = eta
                return Z, True, theta_max
        return Z, False, theta_max

    def solve_stages(self, f, t, h, y, f0, ends_on_jump=False):
        """The converged stage increments Z (m x n) without a graph, or NewtonFailed."""
        with torch.no_grad():
            y, f0 = y.detach(), f0.detach()
            guess = torch.stack([ci * h * f0 for ci in self.c])
            for attempt in range(2):
                if self.stale or self.matrix.J is None or (attempt and not self.matrix.J_fresh):
                    try:
                        self.matrix.update_jacobian(f, t, y)
                    except torch.linalg.LinAlgError:
                        break
                    self.stale = False
                try:
                    Z, converged, theta = self._iterate(f, t, h, y, f0, guess, ends_on_jump)
                except torch.linalg.LinAlgError:  # a singular iteration matrix
                    converged, theta = False, math.inf
                self.matrix.J_fresh = False
                if converged:
                    self.stale = theta > self.refresh_rate
                    return Z
                self.counts.newton_failures += 1
                self.eta = 1.0
        raise NewtonFailed(
            f"{self.tableau.name}: Newton's iterations did not converge at t={t:.6g} with step "
            f"size {h:.3g}, even with a fresh Jacobian ({self.max_iters} iterations allowed). Use "
            "a smaller step_size, raise options['max_iters'], or check the vector field for "
            "NaN/discontinuities.",
            t=t,
            step_size=h,
        )

    def _differentiable(self, f, t, h, y, f0, Z, ends_on_jump):
        """One Newton step from the converged Z with the exact Jacobian, recorded by autograd:
        its derivative is dZ/d(y, params) by the implicit function theorem."""
        with torch.no_grad():
            Js = [
                jacobian(f, t + ci * h, y.detach() + zi, t if ends_on_jump and ci == 1.0 else None)
                for ci, zi in zip(self.c, Z, strict=True)
            ]
            self.counts.jacobian_evaluations += len(Js)
            m, n = Z.shape
            blocks = [[(-h * self.A[i, j]) * Js[j] for j in range(m)] for i in range(m)]
            M = torch.cat([torch.cat(row, dim=1) for row in blocks], dim=0)
            M.diagonal().add_(1.0)
            self.counts.lu_decompositions += 1
        G = self._residual(f, t, h, y, f0, Z, ends_on_jump)
        return Z - torch.linalg.solve(M, G.reshape(-1, 1)).view(m, n)

    def step(self, f, t, h, y, f0, grad, last_stage=None, ends_on_jump=False):
        Z = self.solve_stages(f, t, h, y, f0, ends_on_jump)
        if grad and (y.requires_grad or f0.requires_grad):
            Z = self._differentiable(f, t, h, y, f0, Z, ends_on_jump)
        y1 = y + self.d @ Z
        if self.first:
            y1 = y1 + (h * self.b0_eff) * f0
        return y1, None


def _as_float_or_tensor(value, fn):
    if isinstance(value, torch.Tensor):
        return value.clamp_min(fn(0.0))
    return fn(float(value))
