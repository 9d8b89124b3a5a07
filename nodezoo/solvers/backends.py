"""Other ODE backends behind the same ``SolverConfig`` (torchdiffeq, when installed)."""

from __future__ import annotations

import torch

from .config import SolverConfig
from .errors import SolverConfigError
from .options import inherited_adjoint_options, options_dict
from .stats import SolveStats
from .step_control import FirstStepMemory


class _CountingField(torch.nn.Module):
    """Wraps ``func`` for torchdiffeq and counts its evaluations: forward until the solve
    returns, backward (adjoint) after."""

    def __init__(self, func, stats: SolveStats):
        super().__init__()
        self.func = func
        self.stats = stats
        self.in_forward = True

    def forward(self, t, y):
        if self.in_forward:
            self.stats.nfe_forward += 1
        else:
            self.stats.nfe_backward += 1
        return self.func(t, y)


def solve_torchdiffeq(
    func, y0, t, config: SolverConfig, *, params, stats, options, adjoint_options
):
    """Run the same config through torchdiffeq, for cross-checks and for its users.

    The adjoint's options follow the native backend's rule: ``adjoint_options`` if given, else
    the forward options less ``norm`` and ``interp``; the config's seminorm unless they name a
    norm."""
    try:
        import torchdiffeq
    except ImportError as exc:
        raise SolverConfigError(
            "backend='torchdiffeq' needs torchdiffeq: pip install torchdiffeq "
            "(or use backend='native')."
        ) from exc
    if config.gradient == "checkpoint":
        raise SolverConfigError(
            "torchdiffeq has no checkpointed gradients; use gradient='backprop' or 'adjoint', "
            "or backend='native'."
        )
    opts = options_dict(options)
    for name, given in (("options", opts), ("adjoint_options", adjoint_options or {})):
        if isinstance(given.get("first_step"), FirstStepMemory):
            raise SolverConfigError(
                f"{name}['first_step'] is a FirstStepMemory, which nodezoo's own step loop "
                "updates; torchdiffeq takes a number: use backend='native' or give a number."
            )
    if config.step_size is not None:
        opts.setdefault("step_size", config.step_size)
    if config.first_step is not None:
        opts.setdefault("first_step", config.first_step)
    if config.adaptive:
        opts.setdefault("max_num_steps", config.max_steps)
    field = _CountingField(func, stats)
    kwargs = dict(rtol=config.rtol, atol=config.atol, method=config.method, options=opts)
    if config.gradient == "adjoint":
        if adjoint_options is None:
            adjoint_options = inherited_adjoint_options(opts)
        adjoint_options = dict(adjoint_options)
        if config.seminorm:
            adjoint_options.setdefault("norm", "seminorm")
        if config.step_size is not None:
            adjoint_options.setdefault("step_size", config.step_size)
        if params is None:
            params = tuple(p for p in field.parameters() if p.requires_grad)
        ys = torchdiffeq.odeint_adjoint(
            field, y0, t, **kwargs,
            adjoint_rtol=config.adjoint_rtol or config.rtol,
            adjoint_atol=config.adjoint_atol or config.atol,
            adjoint_method=config.adjoint_method or config.method,
            adjoint_options=adjoint_options,
            adjoint_params=tuple(params),
        )  # fmt: skip
    else:
        ys = torchdiffeq.odeint(field, y0, t, **kwargs)
    field.in_forward = False
    return ys
