"""Public entry points: ``solve`` (config-driven) and torchdiffeq's ``odeint``/``odeint_adjoint``.

This module checks inputs, flattens tensor or tuple states, picks the gradient mode and the
backend, adds gradients with respect to the times, and records statistics.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence

import torch

from .config import SolverConfig
from .errors import SolverConfigError
from .events import combined_event_fn, with_event_gradient
from .gradients import AdjointSettings, AdjointSolve, CheckpointSolve, FlatProblem, tuple_norm
from .independent import solve_independent
from .inputs import (
    State,
    check_state,
    check_time_tensor,
    default_params,
    time_dtype,
    tolerance,
)
from .methods import MethodSpec, get_method
from .options import inherited_adjoint_options, options_dict, parse_options
from .rk import EventSearch, FlatField, StepHooks
from .stats import SolveStats, _set_last
from .step_control import FirstStepMemory, mixed_norm, rms_norm, user_norm
from .step_control import seminorm as measure_first

_CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")


def _check_times(t: torch.Tensor, y: torch.Tensor) -> list[float]:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() != 1 or t.numel() == 0:
        raise SolverConfigError(
            f"t must be a non-empty 1-D tensor of times, got shape {tuple(t.shape)}."
        )
    check_time_tensor(t, y)
    times = t.detach().cpu().tolist()
    if any(v != v or v in (float("inf"), float("-inf")) for v in times):
        raise SolverConfigError(f"t contains NaN or infinite values: {times}.")
    diffs = [b - a for a, b in itertools.pairwise(times)]
    if diffs and not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
        raise SolverConfigError(
            "t must be strictly increasing or strictly decreasing (no repeats); "
            f"got {times[:10]}{f' and {len(times) - 10} more' if len(times) > 10 else ''}. "
            "Sort the output times (and drop duplicates) before solving."
        )
    return times


def _bind_grid(grid_constructor, func, field: FlatField, state_view=None):
    """torchdiffeq's ``grid_constructor(func, y0, t) -> grid`` as the step loop's
    ``grid(t0, t1, y0_flat) -> [floats]``; the grid must start at t0 and end at t1."""
    view = state_view or field.unflatten

    def grid(t0: float, t1: float, y0: torch.Tensor) -> list[float]:
        t = torch.tensor([t0, t1], dtype=field.time_dtype, device=y0.device)
        points = grid_constructor(func, view(y0), t)
        values = [float(v) for v in torch.as_tensor(points).reshape(-1).tolist()]
        if len(values) < 2 or values[0] != float(t[0]) or values[-1] != float(t[1]):
            raise SolverConfigError(
                f"grid_constructor must return a 1-D grid from t0={t0} to t1={t1} "
                f"(first and last points exactly), got {values[:3]}...{values[-3:]}."
            )
        return values

    return grid


def _engine(spec: MethodSpec, y_ref: torch.Tensor, opts, rtol, atol):
    engine_options = dict(opts.engine)
    if spec.family in ("adams", "implicit"):
        engine_options.update(rtol=rtol, atol=atol)
    return spec.engine(y_ref.dtype, y_ref.device, engine_options)


def _hooks(func, field: FlatField, *, suffix: str, spec: MethodSpec, adaptive: bool, state_view):
    """``func.callback_step`` (and ``_accept_step``/``_reject_step``; ``suffix='_adjoint'`` for
    the backward solve) as step-loop hooks: called with a time tensor, the state in the
    user's shape and the signed step size as a tensor."""
    found = {}
    own = getattr(func, "__dict__", {})
    for name in _CALLBACKS:
        # instance attributes and class attributes only: nn.Module.__getattr__ is slow to fail
        cb = own.get(name + suffix)
        if cb is None and hasattr(type(func), name + suffix):
            cb = getattr(func, name + suffix)
        if cb is not None:
            if not callable(cb):
                raise SolverConfigError(f"func.{name}{suffix} must be callable(t0, y0, dt).")
            found[name] = cb
    if not found:
        return None
    if spec.family == "scipy":
        warnings.warn(
            f"scipy_solver steps inside scipy: {sorted(n + suffix for n in found)} will not be "
            "called; use a nodezoo method (e.g. dopri5) to have them called.",
            stacklevel=4,
        )
        return None
    if not adaptive:
        unused = sorted(n + suffix for n in found if n != "callback_step")
        if unused:
            warnings.warn(
                f"Method {spec.name!r} takes fixed steps and never accepts or rejects one, so "
                f"{unused} will not be called (callback_step{suffix} is).",
                stacklevel=4,
            )

    def bind(name):
        cb = found.get(name) if adaptive or name == "callback_step" else None
        if cb is None:
            return None

        def hook(t: float, y: torch.Tensor, h: float) -> None:
            dt = torch.tensor(h, dtype=field.time_dtype, device=y.device)
            cb(field.time(t), state_view(y), dt)

        return hook

    return StepHooks(*(bind(name) for name in _CALLBACKS))


def _event_search(event_fn, field: FlatField, t0: float, y0: torch.Tensor, interp):
    g = combined_event_fn(event_fn, field, t0, y0)

    def value(t: float, y: torch.Tensor) -> float:
        return float(g(field.time(t), y))

    return g, EventSearch(value, interp=interp or "linear")


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
    event_fn: Callable | None = None,
) -> State | tuple[torch.Tensor, State]:
    """Integrate ``dy/dt = func(t, y)`` from ``y0`` at ``t[0]`` and return the states at ``t``.

    Output has shape ``(len(t), *y0.shape)`` (a tuple of such for tuple states). ``params``
    are the tensors the adjoint/checkpoint gradients flow to (default: ``func.parameters()``
    when ``func`` is an ``nn.Module``). ``stats`` receives NFE and step counts; the backward
    counts arrive when the backward pass runs. ``options`` are torchdiffeq's (checked per
    method); ``adjoint_options`` default to ``options`` without ``norm`` and ``interp``.

    With ``event_fn(t, y) -> tensor``, ``t`` must hold two times (the start and, through the
    second, the direction): the solve runs until any output of ``event_fn`` reaches zero and
    returns ``(event_t, states at [t0, event_t])``; ``event_t`` is differentiable.

    ``func`` sees ``t`` as a 0-d tensor of the state's dtype (torchdiffeq's rule), and its
    ``callback_step``/``callback_accept_step``/``callback_reject_step`` attributes (their
    ``_adjoint`` forms in the adjoint's backward solve) are called as ``cb(t0, y0, dt)``.
    """
    config = SolverConfig.from_dict(config)
    if adjoint_options and config.gradient != "adjoint":
        raise SolverConfigError(
            f"adjoint_options set the adjoint's backward solve, and this solve's gradient is "
            f"{config.gradient!r}, which has none: drop adjoint_options, or set "
            "gradient='adjoint'."
        )
    memory = options_dict(options).get("first_step") if config.warm_start else None
    if config.warm_start and not isinstance(memory, FirstStepMemory):
        raise SolverConfigError(
            "warm_start=True starts each solve where the previous one settled, which solve() "
            "cannot remember: pass options={'first_step': FirstStepMemory()} (and the adjoint "
            "its own in adjoint_options), keeping the memory between calls, or use an ODEBlock, "
            "which keeps them."
        )
    if config.per_sample:
        return _solve_per_sample(func, y0, t, config, params, stats, options, adjoint_options,
                                 event_fn)  # fmt: skip
    if stats is None:
        stats = SolveStats()
    _set_last(stats)
    parts, is_tuple = check_state(y0)
    if config.backend == "torchdiffeq":
        if event_fn is not None:
            raise SolverConfigError(
                "event_fn needs backend='native': the torchdiffeq backend has no event search."
            )
        from .backends import solve_torchdiffeq

        return solve_torchdiffeq(
            func, y0, t, config, params=params, stats=stats, options=options,
            adjoint_options=adjoint_options,
        )  # fmt: skip
    y_ref = parts[0]
    times = _check_times(t, y_ref)
    if event_fn is not None and len(times) != 2:
        raise SolverConfigError(
            f"With event_fn, t must hold 2 times (start, and a second one giving the direction); "
            f"got {len(times)}."
        )
    spec = get_method(config.method)
    if spec.family not in ("runge_kutta", "implicit") and config.gradient == "checkpoint":
        raise SolverConfigError(
            f"gradient='checkpoint' replays Runge–Kutta steps; {config.method!r} is not one. "
            "Use gradient='adjoint' or 'backprop'."
        )
    if spec.family == "scipy" and event_fn is not None:
        raise SolverConfigError(
            "scipy_solver has no event handling; use a Runge–Kutta method (e.g. dopri5)."
        )
    adaptive = config.adaptive
    defaults = {}
    if spec.family != "scipy":
        defaults["max_num_steps"] = config.max_steps
    if config.step_size is not None:
        defaults["step_size"] = config.step_size
    if config.first_step is not None and adaptive:
        defaults["first_step"] = config.first_step
    user_options = options_dict(options)
    opts = parse_options(
        {**defaults, **user_options},
        method=config.method,
        adaptive=spec.adaptive,
        family=spec.family,
        event=event_fn is not None,
    )
    adaptive = adaptive and opts.loop.get("step_size") is None
    shapes = [p.shape for p in parts]
    field = FlatField(
        func, shapes, time_dtype=time_dtype(y_ref), device=y_ref.device, is_tuple=is_tuple
    )
    rtol = tolerance(config.rtol, parts, "rtol")
    atol = tolerance(config.atol, parts, "atol")
    if opts.norm is None:
        norm = mixed_norm(field.sizes) if is_tuple else rms_norm
    else:
        norm = user_norm(opts.norm, field.unflatten)
    y0_flat = torch.cat([p.reshape(-1) for p in parts]) if is_tuple else y_ref.reshape(-1)
    loop = dict(opts.loop)
    hooks = _hooks(func, field, suffix="", spec=spec, adaptive=adaptive, state_view=field.unflatten)
    if hooks is not None:
        loop["hooks"] = hooks
    if opts.grid_constructor is not None:
        loop["grid"] = _bind_grid(opts.grid_constructor, func, field)
    event = g = None
    if event_fn is not None:
        g, event = _event_search(event_fn, field, times[0], y0_flat.detach(), opts.interp)
        loop["event"] = event
    problem = FlatProblem(
        field=field,
        times=times,
        rk=_engine(spec, y_ref, opts, rtol, atol),
        rtol=rtol,
        atol=atol,
        norm=norm,
        options=loop,
        controller=opts.controller,
        stats=stats,
    )
    grad_enabled = torch.is_grad_enabled()
    if params is None:  # without grad mode nothing reads them: skip walking the modules
        params = default_params(func) if grad_enabled else ()
    params = tuple(params)
    t_needs_grad = isinstance(t, torch.Tensor) and t.requires_grad and grad_enabled
    y0_given = y0_flat
    if t_needs_grad:
        y0_flat = _shift_start_time(field, t, y0_flat)

    needs_graph = grad_enabled and (y0_flat.requires_grad or any(p.requires_grad for p in params))
    if config.gradient == "backprop" or not needs_graph:
        if needs_graph and spec.family == "scipy":
            warnings.warn(
                "scipy_solver runs outside autograd: its outputs carry no gradient. Use "
                "odeint_adjoint (gradient='adjoint') for gradients.",
                stacklevel=3,
            )
        ys = torch.stack(problem.solve(y0_flat))
        if spec.family == "scipy":
            ys = ys.detach()
    elif config.gradient == "adjoint":
        adjoint = _adjoint_settings(
            config, func, field, norm, opts.norm, is_tuple, user_options, adjoint_options,
            params, y_ref,
        )  # fmt: skip
        direct = not is_tuple and not t_needs_grad and event_fn is None
        out_shape = (len(times), *y_ref.shape) if direct else None
        ys = AdjointSolve.apply(problem, adjoint, out_shape, y0_flat, *params)
        if direct:
            return ys  # its grad_fn carries adjoint_options, as torchdiffeq's does
    else:
        ys = CheckpointSolve.apply(problem, y0_flat, *params)

    if event_fn is not None:
        event_t = torch.tensor(problem.times[-1], dtype=t.dtype, device=t.device)
        if torch.is_grad_enabled():
            event_t, state = with_event_gradient(field, g, event_t, ys[-1])
            ys = torch.cat([ys[:-1], state.unsqueeze(0)])
        return event_t, _unflatten_outputs(ys, parts, is_tuple)
    if t_needs_grad and len(times) > 1:
        ys = torch.cat([y0_given.unsqueeze(0), _output_time_grads(field, t, ys[1:])])
    elif t_needs_grad:
        ys = y0_given.unsqueeze(0)
    return _unflatten_outputs(ys, parts, is_tuple)


def _solve_per_sample(func, y0, t, config, params, stats, options, adjoint_options, event_fn):
    """``SolverConfig(per_sample=True)``: ``solve_independent``, which takes no options."""
    given = [name for name, value in (("options", options), ("adjoint_options", adjoint_options),
             ("event_fn", event_fn)) if value]  # fmt: skip
    if given:
        raise SolverConfigError(
            f"per_sample=True solves take no {', '.join(given)}: give the settings in the "
            "SolverConfig, or set per_sample=False."
        )
    return solve_independent(func, y0, t, config, params=params, stats=stats)


def _adjoint_settings(
    config, func, field, state_norm, user_state_norm, is_tuple, options, adjoint_options, params,
    y_ref,
) -> AdjointSettings:  # fmt: skip
    """torchdiffeq's adjoint settings: method, tolerances and options default to the forward
    ones (options less ``norm``); the norm is 'seminorm', a callable, or the default."""
    method = config.adjoint_method or config.method
    spec = get_method(method)
    if adjoint_options is None:
        adjoint_options = inherited_adjoint_options(options)
    adjoint_options = dict(adjoint_options)
    norm_choice = adjoint_options.pop("norm", None)
    defaults = {"max_num_steps": config.max_steps} if spec.family != "scipy" else {}
    if config.step_size is not None:
        defaults["step_size"] = config.step_size
    opts = parse_options(
        {**defaults, **adjoint_options}, method=method, adaptive=spec.adaptive, family=spec.family
    )
    # block_size describes the forward state's independent problems; the augmented adjoint
    # state couples them (y, a, parameter gradients), so its Jacobian stays dense
    opts.engine.pop("block_size", None)
    adaptive = spec.adaptive and opts.loop.get("step_size") is None
    n = field.sizes
    trainable = [p for p in params if p.requires_grad]
    y_view = (lambda y: y) if is_tuple else field.unflatten

    def aug_view(z):
        total = sum(n)
        return (field.unflatten(z[:total]), field.unflatten(z[total : 2 * total]), z[2 * total :])

    loop = dict(opts.loop)
    hooks = _hooks(
        func, field, suffix="_adjoint", spec=spec, adaptive=adaptive, state_view=aug_view
    )
    if hooks is not None:
        loop["hooks"] = hooks
    if opts.grid_constructor is not None:
        loop["grid"] = _bind_grid(opts.grid_constructor, func, field, state_view=aug_view)
    seminorm = config.seminorm if norm_choice is None else norm_choice == "seminorm"
    flat_state_norm = state_norm

    def default_norm(tensors):
        """torchdiffeq's default adjoint norm: max(|t|, ||y||, ||adj_y||, each ||adj_param||)."""
        t, y, adj_y, *adj_params = tensors
        values = [t.abs(), flat_state_norm(y.reshape(-1)), flat_state_norm(adj_y.reshape(-1))]
        if not seminorm:
            values += [rms_norm(p) for p in adj_params]
        return torch.stack([v.to(y.dtype) for v in values]).max()

    if callable(norm_choice):
        user = norm_choice
        if len(trainable) != len(params):
            warnings.warn(
                "An adjoint parameter does not require grad: it is left out of the adjoint "
                "solve and of the tuple the adjoint norm receives. Pass only the tensors that "
                "require grad in adjoint_params.",
                stacklevel=4,
            )
        if is_tuple:  # torchdiffeq expands the tuple state's parts for a user adjoint norm

            def public_norm(tensors):
                t, y, adj_y, *adj_params = tensors
                return user((t, *field.unflatten(y), *field.unflatten(adj_y), *adj_params))
        else:
            public_norm = user
    elif norm_choice in (None, "seminorm"):
        public_norm = default_norm
    else:
        raise SolverConfigError(
            f"adjoint_options['norm'] must be 'seminorm' or a callable, got {norm_choice!r}."
        )
    if state_norm is rms_norm or (is_tuple and user_state_norm is None):
        # the same value as default_norm, on the flat augmented state without building tuples
        fast = mixed_norm([*n, *n] + ([] if seminorm else [p.numel() for p in trainable]))
        if seminorm:
            fast = measure_first(2 * sum(n), fast)
    else:
        fast = tuple_norm(default_norm, sum(n), trainable, y_view)
    rtol = float(config.adjoint_rtol if config.adjoint_rtol is not None else config.rtol)
    atol = float(config.adjoint_atol if config.adjoint_atol is not None else config.atol)
    return AdjointSettings(
        rk=_engine(spec, y_ref, opts, rtol, atol),
        rtol=rtol,
        atol=atol,
        options=loop,
        controller=opts.controller,
        norm=public_norm,
        default_norm=default_norm,
        fast_norm=fast,
        y_view=y_view,
    )


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
    out, offset = [], 0
    for p in parts:  # slice + view, as torchdiffeq (its tests reach the adjoint node this way)
        out.append(ys[..., offset : offset + p.numel()].view((n_t, *p.shape)))
        offset += p.numel()
    return tuple(out)


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
) -> State | tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint``: differentiate by backpropagating through the solver.

    With ``event_fn``, returns ``(event_t, solution)`` (see ``solve``)."""
    config = SolverConfig(method=method or "dopri5", rtol=rtol, atol=atol, gradient="backprop")
    return solve(func, y0, t, config, stats=stats, options=options, event_fn=event_fn)


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
) -> State | tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint_adjoint``: constant-memory gradients by the adjoint method.

    As in torchdiffeq, ``func`` must be an ``nn.Module`` unless ``adjoint_params`` is given;
    ``adjoint_options`` default to ``options`` without ``norm`` (so ``jump_t``, ``perturb``,
    ``step_size`` ... hold in the backward solve too); ``adjoint_options={"norm": "seminorm"}``
    turns on the seminorm, and a callable norm receives ``(t, y, adj_y, *adj_params)``.
    """
    if adjoint_params is None and not isinstance(func, torch.nn.Module):
        raise SolverConfigError(
            "func must be an nn.Module when adjoint_params is not given: the adjoint needs to "
            "know which tensors to differentiate. Pass adjoint_params=(...) or wrap func."
        )
    method = method or "dopri5"
    if (
        adjoint_method is not None
        and adjoint_method != method
        and options is not None
        and adjoint_options is None
    ):
        raise SolverConfigError(
            "adjoint_method differs from method, so adjoint_options cannot be inferred from "
            "options: pass adjoint_options as well."
        )
    config = SolverConfig(
        method=method,
        rtol=rtol,
        atol=atol,
        gradient="adjoint",
        adjoint_method=adjoint_method,
        adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol,
        seminorm=False,
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
        event_fn=event_fn,
    )


def odeint_event(
    func: Callable,
    y0: State,
    t0: torch.Tensor,
    *,
    event_fn: Callable,
    reverse_time: bool = False,
    odeint_interface: Callable = odeint,
    **kwargs,
) -> tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint_event``: solve from ``t0`` forward (backward with
    ``reverse_time``) until ``event_fn`` reaches zero; returns ``(event_t, solution)`` with
    ``solution[-1]`` the state at the event. nodezoo's event time is differentiable from
    ``odeint`` itself, so this only builds the time pair."""
    t0 = torch.as_tensor(t0).reshape(-1)
    t1 = t0.detach() - 1.0 if reverse_time else t0.detach() + 1.0
    return odeint_interface(func, y0, torch.cat([t0, t1]), event_fn=event_fn, **kwargs)
