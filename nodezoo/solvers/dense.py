"""``odeint_dense``: solve once, then evaluate the solution anywhere in [t0, t1].

Each accepted step keeps its start, size, state and stages; evaluating at a time finds its
step and applies the method's dense output (the same interpolant ``odeint`` uses for output
times between steps).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import torch

from .config import SolverConfig
from .errors import SolverConfigError
from .inputs import check_state, time_dtype, tolerance
from .methods import get_method
from .options import parse_options
from .rk import FlatField, RungeKutta, integrate
from .step_control import rms_norm, user_norm


def odeint_dense(
    func: Callable,
    y0: torch.Tensor,
    t0: torch.Tensor,
    t1: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """torchdiffeq's ``odeint_dense``: returns ``dense_output_fn(t_eval)`` giving y at the
    times ``t_eval`` (shape ``(*t_eval.shape, *y0.shape)``), within [t0, t1]. Any adaptive
    Runge–Kutta method (torchdiffeq: dopri5 only); tensor states only, as in torchdiffeq."""
    if not isinstance(y0, torch.Tensor):
        raise SolverConfigError(
            "odeint_dense takes a tensor y0 (not a tuple), as torchdiffeq: concatenate the "
            "parts into one tensor."
        )
    parts, _ = check_state(y0)
    spec = get_method(method or "dopri5")
    if spec.family != "runge_kutta" or not spec.adaptive:
        raise SolverConfigError(
            f"odeint_dense needs an adaptive Runge–Kutta method (dopri5, tsit5 ...), "
            f"not {spec.name!r}."
        )
    SolverConfig(method=spec.name, rtol=rtol, atol=atol, gradient="backprop")  # checks them
    opts = parse_options(options, method=spec.name, adaptive=True)
    if "step_size" in opts.loop:
        raise SolverConfigError("odeint_dense takes adaptive steps: drop step_size.")
    start, end = float(t0), float(t1)
    if start == end:
        raise SolverConfigError(
            f"odeint_dense needs t0 != t1 (both are {start}): give an end time t1 before or "
            "after t0."
        )
    field = FlatField(func, [y0.shape], time_dtype=time_dtype(y0), device=y0.device, is_tuple=False)
    norm = rms_norm if opts.norm is None else user_norm(opts.norm, field.unflatten)
    rk = RungeKutta.get(spec.tableau, y0.dtype, y0.device)
    steps: list = []
    integrate(
        field, y0.reshape(-1), [start, end], rk, rtol=tolerance(rtol, parts, "rtol"),
        atol=tolerance(atol, parts, "atol"), norm=norm,
        controller=opts.controller, dense=steps, **opts.loop,
    )  # fmt: skip
    direction = 1.0 if end > start else -1.0
    starts = [direction * s[0] for s in steps]

    def dense_output_fn(t_eval: torch.Tensor) -> torch.Tensor:
        t_eval = torch.as_tensor(t_eval)
        values = [float(v) for v in t_eval.detach().reshape(-1).cpu().tolist()]
        out = []
        for v in values:
            if (v - start) * direction < 0 or (v - end) * direction > 0:
                raise SolverConfigError(
                    f"t_eval={v} lies outside [{start}, {end}], the interval this dense "
                    "solution covers: solve over an interval that contains it."
                )
            i = max(bisect.bisect_right(starts, direction * v) - 1, 0)
            t, h, y, K = steps[i]
            out.append(rk.interpolate(y, K, h, (v - t) / h))
        return torch.stack(out).view(*t_eval.shape, *y0.shape)

    return dense_output_fn
