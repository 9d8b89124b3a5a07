"""Adaptive implicit methods honour ``first_step`` in both directions (mutation survivor of
``ImplicitRungeKutta.integrate_adaptive``: the first step is otherwise never checked)."""

import math

import pytest
import torch
from decay import F64, Decay

import nodezoo


@pytest.mark.parametrize("t_end", [1.0, -1.0])
def test_the_first_step_is_first_step_signed_by_the_direction(t_end):
    f = Decay()
    steps = []
    f.callback_step = lambda t, y, dt: steps.append(float(dt))
    times = torch.tensor([0.0, t_end], **F64)
    with torch.no_grad():
        ys = nodezoo.odeint(f, torch.ones(1, **F64), times, method="kvaerno5", rtol=1e-6, atol=1e-9,
                            options={"first_step": 0.01})  # fmt: skip
    assert steps[0] == 0.01 * t_end
    assert abs(ys[-1, 0].item() - math.exp(-0.5 * t_end)) < 1e-5  # y = exp(-k t), k = 0.5
