"""Adjoint and checkpoint gradients against backprop and float64 finite differences."""

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfig, SolveStats, odeint_adjoint


@pytest.fixture(autouse=True)
def float64_default():
    """Finite differences need float64; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class Field(torch.nn.Module):
    """A small time-dependent MLP field."""

    def __init__(self, dim=3, hidden=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, dim)
        ).double()

    def forward(self, t, y):
        return self.net(y) * torch.cos(t)


class TupleField(torch.nn.Module):
    """(x, v) with a learnable damping: a tuple state of two shapes."""

    def __init__(self):
        super().__init__()
        self.damping = torch.nn.Parameter(torch.tensor(0.3))
        self.lin = torch.nn.Linear(2, 2).double()

    def forward(self, t, state):
        x, v = state
        return v, -x - self.damping * v + 0.1 * torch.tanh(self.lin(x))


def _loss(ys):
    """A loss that uses every output time, with distinct weights."""
    if isinstance(ys, tuple):
        return sum(_loss(y) for y in ys)
    w = torch.arange(1, ys.shape[0] + 1, dtype=ys.dtype).view(-1, *[1] * (ys.dim() - 1))
    return (w * torch.sin(ys)).sum()


def _grads(func, y0, t, gradient, **cfg):
    params = list(func.parameters())
    y0s = list(y0) if isinstance(y0, tuple) else [y0]
    ys = nodezoo.solve(func, y0, t, SolverConfig(gradient=gradient, **cfg))
    return torch.autograd.grad(_loss(ys), [*y0s, t, *params])


def _finite_difference(func, y0, t, wrt, eps=1e-6, **cfg):
    cfg = SolverConfig(gradient="backprop", **cfg)
    out = torch.zeros_like(wrt)
    flat = wrt.view(-1)
    for i in range(flat.numel()):
        with torch.no_grad():
            orig = flat[i].item()
            flat[i] = orig + eps
            up = _loss(nodezoo.solve(func, y0, t, cfg))
            flat[i] = orig - eps
            down = _loss(nodezoo.solve(func, y0, t, cfg))
            flat[i] = orig
        out.view(-1)[i] = (up - down) / (2 * eps)
    return out


TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)


@pytest.fixture
def problem():
    func = Field()
    y0 = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
    t = torch.tensor([0.0, 0.4, 1.1, 1.5]).requires_grad_()
    return func, y0, t


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_matches_backprop(problem, gradient):
    ref = _grads(*problem, "backprop", **TIGHT)
    got = _grads(*problem, gradient, **TIGHT)
    tol = 1e-6 if gradient == "adjoint" else 1e-11  # checkpoint is exact for the discrete solve
    for r, g in zip(ref, got):
        assert torch.allclose(r, g, atol=tol, rtol=tol), (r, g)


def test_checkpoint_is_exact_at_loose_tolerance_too(problem):
    """Exact gradients of the discrete solve: same as backprop even when the solve is coarse."""
    loose = dict(method="dopri5", rtol=1e-2, atol=1e-2)
    for r, g in zip(_grads(*problem, "backprop", **loose), _grads(*problem, "checkpoint", **loose)):
        assert torch.allclose(r, g, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
def test_against_finite_differences(problem, gradient):
    func, y0, t = problem
    grads = _grads(func, y0, t, gradient, **TIGHT)
    y0d = y0.detach().clone()
    fd_y0 = _finite_difference(func, y0d, t.detach(), y0d, **TIGHT)
    td = t.detach().clone()
    fd_t = _finite_difference(func, y0.detach(), td, td, **TIGHT)
    weight = func.net[0].weight
    fd_w = _finite_difference(func, y0.detach(), t.detach(), weight.data, **TIGHT)
    assert torch.allclose(grads[0], fd_y0, atol=1e-6)
    assert torch.allclose(grads[1], fd_t, atol=1e-6)
    assert torch.allclose(grads[2], fd_w, atol=1e-6)


@pytest.mark.parametrize("gradient", ["adjoint", "checkpoint"])
def test_tuple_state(gradient):
    func = TupleField()
    y0 = (torch.tensor([1.0, 0.5]).requires_grad_(), torch.tensor([0.0, -0.3]).requires_grad_())
    t = torch.linspace(0, 2, 5).requires_grad_()
    ref = _grads(func, y0, t, "backprop", **TIGHT)
    got = _grads(func, y0, t, gradient, **TIGHT)
    for r, g in zip(ref, got):
        assert torch.allclose(r, g, atol=1e-6), (r, g)


@pytest.mark.parametrize("method", ["rk4", "euler", "midpoint"])
def test_fixed_step_checkpoint_equals_backprop(problem, method):
    cfg = dict(method=method, step_size=0.1)
    for r, g in zip(_grads(*problem, "backprop", **cfg), _grads(*problem, "checkpoint", **cfg)):
        assert torch.allclose(r, g, atol=1e-12)


def test_decreasing_time_gradients(problem):
    func, y0, t = problem
    t_rev = t.detach().flip(0).requires_grad_()
    ref = _grads(func, y0, t_rev, "backprop", **TIGHT)
    for gradient in ("adjoint", "checkpoint"):
        got = _grads(func, y0, t_rev, gradient, **TIGHT)
        for r, g in zip(ref, got):
            assert torch.allclose(r, g, atol=1e-6)


def test_seminorm_cuts_backward_evaluations_with_same_gradients(problem):
    func, y0, t = problem
    runs = {}
    for semi in (False, True):
        stats = SolveStats()
        ys = nodezoo.solve(
            func, y0, t, SolverConfig(rtol=1e-6, atol=1e-6, seminorm=semi), stats=stats
        )
        runs[semi] = (torch.autograd.grad(_loss(ys), [y0, *func.parameters()]), stats)
    assert runs[True][1].nfe_backward < runs[False][1].nfe_backward  # 60 vs 66 here
    for a, b in zip(runs[True][0], runs[False][0]):
        assert torch.allclose(a, b, atol=1e-4)


def test_torchdiffeq_style_odeint_adjoint(problem):
    func, y0, t = problem
    stats = SolveStats()
    ys = odeint_adjoint(func, y0, t, rtol=1e-10, atol=1e-10, stats=stats)
    g = torch.autograd.grad(_loss(ys), [y0, t, *func.parameters()])
    ref = _grads(func, y0, t, "backprop", **TIGHT)
    for r, x in zip(ref, g):
        assert torch.allclose(r, x, atol=1e-6)
    assert stats.nfe_backward > 0
    with pytest.raises(ValueError, match="adjoint_params"):
        odeint_adjoint(lambda t, y: -y, y0, t)
    # a plain function works when the parameters are named
    w = torch.tensor(0.7, requires_grad=True)
    ys = odeint_adjoint(lambda t, y: -w * y, y0, t, adjoint_params=(w,))
    (gw,) = torch.autograd.grad(ys[-1].sum(), [w])
    expected = (-t[-1] * y0 * torch.exp(-w * t[-1])).sum()
    assert torch.allclose(gw, expected.detach(), atol=1e-6)


def test_no_grad_and_requires_grad_free_inputs(problem):
    func, y0, t = problem
    with torch.no_grad():
        ys = nodezoo.solve(func, y0, t, SolverConfig(gradient="adjoint"))
    assert not ys.requires_grad
    for p in func.parameters():
        p.requires_grad_(False)
    ys = nodezoo.solve(func, y0.detach(), t.detach(), SolverConfig(gradient="adjoint"))
    assert not ys.requires_grad
