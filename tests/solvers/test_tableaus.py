"""Each tableau satisfies its order conditions, and its measured convergence order matches."""

import math

import numpy as np
import pytest
import torch

from nodezoo.solvers import METHODS, odeint
from nodezoo.solvers.tableaus import get_tableau


def _matrix(tab):
    s = tab.stages
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i + 1, : len(row)] = row
    return A


def _order_conditions(tab, b, order=None):
    """Residuals of the classical order conditions up to min(order, 5) (default: tab.order)."""
    c, A = np.asarray(tab.c), _matrix(tab)
    order = tab.order if order is None else order
    conds = [(b.sum(), 1.0)]
    if order >= 2:
        conds += [(b @ c, 1 / 2)]
    if order >= 3:
        conds += [(b @ c**2, 1 / 3), (b @ A @ c, 1 / 6)]
    if order >= 4:
        conds += [(b @ c**3, 1 / 4), (b @ (c * (A @ c)), 1 / 8)]
        conds += [(b @ A @ c**2, 1 / 12), (b @ A @ A @ c, 1 / 24)]
    if order >= 5:
        conds += [(b @ c**4, 1 / 5), (b @ (c**2 * (A @ c)), 1 / 10), (b @ (c * (A @ c**2)), 1 / 15)]
        conds += [(b @ (c * (A @ A @ c)), 1 / 30), (b @ (A @ c) ** 2, 1 / 20)]
        conds += [(b @ A @ c**3, 1 / 20), (b @ A @ (c * (A @ c)), 1 / 40)]
        conds += [(b @ A @ A @ c**2, 1 / 60), (b @ A @ A @ A @ c, 1 / 120)]
    return [abs(v - target) for v, target in conds]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_row_sums_and_order_conditions(name):
    tab = get_tableau(name)
    assert np.allclose(_matrix(tab).sum(1), tab.c, atol=1e-14)
    # tsit5's published coefficients satisfy the conditions to ~1e-12 only (16-digit decimals)
    assert max(_order_conditions(tab, np.asarray(tab.b))) < 1e-11
    if tab.adaptive:
        assert abs(sum(tab.b_error)) < 1e-12  # both solutions are consistent
        # the embedded solution has the order the step-size controller assumes
        b_low = np.asarray(tab.b) - np.asarray(tab.b_error)
        low = tab.control_order - 1
        assert max(_order_conditions(tab, b_low, low)) < 1e-11
        if low < 5:  # and no higher, or the estimate would shrink faster than assumed
            assert max(_order_conditions(tab, b_low, low + 1)) > 1e-6


@pytest.mark.parametrize("name", [n for n in sorted(METHODS) if METHODS[n].fsal])
def test_dense_output_endpoints(name):
    tab = get_tableau(name)
    assert np.allclose(tab.dense_weights(0.0), 0.0, atol=1e-13)
    assert np.allclose(tab.dense_weights(1.0), tab.b, atol=1e-13)
    if tab.mid is not None:
        assert np.allclose(tab.dense_weights(0.5), tab.mid, atol=1e-13)


def _oscillator(t, y):
    return torch.stack([y[1], -y[0]])


@pytest.mark.parametrize("name", sorted(METHODS))
def test_measured_convergence_order(name):
    tab = get_tableau(name)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = torch.tensor([math.cos(2.0), -math.sin(2.0)], dtype=torch.float64)
    hs = [0.4, 0.2] if tab.order >= 8 else [0.1, 0.05]  # dopri8 hits round-off at 0.1
    errs = [
        (odeint(_oscillator, y0, t, method=name, options={"step_size": h})[-1] - exact).norm()
        for h in hs
    ]
    order = math.log2(float(errs[0] / errs[1]))
    assert abs(order - tab.order) < 0.3, f"{name}: measured order {order:.2f}"


@pytest.mark.parametrize("name", ["dopri5", "tsit5", "bosh3"])
def test_dense_output_keeps_the_tolerance(name):
    """Outputs interpolated inside steps are as accurate as the steps themselves."""
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0, 3, 61, dtype=torch.float64)
    tol = 1e-9
    ys = odeint(_oscillator, y0, t, method=name, rtol=tol, atol=tol)
    assert float((ys[:, 0] - torch.cos(t)).abs().max()) < 20 * tol
