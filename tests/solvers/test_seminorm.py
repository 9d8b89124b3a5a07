"""The seminorm (Kidger et al. 2021) must cut backward evaluations where only the parameter
channels are hard to integrate.

``y' = -y + w * sin(OMEGA t)`` with ``w = 0``: the state and its adjoint are smooth
exponentials, but the parameter-gradient integrand ``a(t) * sin(OMEGA t)`` oscillates fast.
Error control over all channels must resolve the oscillation; the seminorm ignores it, so it
needs strictly (here: several times) fewer backward evaluations. The gradient is known,
``dL/dw = int_0^T exp(-(T - s)) sin(OMEGA s) ds`` for ``L = y(T)``, and the full norm must
reach it. The seminorm's ``dL/dw`` is not error-controlled, so here it is off: that is the trade
the seminorm makes, which is why it only pays where parameter integrands are smooth
(``test_gradients.py`` checks equal gradients on such a problem).
"""

import math

import pytest
import torch

from nodezoo.solvers import SolverConfig, SolveStats, odeint_adjoint, solve

OMEGA, T = 40.0, 2.0
TOL = dict(rtol=1e-6, atol=1e-6)


class Forced(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, t, y):
        return -y + self.w * torch.sin(OMEGA * t)


def _dl_dw():
    # int_0^T e^{s-T} sin(OMEGA s) ds
    a = math.exp(-T)
    return (
        (math.exp(T) * (math.sin(OMEGA * T) - OMEGA * math.cos(OMEGA * T)) + OMEGA)
        * a
        / (1 + OMEGA**2)
    )


def _backward(run, semi):
    func, stats = Forced(), SolveStats()
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, T], dtype=torch.float64)
    ys = run(func, y0, t, stats)
    (grad,) = torch.autograd.grad(ys[-1].sum(), [func.w])
    if not semi:
        assert float(grad) == pytest.approx(_dl_dw(), abs=1e-5)
    return stats.nfe_backward


def test_solve_seminorm_flag():
    def run(semi):
        cfg = SolverConfig(gradient="adjoint", seminorm=semi, **TOL)
        return lambda func, y0, t, stats: solve(func, y0, t, cfg, stats=stats)

    with_semi, without = _backward(run(True), True), _backward(run(False), False)
    assert 3 * with_semi < without, (with_semi, without)


def test_odeint_adjoint_norm_option():
    def run(options):
        return lambda func, y0, t, stats: odeint_adjoint(
            func, y0, t, adjoint_options=options, stats=stats, **TOL
        )

    with_semi = _backward(run(dict(norm="seminorm")), True)
    without = _backward(run(None), False)
    assert 3 * with_semi < without, (with_semi, without)
