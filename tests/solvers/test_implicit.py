"""Implicit methods: orders of convergence, Newton statistics and failures, and gradients
through the converged Newton solve (all three modes) against finite differences in float64."""

from __future__ import annotations

import math

import pytest
import torch

from nodezoo.solvers import SolverConfigError, SolveStats, solve
from nodezoo.solvers.implicit import IMPLICIT_METHODS
from nodezoo.solvers.newton import NewtonFailed, jacobian
from nodezoo.solvers.stiff_problems import (
    HIRES_END,
    HIRES_Y0,
    ROBERTSON_1E11,
    hires,
    robertson,
    van_der_pol,
)

F64 = torch.float64
ORDERS = {
    "kvaerno5": 5,
    "radau5": 5,
    "implicit_euler": 1,
    "implicit_midpoint": 2,
    "trapezoid": 2,
    "gl4": 4,
    "gl6": 6,
    "radauIIA3": 3,
    "radauIIA5": 5,
    "sdirk2": 2,
    "trbdf2": 2,
}
A_ROT = torch.tensor([[-1.0, 2.0], [-2.0, -1.0]], dtype=F64)


TORCHDIFFEQ_IMPLICIT = {"implicit_euler", "implicit_midpoint", "trapezoid", "gl4", "gl6",
                        "radauIIA3", "radauIIA5", "sdirk2", "trbdf2"}  # fmt: skip


def test_every_torchdiffeq_implicit_method_is_here():
    assert TORCHDIFFEQ_IMPLICIT <= set(IMPLICIT_METHODS) == set(ORDERS)


@pytest.mark.parametrize("method", sorted(ORDERS))
def test_order_of_convergence(method):
    """Halving the step divides the error at t=1 by 2**order (linear system, exact solution)."""
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    exact = torch.linalg.matrix_exp(A_ROT) @ y0
    errors = []
    for n in (8, 16):
        y = solve(lambda t, y: A_ROT @ y, y0, t, {"method": method, "step_size": 1 / n})
        errors.append(float((y[-1] - exact).norm()))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - ORDERS[method]) < 0.15, (method, errors)


@pytest.mark.parametrize("method", ["implicit_euler", "radauIIA5", "trbdf2", "sdirk2"])
def test_l_stable_methods_damp_a_very_stiff_mode(method):
    """lambda*h = -1e6: the stiff component is damped, not amplified (explicit RK blows up)."""
    lam = torch.tensor([[-1e6, 0.0], [0.0, -1.0]], dtype=F64)
    y0 = torch.tensor([1.0, 1.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y = solve(lambda t, y: lam @ y, y0, t, {"method": method, "step_size": 0.1})
    assert abs(float(y[-1, 0])) < 1e-3
    assert abs(float(y[-1, 1]) - math.exp(-1.0)) < 3e-2  # implicit Euler: first order


def test_statistics_count_newton_jacobians_and_factorisations():
    """A linear field: one Jacobian for the whole solve, one LU per step size."""
    stats = SolveStats()
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    solve(lambda t, y: A_ROT @ y, y0, t, {"method": "radauIIA5", "step_size": 0.1}, stats=stats)
    assert stats.jacobian_evaluations == 1
    assert stats.lu_decompositions == 1
    assert stats.steps_accepted <= stats.newton_iterations <= 3 * stats.steps_accepted
    assert stats.nfe_forward > 3 * stats.steps_accepted


def test_jacobian_matches_the_analytic_one_and_batches():
    y = torch.tensor([0.3, -0.7, 1.1], dtype=F64)
    W = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(0))

    def f(t, y, toward=None):
        return torch.tanh(W @ y)

    expected = (1 - torch.tanh(W @ y) ** 2)[:, None] * W
    torch.testing.assert_close(jacobian(f, 0.0, y), expected[None])

    # four independent copies: the diagonal blocks from 3 vector-Jacobian products, not 12
    ys = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))

    def batched(t, y, toward=None):
        return torch.tanh(y.view(4, 3) @ W.t()).reshape(-1)

    blocks = jacobian(batched, 0.0, ys.reshape(-1), block_size=3)
    dense = torch.autograd.functional.jacobian(lambda v: batched(0.0, v), ys.reshape(-1))
    assert blocks.shape == (4, 3, 3)
    torch.testing.assert_close(torch.block_diag(*blocks), dense)
    # forward differences (a field autograd cannot see through) give the same blocks
    detached = lambda t, y, toward=None: batched(t, y).detach()
    fd = jacobian(detached, 0.0, ys.reshape(-1), block_size=3)
    torch.testing.assert_close(fd, blocks, rtol=1e-6, atol=1e-6)
    with pytest.raises(SolverConfigError, match="block_size=5 must divide"):
        jacobian(batched, 0.0, ys.reshape(-1), block_size=5)


def test_newton_failure_is_a_clear_error():
    """y' = y**2 from y=1 blows up at t=1: a step of 2 has no real implicit-Euler solution."""
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    with pytest.raises(NewtonFailed, match="smaller step_size"):
        solve(lambda t, y: y**2, y0, t, {"method": "implicit_euler", "step_size": 2.0})


def test_newton_failure_says_which_step():
    """Implicit Euler on y' = y**2 solves h y1**2 - y1 + y0 = 0, real only if 4 h y0 <= 1. With
    h = 0.2 from y0 = 1 the first step lands on (1 - sqrt(0.2)) / 0.4 = 1.382, where 4 h y0 =
    1.106: the second step, from t = 0.2, has no solution (``NewtonFailed.t``/``step_size``)."""
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(NewtonFailed) as err:
        solve(lambda t, y: y**2, y0, t, {"method": "implicit_euler", "step_size": 0.2})
    assert err.value.t == pytest.approx(0.2, abs=1e-15)
    assert err.value.step_size == pytest.approx(0.2, abs=1e-15)


def test_bad_option_is_refused():
    y0 = torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(SolverConfigError, match="max_iters"):
        solve(lambda t, y: -y, y0, t, {"method": "gl4", "step_size": 0.1}, options={"max_iters": 0})


class StiffField(torch.nn.Module):
    """A stiff, nonlinear 2-state system: a fast relaxation (rate k) onto a slow oscillator."""

    def __init__(self, k=200.0):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=F64))
        self.w = torch.nn.Parameter(torch.tensor(1.5, dtype=F64))

    def forward(self, t, y):
        fast = -self.k * (y[0] - torch.sin(y[1]))
        slow = -self.w * y[0] + 0.1 * y[1] ** 2 * torch.cos(t)
        return torch.stack([fast, slow])


def _loss(field, y0, config):
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    ys = solve(field, y0, t, config)
    return (ys[1:] ** 2).sum() + ys[-1, 0]


@pytest.mark.parametrize(
    ("method", "gradient", "k", "tol"),
    [
        ("radauIIA5", "backprop", 200.0, 1e-7),
        ("gl4", "backprop", 200.0, 1e-7),
        ("trbdf2", "checkpoint", 200.0, 1e-7),
        ("radauIIA5", "checkpoint", 200.0, 1e-7),
        ("kvaerno5", "backprop", 200.0, 1e-7),
        # The adjoint re-solves y backwards in time, where a fast decaying mode grows like
        # exp(k t): with k=200 that reconstruction is ill-posed whatever the method, so the
        # adjoint is checked on a mildly stiff k; its gradients are to the method's accuracy.
        ("radauIIA5", "adjoint", 10.0, 1e-5),
    ],
)
def test_gradients_match_finite_differences(method, gradient, k, tol):
    field = StiffField(k)
    y0 = torch.tensor([0.5, 0.2], dtype=F64, requires_grad=True)
    config = {"method": method, "step_size": 0.02, "gradient": gradient, "rtol": 1e-10,
              "atol": 1e-12}  # fmt: skip
    loss = _loss(field, y0, config)
    grads = torch.autograd.grad(loss, (y0, field.k, field.w))
    eps = 1e-6
    with torch.no_grad():
        fd = []
        base = {"method": method, "step_size": 0.02, "rtol": 1e-12, "atol": 1e-14}
        for tensor in (y0, field.k, field.w):
            flat = tensor.view(-1)
            column = torch.empty_like(flat)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(_loss(field, y0, base))
                flat[i] = old - eps
                down = float(_loss(field, y0, base))
                flat[i] = old
                column[i] = (up - down) / (2 * eps)
            fd.append(column.view_as(tensor))
    for g, expected in zip(grads, fd, strict=True):
        scale = 1.0 + float(expected.abs().max())
        assert float((g - expected).abs().max()) / scale < tol, (g, expected)


# -- adaptive: kvaerno5 against exact solutions and scipy's Radau at rtol = atol = 1e-12 ------


def _scipy_radau(f, y0, t_end):
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        return f(torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()

    sol = solve_ivp(rhs, (0.0, t_end), y0.numpy(), method="Radau", rtol=1e-12, atol=1e-12)
    assert sol.success
    return torch.from_numpy(sol.y[:, -1])


def test_kvaerno5_on_a_stiff_linear_system_with_exact_solution():
    """Eigenvalues -1, -10 and -1e4 (stiffness ratio 1e4), a non-diagonal matrix."""
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1)))[0]
    A = Q @ torch.diag(torch.tensor([-1.0, -10.0, -1e4], dtype=F64)) @ Q.t()
    y0 = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    stats = SolveStats()
    ys = solve(lambda t, y: A @ y, y0, t, {"method": "kvaerno5", "rtol": 1e-8, "atol": 1e-10},
               stats=stats)  # fmt: skip
    exact = torch.stack([torch.linalg.matrix_exp(A * float(ti)) @ y0 for ti in t])
    assert float((ys - exact).abs().max()) < 1e-7
    assert stats.jacobian_evaluations <= 3  # linear: the Jacobian never needs refreshing
    assert stats.steps_accepted < 200  # an explicit method needs > 1e4 steps (stability)


def test_kvaerno5_robertson_against_scipy_radau():
    """Robertson's chemical kinetics (HW test set) to t = 1e5 at rtol = 1e-6."""
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t_end = 1e5
    stats = SolveStats()
    ys = solve(robertson, y0, torch.tensor([0.0, t_end], dtype=F64),
               {"method": "kvaerno5", "rtol": 1e-6, "atol": 1e-10}, stats=stats)  # fmt: skip
    reference = _scipy_radau(robertson, y0, t_end)
    error = (ys[-1] - reference).abs()
    assert float((error / (reference.abs() + 1e-10)).max()) < 1e-5
    assert float(ys[-1].sum()) == pytest.approx(1.0, abs=1e-9)  # mass is conserved
    assert stats.jacobian_evaluations > 1 and stats.lu_decompositions >= stats.jacobian_evaluations


def test_kvaerno5_van_der_pol_mu_1000_against_scipy_radau():
    """van der Pol with mu = 1000 through its initial fast layer (t in [0, 0.2])."""
    vdp = van_der_pol(1000.0)

    y0 = torch.tensor([2.0, 0.0], dtype=F64)
    ys = solve(vdp, y0, torch.tensor([0.0, 0.2], dtype=F64),
               {"method": "kvaerno5", "rtol": 1e-7, "atol": 1e-7})  # fmt: skip
    reference = _scipy_radau(vdp, y0, 0.2)
    assert float((ys[-1] - reference).abs().max()) < 1e-5


def test_explicit_methods_stall_on_robertson_where_kvaerno5_does_not():
    from nodezoo.solvers import MaxStepsExceeded

    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1e3], dtype=F64)
    with pytest.raises(MaxStepsExceeded):
        solve(robertson, y0, t, {"method": "dopri5", "rtol": 1e-6, "atol": 1e-10,
                                 "max_steps": 2000})  # fmt: skip
    solve(robertson, y0, t, {"method": "kvaerno5", "rtol": 1e-6, "atol": 1e-10, "max_steps": 2000})


# -- radau5: adaptive Radau IIA 5 against exact solutions, the IVP test set and scipy's Radau --


def test_radau5_on_a_stiff_linear_system_with_exact_solution():
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1)))[0]
    A = Q @ torch.diag(torch.tensor([-1.0, -10.0, -1e4], dtype=F64)) @ Q.t()
    y0 = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    t = torch.linspace(0.0, 2.0, 9, dtype=F64)  # outputs inside steps: collocation dense output
    stats = SolveStats()
    ys = solve(lambda t, y: A @ y, y0, t, {"method": "radau5", "rtol": 1e-8, "atol": 1e-10},
               stats=stats)  # fmt: skip
    exact = torch.stack([torch.linalg.matrix_exp(A * float(ti)) @ y0 for ti in t])
    assert float((ys - exact).abs().max()) < 1e-8
    assert stats.jacobian_evaluations <= 3
    assert stats.steps_accepted < 500  # scipy's Radau: ~300; explicit RK: > 1e4 (stability)


def test_radau5_hires_against_the_test_set_reference():
    y0 = torch.tensor(HIRES_Y0, dtype=F64)
    reference = torch.tensor(HIRES_END, dtype=F64)
    for rtol, bound in ((1e-6, 1e-4), (1e-10, 1e-8)):
        ys = solve(hires, y0, torch.tensor([0.0, 321.8122], dtype=F64),
                   {"method": "radau5", "rtol": rtol, "atol": rtol})  # fmt: skip
        relative = float(((ys[-1] - reference) / reference).abs().max())
        assert relative < bound, (rtol, relative)


def test_radau5_robertson_to_its_standard_end_time():
    """t = 1e11 in one step sequence (Robertson's classic horizon), mass conserved."""
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    stats = SolveStats()
    ys = solve(robertson, y0, torch.tensor([0.0, 1e11], dtype=F64),
               {"method": "radau5", "rtol": 1e-6, "atol": 1e-10}, stats=stats)  # fmt: skip
    reference = torch.tensor(ROBERTSON_1E11, dtype=F64)
    assert float(((ys[-1] - reference) / reference).abs().max()) < 1e-4
    assert float(((ys[-1] - reference).abs() / (1e-10 + 1e-6 * reference)).max()) < 1.0
    assert float(ys[-1].sum()) == pytest.approx(1.0, abs=1e-12)
    assert stats.steps_accepted < 1000


def test_radau5_matches_scipy_radau_in_error_and_cost():
    """The same method and estimator as scipy's Radau: at rtol 1e-6 the error and the work
    (f evaluations + Jacobians) are within 2x of scipy's, on Robertson and van der Pol."""
    from scipy.integrate import solve_ivp

    vdp = van_der_pol(1000.0)

    cases = [(robertson, [1.0, 0.0, 0.0], 1e3, 1e-10), (vdp, [2.0, 0.0], 0.2, 1e-6)]
    for f, y0, t_end, atol in cases:
        y0 = torch.tensor(y0, dtype=F64)
        reference = _scipy_radau(f, y0, t_end)
        stats = SolveStats()
        ys = solve(f, y0, torch.tensor([0.0, t_end], dtype=F64),
                   {"method": "radau5", "rtol": 1e-6, "atol": atol}, stats=stats)  # fmt: skip
        error = float((ys[-1] - reference).abs().max())
        rhs = lambda t, y, f=f: f(torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()
        sol = solve_ivp(rhs, (0.0, t_end), y0.numpy(), method="Radau", rtol=1e-6, atol=atol)
        scipy_error = float((torch.from_numpy(sol.y[:, -1]) - reference).abs().max())
        assert error < 2 * scipy_error, (f.__name__, error, scipy_error)
        work, scipy_work = stats.nfe + stats.jacobian_evaluations, sol.nfev + sol.njev
        assert work < 2 * scipy_work, (f.__name__, work, scipy_work)


def test_radau5_batch_with_block_diagonal_jacobians_equals_the_dense_solve():
    """Independent van der Pol problems: the block-diagonal Jacobian (batched LU) takes the
    same steps as the dense one, and each row matches its own solve."""
    mus = torch.tensor([5.0, 20.0, 100.0], dtype=F64)

    def batch(t, y):
        return torch.stack([y[:, 1], mus * ((1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0])], -1)

    y0 = torch.tensor([[2.0, 0.0], [1.0, 0.5], [-1.5, 0.2]], dtype=F64)
    t = torch.tensor([0.0, 0.2], dtype=F64)
    config = {"method": "radau5", "rtol": 1e-7, "atol": 1e-7}
    dense_stats, block_stats = SolveStats(), SolveStats()
    dense = solve(batch, y0, t, config, stats=dense_stats)
    blocks = solve(batch, y0, t, config, stats=block_stats, options={"block_size": 2})
    torch.testing.assert_close(blocks, dense, rtol=1e-9, atol=1e-9)
    assert block_stats.steps_accepted == dense_stats.steps_accepted
    for i in range(3):
        row = solve(lambda t, y, i=i: batch(t, y.expand(3, 2))[i], y0[i], t, config)
        torch.testing.assert_close(blocks[-1, i], row[-1], rtol=1e-5, atol=1e-5)
    with pytest.raises(SolverConfigError, match="block_size=4 must divide"):
        solve(batch, y0, t, config, options={"block_size": 4})


def test_block_size_leaves_the_adjoint_dense():
    """The adjoint's augmented state is not block diagonal: its solve ignores block_size (its
    17 entries could not even be split in blocks of 2) and its gradients match backprop's."""
    A = torch.tensor([[-3.0, 1.0], [0.5, -2.0]], dtype=F64)
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.5], [0.2, 0.3], [0.0, 1.0]], dtype=F64)
    t = torch.tensor([0.0, 0.5], dtype=F64)
    grads = {}
    for gradient in ("backprop", "adjoint"):
        config = {"method": "kvaerno5", "rtol": 1e-9, "atol": 1e-11, "gradient": gradient}
        ys = solve(lambda t, y: torch.tanh(y @ A.t()) * w, y0, t, config, params=(w,),
                   options={"block_size": 2})  # fmt: skip
        (grads[gradient],) = torch.autograd.grad(ys[-1].square().sum(), w)
    torch.testing.assert_close(grads["adjoint"], grads["backprop"], rtol=1e-6, atol=1e-8)


def test_radau5_adaptive_gradients_match_finite_differences():
    """Gradients of the adaptive solve, outputs inside steps through the collocation
    polynomial: backprop and checkpoint (both exact for the discrete solve) agree, and match
    central differences of solves at a tighter tolerance (where the step sequence no longer
    matters)."""
    field = StiffField(50.0)
    y0 = torch.tensor([0.5, 0.2], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.1, 0.2], dtype=F64)

    def loss(config):
        ys = solve(field, y0, t, {"method": "radau5", "rtol": 1e-8, "atol": 1e-10, **config})
        return (ys[1:] ** 2).sum() + ys[-1, 0]

    backprop = torch.autograd.grad(loss({"gradient": "backprop"}), (y0, field.k))
    checkpoint = torch.autograd.grad(loss({"gradient": "checkpoint"}), (y0, field.k))
    for b, c in zip(backprop, checkpoint, strict=True):
        torch.testing.assert_close(b, c, rtol=1e-8, atol=1e-10)
    eps, tight = 1e-4, {"rtol": 1e-11, "atol": 1e-13}
    with torch.no_grad():
        for g, tensor in ((backprop[0][0], y0.view(-1)[:1]), (backprop[1], field.k.view(-1))):
            old = float(tensor[0])
            tensor[0] = old + eps
            up = float(loss(tight))
            tensor[0] = old - eps
            down = float(loss(tight))
            tensor[0] = old
            fd = (up - down) / (2 * eps)
            assert abs(float(g) - fd) < 1e-6 * (1 + abs(fd)), (float(g), fd)
