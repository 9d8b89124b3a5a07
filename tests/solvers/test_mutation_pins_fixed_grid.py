"""Fixed-step grids (mutation survivors of ``rk._fixed_grid``): output times closer together than
a tiny fraction of the interval are merged, a fraction of its length (t_end - t0), not of where it
lies on the time axis; the step-count refusal says where the solve stood."""

import pytest
import torch

import nodezoo
from nodezoo.solvers import MaxStepsExceeded, SolverConfig

F64 = dict(dtype=torch.float64)


def test_close_output_times_far_from_zero_are_each_reached():
    # y' = 1: Euler is exact, y(t) = t - t0, whatever the steps.
    # Two outputs 1e-7 apart on [1000, 1000.5]: far above 1e-9 of the interval's length
    # (5e-10), so both are stepped to; below 1e-9 of t0 + t_end (2e-6).
    times = torch.tensor([1000.0, 1000.25, 1000.25 + 1e-7, 1000.5], **F64)
    one = lambda t, y: torch.ones_like(y)
    ys = nodezoo.odeint(one, torch.zeros(1, **F64), times, method="euler")
    assert torch.allclose(ys[:, 0], times - 1000.0, rtol=0, atol=1e-12)


def test_step_count_refusal_names_the_start_time_and_step_size():
    config = SolverConfig(method="rk4", step_size=1e-3, max_steps=10, gradient="backprop")
    with pytest.raises(MaxStepsExceeded, match="needs 1000 steps") as info:
        nodezoo.solve(lambda t, y: -y, torch.ones(1), torch.tensor([0.5, 1.5]), config)
    assert (info.value.t, info.value.step_size) == (0.5, 1e-3)


def test_an_output_time_replaces_the_grid_point_it_merges_with():
    """0.7 + 1e-12 is within the merge tolerance (1e-9) of the grid's 0.7: the output time
    itself takes that point's place, the other points stay."""
    from nodezoo.solvers.rk import _fixed_grid

    out = 0.7 + 1e-12
    points, tol = _fixed_grid([0.0, out, 1.0], torch.zeros(1), 1.0, 0.1, 1000, (), (), None)
    assert tol == 1e-9
    grid = [0.1 * k for k in range(1, 11)]
    assert len(points) == 10 and points[6] == out
    assert points[:6] + points[7:] == pytest.approx(grid[:6] + grid[7:], abs=1e-15)
    assert points[:6] == sorted(points[:6])
