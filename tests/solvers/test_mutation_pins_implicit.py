"""Adaptive implicit methods honour ``first_step`` in both directions (mutation survivor of
``ImplicitRungeKutta.integrate_adaptive``: the first step is otherwise never checked)."""

import math

import pytest
import torch
from decay import F64, Decay

import nodezoo
from nodezoo.solvers import SolveStats


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


def test_accepted_and_rejected_steps_are_counted_as_the_callbacks_see_them():
    f = Decay()
    seen = {"accept": 0, "reject": 0}
    f.callback_accept_step = lambda t, y, dt: seen.__setitem__("accept", seen["accept"] + 1)
    f.callback_reject_step = lambda t, y, dt: seen.__setitem__("reject", seen["reject"] + 1)
    stats = SolveStats()
    with torch.no_grad():
        nodezoo.odeint(f, torch.ones(1, **F64), torch.tensor([0.0, 4.0], **F64),
                       method="kvaerno5", rtol=1e-10, atol=1e-12,
                       options={"first_step": 2.0}, stats=stats)  # fmt: skip
    assert seen["reject"] >= 2  # a first step of 2.0 at 1e-10 is cut more than once
    assert (stats.steps_accepted, stats.steps_rejected) == (seen["accept"], seen["reject"])


def test_per_entry_rtols_of_a_tuple_state_act_as_the_same_float_floored_at_100_eps():
    # one rtol per tuple entry reaches the engine as a tensor over the flat state
    y0 = (torch.tensor([1.0], **F64), torch.tensor([2.0], **F64))
    times = torch.tensor([0.0, 1.0], **F64)

    def solve(rtol):
        def f(t, y):
            return (-0.5 * y[0], -0.5 * y[1])

        with torch.no_grad():
            ys = nodezoo.odeint(f, y0, times, method="kvaerno5", rtol=rtol, atol=1e-9)
        return torch.cat(ys, dim=1)

    assert torch.equal(solve((1e-6, 1e-6)), solve(1e-6))
    assert torch.equal(solve((0.0, 0.0)), solve(0.0))  # both 100 * eps


@pytest.mark.parametrize(
    "method", ["implicit_euler", "trapezoid", "sdirk2", "radauIIA3", "radauIIA5"]
)
def test_a_step_ending_on_a_jump_sees_the_field_before_it(method):
    """y' = 1 before t = 1 and 0 from then on, so y(t) = min(t, 1) and every method is exact.
    The stage at the end of the step that lands on jump_t must use f's left limit; taking the
    value after the jump (mutation survivor of ``ImplicitRungeKutta._f`` dropping
    ``ends_on_jump``) loses part of the last step: implicit_euler would give 0.75."""
    f = lambda t, y: torch.where(t < 1, torch.ones_like(y), torch.zeros_like(y))
    t = torch.tensor([0.0, 1.0, 2.0], **F64)
    options = {"step_size": 0.25, "jump_t": [1.0]}
    ys = nodezoo.odeint(f, torch.zeros(1, **F64), t, method=method, options=options)
    assert ys.flatten().tolist() == pytest.approx([0.0, 1.0, 1.0], abs=1e-12)
