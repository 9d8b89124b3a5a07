"""The methods added for torchdiffeq parity: dopri8, fehlberg2, the Adams family and
scipy_solver, checked by their order of convergence and against analytic solutions; and
odeint_dense."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfig, SolverConfigError, get_method, method_names

T = torch.tensor([0.0, 2.0], dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
EXACT = torch.tensor([math.cos(2.0), -math.sin(2.0)], dtype=torch.float64)


def oscillator(t, y):
    return torch.stack([y[1], -y[0]])


@pytest.mark.parametrize(
    "method, options, steps, order",
    [
        ("dopri8", {}, (0.4, 0.2), 8),
        ("fehlberg2", {}, (0.02, 0.01), 2),
        ("explicit_adams", {"max_order": 5}, (0.02, 0.01), 4),  # AB4 after the rk4 start
        ("implicit_adams", {"max_order": 5}, (0.02, 0.01), 5),  # AB4 predictor, AM5 corrector
    ],
)
def test_order_of_convergence(method, options, steps, order):
    errors = []
    for h in steps:
        ys = nodezoo.odeint(oscillator, Y0, T, method=method, options={"step_size": h, **options})
        errors.append(float((ys[-1] - EXACT).abs().max()))
    observed = math.log2(errors[0] / errors[1])
    assert abs(observed - order) < 0.3, (errors, observed)


@pytest.mark.parametrize("method", ["dopri8", "fehlberg2"])
def test_adaptive_new_methods_meet_tolerance_with_dense_outputs(method):
    t = torch.linspace(0, 2, 9, dtype=torch.float64)
    exact = torch.stack([t.cos(), -t.sin()], 1)
    tol = 1e-10 if method == "dopri8" else 1e-5
    ys = nodezoo.odeint(oscillator, Y0, t, method=method, rtol=tol, atol=tol)
    # fehlberg2 controls the error of its first-order solution: torchdiffeq's reaches 3.5e-3 here
    bound = 100 * tol if method == "dopri8" else 5e-3
    assert float((ys - exact).abs().max()) < bound


def test_adams_on_an_uneven_grid_keeps_its_order():
    """Output times between the steps make the grid uneven; the weights follow the actual
    times, so the error still falls like h^4 (torchdiffeq's equal-step weights would not)."""
    errors = []
    for h in (0.02, 0.01):
        t = torch.tensor([0.0, 0.0137, 0.9, 1.33, 2.0], dtype=torch.float64)
        ys = nodezoo.odeint(
            oscillator, Y0, t, method="explicit_adams", options={"step_size": h, "max_order": 5}
        )
        errors.append(float((ys[-1] - EXACT).abs().max()))
    assert math.log2(errors[0] / errors[1]) > 3.5


@pytest.mark.parametrize("solver", ["LSODA", "RK45", "DOP853", "Radau", "BDF"])
def test_scipy_solver_matches_the_exact_solution(solver):
    pytest.importorskip("scipy")
    t = torch.linspace(2, 0, 5, dtype=torch.float64)  # backward in time too
    y0 = torch.tensor([math.cos(2.0), -math.sin(2.0)], dtype=torch.float64)
    ys = nodezoo.odeint(oscillator, y0, t, method="scipy_solver", options={"solver": solver})
    exact = torch.stack([t.cos(), -t.sin()], 1)
    assert float((ys - exact).abs().max()) < 1e-5


def test_scipy_solver_gradients_come_from_the_adjoint():
    pytest.importorskip("scipy")
    y0 = Y0.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="no gradient"):
        ys = nodezoo.odeint(oscillator, y0, T, method="scipy_solver")
    assert not ys.requires_grad
    ys = nodezoo.odeint_adjoint(oscillator, y0, T, method="scipy_solver", adjoint_params=())
    ys[-1, 0].backward()  # d cos-part / d y0 = (cos 2, sin 2)
    assert torch.allclose(y0.grad, torch.tensor([math.cos(2.0), math.sin(2.0)]).double(), atol=1e-5)


def test_non_runge_kutta_methods_refuse_checkpointing():
    with pytest.raises(SolverConfigError, match="checkpoint"):
        nodezoo.solve(
            oscillator,
            Y0.clone().requires_grad_(),  # a copy: Y0 is shared by the tests above
            T,
            SolverConfig(method="implicit_adams", gradient="checkpoint"),
        )
    assert get_method("fixed_adams").name == "implicit_adams"
    assert {"dopri8", "fehlberg2", "explicit_adams", "scipy_solver"} <= set(method_names())


def test_odeint_dense_evaluates_anywhere():
    fn = nodezoo.odeint_dense(oscillator, Y0, T[0], T[1], rtol=1e-9, atol=1e-9)
    t = torch.tensor([[0.0, 0.3], [1.7, 2.0]], dtype=torch.float64)
    ys = fn(t)
    assert ys.shape == (2, 2, 2)
    assert torch.allclose(ys, torch.stack([t.cos(), -t.sin()], -1), atol=1e-7)
    with pytest.raises(SolverConfigError, match="outside"):
        fn(torch.tensor([2.5]))
