"""torchdiffeq's ``options`` dict, checked: every key is honoured or refused with a reason.

``parse_options`` validates the keys against the method (adaptive or fixed-step, and which
family) and returns ``SolveOptions``: plain values the step loop takes, the controller, and the
callables (``norm``, ``grid_constructor``) that ``odeint`` binds to the flattened state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import SolverConfigError
from .step_control import FirstStepMemory, StepController

CONTROLLER_KEYS = ("safety", "ifactor", "dfactor", "pcoeff", "icoeff")
ADAPTIVE_KEYS = {"first_step", "min_step", "max_step", "norm", *CONTROLLER_KEYS}
FIXED_KEYS = {"grid_constructor", "perturb", "interp"}
COMMON_KEYS = {"step_size", "max_num_steps", "step_t", "jump_t", "dtype"}
# Options of the other families, passed to their engines.
ENGINE_KEYS = {
    "runge_kutta": set(),
    "adams": {"max_iters", "max_order"},
    "implicit": {"max_iters", "newton_tol", "refresh_rate", "block_size"},
    "scipy": {"solver", "min_step", "max_step", "first_step"},
}
INTERPOLANTS = ("linear", "cubic")
# Keys older torchdiffeq versions took, with what replaces them.
REMOVED_KEYS = {
    "grid_points": "use step_t (points the solver must step on) or jump_t (discontinuities)",
    "eps": "use jump_t to step exactly onto discontinuities",
}


DEFAULT_CONTROLLER = StepController()
# Keys whose plain values need no checks beyond a conversion: the fast path of every solve.
_SIMPLE = {"max_num_steps": ("max_steps", int), "step_size": ("step_size", float)}


@dataclass
class SolveOptions:
    """The options of one solve. ``loop`` goes straight to ``rk.integrate``."""

    loop: dict[str, Any] = field(default_factory=dict)
    controller: StepController = DEFAULT_CONTROLLER
    norm: Callable | None = None
    grid_constructor: Callable | None = None
    interp: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)


def _times(value, name: str) -> list[float]:
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            raise SolverConfigError(
                f"options['{name}'] cannot require gradient (no gradient flows to stop "
                f"times): pass {name}.detach()."
            )
        return [float(v) for v in value.detach().reshape(-1).cpu().tolist()]
    try:
        return [float(v) for v in value]
    except TypeError:
        raise SolverConfigError(
            f"options['{name}'] must be a 1-D tensor or a sequence of times, "
            f"got {type(value).__name__}."
        ) from None


def options_dict(options) -> dict:
    """``options`` as a fresh dict: a mapping or None; anything else (a list of pairs, which
    ``dict()`` would take) is refused."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise SolverConfigError(
            f"options must be a dict (e.g. {{'step_size': 0.1}}), got {type(options).__name__}."
        )
    return dict(options)


def inherited_adjoint_options(options: Mapping) -> dict:
    """torchdiffeq's default ``adjoint_options``: the forward ``options`` less the state norm
    and the event bracket's interpolant (the backward solve has no event); a
    ``FirstStepMemory`` stays with the forward solve (the backward one differs)."""
    return {
        k: v
        for k, v in options.items()
        if k not in ("norm", "interp") and not isinstance(v, FirstStepMemory)
    }


def parse_options(
    options: dict | None, *, method: str, adaptive: bool, family: str = "runge_kutta",
    event: bool = False,
) -> SolveOptions:  # fmt: skip
    """Check ``options`` for ``method`` of ``family`` (``adaptive``: it controls its step
    size; a fixed-step method, or one given ``step_size``, is not) and sort them."""
    raw = options_dict(options)
    if raw.keys() <= _SIMPLE.keys() and family != "scipy":
        if raw.get("step_size") is not None and not raw["step_size"] > 0:
            raise SolverConfigError(f"step_size must be positive, got {raw['step_size']}.")
        loop = {_SIMPLE[k][0]: _SIMPLE[k][1](v) for k, v in raw.items() if v is not None}
        return SolveOptions(loop=loop)
    for key, hint in REMOVED_KEYS.items():
        if key in raw:
            raise SolverConfigError(f"options['{key}'] is not supported; {hint}.")
    engine_keys = ENGINE_KEYS[family]
    if family == "scipy":
        fixed = False
        valid = engine_keys | {"dtype"}
    else:
        fixed = not adaptive or raw.get("step_size") is not None
        valid = COMMON_KEYS | engine_keys | (FIXED_KEYS if fixed else ADAPTIVE_KEYS)
    every = COMMON_KEYS | ADAPTIVE_KEYS | FIXED_KEYS | set().union(*ENGINE_KEYS.values())
    unknown = sorted(set(raw) - every)
    if unknown:
        raise SolverConfigError(
            f"Unknown solver option(s) {unknown} for method {method!r}; valid: {sorted(valid)}."
        )
    misplaced = sorted(k for k in set(raw) - valid if raw[k] is not None)
    if misplaced:
        kind = "fixed-step" if fixed else "adaptive"
        hint = (
            " (step_size makes an adaptive method take fixed steps)" if fixed and adaptive else ""
        )
        raise SolverConfigError(
            f"Option(s) {misplaced} do not apply to {kind} method {method!r}{hint}; "
            f"its options are {sorted(valid)}."
        )
    first_step = raw.get("first_step")
    if isinstance(first_step, FirstStepMemory):
        if family != "runge_kutta":
            raise SolverConfigError(
                f"options['first_step'] is a FirstStepMemory, which the explicit Runge–Kutta "
                f"step loop updates; method {method!r} ({family}) does not: give it a number, "
                "or use an adaptive Runge–Kutta method (dopri5, tsit5, bosh3, ...)."
            )
    out = SolveOptions()
    out.engine = {k: raw[k] for k in engine_keys if raw.get(k) is not None}
    if family == "scipy":
        return out
    loop = out.loop
    if isinstance(first_step, FirstStepMemory):
        loop["first_step"] = first_step
    if raw.get("step_size") is not None:
        loop["step_size"] = float(raw["step_size"])
    if raw.get("max_num_steps") is not None:
        loop["max_steps"] = int(raw["max_num_steps"])
    for key in ("first_step", "min_step", "max_step"):
        if raw.get(key) is not None and key not in loop:
            loop[key] = abs(float(raw[key]))
    if loop.get("min_step", 0.0) > loop.get("max_step", float("inf")):
        raise SolverConfigError(
            f"min_step={loop['min_step']} is larger than max_step={loop['max_step']}; "
            "lower min_step or raise max_step."
        )
    for key in ("step_t", "jump_t"):
        if raw.get(key) is not None:
            loop[key] = _times(raw[key], key)
    if set(loop.get("step_t", ())) & set(loop.get("jump_t", ())):
        raise SolverConfigError(
            "step_t and jump_t must not share any time: the solver steps onto every jump_t "
            "time too, so list a discontinuity in jump_t only."
        )
    dtype = raw.get("dtype")
    if dtype is not None and dtype != torch.float64:
        raise SolverConfigError(
            f"options['dtype']={dtype}: nodezoo keeps times and step sizes in float64 "
            "(Python floats); only torch.float64 can be honoured."
        )
    ctrl = {k: float(raw[k]) for k in CONTROLLER_KEYS if raw.get(k) is not None}
    if ctrl:
        out.controller = StepController(**ctrl)
    out.norm = raw.get("norm")
    if out.norm is not None and not callable(out.norm):
        raise SolverConfigError(
            f"options['norm'] must be a callable, got {out.norm!r} ('seminorm' is an "
            "adjoint_options norm)."
        )
    if raw.get("perturb"):
        loop["perturb"] = True
    grid = raw.get("grid_constructor")
    if grid is not None:
        if not callable(grid):
            raise SolverConfigError("options['grid_constructor'] must be callable(func, y0, t).")
        if raw.get("step_size") is not None:
            raise SolverConfigError(
                "step_size and grid_constructor are mutually exclusive: give one of them."
            )
        out.grid_constructor = grid
    interp = raw.get("interp")
    if interp is not None:
        if interp not in INTERPOLANTS:
            raise SolverConfigError(
                f"options['interp'] must be one of {INTERPOLANTS}, got {interp!r}."
            )
        if not event:
            raise SolverConfigError(
                "options['interp'] only applies with event_fn: nodezoo's fixed-step methods step "
                "exactly onto every output time, so outputs need no interpolation."
            )
        out.interp = interp
    return out
