"""Terminal events: solve until ``event_fn(t, y)`` reaches zero, with a differentiable event time.

The step loop finds the event (``rk.EventSearch``: sign change after a step, bisection on the
step's interpolant). Here live the pieces around it: several event outputs combined into one
(the first of them to reach zero ends the solve, as in torchdiffeq) and the gradient of the
event time by the implicit function theorem: with g(t*, y(t*)) = 0,

    dt*/dtheta = -(dg/dy . dy/dtheta) / (dg/dt + dg/dy . f(t*, y*)),

which ``with_event_gradient`` attaches to the event time and the state there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .errors import SolverConfigError
from .rk import FlatField


def combined_event_fn(
    event_fn: Callable, field: FlatField, t0: float, y0: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``g(t, y_flat)``: the smallest event output, each signed to start positive; an event
    output exactly zero at the start keeps sign 0 (and ends the solve at once)."""
    with torch.no_grad():
        first = event_fn(field.time(t0), field.unflatten(y0))
    if not isinstance(first, torch.Tensor):
        raise SolverConfigError(
            f"event_fn must return a tensor (one or more event values), got {type(first).__name__}."
        )
    signs = torch.sign(first.detach())

    def g(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.min(event_fn(t, field.unflatten(y)) * signs)

    return g


def with_event_gradient(
    field: FlatField, g: Callable, event_t: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t*, y(t*)) carrying the total derivative through the event time.

    ``state`` is y at the event time held fixed (its graph gives dy/dtheta). With
    D = dg/dt + dg/dy . f at the event (no graph), t* - (g(t*, state) - g*) / D has the value
    t* and, by the implicit function theorem, the gradient of t*, including through tensors
    that only ``event_fn`` uses; y(t*) gains f (t* - t*.detach()), its first-order dependence
    on the event time. Where D = 0 (g stationary along the solution at the event), the event
    time gets no gradient.
    """
    time = float(event_t)
    y_star = state.detach()
    with torch.no_grad():
        f = field(time, y_star)
    with torch.enable_grad():
        t_ = field.time(time).requires_grad_(True)
        y_ = y_star.clone().requires_grad_(True)
        dg_dt, dg_dy = torch.autograd.grad(g(t_, y_), (t_, y_), allow_unused=True)
    dg_dy = torch.zeros_like(y_star) if dg_dy is None else dg_dy
    slope = torch.dot(dg_dy, f) + (0.0 if dg_dt is None else dg_dt.to(f.dtype))
    if float(slope) == 0.0:  # g does not change along the solution: t* has no derivative
        return event_t, state
    value = g(field.time(time), state)
    shift = (value - value.detach()) / slope.detach()
    event_t = event_t - shift.to(event_t.dtype)
    state = state + f * (event_t - event_t.detach()).to(state.dtype)
    return event_t, state
