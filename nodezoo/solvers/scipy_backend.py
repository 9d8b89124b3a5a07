"""``scipy_solver``: scipy's ``solve_ivp`` (``options={"solver": "LSODA"}`` by default, or
RK45, RK23, DOP853, Radau, BDF) behind ``odeint``, as in torchdiffeq.

scipy runs in float64 NumPy on the CPU and records no autograd graph: gradients come from
``odeint_adjoint`` (the backward solve uses scipy too), not from backpropagation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import SolverConfigError, SolverError

SOLVERS = ("LSODA", "RK45", "RK23", "DOP853", "Radau", "BDF")


class ScipySolver:
    adaptive = True

    def __init__(
        self,
        solver: str = "LSODA",
        min_step: float | None = None,
        max_step: float | None = None,
        first_step: float | None = None,
    ):
        if solver not in SOLVERS:
            raise SolverConfigError(
                f"options['solver']={solver!r} is not one of scipy's {', '.join(SOLVERS)}."
            )
        try:
            import scipy.integrate  # noqa: F401
        except ImportError as exc:
            raise SolverConfigError(
                "method='scipy_solver' needs scipy: pip install scipy."
            ) from exc
        self.solver = solver
        self.kwargs = {}
        if min_step is not None:
            if solver != "LSODA":
                raise SolverConfigError(f"min_step applies only to scipy's LSODA, not {solver}.")
            self.kwargs["min_step"] = float(min_step)
        if max_step is not None and math.isfinite(max_step):
            self.kwargs["max_step"] = float(max_step)
        if first_step is not None:
            self.kwargs["first_step"] = float(first_step)

    def solve_all(self, f, y0: torch.Tensor, times, *, rtol, atol) -> list[torch.Tensor]:
        """The states at ``times`` (scipy reports no step counts: only NFE are recorded)."""
        from scipy.integrate import solve_ivp

        dtype, device = y0.dtype, y0.device

        def fun(t, y):
            with torch.no_grad():
                out = f(float(t), torch.as_tensor(y, dtype=dtype, device=device))
            return out.detach().cpu().double().numpy()

        def tol(v):
            return v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v

        y_np = y0.detach().cpu().double().numpy()
        sol = solve_ivp(
            fun, (times[0], times[-1]), y_np, method=self.solver, t_eval=list(times),
            rtol=tol(rtol), atol=tol(atol), **self.kwargs,
        )  # fmt: skip
        if sol.status != 0:
            raise SolverError(
                f"scipy's {self.solver} failed after t={float(sol.t[-1]):.6g} (the last output "
                f"time it reached): "
                f"{str(sol.message).rstrip('.')}. Try another options['solver'] (Radau or BDF "
                "for stiff problems), loosen rtol/atol, or check the vector field for a "
                "blow-up.",
                t=float(sol.t[-1]),
            )
        ys = torch.as_tensor(np.ascontiguousarray(sol.y.T), dtype=dtype, device=device)
        return [y0, *ys[1:]]
