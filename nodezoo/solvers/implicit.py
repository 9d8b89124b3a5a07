"""Implicit Runge–Kutta methods (torchdiffeq's ``implicit_euler`` ... ``trbdf2``) for stiff ODEs.

``ImplicitRungeKutta`` has the ``step`` interface of ``rk.RungeKutta``, so the fixed-step loop
of ``rk.integrate`` runs it (grids, ``perturb``, callbacks, events), and ``gradients`` replays
it for checkpointed gradients. Each step solves for the stage increments ``Z_i = Y_i - y``::

    Z_i = h * sum_j a_ij f(t + c_j h, y + Z_j)

by simplified Newton iterations (``newton``). A first stage with a zero row of ``A``
(trapezoid, trbdf2) is explicit: it is ``f0``, and only the other stages are unknowns. The
solution needs no further evaluation of f: ``y1 = y + d·Z + h (b_0 - d·a_0) f0`` with
``d = b A^{-1}`` over the implicit stages.

Adaptive tableaus (``kvaerno5``, ``radau5``) carry an error estimate and run in this
module's own step loop (``integrate_adaptive``): Gustafsson's predictive controller, the LU
factors kept while the step size changes little, and for ``radau5`` Hairer & Wanner's RADAU5
recipe (filtered error estimate, collocation dense output and Newton predictor). It honours
the explicit loop's stop times (``step_t``), jumps (``jump_t``: f, its Jacobian and the
predictor restart on the far side) and events (located on the dense output).

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

from .errors import MaxStepsExceeded, NonFiniteState, SolverConfigError, StepSizeUnderflow
from .newton import (
    IterationMatrix,
    NewtonCounts,
    NewtonFailed,
    from_blocks,
    jacobian,
    stage_matrix,
    to_blocks,
)
from .rk import AcceptedSteps, adaptive_stops
from .step_control import float_norm, initial_step_size


@dataclass(frozen=True)
class ImplicitTableau:
    """An implicit Butcher tableau: ``a`` (s x s, any structure), ``b``, ``c``, its order."""

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    b_error: tuple[float, ...] | None = None  # b - b_hat of an embedded method: adaptive
    error_order: int = 0  # the embedded method's order (step-size control)
    fsal: bool = False  # read by the checkpoint replay; implicit steps are never FSAL
    # weight of f(t, y) in the error estimate, for tableaus without an explicit first stage
    # (Radau IIA's embedded formula has one)
    b_error0: float = 0.0
    # gamma > 0: the raw estimate is filtered through (I - h gamma J)^-1, which keeps it
    # bounded for stiff components (Hairer & Wanner, Solving ODEs II, IV.8)
    error_filter: float = 0.0
    # dense output and Newton's starting guess from the collocation polynomial through the
    # stages (Radau IIA) instead of cubic Hermite and f0
    collocation: bool = False

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

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


def _tableau(name, order, a, b=None, b_hat=None, error_order=0, b_error=None, **extra):
    s = len(a)
    a = tuple(tuple(row) + (0.0,) * (s - len(row)) for row in a)
    b = tuple(b if b is not None else a[-1])
    if b_hat is not None:
        b_error = tuple(x - y for x, y in zip(b, b_hat, strict=True))
    c = tuple(sum(r) for r in a)
    return ImplicitTableau(name, order, a, b, c, b_error, error_order, **extra)


# Kvaerno (2004), "Singly diagonally implicit Runge-Kutta methods with an explicit first
# stage", BIT 44: the 7-stage ESDIRK 5(4), L-stable and stiffly accurate; the embedded method
# is the 6th stage (also stiffly accurate), so the error estimate is Y_7 - Y_6.
_GK = 0.26
_KV5 = [
    [0.0],
    [_GK, _GK],
    [0.13, 0.84033320996790809, _GK],
    [0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _GK],
    [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, _GK],
    [0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141,
     0.61943039072480676, _GK],
    [0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046,
     0.62993304899016403, 0.06962479448202728, _GK],
]  # fmt: skip


_RADAU5_A = [
    [11 / 45 - 7 * _S6 / 360, 37 / 225 - 169 * _S6 / 1800, -2 / 225 + _S6 / 75],
    [37 / 225 + 169 * _S6 / 1800, 11 / 45 + 7 * _S6 / 360, -2 / 225 - _S6 / 75],
    [4 / 9 - _S6 / 36, 4 / 9 + _S6 / 36, 1 / 9],
]


def _radau5_error():
    """Radau IIA 5's embedded estimate (Hairer & Wanner II, IV.8, eq. 8.19-8.20):
    ``err = (I - h g0 J)^-1 (g0 h f0 + e·Z)`` with ``g0`` the inverse of A^-1's real
    eigenvalue and ``e = g0 (-13 - 7 sqrt6, -13 + 7 sqrt6, -1) / 3`` on the stage increments
    Z. Returned as weights on the stage derivatives (``e·Z = h (A^T e)·F``), g0, g0."""
    g0 = 1 / (3 + 3 ** (2 / 3) - 3 ** (1 / 3))
    e = [g0 * (-13 - 7 * _S6) / 3, g0 * (-13 + 7 * _S6) / 3, -g0 / 3]
    b_error = tuple(sum(e[i] * _RADAU5_A[i][j] for i in range(3)) for j in range(3))
    return b_error, g0


_RADAU5_B_ERROR, _RADAU5_G0 = _radau5_error()

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
        _tableau("radauIIA5", 5, _RADAU5_A),
        _tableau("sdirk2", 2, [[_G_SDIRK], [1 - _G_SDIRK, _G_SDIRK]]),
        _tableau("trbdf2", 2, [[0.0], [_G_TRBDF, _G_TRBDF], [_B_TRBDF, _B_TRBDF, _G_TRBDF]]),
        _tableau("kvaerno5", 5, _KV5, b_hat=[*_KV5[5], 0.0], error_order=4),
        # radauIIA5 with its embedded error estimate: adaptive (Hairer & Wanner's RADAU5)
        _tableau(
            "radau5",
            5,
            _RADAU5_A,
            b_error=_RADAU5_B_ERROR,
            error_order=3,
            b_error0=_RADAU5_G0,
            error_filter=_RADAU5_G0,
            collocation=True,
        ),
    )
}


class ImplicitRungeKutta:
    """One implicit method on one dtype/device; one instance per solve (it keeps the
    Jacobian and LU factors between steps, and the Newton counts).

    Fully implicit tableaus (Gauss, Radau) solve all stages at once with ``I - h (A ⊗ J)``;
    diagonally implicit ones (sdirk2, trbdf2, kvaerno5) solve stage after stage, all with the
    one ``n x n`` matrix ``I - h gamma J``.

    ``max_iters``: Newton iterations per attempt (torchdiffeq's option; default 100 for fixed
    steps, 10 for adaptive ones, which shrink the step instead). ``rtol``/``atol`` scale the
    Newton increments; iterations stop when the estimated remaining error
    ``theta/(1-theta) * ||dZ||`` is below ``newton_tol`` in that scale (default 1e-2 for fixed
    steps; for adaptive ones Hairer & Wanner's ``max(10 eps/rtol, min(0.03, rtol**0.5))``, so
    the Newton error stays below the step's error as rtol tightens). The Jacobian is
    recomputed at the next step when the contraction rate exceeded ``refresh_rate``.
    ``block_size``: the state is a batch of independent problems of this many entries each
    (``newton``: block-diagonal Jacobian, batched LU).
    """

    def __init__(
        self,
        tableau: ImplicitTableau,
        dtype: torch.dtype,
        device: torch.device,
        *,
        rtol=1e-7,
        atol=1e-9,
        max_iters: int | None = None,
        newton_tol: float | None = None,
        refresh_rate: float = 0.1,
        block_size: int | None = None,
    ):
        if max_iters is None:
            max_iters = 10 if tableau.adaptive else 100
        if int(max_iters) < 1:
            raise SolverConfigError(f"max_iters must be at least 1, got {max_iters}.")
        if block_size is not None and (
            not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1
        ):
            raise SolverConfigError(f"block_size must be a positive integer, got {block_size}.")
        self.tableau = tableau
        self.adaptive = tableau.adaptive
        self.dtype, self.device = dtype, device
        eps = torch.finfo(dtype).eps
        # Newton cannot resolve increments below roundoff: floor the relative scale.
        self.rtol = _as_float_or_tensor(rtol, lambda r: max(r, 100 * eps))
        self.atol = atol
        self.max_iters = int(max_iters)
        if newton_tol is None:
            newton_tol = 1e-2
            if tableau.adaptive:
                r = float(rtol.min()) if isinstance(rtol, torch.Tensor) else float(rtol)
                newton_tol = max(10 * eps / max(r, eps), min(0.03, r**0.5))
        self.newton_tol = float(newton_tol)
        self.refresh_rate = float(refresh_rate)
        self.block_size = None if block_size is None else int(block_size)
        tab = tableau
        f64 = lambda v: torch.tensor(v, dtype=torch.float64)
        first = 1 if tab.explicit_first else 0
        self.first = first
        A = f64(tab.a)[first:, first:]
        A_inv = torch.linalg.inv(A)
        a0 = f64([row[0] for row in tab.a[first:]]) if first else torch.zeros(len(A))
        to = dict(dtype=dtype, device=device)
        self.A = A.to(**to)
        self.a0 = a0.to(**to)
        self.c = tab.c[first:]
        diag = A.diagonal()
        self.dirk = bool((A.triu(1) == 0).all() and (diag == diag[0]).all())
        self.gamma = float(diag[0])

        def combination(weights):
            """w such that sum_j weights_j F_j = (w·Z)/h + w0 f0 (F from Z through A^-1)."""
            w = f64(weights)
            d = A_inv.t() @ w[first:]
            w0 = float(w[0] - d @ a0) if first else 0.0
            return d.to(**to), w0

        self.d, self.b0 = combination(tab.b)
        self.counts = NewtonCounts()
        iteration_A = self.A[:1, :1] if self.dirk else self.A
        self.matrix = IterationMatrix(iteration_A, self.counts, self.block_size)
        self.filter = None
        if tab.adaptive:
            self.e, self.e0 = combination(tab.b_error)
            self.e0 += tab.b_error0
            if tab.c[-1] != 1.0 or tab.b != tab.a[-1]:
                raise SolverConfigError(
                    f"{tab.name}: adaptive steps need a stiffly accurate tableau (its dense "
                    "output uses f at the step's end)."
                )
            last = [0.0] * tab.stages
            last[-1] = 1.0
            self.f_last, self.f_last0 = combination(last)
            if tab.error_filter == self.gamma and self.dirk:
                self.filter = self.matrix  # already factorised for the stages
            elif tab.error_filter:
                g = f64([[tab.error_filter]]).to(**to)
                self.filter = IterationMatrix(g, self.counts, self.block_size, shares=self.matrix)
        if tab.collocation:
            # u(t + theta h) = y + sum_i l_i(theta) Z_i through (0, y) and (c_i, y + Z_i)
            c = f64(self.c)
            powers = torch.arange(1, len(self.c) + 1, dtype=torch.float64)
            self._vandermonde_inv = torch.linalg.inv(c[:, None] ** powers)
            self._powers = powers
        self.eta = 1.0
        self.stale = True
        self.busy = False
        # Give up on Newton early when its rate predicts failure (Hairer & Wanner IV.8): for
        # a fully implicit step that saves iterations; a DIRK step would lose its converged
        # earlier stages, and measured more rejections than iterations saved (kvaerno5).
        self.predict_failure = tableau.adaptive and not self.dirk

    def claim(self) -> ImplicitRungeKutta:
        self.busy = True
        return self

    # -- the stage equations ------------------------------------------------------------
    def _stage_time(self, t, h, ci, ends_on_jump):
        """(time, toward) of stage ``ci``. On a step that ends on a jump of f, the stages at
        the end, and those beyond it (kvaerno5's c = 1.23), see f at the end from inside the
        step: beyond the jump lies the other side of it. That perturbs the beyond-stage on
        this one step; its error estimate judges the step (kvaerno5 on a switched input:
        158 step attempts with jump_t, 256 without, where the stage crossed the jump)."""
        toward = t if ends_on_jump and ci >= 1.0 else None
        return (t + h if toward is not None else t + ci * h), toward

    def _f(self, f, t, h, y, ci, zi, ends_on_jump):
        ti, toward = self._stage_time(t, h, ci, ends_on_jump)
        return f(ti, y + zi, toward)

    def _residual(self, f, t, h, y, f0, Z, ends_on_jump):
        """G(Z) = Z - h A F(Z) - h a0 f0 over all implicit stages (m x n)."""
        F = torch.stack(
            [self._f(f, t, h, y, ci, zi, ends_on_jump) for ci, zi in zip(self.c, Z, strict=True)]
        )
        G = Z - h * (self.A @ F)
        if self.first:
            G = G - h * torch.outer(self.a0, f0)
        return G

    def _scale(self, y):
        """atol + rtol |y|, but never below roundoff in the state's largest entry (where
        Newton's increments stagnate)."""
        abs_y = y.abs()
        floor = 100 * torch.finfo(y.dtype).eps * float(abs_y.max()) + torch.finfo(y.dtype).tiny
        return (abs_y * self.rtol + self.atol).clamp_min(floor)

    def _newton(self, residual, Z, h, scale):
        """Simplified Newton on ``residual(Z) = 0`` from Z; returns (Z, converged, worst
        contraction rate)."""
        previous = None
        theta_max = 0.0
        eta = max(self.eta, 1e-3) ** 0.8
        for it in range(self.max_iters):
            dZ = self.matrix.solve(h, -residual(Z))
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
                left = self.max_iters - 1 - it
                if (
                    self.predict_failure
                    and theta < 1.0
                    and theta**left / (1.0 - theta) * size > self.newton_tol
                ):
                    return Z, False, theta
                eta = theta / (1.0 - theta) if theta < 1.0 else 1.0
            previous = size
            if eta * size <= self.newton_tol or size <= 1e-3 * self.newton_tol:
                self.eta = eta
                return Z, True, theta_max
        return Z, False, theta_max

    def _attempt(self, f, t, h, y, f0, ends_on_jump, guess):
        scale = self._scale(y)
        if not self.dirk:
            if guess is None:
                guess = torch.stack([ci * h * f0 for ci in self.c])
            return self._newton(
                lambda Z: self._residual(f, t, h, y, f0, Z, ends_on_jump), guess, h, scale
            )
        # stage after stage: Z_i = known_i + h gamma f(t_i, y + Z_i)
        hg = h * self.gamma
        Zs, Fs, theta_max = [], [], 0.0
        f_prev = f0
        for i, ci in enumerate(self.c):
            known = h * self.a0[i] * f0
            for j in range(i):
                known = known + (h * self.A[i, j]) * Fs[j]

            def residual(Zi, known=known, ci=ci):
                return Zi - known - hg * self._f(f, t, h, y, ci, Zi[0], ends_on_jump)

            Zi, converged, theta = self._newton(residual, (known + hg * f_prev)[None], h, scale)
            theta_max = max(theta_max, theta)
            if not converged:
                return None, False, theta_max
            Zs.append(Zi[0])
            Fs.append((Zi[0] - known) / hg)
            f_prev = Fs[-1]
        return torch.stack(Zs), True, theta_max

    def solve_stages(self, f, t, h, y, f0, ends_on_jump=False, guess=None):
        """The converged stage increments Z (m x n) without a graph, or NewtonFailed.
        ``guess``: Newton's starting Z (fully implicit tableaus; default ``c_i h f0``)."""
        with torch.no_grad():
            y, f0 = y.detach(), f0.detach()
            fresh = False
            for attempt in range(2):
                if self.stale or self.matrix.J is None or attempt:
                    # one ulp inside the step: f may jump at t (perturb, jump_t)
                    self.matrix.update_jacobian(f, t, y, toward=t + h)
                    self.stale, fresh = False, True
                singular = False
                try:
                    Z, converged, theta = self._attempt(f, t, h, y, f0, ends_on_jump, guess)
                except torch.linalg.LinAlgError:  # a singular iteration matrix
                    converged, theta, singular = False, math.inf, True
                if converged:
                    self.stale = theta > self.refresh_rate
                    return Z
                self.counts.newton_failures += 1
                self.eta = 1.0
                if not bool(torch.isfinite(f0).all()):  # no step size or Jacobian helps
                    raise NonFiniteState(
                        f"{self.tableau.name}: the vector field is NaN or infinite at the state "
                        f"at t={t:.6g}. Check the vector field and its inputs, lower the "
                        "learning rate, or use float64.",
                        t=t,
                        step_size=h,
                    )
                if fresh:  # a fresh Jacobian did not help: the step is too large
                    self.stale = True
                    break
        non_finite = theta == math.inf and not singular
        why = " (the iterates became NaN or infinite)" if non_finite else ""
        raise NewtonFailed(
            f"{self.tableau.name}: Newton's iterations did not converge at t={t:.6g} with step "
            f"size {h:.3g}, even with a fresh Jacobian ({self.max_iters} iterations allowed)"
            f"{why}. Use a smaller step_size, raise options['max_iters'], or check the vector "
            "field for NaN/discontinuities.",
            t=t,
            step_size=h,
            non_finite=non_finite,
        )

    def _differentiable(self, f, t, h, y, f0, Z, ends_on_jump):
        """One Newton step from the converged Z with the exact Jacobian, recorded by autograd:
        its derivative is dZ/d(y, params) by the implicit function theorem."""
        with torch.no_grad():
            Js = []
            for ci, zi in zip(self.c, Z, strict=True):
                ti, toward = self._stage_time(t, h, ci, ends_on_jump)
                Js.append(jacobian(f, ti, y.detach() + zi, toward, self.block_size))
            self.counts.jacobian_evaluations += len(Js)
            M = stage_matrix(self.A, h, torch.stack(Js))
            self.counts.lu_decompositions += 1
        G = self._residual(f, t, h, y, f0, Z, ends_on_jump)
        k = Js[0].shape[-1]
        return Z - from_blocks(torch.linalg.solve(M, to_blocks(G, k)), Z.shape[0], k)

    def _combine(self, w, w0, Z, h, f0):
        out = w @ Z
        return out + (h * w0) * f0 if w0 else out

    def step(self, f, t, h, y, f0, grad, last_stage=None, ends_on_jump=False, guess=None):
        """One step; returns (y1, K). K is ``None`` for fixed-step tableaus, and for adaptive
        ones ``[y1, f0, f1, error, *Z]``, what ``interpolate`` and the step control need."""
        Z = self.solve_stages(f, t, h, y, f0, ends_on_jump, guess)
        if grad and (y.requires_grad or f0.requires_grad):
            Z = self._differentiable(f, t, h, y, f0, Z, ends_on_jump)
        y1 = y + self._combine(self.d, self.b0, Z, h, f0)
        if not self.adaptive:
            return y1, None
        f1 = self._combine(self.f_last, self.f_last0, Z, 1.0, f0) / h
        with torch.no_grad():
            error = self._combine(self.e, self.e0, Z.detach(), h, f0.detach())
            if self.filter is not None:
                error = self._filtered(h, error)
        return y1, torch.cat([torch.stack([y1, f0, f1, error]), Z])

    def refined_error(self, f, t, h, y, K, after_jump=False):
        """Hairer & Wanner's second estimate after a rejection, f0 replaced by
        ``f(t, y + err)`` (on the step's side of a jump at t): the first one can be far too
        large for very stiff components."""
        with torch.no_grad():
            f_err = f(t, y.detach() + K[3], toward=t + h if after_jump else None)
            raw = self.e @ K[4:].detach() + (h * self.e0) * f_err
            return self._filtered(h, raw)

    def _filtered(self, h, raw):
        """``(I - h g0 J)^-1 raw``, or ``raw`` itself where that matrix is singular (a step
        size with h g0 = 1 / an eigenvalue of J: the stage matrix can still be regular)."""
        try:
            return self.filter.solve(h, raw[None])[0]
        except torch.linalg.LinAlgError:
            return raw

    def _lagrange(self, theta: float) -> torch.Tensor:
        """Weights of the stage increments in the collocation polynomial at ``theta``."""
        return (theta**self._powers @ self._vandermonde_inv).to(self.dtype)

    def predictor(self, h_prev: float, h: float) -> torch.Tensor:
        """``P`` with ``P @ Z_prev`` Newton's starting Z for a step of ``h`` after an accepted
        step of ``h_prev``: the previous collocation polynomial, extrapolated."""
        end = self._lagrange(1.0)
        return torch.stack([self._lagrange(1.0 + ci * h / h_prev) - end for ci in self.c]).to(
            self.device
        )

    def interpolate(self, y: torch.Tensor, K: torch.Tensor, h: float, theta: float):
        """The collocation polynomial (Radau: order 3 = stage order, continuous), or cubic
        Hermite between (y, f0) and (y1, f1): third order, which is what an L-stable DIRK's
        dense output can offer without more stages."""
        if self.tableau.collocation:
            return y + self._lagrange(theta).to(K.device) @ K[4:]
        y1, f0, f1 = K[0], K[1], K[2]
        th = theta
        h00, h10 = (1 + 2 * th) * (1 - th) ** 2, th * (1 - th) ** 2
        h01, h11 = th * th * (3 - 2 * th), th * th * (th - 1)
        return h00 * y + (h10 * h) * f0 + h01 * y1 + (h11 * h) * f1

    # -- adaptive steps --------------------------------------------------------------------
    def integrate_adaptive(
        self, f, y0, times, outputs, direction, *, rtol, atol, norm, first_step, max_steps,
        min_step, max_step, step_t, jump_t, controller, hooks, event, record, dense, counts,
        grad,
    ):  # fmt: skip
        """Adaptive steps through ``times`` (rk.integrate's contract: steps end on every
        ``step_t`` and ``jump_t``, f is evaluated on the far side of a jump, and an ``event``
        ends the solve at its root in the dense output). A step whose Newton iterations fail
        is retried 4x smaller; the step size is kept when the controller would change it by
        less than 20% upwards, so the LU factors are reused. Step sizes come from Gustafsson's
        predictive controller, its safety factor lowered when Newton needed many iterations
        (Hairer & Wanner IV.8)."""
        tab = self.tableau
        t0, t_end = float(times[0]), float(times[-1])
        stops, jumps = adaptive_stops(step_t, jump_t, t0, t_end, direction, event is not None)
        norm = float_norm(norm)
        f0 = f(t0, y0)
        if first_step is None:
            h = initial_step_size(f, t0, y0, f0, tab.error_order, rtol, atol, norm, direction)
        else:
            h = direction * abs(float(first_step))
        ctrl = controller.start_predictive(tab.error_order + 1)
        solves_per_step = len(self.c) if self.dirk else 1
        t, y, stop_i, steps, failures = t0, y0, 0, 0, 0
        accepted = AcceptedSteps(self, times, outputs, direction, record, dense, event)
        previous = None  # (h, Z) of the last accepted step: collocation predictor
        rejected = True  # the first step gets the refined error estimate as after a rejection
        after_jump = False
        step_hook = hooks.step if hooks is not None else None
        accept_hook = hooks.accept if hooks is not None else None
        reject_hook = hooks.reject if hooks is not None else None
        while not accepted.done:
            h = direction * min(max(abs(h), min_step), max_step)
            t_stop = stops[stop_i]
            hits_stop = (t + h - t_stop) * direction >= 0
            h_try = t_stop - t if hits_stop else h
            on_jump = hits_stop and t_stop in jumps
            if step_hook is not None:
                step_hook(t, y, h_try)
            steps += 1
            guess = None
            if tab.collocation and previous is not None:
                # the last step's collocation polynomial, extrapolated (Hairer & Wanner IV.8);
                # for kvaerno5, extrapolating its cubic Hermite output measured 1.5-5x more
                # Newton iterations than starting from the previous stage's derivative
                guess = self.predictor(previous[0], h_try) @ previous[1]
            iterations = self.counts.newton_iterations
            try:
                y1, K = self.step(f, t, h_try, y, f0, grad, ends_on_jump=on_jump, guess=guess)
            except NewtonFailed as failure:
                failures += 1
                counts["rejected"] += 1
                if failures > 10:
                    if failure.non_finite:
                        self._raise_non_finite(t, h_try, failure)
                    raise
                h = h_try * 0.25
                rejected = True
                self._check_progress(t, h, steps, max_steps, t0, t_end, failure)
                continue
            failures = 0
            iterations = (self.counts.newton_iterations - iterations) / solves_per_step
            safety = (2 * self.max_iters + 1) / (2 * self.max_iters + iterations)
            with torch.no_grad():
                yd, y1d = y.detach(), y1.detach()
                scale = torch.maximum(yd.abs(), y1d.abs()) * rtol + atol
                ratio = norm(K[3] / scale)
                if ratio > 1.0 and rejected and tab.b_error0:
                    ratio = norm(self.refined_error(f, t, h_try, y, K, after_jump) / scale)
            if ratio <= 1.0 or abs(h_try) <= min_step:
                counts["accepted"] += 1
                if accept_hook is not None:
                    accept_hook(t, y, h_try)
                t_new = t_stop if hits_stop else t + h_try
                if accepted.take(t, h_try, y, y1, K, t_new, after_jump, on_jump):
                    break
                t, y = t_new, y1
                if hits_stop:
                    stop_i += 1
                after_jump = on_jump
                rejected = False
                if on_jump:  # f, its Jacobian and the collocation predictor change sides
                    f0 = f(t, y, toward=t + direction)
                    previous, self.stale, rejected = None, True, True
                else:
                    f0, previous = K[2], (h_try, K[4:].detach())
                factor = ctrl.accept(ratio, h_try, safety)
                h = h_try if 1.0 <= factor <= 1.2 else h_try * factor
            else:
                counts["rejected"] += 1
                rejected = True
                if reject_hook is not None:
                    reject_hook(t, y, h_try)
                h = h_try * ctrl.reject(ratio, safety)
            self._check_progress(t, h, steps, max_steps, t0, t_end)
        return outputs

    def _raise_non_finite(self, t, h, failure):
        raise NonFiniteState(
            f"{self.tableau.name}: the vector field returned NaN or infinite values in every "
            f"try of the step from t={t:.6g}, down to step size {h:.3g}. The dynamics may blow "
            "up there: check the vector field and its inputs, lower the learning rate, use "
            "float64, or tighten the tolerances.",
            t=t,
            step_size=h,
        ) from failure

    def _check_progress(self, t, h, steps, max_steps, t0, t_end, failure=None):
        """MaxStepsExceeded or StepSizeUnderflow; a NonFiniteState instead of the latter when
        the step that shrank h failed on NaN or infinite values (``failure``)."""
        if steps >= max_steps:
            raise MaxStepsExceeded(
                f"{self.tableau.name}: reached max_steps={max_steps} at t={t:.6g} of "
                f"[{t0:.6g}, {t_end:.6g}] (step size {h:.3g}); raise max_steps "
                "(options['max_num_steps'] in odeint) or loosen rtol/atol.",
                t=t,
                step_size=h,
            )
        if abs(h) <= 4 * math.ulp(max(abs(t), 1.0)):
            if failure is not None and failure.non_finite:
                self._raise_non_finite(t, h, failure)
            raise StepSizeUnderflow(
                f"{self.tableau.name}: the step size underflowed to {h:.3g} at t={t:.6g}. "
                "Check the vector field for NaN or a singularity, or loosen rtol/atol.",
                t=t,
                step_size=h,
            )


def _as_float_or_tensor(value, fn):
    if isinstance(value, torch.Tensor):
        return value.clamp_min(fn(0.0))
    return fn(float(value))
