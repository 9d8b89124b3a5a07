"""Public entry points: ``solve`` (config-driven) and torchdiffeq's ``odeint``/``odeint_adjoint``.

This module checks inputs, flattens tensor or tuple states, picks the gradient mode and the
backend, adds gradients with respect to the times, and records statistics.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import SolverConfig
from .errors import SolverConfigError
from .gradients import AdjointSettings, AdjointSolve, CheckpointSolve, FlatProblem
from .rk import FlatField, RungeKutta
from .stats import SolveStats, _set_last
from .step_control import StepController, mixed_norm, rms_norm, user_norm
from .tableaus import get_tableau

State = torch.Tensor | tuple[torch.Tensor, ...]

# Options accepted in torchdiffeq's `options` dict (and our controller settings).
_SOLVE_OPTIONS = {"step_size", "first_step", "max_num_steps", "norm", "step_t", "jump_t"}
_CONTROLLER_OPTIONS = {"safety", "ifactor", "dfactor", "pcoeff", "icoeff"}
_IGNORED_OPTIONS = {"grid_points", "eps", "perturb", "dtype"}


def _check_state(y0: State) -> tuple[list[torch.Tensor], bool]:
    is_tuple = isinstance(y0, (tuple, list))
    parts = list(y0) if is_tuple else [y0]
    if not parts:
        raise SolverConfigError("y0 is an empty tuple; give at least one tensor.")
    for i, p in enumerate(parts):
        name = f"y0[{i}]" if is_tuple else "y0"
        if not isinstance(p, torch.Tensor):
            raise SolverConfigError(f"{name} must be a torch.Tensor, got {type(p).__name__}.")
        if not p.is_floating_point():
            raise SolverConfigError(
                f"{name} has dtype {p.dtype}; ODE states must be floating point "
                "(e.g. y0.float() or y0.double())."
            )
        if p.dtype != parts[0].dtype or p.device != parts[0].device:
            raise SolverConfigError(
                f"All parts of a tuple state must share dtype and device: y0[0] is "
                f"{parts[0].dtype} on {parts[0].device}, {name} is {p.dtype} on {p.device}."
            )
    return parts, is_tuple


def _check_times(t: torch.Tensor, y: torch.Tensor) -> list[float]:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise SolverConfigError(
            f"t must be a non-empty 1-D tensor of times, got shape {tuple(t.shape)}."
        )
    if not t.is_floating_point():
        raise SolverConfigError(f"t has dtype {t.dtype}; use floating-point times (t.float()).")
    if t.device != y.device:
        raise SolverConfigError(
            f"t is on {t.device} but y0 is on {y.device}; put both on the same device."
        )
    times = t.detach().cpu().tolist()
    if any(v != v or v in (float("inf"), float("-inf")) for v in times):
        raise SolverConfigError(f"t contains NaN or infinite values: {times}.")
    diffs = [b - a for a, b in itertools.pairwise(times)]
    if diffs and not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise SolverConfigError(
            "t must be strictly increasing or strictly decreasing (no repeats); "
            f"got {times[:10]}{'...' if len(times) > 10 else ''}."
        )
    return times


def _split_options(options: dict | None) -> tuple[dict, StepController]:
    options = dict(options or {})
    unknown = set(options) - _SOLVE_OPTIONS - _CONTROLLER_OPTIONS - _IGNORED_OPTIONS
    if unknown:
        raise SolverConfigError(
            f"Unknown solver option(s) {sorted(unknown)}; supported: "
            f"{sorted(_SOLVE_OPTIONS | _CONTROLLER_OPTIONS)}."
        )
    ctrl = StepController(**{k: float(options.pop(k)) for k in _CONTROLLER_OPTIONS & set(options)})
    for k in _IGNORED_OPTIONS:
        options.pop(k, None)
    solve_opts: dict[str, Any] = {}
    if options.get("step_size") is not None:
        solve_opts["step_size"] = float(options["step_size"])
    if options.get("first_step") is not None:
        solve_opts["first_step"] = float(options["first_step"])
    if options.get("max_num_steps") is not None:
        solve_opts["max_steps"] = int(options["max_num_steps"])
    for key in ("step_t", "jump_t"):
        if options.get(key) is not None:
            v = options[key]
            solve_opts[key] = v.detach().cpu().tolist() if isinstance(v, torch.Tensor) else list(v)
    if "norm" in options:
        solve_opts["norm"] = options["norm"]
    return solve_opts, ctrl


def _tolerance(tol, parts: list[torch.Tensor], name: str):
    """A float, or a per-part sequence (torchdiffeq allows one per tuple entry)."""
    if isinstance(tol, torch.Tensor) and tol.numel() == 1:
        return float(tol)
    if isinstance(tol, (int, float)):
        if tol < 0:
            raise SolverConfigError(f"{name} must be non-negative, got {tol}.")
        return float(tol)
    if isinstance(tol, (tuple, list)) and len(tol) == len(parts):
        return torch.cat([p.new_full((p.numel(),), float(v)) for v, p in zip(tol, parts)])
    raise SolverConfigError(
        f"{name} must be a float or one float per tuple entry; got {type(tol).__name__}."
    )


def _default_params(func: Callable) -> tuple[torch.Tensor, ...]:
    if isinstance(func, torch.nn.Module):
        return tuple(p for p in func.parameters() if p.requires_grad)
    return ()


def solve(
    func: Callable,
    y0: State,
    t: torch.Tensor,
    config: SolverConfig | dict | None = None,
    *,
    params: Sequence[torch.Tensor] | None = None,
    stats: SolveStats | None = None,
    options: dict | None = None,
    adjoint_options: dict | None = None,
) -> State:
    """Integrate ``dy/dt = func(t, y)`` from ``y0`` at ``t[0]`` and return the states at ``t``.

    Output has shape ``(len(t), *y0.shape)`` (a tuple of such for tuple states). ``params``
    are the tensors the adjoint/checkpoint gradients flow to (default: ``func.parameters()``
    when ``func`` is an ``nn.Module``). ``stats`` receives NFE and step counts; the backward
    counts arrive when the backward pass runs.
    """
    config = SolverConfig.from_dict(config)
    if stats is None:
        stats = SolveStats()
    _set_last(stats)
    if config.backend == "torchdiffeq":
        from .backends import solve_torchdiffeq

        return solve_torchdiffeq(func, y0, t, config, params=params, stats=stats, options=options)
    parts, is_tuple = _check_state(y0)
    y_ref = parts[0]
    times = _check_times(t, y_ref)
    solve_opts, controller = _split_options({"max_num_steps": config.max_steps, **(options or {})})
    if config.step_size is not None:
        solve_opts.setdefault("step_size", config.step_size)
    if config.first_step is not None:
        solve_opts.setdefault("first_step", config.first_step)
    tab = get_tableau(config.method)
    shapes = [p.shape for p in parts]
    field = FlatField(func, shapes, time_dtype=t.dtype, device=y_ref.device, is_tuple=is_tuple)
    norm = solve_opts.pop("norm", None)
    if norm is None:
        norm = mixed_norm(field.sizes) if is_tuple else rms_norm
    else:
        norm = user_norm(norm, field.unflatten)
    y0_flat = torch.cat([p.reshape(-1) for p in parts]) if is_tuple else y_ref.reshape(-1)
    problem = FlatProblem(
        field=field,
        times=times,
        rk=RungeKutta.get(tab, y_ref.dtype, y_ref.device),
        rtol=_tolerance(config.rtol, parts, "rtol"),
        atol=_tolerance(config.atol, parts, "atol"),
        norm=norm,
        options=solve_opts,
        controller=controller,
        stats=stats,
    )
    if params is None:
        params = _default_params(func)
    params = tuple(params)
    t_needs_grad = isinstance(t, torch.Tensor) and t.requires_grad and torch.is_grad_enabled()
    y0_given = y0_flat
    if t_needs_grad:
        y0_flat = _shift_start_time(field, t, y0_flat)

    needs_graph = torch.is_grad_enabled() and (
        y0_flat.requires_grad or any(p.requires_grad for p in params)
    )
    if config.gradient == "backprop" or not needs_graph:
        ys = torch.stack(problem.solve(y0_flat))
    elif config.gradient == "adjoint":
        adj_opts, _ = _split_options({"max_num_steps": config.max_steps, **(adjoint_options or {})})
        adj_opts.pop("norm", None)
        adjoint_tableau = get_tableau(config.adjoint_method or config.method)
        fixed_opts = {k: v for k, v in solve_opts.items() if k in ("step_size", "max_steps")}
        adjoint = AdjointSettings(
            rk=RungeKutta.get(adjoint_tableau, y_ref.dtype, y_ref.device),
            rtol=config.adjoint_rtol if config.adjoint_rtol is not None else float(config.rtol),
            atol=config.adjoint_atol if config.adjoint_atol is not None else float(config.atol),
            options={**fixed_opts, **adj_opts},
            seminorm=config.seminorm,
        )
        ys = AdjointSolve.apply(problem, adjoint, y0_flat, *params)
    else:
        ys = CheckpointSolve.apply(problem, y0_flat, *params)

    if t_needs_grad:
        ys = torch.cat([y0_given.unsqueeze(0), _output_time_grads(field, t, ys[1:])])
    return _unflatten_outputs(ys, parts, is_tuple)


def _shift_start_time(field: FlatField, t: torch.Tensor, y0_flat: torch.Tensor) -> torch.Tensor:
    """dy(t_i)/dt_0 = -Phi f(t_0, y_0): starting from y0 - (t0 - t0.detach()) f(t0, y0) gives
    exactly that first-order dependence while leaving the value unchanged."""
    with torch.no_grad():
        f0 = field(float(t[0]), y0_flat)
    return y0_flat - (t[0] - t[0].detach()).to(y0_flat.dtype) * f0


def _output_time_grads(field: FlatField, t: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """dy(t_i)/dt_i = f(t_i, y(t_i)) for the outputs ``ys`` at ``t[1:]``."""
    times = t.detach().cpu().tolist()[1:]
    with torch.no_grad():
        fs = torch.stack([field(ti, yi) for ti, yi in zip(times, ys, strict=True)])
    dt = (t[1:] - t[1:].detach()).to(ys.dtype).unsqueeze(1)
    return ys + dt * fs


def _unflatten_outputs(ys: torch.Tensor, parts: list[torch.Tensor], is_tuple: bool) -> State:
    n_t = ys.shape[0]
    if not is_tuple:
        return ys.view(n_t, *parts[0].shape)
    sizes = [p.numel() for p in parts]
    return tuple(
        y.reshape(n_t, *p.shape) for y, p in zip(ys.split(sizes, dim=1), parts, strict=True)
    )


def odeint(
    func: Callable,
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    event_fn: Callable | None = None,
    stats: SolveStats | None = None,
) -> State:
    """torchdiffeq's ``odeint``: differentiate by backpropagating through the solver."""
    if event_fn is not None:
        raise NotImplementedError("event_fn is not supported by nodezoo yet; use torchdiffeq.")
    get_tableau(method or "dopri5")
    config = SolverConfig(method=method or "dopri5", rtol=rtol, atol=atol, gradient="backprop")
    return solve(func, y0, t, config, stats=stats, options=options)


def odeint_adjoint(
    func: Callable,
    y0: State,
    t: torch.Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    event_fn: Callable | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict | None = None,
    adjoint_params: Sequence[torch.Tensor] | None = None,
    stats: SolveStats | None = None,
) -> State:
    """torchdiffeq's ``odeint_adjoint``: constant-memory gradients by the adjoint method.

    As in torchdiffeq, ``func`` must be an ``nn.Module`` unless ``adjoint_params`` is given,
    and ``adjoint_options={"norm": "seminorm"}`` turns on the seminorm.
    """
    if event_fn is not None:
        raise NotImplementedError("event_fn is not supported by nodezoo yet; use torchdiffeq.")
    if adjoint_params is None and not isinstance(func, torch.nn.Module):
        raise SolverConfigError(
            "func must be an nn.Module when adjoint_params is not given: the adjoint needs to "
            "know which tensors to differentiate. Pass adjoint_params=(...) or wrap func."
        )
    adjoint_options = dict(adjoint_options or {})
    use_seminorm = adjoint_options.pop("norm", None) == "seminorm"
    get_tableau(method or "dopri5")
    if adjoint_method is not None:
        get_tableau(adjoint_method)
    config = SolverConfig(
        method=method or "dopri5",
        rtol=rtol,
        atol=atol,
        gradient="adjoint",
        adjoint_method=adjoint_method,
        adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol,
        seminorm=use_seminorm,
    )
    return solve(
        func,
        y0,
        t,
        config,
        params=adjoint_params,
        stats=stats,
        options=options,
        adjoint_options=adjoint_options,
    )
