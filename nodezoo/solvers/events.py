"""Terminal events: solve until ``event_fn(t, y)`` reaches zero, with a differentiable event time.

The step loop finds the event (``rk.EventSearch``: sign change after a step, bisection on the
step's interpolant). Here live the pieces around it: several event outputs combined into one
(the first of them to reach zero ends the solve, as in torchdiffeq) and the gradient of the
event time by the implicit function theorem: with g(t*, y(t*)) = 0,

    dt*/dtheta = -(dg/dy . dy/dtheta) / (dg/dt + dg/dy . f(t*, y*)),

which ``EventTime`` folds into the gradient of the state at the event.
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


class EventTime(torch.autograd.Function):
    """(t*, y(t*)) with the implicit-function gradient of t*.

    Input ``state`` is y at the event time held fixed (its graph gives dy/dtheta); the outputs
    are the event time and the state, both carrying the total derivative through t*.
    """

    @staticmethod
    def forward(ctx, field: FlatField, g: Callable, event_t: torch.Tensor, state: torch.Tensor):
        ctx.field, ctx.g = field, g
        ctx.save_for_backward(event_t, state)
        return event_t.detach().clone(), state.detach().clone()

    @staticmethod
    def backward(ctx, grad_t, grad_state):
        event_t, state = ctx.saved_tensors
        field: FlatField = ctx.field
        time = float(event_t)
        with torch.no_grad():
            f = field(time, state.detach())
        with torch.enable_grad():
            t_ = field.time(time).requires_grad_(True)
            y_ = state.detach().requires_grad_(True)
            value = ctx.g(t_, y_)
            dg_dt, dg_dy = torch.autograd.grad(value, (t_, y_), allow_unused=True)
        dg_dy = torch.zeros_like(y_) if dg_dy is None else dg_dy
        dg_dt = torch.zeros((), dtype=f.dtype) if dg_dt is None else dg_dt
        if grad_t is None:
            grad_t = torch.zeros((), dtype=f.dtype, device=f.device)
        if grad_state is None:
            grad_state = torch.zeros_like(state)
        dg_total = dg_dt.to(f.dtype) + torch.dot(dg_dy, f)
        # upstream gradient on t*, including y(t*)'s own dependence on t* (dy/dt* = f)
        upstream = grad_t.to(f.dtype) + torch.dot(grad_state, f)
        return None, None, None, grad_state - dg_dy * (upstream / dg_total)
