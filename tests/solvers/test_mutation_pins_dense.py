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


def test_user_norm_and_controller_options_are_used():
    calls = []

    def norm(y):
        calls.append(y.shape)
        return y.abs().max()

    fn = nodezoo.odeint_dense(
        oscillator, Y0, _t(0.0), _t(1.0), rtol=1e-8, atol=1e-8,
        options={"norm": norm, "safety": 0.8},
    )  # fmt: skip
    assert calls and all(s == Y0.shape for s in calls)
    assert torch.allclose(fn(_t(0.7)), _exact(_t(0.7)), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y0=(Y0,)), "tensor y0"),
        (dict(method="rk4"), "adaptive Runge"),
        (dict(method="implicit_adams"), "adaptive Runge"),
        (dict(options={"step_size": 0.1}), "drop step_size"),
        (dict(t1=_t(0.0)), "t0 != t1"),
    ],
)
def test_refusals_say_what_is_wrong(kwargs, match):
    args = dict(y0=Y0, t0=_t(0.0), t1=_t(1.0))
    args.update(kwargs)
    with pytest.raises(SolverConfigError, match=match):
        nodezoo.odeint_dense(oscillator, args.pop("y0"), args.pop("t0"), args.pop("t1"), **args)
