"""The checkpointed gradient's counts, seeds and jump handling (mutation survivors of
``gradients.CheckpointSolve.backward``; see tests/README.md, "Mutation testing"), on
y' = -k(t) y, whose gradients are exponentials."""

import math

import pytest
import torch
from decay import Decay

from nodezoo.solvers import SolverConfig, SolveStats, solve

F64 = dict(dtype=torch.float64)
T = torch.tensor([0.0, 1.0], **F64)


@pytest.mark.parametrize(
    "method, options, per_step",
    [("rk4", {"step_size": 0.1}, 4), ("dopri5", None, 6)],
)
def test_backward_recomputes_each_step_once(method, options, per_step):
    """Each accepted step is recomputed once: rk4 evaluates f 4 times; dopri5 6 (f(t) and
    stages 2 to 6: its 7th stage, f at the step's end, only serves the error estimate).
    Two solves into one SolveStats add up. The loss reads ys[0] too: dL/dy0 = 1 + exp(-k)."""
    func, stats = Decay(unused=True), SolveStats()
    cfg = SolverConfig(method=method, gradient="checkpoint", rtol=1e-8, atol=1e-8)
    for _ in range(2):
        y0 = torch.ones(1, **F64, requires_grad=True)
        ys = solve(func, y0, T, cfg, options=options, stats=stats)
        (ys[0].sum() + ys[-1].sum()).backward()
        assert float(y0.grad) == pytest.approx(1 + math.exp(-0.5), abs=1e-7)
    assert stats.steps_backward == stats.steps_accepted > 0
    assert stats.nfe_backward == per_step * stats.steps_accepted
    assert float(func.k.grad) == pytest.approx(2 * -math.exp(-0.5), abs=1e-6)
    assert torch.equal(func.unused.grad, torch.zeros(2, **F64))


@pytest.mark.parametrize("right_at_jump", [True, False])
def test_steps_beside_a_jump_see_the_right_side(right_at_jump):
    """k = 1 before t = 0.5, 3 after, with jump_t = [0.5]: dy(1)/dy0 = exp(-(0.5 + 1.5)).
    Which value k has at exactly 0.5 must not matter: the step ending there sees the left
    side, the one starting there the right side, in the recomputation as in the solve."""

    def k(t):
        after = t >= 0.5 if right_at_jump else t > 0.5
        return 3.0 if after else 1.0

    y0 = torch.ones(1, **F64, requires_grad=True)
    cfg = SolverConfig(gradient="checkpoint", rtol=1e-10, atol=1e-10)
    ys = solve(lambda t, y: -k(float(t)) * y, y0, T, cfg, options={"jump_t": [0.5]})
    assert float(ys[-1, 0]) == pytest.approx(math.exp(-2.0), abs=1e-8)
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert float(grad) == pytest.approx(math.exp(-2.0), abs=1e-8)
