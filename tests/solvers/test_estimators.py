"""Embedded error estimates shrink at their order's rate and track the true local error.

One step of each tableau on ``y' = -2 t y**2`` (exact solution ``1 / (t**2 + 1)``), done in
NumPy from the coefficients alone: the estimate ``h * (b - b_low) . K`` must scale as
``h**control_order`` (the embedded solution has order ``control_order - 1``) and, for small
``h``, equal the embedded solution's true local error.
"""

import itertools
import math

import numpy as np
import pytest

from nodezoo.solvers.tableaus import get_tableau

T0 = 0.3
ESTIMATED = ["adaptive_heun", "bosh3", "dopri5", "tsit5", "fehlberg2"]


def _exact(t):
    return 1.0 / (t * t + 1.0)


def _f(t, y):
    return -2.0 * t * y * y


def _step(tab, h):
    """(embedded solution's true local error, the tableau's estimate of it) for step h."""
    y0, K = _exact(T0), []
    for i, ci in enumerate(tab.c):
        row = tab.a[i - 1] if i else ()
        K.append(_f(T0 + ci * h, y0 + h * sum(a * k for a, k in zip(row, K))))
    K = np.asarray(K)
    b_low = np.asarray(tab.b) - np.asarray(tab.b_error)
    y_low = y0 + h * b_low @ K
    return _exact(T0 + h) - y_low, h * np.asarray(tab.b_error) @ K


@pytest.mark.parametrize("name", ESTIMATED)
def test_estimate_shrinks_at_the_embedded_order(name):
    tab = get_tableau(name)
    hs = [0.2 / 2**k for k in range(4)]
    est = [abs(_step(tab, h)[1]) for h in hs]
    rates = [math.log2(a / b) for a, b in itertools.pairwise(est)]
    assert rates[-1] == pytest.approx(tab.control_order, abs=0.25), rates


@pytest.mark.parametrize("name", ESTIMATED)
def test_estimate_tracks_the_embedded_error(name):
    tab = get_tableau(name)
    true_err, est = _step(tab, 0.0125)
    # only |estimate| reaches the controller; fehlberg2 stores b_error with torchdiffeq's sign
    assert abs(est) == pytest.approx(abs(true_err), rel=0.05)
