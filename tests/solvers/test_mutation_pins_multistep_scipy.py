"""Adams' option checks and the scipy backend's arguments (mutation survivors of
``multistep.py`` and ``scipy_backend.py``; see tests/README.md, "Mutation testing"), on the
harmonic oscillator y = (cos t, -sin t) and y' = y**2 (blows up at t = 1)."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError, SolverError, SolveStats

F64 = dict(dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.0], **F64)
T = torch.tensor([0.0, 2.0], **F64)
EXACT = torch.tensor([math.cos(2.0), -math.sin(2.0)], **F64)


def oscillator(t, y):
    return torch.stack([y[1], -y[0]])


def _adams(method="explicit_adams", **options):
    return nodezoo.odeint(oscillator, Y0, T, method=method, options=options)


def test_explicit_adams_order_is_one_below_max_order():
    """As torchdiffeq (``prev_f`` holds max_order - 1 values): max_order = 4 is
    Adams-Bashforth 3, so halving the step divides the error by about 2**3."""
    errors = [
        float((_adams(step_size=h, max_order=4)[-1] - EXACT).abs().max()) for h in (0.02, 0.01)
    ]
    assert 2.5 < math.log2(errors[0] / errors[1]) < 3.5


def test_adams_option_checks():
    for bad in (0, 13):
        with pytest.raises(
            SolverConfigError, match=rf"^max_order must be between 1 and 12, got {bad}\.$"
        ):
            _adams(step_size=0.1, max_order=bad)
    _adams(step_size=0.1, max_order=12)  # the bounds themselves are allowed
    with pytest.warns(
        UserWarning, match=r"^max_order=1 is below 4, so the method reduces to rk4; "
    ):
        _adams(step_size=0.1, max_order=1)
    with pytest.warns(UserWarning, match="max_order=3 is below 4"):
        _adams(step_size=0.1, max_order=3)
    with pytest.raises(SolverConfigError, match=r"^max_iters must be at least 1, got 0\.$"):
        _adams("implicit_adams", step_size=0.1, max_iters=0)
    ys = _adams("implicit_adams", step_size=0.01, max_iters=1)  # one corrector pass is allowed
    assert float((ys[-1] - EXACT).abs().max()) < 1e-5


def _scipy(y0=Y0, solver="RK45", **kwargs):
    stats = SolveStats()
    ys = nodezoo.odeint(
        oscillator, y0, T, method="scipy_solver", options={"solver": solver}, stats=stats, **kwargs
    )
    return ys, stats.nfe_forward


def test_scipy_gets_the_method_and_both_tolerances():
    """A small state (1e-6) needs atol to be honoured; RK23 needs more evaluations than DOP853."""
    ys, _ = _scipy(Y0 * 1e-6, rtol=1e-10, atol=1e-14)
    assert float((ys[-1] - EXACT * 1e-6).abs().max()) < 1e-12
    assert (
        _scipy(solver="RK23", rtol=1e-8, atol=1e-8)[1]
        > 2 * _scipy(solver="DOP853", rtol=1e-8, atol=1e-8)[1]
    )


def test_scipy_keeps_float32():
    seen = set()

    def f(t, y):
        seen.add(y.dtype)
        return oscillator(t, y)

    ys = nodezoo.odeint(f, Y0.float(), T.float(), method="scipy_solver", rtol=1e-6, atol=1e-6)
    assert ys.dtype == torch.float32 and seen == {torch.float32}


def test_scipy_failure_says_where():
    """y' = y**2 from y(0) = 1 is 1 / (1 - t): scipy stops before t = 1 (``t`` is the last
    output time it reached, here t = 0: scipy only keeps the times of ``t_eval``)."""
    with pytest.raises(SolverError, match=r"^scipy's RK45 failed after t=0 ") as info:
        nodezoo.odeint(
            lambda t, y: y * y, torch.ones(1, **F64), T, method="scipy_solver",
            options={"solver": "RK45"},
        )  # fmt: skip
    assert 0.0 <= info.value.t < 1.0


def test_scipy_solver_names_are_listed():
    with pytest.raises(SolverConfigError, match=r"is not one of scipy's LSODA, RK45, RK23, DOP853"):
        _scipy(solver="Euler")
