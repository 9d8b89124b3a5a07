"""Terminal events: the event time against analytic answers, and its gradient (implicit
function theorem) against analytic derivatives, in every gradient mode."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfig, SolverConfigError

G = 9.81


class Ball(torch.nn.Module):
    """Free fall, state (height, velocity): hits the ground at t* = sqrt(2 h0 / g) (v0 = 0)."""

    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(G, dtype=torch.float64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g])


def ground(t, y):
    return y[0]


def test_event_time_and_state_match_free_fall():
    y0 = torch.tensor([10.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)  # t[1] only gives the direction
    t_event, ys = nodezoo.odeint(Ball(), y0, t, event_fn=ground, rtol=1e-10, atol=1e-12)
    t_star = math.sqrt(2 * 10.0 / G)
    assert ys.shape == (2, 2)
    assert abs(float(t_event) - t_star) < 1e-9
    assert abs(float(ys[-1, 1]) + G * t_star) < 1e-7  # velocity at impact
    assert abs(float(ys[-1, 0])) < 1e-9
    assert torch.equal(ys[0], y0)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
def test_event_time_gradient_is_analytic(gradient):
    """t* = sqrt(2 h0 / g): dt*/dh0 = 1 / (g t*), dt*/dg = -t* / (2 g); the impact velocity
    v* = -g t* = -sqrt(2 g h0): dv*/dh0 = -g / sqrt(2 g h0)."""
    ball = Ball()
    h0 = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.stack([h0, torch.zeros((), dtype=torch.float64)])
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    cfg = SolverConfig(rtol=1e-10, atol=1e-12, gradient=gradient, adjoint_rtol=1e-10)
    t_event, ys = nodezoo.solve(ball, y0, t, cfg, event_fn=ground)
    t_star = math.sqrt(2 * 10.0 / G)
    dt_dh0, dt_dg = torch.autograd.grad(t_event, (h0, ball.g), retain_graph=True)
    assert abs(float(dt_dh0) - 1 / (G * t_star)) < 1e-6
    assert abs(float(dt_dg) + t_star / (2 * G)) < 1e-6
    (dv_dh0,) = torch.autograd.grad(ys[-1, 1], h0)
    assert abs(float(dv_dh0) + G / math.sqrt(2 * G * 10.0)) < 1e-6


def test_odeint_event_gradient_wrt_start_time():
    """y' = 1 from y(t0) = 0 until y = c: t* = t0 + c, so dt*/dt0 = 1 and dt*/dc = 1."""
    c = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    t0 = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    t_event, _ = nodezoo.odeint_event(
        lambda t, y: torch.ones_like(y),
        torch.zeros(1, dtype=torch.float64),
        t0,
        event_fn=lambda t, y: y.sum() - c,
    )
    assert abs(float(t_event) - 0.9) < 1e-9
    g_t0, g_c = torch.autograd.grad(t_event, (t0, c))
    assert abs(float(g_t0) - 1.0) < 1e-9 and abs(float(g_c) - 1.0) < 1e-9


@pytest.mark.parametrize("interp", ["linear", "cubic"])
def test_fixed_step_event_lands_on_the_root(interp):
    """rk4 with step_size: the root is bracketed with the interpolant, then one step lands on
    it, so the state there has rk4's accuracy, not the interpolant's."""
    y0 = torch.tensor([10.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    opts = {"step_size": 0.1, "interp": interp}
    t_event, ys = nodezoo.odeint(Ball(), y0, t, method="rk4", event_fn=ground, options=opts)
    t_star = math.sqrt(2 * 10.0 / G)
    tol = 1e-9 if interp == "cubic" else 2e-2  # the linear bracket is exact only to O(h^2)
    assert abs(float(t_event) - t_star) < tol
    assert abs(float(ys[-1, 0])) < (1e-7 if interp == "cubic" else 1.0)  # |dh/dt| ~ 14
    with pytest.raises(SolverConfigError, match="step_size"):
        nodezoo.odeint(Ball(), y0, t, method="rk4", event_fn=ground)


def test_event_backward_in_time_tuple_state_and_several_event_outputs():
    """y' = -1 backward from t = 0 (y grows): the first of two event outputs to hit zero."""
    y0 = (torch.zeros(()), torch.zeros(2))
    t = torch.tensor([0.0, -1.0])

    def f(t, y):
        return (-torch.ones(()), -torch.ones(2))

    def event_fn(t, y):
        return torch.stack([y[0] - 3.0, y[1][0] - 2.0])  # y = 2 first, at t = -2

    t_event, (a, b) = nodezoo.odeint(f, y0, t, event_fn=event_fn)
    assert t_event.dtype == torch.float32
    assert abs(float(t_event) + 2.0) < 1e-5
    assert a.shape == (2,) and b.shape == (2, 2)
    assert abs(float(a[-1]) - 2.0) < 1e-5


def test_event_already_at_start_and_wrong_t():
    y0 = torch.tensor([0.0, 1.0])
    t_event, ys = nodezoo.odeint(lambda t, y: y, y0, torch.tensor([0.0, 1.0]), event_fn=ground)
    assert float(t_event) == 0.0 and torch.equal(ys[-1], y0)
    with pytest.raises(SolverConfigError, match="2 times"):
        nodezoo.odeint(lambda t, y: y, y0, torch.tensor([0.0, 1.0, 2.0]), event_fn=ground)
