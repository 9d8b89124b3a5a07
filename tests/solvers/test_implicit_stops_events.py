"""Adaptive implicit methods (radau5, kvaerno5) with jump_t and events, against closed forms.

The stiff test problem: y' = -k (y - u(t)), y(0) = y0. With a switched input u = [t >= 1/2]
its solution is y0 exp(-k t) before 1/2 and 1 - (1 - y(1/2)) exp(-k (t - 1/2)) after; with
u = cos t it is y0' exp(-k t) + (k^2 cos t + k sin t) / (k^2 + 1), y0' = y0 - k^2 / (k^2 + 1).
"""

import math

import pytest
import torch
from scipy.optimize import brentq

import nodezoo
from nodezoo.solvers import solve
from nodezoo.solvers.stats import last_stats

F64 = torch.float64
METHODS = ["radau5", "kvaerno5"]


def switched(k):
    return lambda t, y: -k * (y - (t >= 0.5).to(y.dtype))


def switched_exact(k: float, y0: float, t: float) -> float:
    if t < 0.5:
        return y0 * math.exp(-k * t)
    return 1 - (1 - y0 * math.exp(-k * 0.5)) * math.exp(-k * (t - 0.5))


def forced_exact(k: float, y0: float, t: float) -> float:
    c = y0 - k * k / (k * k + 1)
    return c * math.exp(-k * t) + (k * k * math.cos(t) + k * math.sin(t)) / (k * k + 1)


@pytest.mark.parametrize("method", METHODS)
def test_a_jump_in_a_stiff_field_is_crossed_exactly_with_jump_t(method):
    """With jump_t = [1/2] a step ends on the switch and the next starts on its far side: the
    solution matches the closed form at 1/2 and after (test_mutation_pins_stop_times.py has
    the steps landing on stops, backwards in time too)."""
    k, y0 = 50.0, 2.0
    times = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=F64)
    y = nodezoo.odeint(switched(k), torch.tensor([y0], dtype=F64), times, method=method,
                       rtol=1e-9, atol=1e-12, options={"jump_t": [0.5]})  # fmt: skip
    expected = [switched_exact(k, y0, float(t)) for t in times]
    torch.testing.assert_close(y[:, 0], torch.tensor(expected, dtype=F64), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_a_stiff_event_is_found_where_the_closed_form_crosses(method):
    """y' = -100 (y - cos t) from y = 1 follows cos t closely and crosses 0 just after pi/2:
    the event time is the closed form's root, and the state there is 0."""
    k = 100.0
    root = brentq(lambda t: forced_exact(k, 1.0, t), 1.0, 2.0, xtol=1e-14)
    t_event, ys = nodezoo.odeint(
        lambda t, y: -k * (y - torch.cos(t)), torch.ones(1, dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64), method=method, rtol=1e-9, atol=1e-12,
        event_fn=lambda t, y: y[0],
    )  # fmt: skip
    assert t_event.item() == pytest.approx(root, abs=1e-8)
    assert abs(ys[-1].item()) < 1e-8
    assert last_stats().steps_accepted < 200  # stiff: an explicit method needs far more


@pytest.mark.parametrize("method", METHODS)
def test_the_event_time_of_a_stiff_solve_has_the_closed_forms_gradient(method):
    """d(event time)/dk by autograd (the event's implicit-function gradient through radau5's
    or kvaerno5's solve) against a central difference of the closed form's root."""
    k = torch.tensor(100.0, dtype=F64, requires_grad=True)
    t_event, _ = nodezoo.odeint(
        lambda t, y: -k * (y - torch.cos(t)), torch.ones(1, dtype=F64),
        torch.tensor([0.0, 10.0], dtype=F64), method=method, rtol=1e-10, atol=1e-12,
        event_fn=lambda t, y: y[0],
    )  # fmt: skip
    (grad,) = torch.autograd.grad(t_event, k)

    def root(kk):
        return brentq(lambda t: forced_exact(kk, 1.0, t), 1.0, 2.0, xtol=1e-15)

    eps = 1e-3
    expected = (root(100.0 + eps) - root(100.0 - eps)) / (2 * eps)
    assert grad.item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_checkpointed_gradients_across_a_jump_equal_backprop(method):
    """Checkpoint mode replays each recorded step, the one ending on the jump and the one
    starting past it included: the same gradients as backprop through the solve."""
    grads = {}
    for gradient in ("backprop", "checkpoint"):
        k = torch.tensor([30.0], dtype=F64, requires_grad=True)
        y0 = torch.tensor([2.0], dtype=F64, requires_grad=True)
        y = solve(switched(k), y0, torch.tensor([0.0, 0.6, 1.0], dtype=F64),
                  {"method": method, "rtol": 1e-7, "atol": 1e-9, "gradient": gradient},
                  params=[k], options={"jump_t": [0.5]})  # fmt: skip
        grads[gradient] = torch.autograd.grad(y[1:].sum(), (k, y0))
    for a, b in zip(grads["backprop"], grads["checkpoint"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


class Recorder(torch.nn.Module):
    """``rhs`` as a field that records every evaluation time and counts step attempts."""

    def __init__(self, rhs):
        super().__init__()
        self.rhs, self.times, self.attempts = rhs, [], 0

    def forward(self, t, y):
        self.times.append(t.item())
        return self.rhs(t, y)

    def callback_step(self, t, y, dt):
        self.attempts += 1


@pytest.mark.parametrize("method", METHODS)
def test_jump_t_saves_the_steps_that_creep_up_on_a_jump(method):
    """u = [t > 1/2] (left-continuous): without jump_t the steps shrink onto the switch and
    many are rejected; with it, a step lands on it and f restarts from its far side. No
    evaluation lands between 1/2 and the far-side restart with a left-side value: kvaerno5's
    stage at c = 1.23 of the step ending on 1/2 is taken at 1/2 from inside."""
    k, y0 = 50.0, 2.0

    def rhs(t, y):
        return -k * (y - (t > 0.5).to(y.dtype))

    attempts = {}
    for options in ({}, {"jump_t": [0.5]}):
        f = Recorder(rhs)
        y = nodezoo.odeint(f, torch.tensor([y0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                           method=method, rtol=1e-8, atol=1e-10, options=options)  # fmt: skip
        assert y[-1].item() == pytest.approx(switched_exact(k, y0, 1.0), abs=1e-9)
        attempts[bool(options)] = f.attempts
    assert attempts[True] < attempts[False]
    # the step that ends on the jump evaluates nothing past it (nor does the solve after its
    # last step, which ends there)
    f = Recorder(rhs)
    nodezoo.odeint(f, torch.tensor([y0], dtype=F64), torch.tensor([0.0, 0.5], dtype=F64),
                   method=method, rtol=1e-8, atol=1e-10, options={"jump_t": [0.5]})  # fmt: skip
    assert max(f.times) <= 0.5


@pytest.mark.parametrize("method", METHODS)
def test_the_adjoint_crosses_the_jump_backwards_too(method):
    """The adjoint's backward solve gets jump_t as well (mildly damped, k = 2, so the state can
    be recovered backwards): its gradient agrees with backprop's to the solve's tolerance."""
    grads = {}
    for gradient in ("backprop", "adjoint"):
        k = torch.tensor([2.0], dtype=F64, requires_grad=True)
        y = solve(switched(k), torch.tensor([2.0], dtype=F64),
                  torch.tensor([0.0, 0.7, 1.0], dtype=F64),
                  {"method": method, "rtol": 1e-10, "atol": 1e-12, "gradient": gradient},
                  params=[k], options={"jump_t": [0.5]})  # fmt: skip
        (grads[gradient],) = torch.autograd.grad(y[1:].sum(), k)
    torch.testing.assert_close(grads["adjoint"], grads["backprop"], rtol=1e-7, atol=0)


class Calls(torch.nn.Module):
    """``rhs`` as a field that records each call's time and whether autograd tracks ``y`` (a
    Jacobian evaluation) or not (a stage or f0)."""

    def __init__(self, rhs):
        super().__init__()
        self.rhs, self.calls = rhs, []

    def forward(self, t, y):
        self.calls.append((t.item(), y.requires_grad))
        return self.rhs(t, y)


@pytest.mark.parametrize("method", METHODS)
def test_past_a_jump_f0_and_the_jacobian_are_taken_on_the_far_side(method):
    """y' = -a(t) y with a = 1 up to t = 1/2 and 1000 after: the step from the jump starts
    from f on the far side (a call at the next float above 1/2 without grad) and a fresh
    Jacobian there (one with grad) before any stage past the jump is evaluated (with the old
    side's Jacobian, -1 instead of -1000, Newton would first fail); y(1) = exp(-1/2 - 500)."""
    f = Calls(lambda t, y: -torch.where(t > 0.5, 1000.0, 1.0) * y)
    y = nodezoo.odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                       method=method, rtol=1e-8, atol=1e-300,
                       options={"jump_t": [0.5]})  # fmt: skip
    far = math.nextafter(0.5, 1.0)
    assert (far, False) in f.calls
    assert all(t != 0.5 for t, _ in f.calls)  # each side from its own side, nothing on it
    first_past = next(i for i, (t, _) in enumerate(f.calls) if t > far)
    assert f.calls.index((far, True)) < first_past
    assert y[-1].item() == pytest.approx(math.exp(-0.5 - 500), rel=1e-5)
