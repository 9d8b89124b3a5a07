"""What an implicit step does when Newton fails (eighth mutation run): an adaptive solve
quarters the step up to 11 times in a row, the count starting afresh after each accepted step
(``ImplicitRungeKutta.integrate_adaptive`` reset it to 1); a singular iteration matrix is such
a failure, not a crash (``IterationMatrix.solve`` let ``lu_factor``'s RuntimeError through)."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import NewtonFailed, NonFiniteState

F64 = torch.float64


class Field(torch.nn.Module):
    """``rhs(t, y)`` as a vector field that records each step's size."""

    def __init__(self, rhs):
        super().__init__()
        self.rhs = rhs
        self.steps = []

    def forward(self, t, y):
        return self.rhs(t, y)

    def callback_step(self, t, y, dt):
        self.steps.append(float(dt))


def test_after_an_accepted_step_eleven_newton_failures_quarter_the_step_then_give_up():
    """y' = 0 up to t = 0.25, NaN after. radau5's stages lie inside the step (c <= 1): the
    first step, [0, 0.25], has no error and is accepted, and the step grows past the end, so
    the next try is the rest, 0.75. Every stage after t = 0.25 is NaN, so each try fails and
    the step is quartered: 11 tries, the last with h = 0.75 * 4**-10, then the solve gives up,
    with a NonFiniteState (the iterates were NaN: what the explicit methods raise) whose cause
    is the last NewtonFailed."""
    f = Field(lambda t, y: torch.where(t <= 0.25, 0.0, torch.nan) * y)
    with pytest.raises(NonFiniteState, match=r"every try of the step from t=0\.25,") as err:
        nodezoo.odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                       method="radau5", options={"first_step": 0.25})  # fmt: skip
    assert f.steps == [0.25] + [0.75 * 0.25**k for k in range(11)]
    assert (err.value.t, err.value.step_size) == (0.25, 0.75 * 0.25**10)
    assert isinstance(err.value.__cause__, NewtonFailed) and err.value.__cause__.non_finite


def test_eleven_finite_newton_failures_give_up_with_newton_failed():
    """The same quartering when Newton fails on finite values (y' = y**2 blows up at t = 1,
    implicit Euler's equation h y1**2 - y1 + y0 = 0 has no real root for 4 h y0 > 1; the
    fixed-step pin is in test_implicit.py) ends in NewtonFailed, not NonFiniteState. radau5
    from y0 = 1 with first_step = 10 and max_iters = 1 (one Newton iteration never meets
    its tolerance): every try fails on finite iterates."""
    f = Field(lambda t, y: y**2)
    with pytest.raises(NewtonFailed) as err:
        nodezoo.odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64),
                       method="radau5", options={"first_step": 10.0, "max_iters": 1})  # fmt: skip
    assert not err.value.non_finite
    assert f.steps == [10.0 * 0.25**k for k in range(11)]


def test_a_singular_iteration_matrix_fails_the_fixed_step_with_newton_failed():
    """Implicit Euler on y' = 2 y with h = 0.5: the iteration matrix 1 - h * 2 is exactly 0."""
    with pytest.raises(NewtonFailed) as err:
        nodezoo.odeint(lambda t, y: 2 * y, torch.ones(1, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64), method="implicit_euler",
                       options={"step_size": 0.5})  # fmt: skip
    assert (err.value.t, err.value.step_size) == (0.0, 0.5)


def test_a_singular_iteration_matrix_makes_an_adaptive_step_retry_smaller():
    """kvaerno5 (gamma = 0.26) on y' = y from first_step = 1 / 0.26: 1 - h gamma is exactly 0,
    so the first try fails and the step is quartered; the solve then reaches y(10) = e**10."""
    f = Field(lambda t, y: y)
    y = nodezoo.odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64),
                       method="kvaerno5", rtol=1e-8, atol=1e-8,
                       options={"first_step": 1 / 0.26})  # fmt: skip
    assert f.steps[:2] == [1 / 0.26, 0.25 / 0.26]
    assert y[-1].item() == pytest.approx(math.exp(10), rel=1e-6)
