"""Fixed-step events and ``odeint_event`` beyond ``test_events.py`` (mutation survivors of
``rk._land_on_event``, ``rk._event_grid`` and ``odeint.odeint_event``; see tests/README.md,
"Mutation testing"). Problems whose solutions rk4 reproduces exactly (polynomials in t), so
event times, states, gradients and evaluation counts have closed forms."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import MaxStepsExceeded, SolverConfig, SolverConfigError, SolveStats

G = 9.81
F64 = dict(dtype=torch.float64)


class Ball(torch.nn.Module):
    """Free fall (height, velocity) from rest: lands at t* = sqrt(2 h0 / g)."""

    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(G, **F64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g])


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
def test_fixed_step_event_gradients_are_analytic(gradient):
    """rk4 integrates free fall exactly and the cubic bracket is exact on a quadratic, so the
    event time and its gradients match t* = sqrt(2 h0 / g): dt*/dh0 = 1 / (g t*),
    dt*/dg = -t* / (2 g), and v* = -sqrt(2 g h0): dv*/dh0 = -g / sqrt(2 g h0)."""
    ball = Ball()
    h0 = torch.tensor(10.0, **F64, requires_grad=True)
    y0 = torch.stack([h0, torch.zeros((), **F64)])
    cfg = SolverConfig(method="rk4", gradient=gradient, atol=1e-12)  # atol: the time tolerance
    t_event, ys = nodezoo.solve(
        ball, y0, torch.tensor([0.0, 1.0], **F64), cfg,
        options={"step_size": 0.1, "interp": "cubic"}, event_fn=lambda t, y: y[0],
    )  # fmt: skip
    t_star = math.sqrt(2 * 10.0 / G)
    assert float(t_event) == pytest.approx(t_star, abs=1e-11)
    dt_dh0, dt_dg = torch.autograd.grad(t_event, (h0, ball.g), retain_graph=True)
    assert float(dt_dh0) == pytest.approx(1 / (G * t_star), abs=1e-9)
    assert float(dt_dg) == pytest.approx(-t_star / (2 * G), abs=1e-9)
    (dv_dh0,) = torch.autograd.grad(ys[-1, 1], h0)
    assert float(dv_dh0) == pytest.approx(-G / math.sqrt(2 * G * 10.0), abs=1e-9)


def test_cubic_bracket_uses_the_slope_at_the_steps_end():
    """y' = t, y(0) = 0 until y = c: t* = sqrt(2c). The cubic Hermite bracket is exact only
    with f at the step's end, t + h (the field depends on t, so t - h would be wrong)."""
    c = 0.5 * 0.37**2
    t_event, ys = nodezoo.odeint(
        lambda t, y: t.expand_as(y), torch.zeros(1, **F64), torch.tensor([0.0, 1.0], **F64),
        method="rk4", event_fn=lambda t, y: y.sum() - c, atol=1e-12,
        options={"step_size": 0.1, "interp": "cubic"},
    )  # fmt: skip
    assert float(t_event) == pytest.approx(0.37, abs=1e-11)
    assert float(ys[-1, 0]) == pytest.approx(c, abs=1e-12)


def _ramp_event(**options):
    """y' = 1 from 0 until y = 0.25, rk4 with steps of 0.1 (the event is in the third)."""
    stats = SolveStats()
    t_event, _ = nodezoo.odeint(
        lambda t, y: torch.ones_like(y), torch.zeros(1, **F64), torch.tensor([0.0, 1.0], **F64),
        method="rk4", event_fn=lambda t, y: y.sum() - 0.25, stats=stats,
        options={"step_size": 0.1, "interp": "linear", **options},
    )  # fmt: skip
    return float(t_event), stats


def test_fixed_step_event_grid_counts():
    """Three full steps of 4 evaluations bracket the event; the step landing on it reuses the
    third step's f(t) and adds 3: 15 evaluations. max_num_steps bounds the bracketing steps."""
    t_event, stats = _ramp_event()
    assert t_event == pytest.approx(0.25, abs=1e-8)
    assert (stats.nfe_forward, stats.steps_accepted) == (15, 3)
    assert _ramp_event(max_num_steps=3)[0] == pytest.approx(0.25, abs=1e-8)
    with pytest.raises(MaxStepsExceeded, match="No event within max_steps=2 steps"):
        _ramp_event(max_num_steps=2)


def test_fixed_step_event_needs_a_step_size():
    with pytest.raises(SolverConfigError, match=r"^Event handling with a fixed-step method"):
        nodezoo.odeint(
            lambda t, y: y, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4",
            event_fn=lambda t, y: y.sum() - 2.0,
        )  # fmt: skip


def test_odeint_event_reverse_time_and_keyword_arguments():
    """y' = 1 from y(0) = 0 backward in time until y = -0.5: t* = -0.5. Keyword arguments go
    to ``odeint``: rk4 without a step size is refused there."""
    ramp = lambda t, y: torch.ones_like(y)
    t_event, ys = nodezoo.odeint_event(
        ramp, torch.zeros(1, **F64), torch.tensor(0.0, **F64),
        event_fn=lambda t, y: y.sum() + 0.5, reverse_time=True,
    )  # fmt: skip
    assert float(t_event) == pytest.approx(-0.5, abs=1e-9)
    assert float(ys[-1, 0]) == pytest.approx(-0.5, abs=1e-9)
    with pytest.raises(SolverConfigError, match="step_size"):
        nodezoo.odeint_event(
            ramp, torch.zeros(1, **F64), torch.tensor(0.0, **F64),
            event_fn=lambda t, y: y.sum() - 0.5, method="rk4",
        )  # fmt: skip


OMEGA = 0.5671432904097838  # the omega constant: exp(-W) = W


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
def test_event_function_of_time_and_state(gradient):
    """y' = -y from y0 until y = t: y0 exp(-t*) = t*, so t* = W(1) at y0 = 1, and by the
    implicit function theorem dt*/dy0 = exp(-t*) / (y0 exp(-t*) + 1) = t* / (t* + 1)."""
    y0 = torch.ones(1, **F64, requires_grad=True)
    cfg = SolverConfig(rtol=1e-10, atol=1e-12, gradient=gradient, adjoint_rtol=1e-10)
    t_event, _ = nodezoo.solve(
        lambda t, y: -y, y0, torch.tensor([0.0, 1.0], **F64), cfg,
        event_fn=lambda t, y: y.sum() - t, params=(),
    )  # fmt: skip
    assert float(t_event) == pytest.approx(OMEGA, abs=1e-10)
    (dt_dy0,) = torch.autograd.grad(t_event, y0)
    assert float(dt_dy0) == pytest.approx(OMEGA / (OMEGA + 1), abs=1e-7)


def test_event_function_of_time_only():
    """g = t - 0.7 ignores y: t* = 0.7 whatever y0 (no gradient), y(t*) = y0 exp(-0.7)."""
    y0 = torch.ones(1, **F64, requires_grad=True)
    t_event, ys = nodezoo.odeint(
        lambda t, y: -y, y0, torch.tensor([0.0, 1.0], **F64),
        event_fn=lambda t, y: t - 0.7, rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    assert float(t_event) == pytest.approx(0.7, abs=1e-10)
    (dy_dy0,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert float(dy_dy0) == pytest.approx(math.exp(-0.7), abs=1e-8)


def test_the_event_time_does_not_depend_on_atol():
    """y' = 1 from 0 reaches 0.3 at t = 0.3 (dopri5 is exact here): the event time is the
    root of the dense output to a few ulps, with a loose per-part atol (a tuple state) as
    with a tight one (it was found only to the smallest atol, torchdiffeq's rule)."""
    y0 = (torch.zeros(1, **F64), torch.ones(1, **F64))
    for atol in ([1e-12, 1e-2], 1e-2):
        t_event, _ = nodezoo.odeint(
            lambda t, y: (torch.ones_like(y[0]), torch.zeros_like(y[1])), y0,
            torch.tensor([0.0, 1.0], **F64), event_fn=lambda t, y: y[0].sum() - 0.3,
            rtol=1e-10, atol=atol,
        )  # fmt: skip
        assert float(t_event) == pytest.approx(0.3, abs=4 * math.ulp(1.0))


def test_a_linear_event_is_found_in_one_secant_step():
    """One rk4 step of 4 across the event of y = t at 1.3, whatever atol: the regula falsi's
    first secant on the (exact) linear interpolant lands on the root (to an ulp). Calls of
    event_fn: two at the start (the signs of its outputs; whether it is zero there), one after
    the step (crossed), the bracket's two ends, the secant point, then four while the
    bracket's other end closes in (a bisection, as the secant had not halved it, and more)."""

    def run(atol):
        calls = []

        def event_fn(t, y):
            calls.append(float(t))
            return y.sum() - 1.3

        t_event, _ = nodezoo.odeint(
            lambda t, y: torch.ones_like(y), torch.zeros(1, **F64),
            torch.tensor([0.0, 1.0], **F64), method="rk4", event_fn=event_fn, atol=atol,
            options={"step_size": 4.0},
        )  # fmt: skip
        assert float(t_event) == pytest.approx(1.3, abs=4 * math.ulp(1.3))
        return calls

    calls = run(1e-3)
    assert calls == run(1e-9)
    assert calls[:5] == [0.0, 0.0, 4.0, 0.0, 4.0] and len(calls) == 10
    assert calls[5] == pytest.approx(1.3, abs=math.ulp(1.3))


def test_event_fn_must_return_a_tensor():
    with pytest.raises(SolverConfigError, match=r"must return a tensor .*got float"):
        nodezoo.odeint(
            lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]),
            event_fn=lambda t, y: float(y.sum()),
        )  # fmt: skip
