"""Every error and warning message a user of ``nodezoo.solvers`` can reach, pinned whole.

The messages are the solvers' interface: each says what was wrong and what to do, and a
change to either half is a change users see. One row per message: the bad input (as small
and cheap as possible) -> the exception class and the exact full text. When a message is
reworded on purpose, update its row here in the same commit (tests/README.md, "Mutation
testing", says why messages are pinned whole).
"""

import re
import sys
import threading
from unittest import mock

import pytest
import torch

from nodezoo.solvers import (
    FirstStepMemory,
    MaxStepsExceeded,
    NewtonFailed,
    NonFiniteInitialState,
    NonFiniteState,
    SolverConfig,
    SolverConfigError,
    SolverError,
    StepController,
    StepSizeUnderflow,
    get_tableau,
    last_stats,
    odeint,
    odeint_adjoint,
    odeint_dense,
    odeint_event,
    solve,
    solve_independent,
)
from nodezoo.solvers.newton import check_block_size

F64 = torch.float64
Y0 = torch.ones(1, dtype=F64)
T = torch.tensor([0.0, 1.0], dtype=F64)
Y2 = torch.ones(2, 1, dtype=F64)  # a batch of two, for solve_independent
T2 = T


def nan_after_half_rows(t, y):
    """nan_after_half with one time per sample (solve_independent)."""
    return torch.where(t[:, None] <= 0.5, -1.0, torch.nan) * y


def decay(t, y):
    return -y


def nan_after_half(t, y):
    """Finite up to t = 0.5, NaN after: where a solve must stop and say so."""
    return torch.where(t <= 0.5, -1.0, torch.nan) * y


def jump_at_half(t, y):
    """A jump of 1e30 in the field at t = 0.5: no step across it is ever accurate enough."""
    return torch.where(t < 0.5, 0.0, 1e30) * torch.ones_like(y)


def adjoint_of_fast_contraction():
    """y' = -200 (y - cos t) in float32: the adjoint's backward reconstruction overflows."""
    k = torch.tensor([200.0], requires_grad=True)
    y = solve(
        lambda t, y: -k * (y - torch.cos(t)),
        torch.ones(1),
        torch.tensor([0.0, 1.0]),
        {"rtol": 1e-3, "atol": 1e-6, "gradient": "adjoint"},
        params=[k],
    )
    y[-1].sum().backward()


class Decay(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))
        self.frozen = torch.nn.Parameter(torch.tensor(1.0, dtype=F64), requires_grad=False)

    def forward(self, t, y):
        return -self.rate * self.frozen * y


class WithCallbacks(torch.nn.Module):
    def __init__(self, **callbacks):
        super().__init__()
        self.__dict__.update(callbacks)

    def forward(self, t, y):
        return -y


def _without(module):
    """The trigger run as if ``module`` were not installed."""
    return mock.patch.dict(sys.modules, {module: None})


def _no_torchdiffeq():
    with _without("torchdiffeq"):
        solve(decay, Y0, T, {"backend": "torchdiffeq"})


def _no_scipy():
    with _without("scipy.integrate"):
        odeint(decay, Y0, T, method="scipy_solver")


def _last_stats_in_a_fresh_thread():
    caught = []

    def run():
        try:
            last_stats()
        except RuntimeError as err:
            caught.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    raise caught[0]


def _dense_outside():
    odeint_dense(decay, Y0, T[0], T[1])(torch.tensor([1.5], dtype=F64))


ROWS = [
    # --- SolverConfig / methods / tableaus
    (
        "method-type",
        lambda: SolverConfig(method=3),
        SolverConfigError,
        "method must be a string, got int.",
    ),
    (
        "method-unknown",
        lambda: SolverConfig(method="dopri6"),
        SolverConfigError,
        (
            "Unknown ODE method 'dopri6'. Choose one of: adaptive_heun, bosh3, dopri5, "
            "dopri8, euler, explicit_adams, fehlberg2, gl4, gl6, heun, heun3, "
            "implicit_adams, implicit_euler, implicit_midpoint, kvaerno5, midpoint, radau5, "
            "radauIIA3, radauIIA5, rk4, rk4_classic, scipy_solver, sdirk2, trapezoid, "
            "trbdf2, tsit5."
        ),
    ),
    (
        "tableau-unknown",
        lambda: get_tableau("dopri6"),
        SolverConfigError,
        (
            "Unknown ODE method 'dopri6'. Choose one of: adaptive_heun, bosh3, dopri5, "
            "dopri8, euler, fehlberg2, heun, heun3, midpoint, rk4, rk4_classic, tsit5."
        ),
    ),
    (
        "gradient",
        lambda: SolverConfig(gradient="exact"),
        SolverConfigError,
        "gradient='exact' is not one of backprop, adjoint, checkpoint.",
    ),
    (
        "backend",
        lambda: SolverConfig(backend="jax"),
        SolverConfigError,
        "backend='jax' is not one of native, torchdiffeq.",
    ),
    (
        "tolerance-negative",
        lambda: SolverConfig(rtol=-1e-3),
        SolverConfigError,
        ("rtol must be a non-negative number (or one per tuple entry), got -0.001 (float)."),
    ),
    (
        "tolerance-yaml-text",
        lambda: SolverConfig(atol="1e-6"),
        SolverConfigError,
        (
            "atol must be a non-negative number (or one per tuple entry), got '1e-6' (str). "
            "YAML 1.1 (PyYAML) reads 1e-6 as text; write 1.0e-6 (a dot in the mantissa) or "
            "pass a float."
        ),
    ),
    (
        "step-size",
        lambda: SolverConfig(step_size=0),
        SolverConfigError,
        "step_size must be positive, got 0.",
    ),
    (
        "first-step",
        lambda: SolverConfig(first_step=-0.1),
        SolverConfigError,
        "first_step must be positive, got -0.1.",
    ),
    (
        "max-steps",
        lambda: SolverConfig(max_steps=2.5),
        SolverConfigError,
        "max_steps must be a whole number of at least 1, got 2.5.",
    ),
    (
        "zero-tolerances",
        lambda: SolverConfig(rtol=0.0, atol=0.0),
        SolverConfigError,
        (
            "rtol and atol are both 0: adaptive method 'dopri5' cannot control the error "
            "against a zero tolerance. Give atol > 0 (absolute error) or rtol > 0 "
            "(relative), or set step_size for fixed steps."
        ),
    ),
    (
        "zero-tolerance-entry",
        lambda: SolverConfig(rtol=[0.0, 1e-3], atol=[0.0, 0.0]),
        SolverConfigError,
        (
            "rtol and atol are both 0 (entry 0): adaptive method 'dopri5' cannot control "
            "the error against a zero tolerance. Give atol > 0 (absolute error) or rtol > 0 "
            "(relative), or set step_size for fixed steps."
        ),
    ),
    (
        "zero-adjoint-tolerances",
        lambda: SolverConfig(adjoint_rtol=0.0, adjoint_atol=0.0),
        SolverConfigError,
        (
            "adjoint_rtol and adjoint_atol are both 0: adaptive method 'dopri5' cannot "
            "control the error against a zero tolerance. Give adjoint_atol > 0 (absolute "
            "error) or adjoint_rtol > 0 (relative), or set step_size for fixed steps."
        ),
    ),
    (
        "several-settings",
        lambda: SolverConfig(method="rk4", gradient="exact", max_steps=0),
        SolverConfigError,
        (
            "2 solver settings are invalid:\n  - gradient='exact' is not one of backprop, "
            "adjoint, checkpoint.\n  - max_steps must be a whole number of at least 1, got "
            "0."
        ),
    ),
    (
        "config-type",
        lambda: SolverConfig.from_dict("dopri5"),
        SolverConfigError,
        "A solver config must be a dict or SolverConfig, got str.",
    ),
    (
        "options-pairs",
        lambda: odeint(decay, Y0, T, method="rk4", options=[("step_size", 0.1)]),
        SolverConfigError,
        "options must be a dict (e.g. {'step_size': 0.1}), got list.",
    ),
    (
        "solve-options-pairs",
        lambda: solve(decay, Y0, T, {"method": "rk4"}, options=[("step_size", 0.1)]),
        SolverConfigError,
        "options must be a dict (e.g. {'step_size': 0.1}), got list.",
    ),
    (
        "config-unknown-key",
        lambda: SolverConfig.from_dict({"methd": "rk4", "rtol": -1}),
        SolverConfigError,
        (
            "2 solver settings are invalid:\n  - Unknown solver setting(s) ['methd']; valid "
            "keys are ['adjoint_atol', 'adjoint_method', 'adjoint_rtol', 'atol', 'backend', "
            "'first_step', 'gradient', 'max_steps', 'method', 'per_sample', 'rtol', "
            "'seminorm', 'step_size', 'warm_start'].\n  - rtol must be a non-negative number (or "
            "one per "
            "tuple entry), got -1 (int)."
        ),
    ),
    (
        "config-per-sample-adjoint-implicit",
        lambda: SolverConfig(per_sample=True, method="radau5"),
        SolverConfigError,
        (
            "2 solver settings are invalid:\n  - per_sample=True differentiates by backprop or "
            "checkpoint, not the adjoint (per sample it would carry a parameter gradient per "
            "sample): set gradient='checkpoint' (exact, little memory) or 'backprop'.\n  - "
            "per_sample=True runs explicit Runge–Kutta methods; method='radau5' is not one "
            "(use dopri5, tsit5, bosh3, rk4, ...)."
        ),
    ),
    (
        "config-per-sample-backend",
        lambda: SolverConfig(per_sample=True, gradient="backprop", backend="torchdiffeq"),
        SolverConfigError,
        "per_sample=True needs backend='native'.",
    ),
    (
        "config-per-sample-not-a-bool",
        lambda: SolverConfig(per_sample="yes", gradient="backprop"),
        SolverConfigError,
        "per_sample must be true or false, got 'yes'.",
    ),
    (
        "per-sample-solve-with-options",
        lambda: solve(
            decay, Y2, T, {"per_sample": True, "gradient": "backprop"}, options={"step_size": 0.1}
        ),
        SolverConfigError,
        (
            "per_sample=True solves take no options: give the settings in the SolverConfig, or "
            "set per_sample=False."
        ),
    ),
    # --- StepController
    (
        "safety",
        lambda: StepController(safety=1.5),
        SolverConfigError,
        (
            "safety=1.5 must be in (0, 1]: above 1 a step rejected by a small margin is "
            "retried at the same size forever (0.9 is the usual value)."
        ),
    ),
    (
        "dfactor",
        lambda: StepController(dfactor=1.0),
        SolverConfigError,
        (
            "dfactor=1.0 must be in (0, 1): it is the most a rejected step shrinks by (0.2 "
            "is the usual value)."
        ),
    ),
    (
        "ifactor",
        lambda: StepController(ifactor=1.0),
        SolverConfigError,
        (
            "ifactor=1.0 must be > 1: it is the most an accepted step grows by (10 is the "
            "usual value)."
        ),
    ),
    (
        "gains",
        lambda: StepController(icoeff=0.0, pcoeff=-1.0),
        SolverConfigError,
        (
            "icoeff=0.0 and pcoeff=-1.0: the integral gain must be > 0 and the proportional "
            "gain >= 0 (torchdiffeq's defaults are 1 and 0)."
        ),
    ),
    # --- the state y0
    (
        "y0-empty-tuple",
        lambda: odeint(decay, (), T),
        SolverConfigError,
        "y0 is an empty tuple; give at least one tensor.",
    ),
    (
        "y0-not-tensor",
        lambda: odeint(decay, [1.0], T),
        SolverConfigError,
        "y0[0] must be a torch.Tensor, got float.",
    ),
    (
        "y0-part-not-tensor",
        lambda: odeint(decay, (Y0, 1.0), T),
        SolverConfigError,
        "y0[1] must be a torch.Tensor, got float.",
    ),
    (
        "y0-integer",
        lambda: odeint(decay, torch.ones(1, dtype=torch.int64), T),
        SolverConfigError,
        (
            "y0 has dtype torch.int64; ODE states must be floating point (e.g. y0.float() "
            "or y0.double())."
        ),
    ),
    (
        "y0-mixed-dtypes",
        lambda: odeint(decay, (Y0, Y0.float()), T),
        SolverConfigError,
        (
            "All parts of a tuple state must share dtype and device: y0[0] is torch.float64 "
            "on cpu, y0[1] is torch.float32 on cpu."
        ),
    ),
    (
        "y0-non-finite",
        lambda: odeint(decay, torch.tensor([1.0, torch.nan, torch.inf, 0.0]), T),
        NonFiniteInitialState,
        (
            "y0 is not finite: 1 NaN and 1 infinite of its 4 entries, so no solve can start "
            "from it. Check the initial state before solving; in a model, check the input "
            "data and the layers before the ODE block (a diverging run makes them NaN: "
            "lower the learning rate or clip gradients)."
        ),
    ),
    (
        "y0-part-non-finite",
        lambda: odeint(decay, (Y0, torch.full((1,), torch.nan, dtype=F64)), T),
        NonFiniteInitialState,
        (
            "y0 is not finite: y0[1] has 1 NaN of its 1 entry, so no solve can start from "
            "it. Check the initial state before solving; in a model, check the input data "
            "and the layers before the ODE block (a diverging run makes them NaN: lower the "
            "learning rate or clip gradients)."
        ),
    ),
    # --- the times t
    (
        "t-shape",
        lambda: odeint(decay, Y0, T.reshape(1, 2)),
        SolverConfigError,
        "t must be a non-empty 1-D tensor of times, got shape (1, 2).",
    ),
    (
        "t-integer",
        lambda: odeint(decay, Y0, torch.tensor([0, 1])),
        SolverConfigError,
        "t has dtype torch.int64; use floating-point times (t.float()).",
    ),
    (
        "t-device",
        lambda: odeint(decay, Y0, torch.empty(2, device="meta")),
        SolverConfigError,
        "t is on meta but y0 is on cpu; put both on the same device.",
    ),
    (
        "t-non-finite",
        lambda: odeint(decay, Y0, torch.tensor([0.0, torch.nan])),
        SolverConfigError,
        "t contains NaN or infinite values: [0.0, nan].",
    ),
    (
        "t-not-monotone",
        lambda: odeint(decay, Y0, torch.tensor([0.0, 1.0, 0.5])),
        SolverConfigError,
        (
            "t must be strictly increasing or strictly decreasing (no repeats); got [0.0, "
            "1.0, 0.5]. Sort the output times (and drop duplicates) before solving."
        ),
    ),
    (
        "t-not-monotone-long",
        lambda: odeint(decay, Y0, torch.tensor([0.0] * 12)),
        SolverConfigError,
        (
            "t must be strictly increasing or strictly decreasing (no repeats); got [0.0, "
            "0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] and 2 more. Sort the output times "
            "(and drop duplicates) before solving."
        ),
    ),
    (
        "tolerance-per-part",
        lambda: odeint(decay, (Y0, Y0), T, rtol=[1e-3, 1e-3, 1e-3]),
        SolverConfigError,
        "rtol must be a float or one float per tuple entry (2); got 3 values.",
    ),
    # --- the vector field's output
    (
        "field-not-tuple",
        lambda: odeint(lambda t, y: y[0], (Y0, Y0), T),
        SolverConfigError,
        (
            "y0 is a tuple of 2 tensors, so func must return a tuple of as many tensors; it "
            "returned Tensor."
        ),
    ),
    (
        "field-tuple-length",
        lambda: odeint(lambda t, y: y[:1], (Y0, Y0), T),
        SolverConfigError,
        (
            "func returned 1 tensors for a tuple state of 2; return one derivative per part "
            "of y0, in the same order."
        ),
    ),
    (
        "field-not-tensor",
        lambda: odeint(lambda t, y: 1.0, Y0, T),
        SolverConfigError,
        "func's output is a float, expected a tensor.",
    ),
    (
        "field-part-shape",
        lambda: odeint(lambda t, y: (y[0], y[1][:0]), (Y0, Y0), T),
        SolverConfigError,
        (
            "func's output 1 has shape (0,) but the state has shape (1,); dy/dt must have "
            "the same shape as y."
        ),
    ),
    (
        "field-dtype",
        lambda: odeint(lambda t, y: y.float(), Y0, T),
        SolverConfigError,
        (
            "func's output has dtype torch.float32 but the state is torch.float64; cast the "
            "vector field or y0 so they match."
        ),
    ),
    (
        "field-device",
        lambda: odeint(lambda t, y: torch.empty(1, dtype=F64, device="meta"), Y0, T),
        SolverConfigError,
        (
            "func's output is on meta but the state is on cpu; move the vector field (e.g. "
            "`.to(device)`) or y0."
        ),
    ),
    # --- options
    (
        "options-step-size",
        lambda: odeint(decay, Y0, T, method="rk4", options={"step_size": 0}),
        SolverConfigError,
        "step_size must be positive, got 0.",
    ),
    (
        "options-removed-grid-points",
        lambda: odeint(decay, Y0, T, options={"grid_points": [0.5]}),
        SolverConfigError,
        (
            "options['grid_points'] is not supported; use step_t (points the solver must "
            "step on) or jump_t (discontinuities)."
        ),
    ),
    (
        "options-removed-eps",
        lambda: odeint(decay, Y0, T, options={"eps": 1e-6}),
        SolverConfigError,
        ("options['eps'] is not supported; use jump_t to step exactly onto discontinuities."),
    ),
    (
        "options-unknown",
        lambda: odeint(decay, Y0, T, method="rk4", options={"stepsize": 0.1}),
        SolverConfigError,
        (
            "Unknown solver option(s) ['stepsize'] for method 'rk4'; valid: ['dtype', "
            "'grid_constructor', 'interp', 'jump_t', 'max_num_steps', 'perturb', "
            "'step_size', 'step_t']."
        ),
    ),
    (
        "options-fixed-step",
        lambda: odeint(decay, Y0, T, method="rk4", options={"step_size": 0.5, "first_step": 0.1}),
        SolverConfigError,
        (
            "Option(s) ['first_step'] do not apply to fixed-step method 'rk4'; its options "
            "are ['dtype', 'grid_constructor', 'interp', 'jump_t', 'max_num_steps', "
            "'perturb', 'step_size', 'step_t']."
        ),
    ),
    (
        "options-adaptive-given-step-size",
        lambda: odeint(decay, Y0, T, options={"step_size": 0.5, "rtol": 1}),
        SolverConfigError,
        (
            "Unknown solver option(s) ['rtol'] for method 'dopri5'; valid: ['dtype', "
            "'grid_constructor', 'interp', 'jump_t', 'max_num_steps', 'perturb', "
            "'step_size', 'step_t']."
        ),
    ),
    (
        "options-adaptive-made-fixed",
        lambda: odeint(decay, Y0, T, options={"step_size": 0.5, "min_step": 0.1}),
        SolverConfigError,
        (
            "Option(s) ['min_step'] do not apply to fixed-step method 'dopri5' (step_size "
            "makes an adaptive method take fixed steps); its options are ['dtype', "
            "'grid_constructor', 'interp', 'jump_t', 'max_num_steps', 'perturb', "
            "'step_size', 'step_t']."
        ),
    ),
    (
        "options-adaptive",
        lambda: odeint(decay, Y0, T, options={"perturb": True}),
        SolverConfigError,
        (
            "Option(s) ['perturb'] do not apply to adaptive method 'dopri5'; its options "
            "are ['dfactor', 'dtype', 'first_step', 'icoeff', 'ifactor', 'jump_t', "
            "'max_num_steps', 'max_step', 'min_step', 'norm', 'pcoeff', 'safety', "
            "'step_size', 'step_t']."
        ),
    ),
    (
        "options-min-above-max",
        lambda: odeint(decay, Y0, T, options={"min_step": 0.5, "max_step": 0.1}),
        SolverConfigError,
        "min_step=0.5 is larger than max_step=0.1; lower min_step or raise max_step.",
    ),
    (
        "options-times-grad",
        lambda: odeint(decay, Y0, T, options={"step_t": T.clone().requires_grad_()}),
        SolverConfigError,
        (
            "options['step_t'] cannot require gradient (no gradient flows to stop times): "
            "pass step_t.detach()."
        ),
    ),
    (
        "options-times-type",
        lambda: odeint(decay, Y0, T, options={"jump_t": 0.5}),
        SolverConfigError,
        "options['jump_t'] must be a 1-D tensor or a sequence of times, got float.",
    ),
    (
        "options-step-and-jump",
        lambda: odeint(decay, Y0, T, options={"step_t": [0.5], "jump_t": [0.5]}),
        SolverConfigError,
        (
            "step_t and jump_t must not share any time: the solver steps onto every jump_t "
            "time too, so list a discontinuity in jump_t only."
        ),
    ),
    (
        "options-dtype",
        lambda: odeint(decay, Y0, T, options={"dtype": torch.float32}),
        SolverConfigError,
        (
            "options['dtype']=torch.float32: nodezoo keeps times and step sizes in float64 "
            "(Python floats); only torch.float64 can be honoured."
        ),
    ),
    (
        "options-norm",
        lambda: odeint(decay, Y0, T, options={"norm": "seminorm"}),
        SolverConfigError,
        (
            "options['norm'] must be a callable, got 'seminorm' ('seminorm' is an "
            "adjoint_options norm)."
        ),
    ),
    (
        "options-grid-not-callable",
        lambda: odeint(decay, Y0, T, method="rk4", options={"grid_constructor": [0.0, 1.0]}),
        SolverConfigError,
        "options['grid_constructor'] must be callable(func, y0, t).",
    ),
    (
        "options-grid-and-step-size",
        lambda: odeint(
            decay,
            Y0,
            T,
            method="rk4",
            options={"step_size": 0.5, "grid_constructor": lambda f, y0, t: t},
        ),
        SolverConfigError,
        "step_size and grid_constructor are mutually exclusive: give one of them.",
    ),
    (
        "options-grid-ends",
        lambda: odeint(
            decay, Y0, T, method="rk4", options={"grid_constructor": lambda f, y0, t: t[:1]}
        ),
        SolverConfigError,
        (
            "grid_constructor must return a 1-D grid from t0=0.0 to t1=1.0 (first and last "
            "points exactly), got [0.0]...[0.0]."
        ),
    ),
    (
        "options-interp-unknown",
        lambda: odeint(decay, Y0, T, method="rk4", options={"step_size": 0.5, "interp": "quintic"}),
        SolverConfigError,
        "options['interp'] must be one of ('linear', 'cubic'), got 'quintic'.",
    ),
    (
        "options-interp-without-event",
        lambda: odeint(decay, Y0, T, method="rk4", options={"step_size": 0.5, "interp": "cubic"}),
        SolverConfigError,
        (
            "options['interp'] only applies with event_fn: nodezoo's fixed-step methods "
            "step exactly onto every output time, so outputs need no interpolation."
        ),
    ),
    (
        "callback-not-callable",
        lambda: odeint(WithCallbacks(callback_step=1), Y0, T),
        SolverConfigError,
        "func.callback_step must be callable(t0, y0, dt).",
    ),
    # --- solve / odeint / odeint_adjoint combinations
    (
        "checkpoint-not-rk",
        lambda: solve(
            decay, Y0, T, {"method": "explicit_adams", "step_size": 0.5, "gradient": "checkpoint"}
        ),
        SolverConfigError,
        (
            "gradient='checkpoint' replays Runge–Kutta steps; 'explicit_adams' is not one. "
            "Use gradient='adjoint' or 'backprop'."
        ),
    ),
    (
        "event-torchdiffeq",
        lambda: solve(decay, Y0, T, {"backend": "torchdiffeq"}, event_fn=lambda t, y: y),
        SolverConfigError,
        "event_fn needs backend='native': the torchdiffeq backend has no event search.",
    ),
    (
        "event-three-times",
        lambda: solve(decay, Y0, torch.tensor([0.0, 1.0, 2.0], dtype=F64), event_fn=lambda t, y: y),
        SolverConfigError,
        (
            "With event_fn, t must hold 2 times (start, and a second one giving the "
            "direction); got 3."
        ),
    ),
    (
        "event-scipy",
        lambda: odeint_event(decay, Y0, T[0], event_fn=lambda t, y: y, method="scipy_solver"),
        SolverConfigError,
        "scipy_solver has no event handling; use a Runge–Kutta method (e.g. dopri5).",
    ),
    (
        "event-not-tensor",
        lambda: odeint_event(decay, Y0, T[0], event_fn=lambda t, y: 1.0),
        SolverConfigError,
        "event_fn must return a tensor (one or more event values), got float.",
    ),
    (
        "event-fixed-step-no-step-size",
        lambda: odeint_event(decay, Y0, T[0], method="rk4", event_fn=lambda t, y: y - 0.5),
        SolverConfigError,
        "Event handling with a fixed-step method needs options={'step_size': ...}.",
    ),
    (
        "event-not-reached",
        lambda: odeint_event(
            decay,
            Y0,
            T[0],
            method="rk4",
            event_fn=lambda t, y: y + 1.0,
            options={"step_size": 0.5, "max_num_steps": 3},
        ),
        MaxStepsExceeded,
        (
            "No event within max_steps=3 steps of 0.5 from t=0; raise max_num_steps or "
            "check event_fn."
        ),
    ),
    (
        "torchdiffeq-missing",
        _no_torchdiffeq,
        SolverConfigError,
        (
            "backend='torchdiffeq' needs torchdiffeq: pip install torchdiffeq (or use "
            "backend='native')."
        ),
    ),
    (
        "torchdiffeq-checkpoint",
        lambda: solve(decay, Y0, T, {"backend": "torchdiffeq", "gradient": "checkpoint"}),
        SolverConfigError,
        (
            "torchdiffeq has no checkpointed gradients; use gradient='backprop' or "
            "'adjoint', or backend='native'."
        ),
    ),
    (
        "adjoint-not-module",
        lambda: odeint_adjoint(decay, Y0, T),
        SolverConfigError,
        (
            "func must be an nn.Module when adjoint_params is not given: the adjoint needs "
            "to know which tensors to differentiate. Pass adjoint_params=(...) or wrap "
            "func."
        ),
    ),
    (
        "adjoint-options-not-inferred",
        lambda: odeint_adjoint(
            Decay(), Y0, T, method="rk4", options={"step_size": 0.5}, adjoint_method="dopri5"
        ),
        SolverConfigError,
        (
            "adjoint_method differs from method, so adjoint_options cannot be inferred from "
            "options: pass adjoint_options as well."
        ),
    ),
    (
        "adjoint-norm",
        lambda: odeint_adjoint(Decay(), Y0, T, adjoint_options={"norm": "max"}),
        SolverConfigError,
        "adjoint_options['norm'] must be 'seminorm' or a callable, got 'max'.",
    ),
    # --- dense output
    (
        "dense-tuple",
        lambda: odeint_dense(decay, (Y0,), T[0], T[1]),
        SolverConfigError,
        (
            "odeint_dense takes a tensor y0 (not a tuple), as torchdiffeq: concatenate the "
            "parts into one tensor."
        ),
    ),
    (
        "dense-fixed-method",
        lambda: odeint_dense(decay, Y0, T[0], T[1], method="rk4"),
        SolverConfigError,
        ("odeint_dense needs an adaptive Runge–Kutta method (dopri5, tsit5 ...), not 'rk4'."),
    ),
    (
        "dense-step-size",
        lambda: odeint_dense(decay, Y0, T[0], T[1], options={"step_size": 0.1}),
        SolverConfigError,
        "odeint_dense takes adaptive steps: drop step_size.",
    ),
    (
        "dense-empty-interval",
        lambda: odeint_dense(decay, Y0, T[0], T[0]),
        SolverConfigError,
        ("odeint_dense needs t0 != t1 (both are 0.0): give an end time t1 before or after t0."),
    ),
    (
        "dense-outside",
        _dense_outside,
        SolverConfigError,
        (
            "t_eval=1.5 lies outside [0.0, 1.0], the interval this dense solution covers: "
            "solve over an interval that contains it."
        ),
    ),
    # --- implicit and multistep engines
    (
        "implicit-max-iters",
        lambda: odeint(decay, Y0, T, method="radau5", options={"max_iters": 0}),
        SolverConfigError,
        "max_iters must be at least 1, got 0.",
    ),
    (
        "implicit-block-size",
        lambda: odeint(decay, Y0, T, method="radau5", options={"block_size": 0}),
        SolverConfigError,
        "block_size must be a positive integer, got 0.",
    ),
    (
        "block-size-divides",
        lambda: check_block_size(2, 3),
        SolverConfigError,
        (
            "block_size=2 must divide the state's 3 entries: it is the size of one of the "
            "independent problems batched along the state's first dimension "
            "(y0[0].numel())."
        ),
    ),
    (
        "newton-failed",
        lambda: solve(
            lambda t, y: y**2,
            Y0,
            torch.tensor([0.0, 2.0], dtype=F64),
            {"method": "implicit_euler", "step_size": 2.0},
        ),
        NewtonFailed,
        (
            "implicit_euler: Newton's iterations did not converge at t=0 with step size 2, "
            "even with a fresh Jacobian (100 iterations allowed). Use a smaller step_size, "
            "raise options['max_iters'], or check the vector field for NaN/discontinuities."
        ),
    ),
    (
        "implicit-max-steps",
        lambda: odeint(
            decay, Y0, T, method="radau5", options={"max_num_steps": 1, "first_step": 0.25}
        ),
        MaxStepsExceeded,
        (
            "radau5: reached max_steps=1 at t=0 of [0, 1] (step size 0.0632); raise "
            "max_steps (options['max_num_steps'] in odeint) or loosen rtol/atol."
        ),
    ),
    (
        "adams-max-order",
        lambda: odeint(
            decay, Y0, T, method="explicit_adams", options={"step_size": 0.5, "max_order": 13}
        ),
        SolverConfigError,
        "max_order must be between 1 and 12, got 13.",
    ),
    (
        "adams-max-iters",
        lambda: odeint(
            decay, Y0, T, method="implicit_adams", options={"step_size": 0.5, "max_iters": 0}
        ),
        SolverConfigError,
        "max_iters must be at least 1, got 0.",
    ),
    # --- scipy
    (
        "scipy-missing",
        _no_scipy,
        SolverConfigError,
        "method='scipy_solver' needs scipy: pip install scipy.",
    ),
    (
        "scipy-solver",
        lambda: odeint(decay, Y0, T, method="scipy_solver", options={"solver": "Euler"}),
        SolverConfigError,
        ("options['solver']='Euler' is not one of scipy's LSODA, RK45, RK23, DOP853, Radau, BDF."),
    ),
    (
        "scipy-min-step",
        lambda: odeint(
            decay, Y0, T, method="scipy_solver", options={"solver": "RK45", "min_step": 0.1}
        ),
        SolverConfigError,
        "min_step applies only to scipy's LSODA, not RK45.",
    ),
    # --- failures during a solve
    (
        "fixed-max-steps",
        lambda: solve(decay, Y0, T, {"method": "rk4", "step_size": 0.1, "max_steps": 5}),
        MaxStepsExceeded,
        (
            "step_size=0.1 needs 10 steps over [0.0, 1.0], more than max_steps=5. Use a "
            "larger step_size or raise max_steps (options['max_num_steps'] in odeint)."
        ),
    ),
    (
        "fixed-non-finite",
        lambda: odeint(
            nan_after_half,
            Y0,
            torch.linspace(0, 1, 5, dtype=F64),
            method="rk4",
            options={"step_size": 0.125},
        ),
        NonFiniteState,
        (
            "The ODE state became NaN or infinite between t=0.5 (the last output time where "
            "it was finite) and t=0.75 (step size 0.125). The dynamics may blow up there: "
            "check the vector field and its inputs, lower the learning rate or the step "
            "size, use float64, or use an adaptive method."
        ),
    ),
    (
        "adaptive-max-steps",
        lambda: odeint(
            decay, Y0, T, rtol=1e-3, atol=1e-6, options={"max_num_steps": 1, "first_step": 0.1}
        ),
        MaxStepsExceeded,
        (
            "Reached max_steps=1 at t=0.1 of [0, 1] (step size 1). The problem may be stiff "
            "or the tolerances too tight (rtol=0.001); raise max_steps "
            "(options['max_num_steps'] in odeint), loosen rtol/atol, or regularise the "
            "dynamics."
        ),
    ),
    (
        "adaptive-non-finite",
        lambda: odeint(nan_after_half, Y0, T, rtol=1e-3, atol=1e-6, options={"first_step": 0.25}),
        NonFiniteState,
        (
            "The ODE state became NaN or infinite near t=0.5 (step size 5.67e-16). The "
            "dynamics may blow up there: check the vector field and its inputs, lower the "
            "learning rate, use float64, or tighten the tolerances."
        ),
    ),
    (
        "adaptive-underflow",
        lambda: odeint(jump_at_half, Y0, T, rtol=1e-6, atol=1e-6),
        StepSizeUnderflow,
        (
            "Step size underflowed to 4.6e-16 at t=0.5: the solution changes too fast for "
            "this tolerance (stiff or blowing-up dynamics). Loosen rtol/atol, use float64, "
            "or regularise the dynamics."
        ),
    ),
    (
        "implicit-underflow",
        lambda: odeint(jump_at_half, Y0, T, method="radau5", rtol=1e-6, atol=1e-6),
        StepSizeUnderflow,
        (
            "radau5: the step size underflowed to 6.72e-16 at t=0.5. Check the vector field "
            "for NaN or a singularity, or loosen rtol/atol."
        ),
    ),
    (
        "adjoint-backward-non-finite",
        adjoint_of_fast_contraction,
        NonFiniteState,
        (
            "In the adjoint's backward solve (from t=1 back to t=0): The ODE state became NaN "
            # where the backward solve blows up depends on rounding: 0.535139 on an AMD EPYC,
            # 0.535135 on an Intel Xeon
            "or infinite near t=0.53513{DIGIT} (step size -3.68e-16). The dynamics may blow up "
            "there: check the vector field and its inputs, lower the learning rate, use "
            "float64, or tighten the tolerances. The adjoint method recovers the state by "
            "solving the ODE backwards in time, which blows up where the forward dynamics "
            "contract fast (stiff or strongly damped): use gradient='checkpoint' for exact "
            "gradients without that reconstruction (or backprop: odeint instead of "
            "odeint_adjoint)."
        ),
    ),
    (
        "implicit-non-finite",
        lambda: odeint(nan_after_half, Y0, T, method="radau5", options={"first_step": 0.25}),
        NonFiniteState,
        (
            "radau5: the vector field returned NaN or infinite values in every try of the "
            "step from t=0.5, down to step size 6.89e-16. The dynamics may blow up there: "
            "check the vector field and its inputs, lower the learning rate, use float64, or "
            "tighten the tolerances."
        ),
    ),
    (
        "implicit-nan-field",
        lambda: odeint(
            lambda t, y: y * float("nan"),
            Y0,
            T,
            method="implicit_euler",
            options={"step_size": 0.25},
        ),
        NonFiniteState,
        (
            "implicit_euler: the vector field is NaN or infinite at the state at t=0. Check "
            "the vector field and its inputs, lower the learning rate, or use float64."
        ),
    ),
    (
        "implicit-nan-iterates",
        lambda: odeint(nan_after_half, Y0, T, method="implicit_euler", options={"step_size": 0.25}),
        NewtonFailed,
        (
            "implicit_euler: Newton's iterations did not converge at t=0.5 with step size "
            "0.25, even with a fresh Jacobian (100 iterations allowed) (the iterates became "
            "NaN or infinite). Use a smaller step_size, raise options['max_iters'], or check "
            "the vector field for NaN/discontinuities."
        ),
    ),
    (
        "scipy-failed",
        lambda: odeint(
            jump_at_half,
            Y0,
            T,
            method="scipy_solver",
            rtol=1e-6,
            atol=1e-6,
            options={"solver": "RK45"},
        ),
        SolverError,
        (
            "scipy's RK45 failed after t=0 (the last output time it reached): Required step "
            "size is less than spacing between numbers. Try another options['solver'] "
            "(Radau or BDF for stiff problems), loosen rtol/atol, or check the vector field "
            "for a blow-up."
        ),
    ),
    (
        "independent-tuple-state",
        lambda: solve_independent(decay, (Y2, Y2), T2),
        SolverConfigError,
        (
            "solve_independent takes y0 as one tensor of shape (batch, ...); concatenate the "
            "parts of a tuple state along their last dimension."
        ),
    ),
    (
        "independent-no-batch-dimension",
        lambda: solve_independent(decay, torch.tensor(1.0, dtype=F64), T2),
        SolverConfigError,
        ("y0 must have a batch dimension first, shape (batch, ...); got ()."),
    ),
    (
        "independent-integer-times",
        lambda: solve_independent(decay, Y2, torch.tensor([0, 1])),
        SolverConfigError,
        ("t has dtype torch.int64; use floating-point times (t.float())."),
    ),
    (
        "independent-times-require-grad",
        lambda: solve_independent(decay, Y2, T2.clone().requires_grad_()),
        SolverConfigError,
        (
            "solve_independent has no gradients with respect to t; detach t (t.detach()), or use "
            "solve(...) with one shared time grid, which differentiates t."
        ),
    ),
    (
        "independent-times-shape",
        lambda: solve_independent(decay, Y2, torch.zeros(3, 2, dtype=F64)),
        SolverConfigError,
        (
            "t must be (batch, n_t) = (2, n_t) with n_t >= 1, or (n_t,) shared by all samples; "
            "got shape (3, 2) for y0 of shape (2, 1)."
        ),
    ),
    (
        "independent-times-nan",
        lambda: solve_independent(
            decay, Y2, torch.tensor([[0.0, 1.0], [0.0, float("nan")]], dtype=F64)
        ),
        SolverConfigError,
        ("t has NaN or infinite values in row 1."),
    ),
    (
        "independent-times-not-monotone",
        lambda: solve_independent(decay, Y2, torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=F64)),
        SolverConfigError,
        (
            "Each row of t must be strictly increasing or strictly decreasing (no repeats); not "
            "so in row 1. Sort each sample's times first."
        ),
    ),
    (
        "independent-implicit-method",
        lambda: solve_independent(decay, Y2, T2, {"method": "radau5"}),
        SolverConfigError,
        (
            "solve_independent runs explicit Runge–Kutta methods (dopri5, tsit5, bosh3, rk4, "
            "...); 'radau5' is not one (family 'implicit'). Use solve(...) for it."
        ),
    ),
    (
        "independent-torchdiffeq-backend",
        lambda: solve_independent(decay, Y2, T2, {"backend": "torchdiffeq"}),
        SolverConfigError,
        ("solve_independent has no 'torchdiffeq' backend; use backend='native'."),
    ),
    (
        "independent-adjoint",
        lambda: solve_independent(decay, Y2.clone().requires_grad_(), T2, {"gradient": "adjoint"}),
        SolverConfigError,
        (
            "solve_independent has no adjoint gradients (a per-sample adjoint would carry a "
            "parameter gradient per sample). Use gradient='checkpoint' (exact, memory of two "
            "states per step) or 'backprop', or solve(...) for the adjoint."
        ),
    ),
    (
        "independent-output-shape",
        lambda: solve_independent(lambda t, y: y[:1], Y2, T2),
        SolverConfigError,
        ("func must return dy/dt of y's shape (2, 1); it returned (1, 1)."),
    ),
    (
        "independent-output-dtype",
        lambda: solve_independent(lambda t, y: y.float(), Y2, T2),
        SolverConfigError,
        ("func returned torch.float32 for a torch.float64 state; return the state's dtype."),
    ),
    (
        "independent-max-steps",
        lambda: solve_independent(
            lambda t, y: -torch.tensor([[1.0], [1e6]], dtype=F64) * y, Y2, T2, {"max_steps": 20}
        ),
        MaxStepsExceeded,
        (
            "Reached max_steps=20 attempts with sample 1 unfinished (sample 1 at t=4.58265e-05 of"
            " [0, 1], step size 3.15e-06). The problem may be stiff or the tolerances too tight; "
            "raise max_steps, loosen rtol/atol, or regularise the dynamics."
        ),
    ),
    (
        "independent-underflow",
        lambda: solve_independent(lambda t, y: y**2, Y2, torch.tensor([0.0, 2.0], dtype=F64)),
        StepSizeUnderflow,
        (
            "Step size underflowed for samples 0, 1 (sample 0 at t=0.999968, step 6e-16): the "
            "solution changes too fast for this tolerance (stiff or blowing-up dynamics). Loosen "
            "rtol/atol, use float64, or regularise the dynamics."
        ),
    ),
    (
        "independent-non-finite",
        lambda: solve_independent(nan_after_half_rows, Y2, T2),
        NonFiniteState,
        (
            "The state or the vector field became NaN or infinite for samples 0, 1 (sample 0 near"
            " t=0.5), at ever smaller steps. Check func for divisions by zero or overflow there."
        ),
    ),
    (
        "independent-negative-step-size",
        lambda: solve_independent(decay, Y2, T2, {"method": "rk4", "step_size": -0.1}),
        SolverConfigError,
        ("step_size must be positive, got -0.1."),
    ),
    (
        "independent-fixed-max-steps",
        lambda: solve_independent(
            decay, Y2, T2, {"method": "rk4", "step_size": 0.1, "max_steps": 5}
        ),
        MaxStepsExceeded,
        (
            "step_size=0.1 needs more than max_steps=5 steps for samples 0, 1. Use a larger "
            "step_size or raise max_steps."
        ),
    ),
    (
        "independent-fixed-non-finite",
        lambda: solve_independent(
            nan_after_half_rows, Y2, T2, {"method": "rk4", "step_size": 0.25}
        ),
        NonFiniteState,
        (
            "The solution became NaN or infinite for samples 0, 1. Use a smaller step_size or an "
            "adaptive method (dopri5), or check func for overflow."
        ),
    ),
    (
        "warm-start-without-memory",
        lambda: solve(decay, Y0, T, {"warm_start": True}),
        SolverConfigError,
        (
            "warm_start=True starts each solve where the previous one settled, which solve() "
            "cannot remember: pass options={'first_step': FirstStepMemory()} (and the adjoint "
            "its own in adjoint_options), keeping the memory between calls, or use an ODEBlock, "
            "which keeps them."
        ),
    ),
    (
        "config-warm-start-all",
        lambda: SolverConfig(
            warm_start=True,
            method="rk4",
            adjoint_method="radau5",
            step_size=0.1,
            per_sample=True,
            backend="torchdiffeq",
            gradient="adjoint",
        ),
        SolverConfigError,
        (
            "7 solver settings are invalid:\n  - per_sample=True differentiates by backprop or "
            "checkpoint, not the adjoint (per sample it would carry a parameter gradient per "
            "sample): set gradient='checkpoint' (exact, little memory) or 'backprop'.\n  - "
            "per_sample=True needs backend='native'.\n  - warm_start=True learns the first step "
            "of adaptive explicit Runge–Kutta solves; method='rk4' is not one (use dopri5, tsit5, "
            "bosh3, ...).\n  - warm_start=True learns the first step of adaptive explicit "
            "Runge–Kutta solves; adjoint_method='radau5' is not one (use dopri5, tsit5, bosh3, "
            "...).\n  - warm_start=True learns the first step of adaptive solves; step_size makes "
            "every step fixed: drop one of the two.\n  - warm_start=True and per_sample=True: "
            "per-sample solves pick each sample's first step on their own; turn one of the two "
            "off.\n  - warm_start=True needs backend='native' (nodezoo's step loop)."
        ),
    ),
    (
        "independent-warm-start",
        lambda: solve_independent(decay, Y2, T2, {"warm_start": True, "gradient": "backprop"}),
        SolverConfigError,
        (
            "solve_independent picks each sample's first step itself; warm_start=True does not "
            "apply to it (set warm_start=False)."
        ),
    ),
    (
        "first-step-memory-implicit",
        lambda: odeint(decay, Y0, T, method="radau5", options={"first_step": FirstStepMemory()}),
        SolverConfigError,
        (
            "options['first_step'] is a FirstStepMemory, which the explicit Runge–Kutta step "
            "loop updates; method 'radau5' (implicit) does not: give it a number, or use an "
            "adaptive Runge–Kutta method (dopri5, tsit5, bosh3, ...)."
        ),
    ),
    (
        "first-step-memory-torchdiffeq",
        lambda: solve(
            decay, Y0, T, {"backend": "torchdiffeq"}, options={"first_step": FirstStepMemory()}
        ),
        SolverConfigError,
        (
            "options['first_step'] is a FirstStepMemory, which nodezoo's own step loop updates; "
            "torchdiffeq takes a number: use backend='native' or give a number."
        ),
    ),
    (
        "first-step-memory-torchdiffeq-adjoint",
        lambda: solve(
            decay,
            Y0,
            T,
            {"backend": "torchdiffeq"},
            adjoint_options={"first_step": FirstStepMemory()},
        ),
        SolverConfigError,
        (
            "adjoint_options['first_step'] is a FirstStepMemory, which nodezoo's own step loop "
            "updates; torchdiffeq takes a number: use backend='native' or give a number."
        ),
    ),
    (
        "adjoint-options-without-adjoint",
        lambda: solve(
            decay, Y0, T, {"gradient": "checkpoint"}, adjoint_options={"norm": "seminorm"}
        ),
        SolverConfigError,
        (
            "adjoint_options set the adjoint's backward solve, and this solve's gradient is "
            "'checkpoint', which has none: drop adjoint_options, or set gradient='adjoint'."
        ),
    ),
    (
        "first-step-memory-value",
        lambda: FirstStepMemory(-1.0),
        ValueError,
        "FirstStepMemory value must be a positive finite step, got -1.0.",
    ),
    (
        "stats-before-any-solve",
        _last_stats_in_a_fresh_thread,
        RuntimeError,
        (
            "No ODE solve has run in this thread yet: call last_stats() after odeint or "
            "solve, in the thread that ran it (or pass stats=SolveStats() to the solve)."
        ),
    ),
]


@pytest.mark.parametrize(
    ("trigger", "error", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_error_message(trigger, error, message):
    with pytest.raises(error) as info:
        trigger()
    if "{DIGIT}" in message:  # one machine-dependent digit, the rest exact
        pattern = re.escape(message).replace(re.escape("{DIGIT}"), "[0-9]")
        assert re.fullmatch(pattern, str(info.value)), str(info.value)
    else:
        assert str(info.value) == message


def _frozen_adjoint_parameter():
    func = Decay()
    odeint_adjoint(func, Y0, T, adjoint_params=tuple(func.parameters()),
                   adjoint_options={"norm": lambda tensors: tensors[0].abs()})  # fmt: skip


WARNING_ROWS = [
    (
        "scipy-callbacks",
        lambda: odeint(WithCallbacks(callback_step=print), Y0, T, method="scipy_solver"),
        (
            "scipy_solver steps inside scipy: ['callback_step'] will not be called; use a "
            "nodezoo method (e.g. dopri5) to have them called."
        ),
    ),
    (
        "fixed-step-callbacks",
        lambda: odeint(
            WithCallbacks(callback_step=lambda *a: None, callback_reject_step=print),
            Y0,
            T,
            method="rk4",
            options={"step_size": 0.5},
        ),
        (
            "Method 'rk4' takes fixed steps and never accepts or rejects one, so "
            "['callback_reject_step'] will not be called (callback_step is)."
        ),
    ),
    (
        "scipy-no-gradient",
        lambda: odeint(decay, Y0.clone().requires_grad_(), T, method="scipy_solver"),
        (
            "scipy_solver runs outside autograd: its outputs carry no gradient. Use "
            "odeint_adjoint (gradient='adjoint') for gradients."
        ),
    ),
    (
        "adjoint-frozen-parameter",
        _frozen_adjoint_parameter,
        (
            "An adjoint parameter does not require grad: it is left out of the adjoint "
            "solve and of the tuple the adjoint norm receives. Pass only the tensors that "
            "require grad in adjoint_params."
        ),
    ),
    (
        "adams-max-order-below-start",
        lambda: odeint(
            decay, Y0, T, method="explicit_adams", options={"step_size": 0.5, "max_order": 1}
        ),
        (
            "max_order=1 is below 4, so the method reduces to rk4; give max_order >= 4 for "
            "Adams steps."
        ),
    ),
    (
        "adams-corrector",
        lambda: odeint(
            lambda t, y: -50 * y,
            Y0,
            T,
            method="implicit_adams",
            options={"step_size": 0.25, "max_iters": 1},
        ),
        (
            "implicit_adams: the corrector did not converge in 1 iterations at t=0.5; use a "
            "smaller step_size or raise options['max_iters']."
        ),
    ),
]


@pytest.mark.parametrize(
    ("trigger", "message"), [r[1:] for r in WARNING_ROWS], ids=[r[0] for r in WARNING_ROWS]
)
def test_warning_message(trigger, message):
    """The first warning the input raises, whole (a solve may repeat it at later steps)."""
    with pytest.warns(UserWarning) as record:
        trigger()
    assert str(record[0].message) == message
