"""The Newton iteration matrix is refactorised after every fresh Jacobian (mutation survivor
``IterationMatrix.update_jacobian``: a version that stops counting would keep stale LU factors
at an unchanged step size), on y' = -y**3 with fixed steps, where backward Euler's steps
solve y1 + h y1**3 = y0 and Newton needs more than one Jacobian."""

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolveStats

F64 = dict(dtype=torch.float64)


@pytest.mark.parametrize("method", ["implicit_euler", "radauIIA5"])
def test_each_fresh_jacobian_is_factorised_once(method):
    stats = SolveStats()
    h = 0.25
    ys = nodezoo.odeint(
        lambda t, y: -(y**3), torch.tensor([3.0], **F64), torch.linspace(0, 1, 5, **F64),
        method=method, options={"step_size": h}, stats=stats,
    )  # fmt: skip
    assert stats.jacobian_evaluations > 1
    assert stats.lu_decompositions == stats.jacobian_evaluations  # h never changes
    if method == "implicit_euler":
        y0, y1 = ys[:-1, 0], ys[1:, 0]
        assert torch.allclose(y1 + h * y1**3, y0, rtol=1e-6, atol=1e-6)
