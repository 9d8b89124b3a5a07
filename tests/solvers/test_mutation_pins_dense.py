"""``odeint_dense`` beyond the forward dopri5 case (mutation survivors of
``nodezoo/solvers/dense.py``; see tests/README.md, "Mutation testing"): backward in time,
other Runge–Kutta methods, a user norm, the ends of the interval and each refusal, all against
the exact solution of the harmonic oscillator ``y = (cos t, -sin t)``."""

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError

Y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)


def oscillator(t, y):
    return torch.stack([y[1], -y[0]])


def _exact(t):
    return torch.stack([t.cos(), -t.sin()], -1)  # (*t.shape, 2)


def _t(*v):
    return torch.tensor(v, dtype=torch.float64)


def test_backward_in_time_evaluates_anywhere_between_the_ends():
    """From t0 = 2 back to t1 = 0 (y0 is the exact state at t = 2)."""
    y2 = _exact(_t(2.0))[0]
    fn = nodezoo.odeint_dense(oscillator, y2, _t(2.0), _t(0.0), rtol=1e-9, atol=1e-9)
    t = _t(2.0, 1.9, 1.234, 0.5, 0.01, 0.0)
    assert torch.allclose(fn(t), _exact(t), atol=1e-7)
    for outside in (2.5, -0.5):
        with pytest.raises(SolverConfigError, match="outside"):
            fn(_t(outside))


@pytest.mark.parametrize("method", ["bosh3", "tsit5"])
def test_other_runge_kutta_methods_use_their_own_interpolant(method):
    fn = nodezoo.odeint_dense(oscillator, Y0, _t(0.0), _t(3.0), rtol=1e-8, atol=1e-8, method=method)
    t = torch.linspace(0, 3, 31, dtype=torch.float64)
    assert torch.allclose(fn(t), _exact(t), atol=1e-5)
    assert fn(_t(0.0)).tolist() == [[1.0, 0.0]]  # the start is y0 itself


def test_many_steps_each_time_read_from_its_own_step():
    """Loose tolerances: many short steps, each output within the one step that holds it."""
    fn = nodezoo.odeint_dense(oscillator, Y0, _t(0.0), _t(6.0), rtol=1e-5, atol=1e-5)
    t = torch.linspace(0, 6, 301, dtype=torch.float64)
    err = (fn(t) - _exact(t)).abs().max()
    assert float(err) < 1e-3
    assert fn(_t(1.5)).shape == (1, 2) and fn(torch.tensor(1.5)).shape == (2,)


def test_default_tolerances_are_torchdiffeqs():
    """rtol = 1e-7, atol = 1e-9 by default: dopri5 then tracks the oscillator to ~1e-7."""
    fn = nodezoo.odeint_dense(oscillator, Y0, _t(0.0), _t(2.0))
    t = torch.linspace(0, 2, 21, dtype=torch.float64)
    assert float((fn(t) - _exact(t)).abs().max()) < 1e-6


class Counted(torch.nn.Module):
    """The oscillator, counting evaluations and recording the dtype of t it is given."""

    def __init__(self):
        super().__init__()
        self.nfe, self.t_dtypes = 0, set()

    def forward(self, t, y):
        self.nfe += 1
        self.t_dtypes.add(t.dtype)
        return oscillator(t, y)


def _nfe(**options):
    func = Counted()
    fn = nodezoo.odeint_dense(func, Y0, _t(0.0), _t(1.0), rtol=1e-8, atol=1e-8, options=options)
    assert torch.allclose(fn(_t(0.7)), _exact(_t(0.7)), atol=1e-6)
    assert func.t_dtypes == {torch.float64}  # torchdiffeq: t in the state's dtype
    return func.nfe


def test_step_options_are_used():
    """A smaller safety factor takes smaller steps, so more evaluations; max_step = 0.05 on
    [0, 1] means at least 20 steps of 6 new dopri5 stages each."""
    default = _nfe()
    assert _nfe(safety=0.5) > default
    assert default < 120 <= _nfe(max_step=0.05)


def test_user_norm_is_used():
    calls = []

    def norm(y):
        calls.append(y.shape)
        return y.abs().max()

    _nfe(norm=norm)
    assert calls and all(s == Y0.shape for s in calls)


def test_float32_state_sees_float32_times():
    seen = set()

    def f(t, y):
        seen.add(t.dtype)
        return oscillator(t, y)

    fn = nodezoo.odeint_dense(f, Y0.float(), _t(0.0), _t(1.0), rtol=1e-5, atol=1e-5)
    assert fn(_t(0.5)).dtype == torch.float32 and seen == {torch.float32}


def test_tolerances_per_part_and_their_checks():
    """One tolerance per tuple entry, as torchdiffeq: a tensor state is one entry."""
    fn = nodezoo.odeint_dense(oscillator, Y0, _t(0.0), _t(1.0), rtol=[1e-8], atol=[1e-9])
    assert torch.allclose(fn(_t(0.7)), _exact(_t(0.7)), atol=1e-6)
    for name in ("rtol", "atol"):
        with pytest.raises(SolverConfigError, match=f"^{name} must be a non-negative number"):
            nodezoo.odeint_dense(oscillator, Y0, _t(0.0), _t(1.0), **{name: -1.0})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y0=(Y0,)), "^odeint_dense takes a tensor y0"),
        (dict(method="rk4"), "^odeint_dense needs an adaptive Runge"),
        (dict(method="implicit_adams"), "^odeint_dense needs an adaptive Runge"),
        (dict(options={"step_size": 0.1}), "^odeint_dense takes adaptive steps: drop step_size"),
        (dict(t1=_t(0.0)), "^odeint_dense needs t0 != t1"),
        (dict(options={"bogus": 1}), "for method 'dopri5'"),
    ],
)
def test_refusals_say_what_is_wrong(kwargs, match):
    args = dict(y0=Y0, t0=_t(0.0), t1=_t(1.0))
    args.update(kwargs)
    with pytest.raises(SolverConfigError, match=match):
        nodezoo.odeint_dense(oscillator, args.pop("y0"), args.pop("t0"), args.pop("t1"), **args)
