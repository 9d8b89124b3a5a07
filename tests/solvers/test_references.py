"""Solutions agree with analytic solutions, scipy's DOP853 and torchdiffeq.

scipy and torchdiffeq are dev dependencies: each test that needs one skips on its own, so the
analytic tests run without them."""

import math

import numpy as np
import pytest
import torch

import nodezoo
from nodezoo.solvers import SolveStats, odeint

ADAPTIVE = ["dopri5", "tsit5", "bosh3"]


def van_der_pol(t, y, mu=1.0):
    return torch.stack([y[..., 1], mu * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)


def lotka_volterra(t, y):
    a, b, c, d = 1.5, 1.0, 3.0, 1.0
    return torch.stack(
        [a * y[..., 0] - b * y[..., 0] * y[..., 1], -c * y[..., 1] + d * y[..., 0] * y[..., 1]], -1
    )


def _mlp_field():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)
    ).double()

    def f(t, y):
        return net(y)

    return f


PROBLEMS = {
    "van_der_pol": (van_der_pol, [2.0, 0.0], 6.0),
    "lotka_volterra": (lotka_volterra, [1.0, 1.0], 6.0),
    "random_mlp": (_mlp_field(), [0.3, -0.5, 1.0], 3.0),
}


def _scipy(f, y0, times):
    solve_ivp = pytest.importorskip("scipy.integrate").solve_ivp

    def rhs(t, y):
        with torch.no_grad():
            return f(torch.tensor(t), torch.from_numpy(y)).numpy()

    sol = solve_ivp(
        rhs, (times[0], times[-1]), y0, method="DOP853", t_eval=times, rtol=1e-12, atol=1e-12
    )
    assert sol.success
    return torch.from_numpy(sol.y.T)


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_agrees_with_scipy_dop853(problem, method):
    f, y0, t_end = PROBLEMS[problem]
    times = np.linspace(0, t_end, 25)
    ref = _scipy(f, np.array(y0), times)
    tol = 1e-8
    ys = odeint(
        f,
        torch.tensor(y0, dtype=torch.float64),
        torch.from_numpy(times),
        rtol=tol,
        atol=tol,
        method=method,
    )
    scale = 1 + ref.abs().max()
    # global error is a modest multiple of the local tolerance on these horizons
    assert float((ys.detach() - ref).abs().max()) < 2e3 * tol * scale


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("tol", [1e-4, 1e-7])
def test_meets_tolerance_on_analytic_problem(method, tol):
    """y' = -2 t y has y = y0 exp(-t^2); the error tracks the requested tolerance."""
    t = torch.linspace(0, 2, 11, dtype=torch.float64)
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    ys = odeint(lambda t, y: -2 * t * y, y0, t, rtol=tol, atol=tol, method=method)
    exact = y0 * torch.exp(-(t**2))[:, None]
    assert float((ys - exact).abs().max()) < 30 * tol


def test_decreasing_time_matches_increasing():
    f, y0, _ = PROBLEMS["lotka_volterra"]
    y0 = torch.tensor(y0, dtype=torch.float64)
    fwd = odeint(f, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), rtol=1e-10, atol=1e-10)
    back = odeint(
        f, fwd[-1], torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64), rtol=1e-10, atol=1e-10
    )
    assert torch.allclose(back[-1], y0, atol=1e-7)


def test_tuple_state_matches_concatenated_state():
    def f_tuple(t, state):
        x, v = state
        return v, -x

    def f_cat(t, y):
        return torch.cat([y[2:], -y[:2]])

    t = torch.linspace(0, 4, 9, dtype=torch.float64)
    x0, v0 = (
        torch.tensor([1.0, 0.5], dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
    )
    xs, vs = odeint(f_tuple, (x0, v0), t, rtol=1e-9, atol=1e-9)
    ys = odeint(f_cat, torch.cat([x0, v0]), t, rtol=1e-9, atol=1e-9)
    assert xs.shape == (9, 2) and vs.shape == (9, 2)
    assert torch.allclose(xs, ys[:, :2], atol=1e-7) and torch.allclose(vs, ys[:, 2:], atol=1e-7)
    assert torch.allclose(xs[:, 0], x0[0] * torch.cos(t) + v0[0] * torch.sin(t), atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtypes_and_shapes(dtype):
    y0 = torch.randn(4, 3, 2, dtype=dtype)
    t = torch.linspace(0, 1, 5, dtype=dtype)
    ys = odeint(lambda t, y: -y, y0, t, rtol=1e-5, atol=1e-6)
    assert ys.shape == (5, 4, 3, 2) and ys.dtype == dtype
    assert torch.allclose(ys[-1], y0 * math.exp(-1), atol=1e-4)
    with torch.no_grad():
        assert torch.equal(odeint(lambda t, y: -y, y0, t, rtol=1e-5, atol=1e-6), ys)


@pytest.mark.parametrize(
    "method, options",
    [
        ("rk4", {}),
        ("midpoint", {}),
        ("explicit_adams", {"max_order": 4}),
        ("dopri5", {"first_step": 0.01, "max_step": 0.01}),
    ],
)
def test_float32_steps_round_once_at_the_state_scale(method, options):
    """y' = 0.2 from y = 3.2 in 150 float32 steps of 0.01: every step should add one summed
    increment (one rounding of at most half an ulp of y, ~1.2e-7), as torchdiffeq does. Adding
    the stages one by one (BLAS gemv) rounds once per stage: rk4 drifted by 5e-5 here,
    explicit_adams by 2e-5."""
    y0 = torch.full((3,), 3.2)
    t = torch.tensor([1.0, 2.5], dtype=torch.float64)
    opts = dict(options) if method == "dopri5" else {"step_size": 0.01, **options}
    with torch.no_grad():
        ys = odeint(lambda t, y: torch.full_like(y, 0.2), y0, t, method=method, options=opts)
    exact = 3.2 + 0.2 * 1.5  # float64; y0 and 0.2 in float32 differ from it by ~1e-7 only
    half_ulp = float(torch.finfo(torch.float32).eps)  # ulp(y) = 2 eps for y in [2, 4)
    assert (ys[-1].double() - exact).abs().max() <= 150 * half_ulp + 3e-7


def test_jump_t_handles_a_discontinuity_exactly():
    """f jumps at t=1: with jump_t the solver lands there, evaluates each side of the jump on
    its own side, and the piecewise-linear solution is exact with no rejected steps."""
    f = lambda t, y: torch.where(t < 1, torch.ones_like(y), -torch.ones_like(y))
    y0 = torch.zeros(1, dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    stats = SolveStats()
    ys = nodezoo.solve(
        f,
        y0,
        t,
        dict(rtol=1e-8, atol=1e-8, gradient="backprop"),
        stats=stats,
        options={"jump_t": torch.tensor([1.0])},
    )
    assert abs(float(ys[-1])) < 1e-12
    assert stats.steps_rejected == 0
    plain = SolveStats()
    odeint(f, y0, t, rtol=1e-8, atol=1e-8, stats=plain)
    assert plain.nfe_forward > 5 * stats.nfe_forward  # without it the controller fights the jump
    ys = odeint(f, y0, t, rtol=1e-8, atol=1e-8, options={"step_t": [1.0]})
    assert abs(float(ys[-1])) < 1e-6  # step_t lands on t=1 but does not know f jumps there


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-9])
def test_dopri5_matches_torchdiffeq_with_no_more_evaluations(problem, tol):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f, y0, t_end = PROBLEMS[problem]
    calls = {"n": 0}

    def counted(t, y):
        calls["n"] += 1
        return f(t, y)

    y0 = torch.tensor(y0, dtype=torch.float64)
    t = torch.linspace(0, t_end, 7, dtype=torch.float64)
    ref = torchdiffeq.odeint(counted, y0, t, rtol=tol, atol=tol, method="dopri5")
    nfe_ref = calls["n"]
    stats = SolveStats()
    ys = odeint(f, y0, t, rtol=tol, atol=tol, method="dopri5", stats=stats)
    exact = _scipy(f, y0.numpy(), t.numpy())
    err, err_ref = float((ys - exact).abs().max()), float((ref - exact).abs().max())
    assert float((ys - ref).abs().max()) < 1e3 * tol * (1 + float(exact.abs().max()))
    assert err <= 1.5 * err_ref + 1e-12
    assert stats.nfe_forward <= nfe_ref, (stats.nfe_forward, nfe_ref)


def test_backend_torchdiffeq_runs_the_same_config():
    pytest.importorskip("torchdiffeq")
    f, y0, _ = PROBLEMS["van_der_pol"]
    y0 = torch.tensor(y0, dtype=torch.float64)
    t = torch.linspace(0, 3, 5, dtype=torch.float64)
    cfg = dict(rtol=1e-8, atol=1e-8, gradient="backprop")
    native = nodezoo.solve(f, y0, t, cfg)
    stats = SolveStats()
    other = nodezoo.solve(f, y0, t, {**cfg, "backend": "torchdiffeq"}, stats=stats)
    assert torch.allclose(native, other, atol=1e-6)
    assert stats.nfe_forward > 0


def test_no_grad_solve_equals_autograd_solve_through_rejected_steps():
    """The no-grad path reuses one stage buffer; a rejected step must not corrupt the FSAL
    derivative carried into the retry (regression test)."""
    f = lambda t, y: van_der_pol(t, y, mu=5.0)
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0, 5, 11, dtype=torch.float64)
    stats = SolveStats()
    with torch.no_grad():
        fast = odeint(f, y0, t, rtol=1e-6, atol=1e-6, stats=stats)
    assert stats.steps_rejected > 0
    assert torch.equal(fast, odeint(f, y0, t, rtol=1e-6, atol=1e-6).detach())
