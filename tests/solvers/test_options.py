"""torchdiffeq's options and hooks, each honoured: step callbacks, perturb, grid_constructor,
min/max_step, jump_t in the adjoint's backward solve, adjoint norms, the dtype of t, and the
inputs that used to crash."""

import itertools
import math
import warnings

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError

T = torch.tensor([0.0, 1.0])


class Decay(torch.nn.Module):
    """dy/dt = -k y, recording every call's time."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.0))
        self.times = []

    def forward(self, t, y):
        self.times.append(float(t))
        return -self.k * y


def attach_callbacks(f, suffix=""):
    calls = {"step": [], "accept": [], "reject": []}
    for kind in calls:
        name = f"callback_{kind}_step" if kind != "step" else "callback_step"

        def cb(t0, y0, dt, kind=kind):
            calls[kind].append((float(t0), float(dt)))

        setattr(f, name + suffix, cb)
    return calls


def test_fixed_step_callbacks_see_every_step():
    f = Decay()
    calls = attach_callbacks(f)
    with pytest.warns(UserWarning, match="never accepts or rejects"):
        nodezoo.odeint(f, torch.ones(2), T, method="rk4", options={"step_size": 0.25})
    assert [t for t, _ in calls["step"]] == [0.0, 0.25, 0.5, 0.75]
    assert all(abs(dt - 0.25) < 1e-12 for _, dt in calls["step"])
    assert calls["accept"] == calls["reject"] == []


def test_adaptive_callbacks_chain_and_count():
    f = Decay()
    calls = attach_callbacks(f)
    nodezoo.odeint(f, torch.ones(2), T, rtol=1e-8, atol=1e-8, options={"first_step": 0.5})
    assert len(calls["step"]) == len(calls["accept"]) + len(calls["reject"])
    assert calls["reject"], "first_step=0.5 at 1e-8 must be rejected at least once"
    accepted = calls["accept"]
    for (t0, dt), (t1, _) in itertools.pairwise(accepted):
        assert abs(t0 + dt - t1) < 1e-6  # each accepted step starts where the last ended
    assert abs(accepted[-1][0] + accepted[-1][1] - 1.0) < 1e-6  # (t is float32, as y)
    stats = nodezoo.last_stats()
    assert (stats.steps_accepted, stats.steps_rejected) == (len(accepted), len(calls["reject"]))


def test_adjoint_callbacks_run_in_the_backward_solve_only():
    f = Decay()
    forward = attach_callbacks(f)
    backward = attach_callbacks(f, "_adjoint")
    with pytest.warns(UserWarning):  # rk4 never accepts or rejects: those hooks are unused
        ys = nodezoo.odeint_adjoint(f, torch.ones(2), T, method="rk4", options={"step_size": 0.5})
    n_forward = len(forward["step"])
    assert n_forward == 2 and backward["step"] == []
    ys.sum().backward()
    assert [t for t, _ in backward["step"]] == [1.0, 0.5]
    assert all(dt == -0.5 for _, dt in backward["step"]) and len(forward["step"]) == n_forward


@pytest.mark.parametrize("adjoint", [False, True])
def test_perturb_keeps_evaluations_off_the_grid(adjoint):
    for perturb in (False, True):
        f = Decay()
        solve = nodezoo.odeint_adjoint if adjoint else nodezoo.odeint
        ys = solve(
            f, torch.ones(2), T, method="heun", options={"step_size": 0.5, "perturb": perturb}
        )
        if adjoint:
            ys.sum().backward()
        on_grid = {0.0, 0.5, 1.0} & set(f.times)
        assert bool(on_grid) is not perturb
        if perturb:  # one ulp (float32) inside the steps, both sides of 0.5
            assert math.nextafter(0.5, 1.0) != 0.5
            assert {float(torch.tensor(0.5).nextafter(torch.tensor(1.0)))} <= set(f.times)


@pytest.mark.parametrize("adjoint", [False, True])
def test_grid_constructor_defines_the_steps(adjoint):
    """Euler on y' = y over 10 steps of 0.1: y1 = 1.1**10, dy1/dy0 = 1.1**10 (exact for the
    discrete scheme; the backward grid is asked for [1, 0])."""
    asked = []

    def grid(func, y0, t):
        asked.append(t.tolist())
        return torch.linspace(float(t[0]), float(t[1]), 11)

    x0 = torch.tensor(1.0, requires_grad=True)
    opts = {"grid_constructor": grid}
    if adjoint:
        ys = nodezoo.odeint_adjoint(
            lambda t, x: x, x0, T, method="euler", options=opts, adjoint_params=()
        )
    else:
        ys = nodezoo.odeint(lambda t, x: x, x0, T, method="euler", options=opts)
    assert abs(float(ys[1]) - 1.1**10) < 1e-5
    ys[1].backward()
    assert abs(float(x0.grad) - 1.1**10) < 1e-5
    assert asked == ([[0.0, 1.0], [1.0, 0.0]] if adjoint else [[0.0, 1.0]])
    with pytest.raises(SolverConfigError, match="mutually exclusive"):
        nodezoo.odeint(
            lambda t, x: x,
            x0,
            T,
            method="euler",
            options={"grid_constructor": grid, "step_size": 1},
        )


def test_min_and_max_step_bound_the_accepted_steps():
    f = Decay()
    calls = attach_callbacks(f)
    t = torch.tensor([0.0, 10.0], dtype=torch.float64)
    y0 = torch.ones(2, dtype=torch.float64)
    nodezoo.odeint(f.double(), y0, t, rtol=1e-3, atol=1e-3, options={"max_step": 0.5})
    assert max(abs(dt) for _, dt in calls["step"]) <= 0.5 + 1e-12
    calls["step"].clear()
    nodezoo.odeint(f, y0, t, rtol=1e-12, atol=1e-12, options={"min_step": 2.0})
    assert all(abs(dt) >= 2.0 - 1e-12 for _, dt in calls["step"][:-1])  # the last may be cut
    assert calls["reject"] == [] or all(abs(dt) > 2.0 for _, dt in calls["reject"])


def test_jump_t_reaches_the_adjoint_backward_solve():
    def run(options):
        nfe = [0]

        def f(t, x):
            nfe[0] += 1
            return -0.5 * x if t < 0.5 else x**2

        x0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        ys = nodezoo.odeint_adjoint(
            f, x0, T.double(), rtol=1e-6, atol=1e-6, options=options, adjoint_params=()
        )
        nfe[0] = 0
        ys.sum().backward()
        return nfe[0], x0.grad

    plain_nfe, _ = run(None)
    jump_nfe, jump_grad = run({"jump_t": torch.tensor([0.5])})
    assert jump_nfe < plain_nfe / 2
    # x(0.5) = x0 e^-1/4, then x' = x^2: d x(1) / d x0 = (x(1) / x(0.5))^2 e^-1/4 (+1 from x(0))
    xh = torch.tensor([1.0, 2.0], dtype=torch.float64) * math.exp(-0.25)
    x1 = 1 / (1 / xh - 0.5)
    assert torch.allclose(jump_grad, 1 + (x1 / xh) ** 2 * math.exp(-0.25), rtol=1e-5)


def test_adjoint_norm_callable_and_grad_fn_options():
    calls = []

    def adjoint_norm(tensors):
        t, y, adj_y, adj_p = tensors
        calls.append((tuple(t.shape), tuple(y.shape), tuple(adj_y.shape), tuple(adj_p.shape)))
        return max(y.abs().max(), adj_y.abs().max(), adj_p.abs().max())

    p = torch.rand(7, requires_grad=True)
    x0 = torch.ones(2, 3)
    xs = nodezoo.odeint_adjoint(
        lambda t, x: x * p.sum(), x0, T, adjoint_params=(p,), adjoint_options={"norm": adjoint_norm}
    )
    assert xs.grad_fn.adjoint_options["norm"] is adjoint_norm  # torchdiffeq's handle
    xs.sum().backward()
    assert calls and set(calls) == {((), (2, 3), (2, 3), (7,))}
    with pytest.raises(SolverConfigError, match="seminorm"):
        nodezoo.odeint_adjoint(
            lambda t, x: x, x0, T, adjoint_params=(p,), adjoint_options={"norm": "l2"}
        )


def test_t_reaches_func_in_the_state_dtype():
    seen = []

    def f(t, y):
        seen.append(t.dtype)
        return t * y

    ys = nodezoo.odeint(f, torch.tensor(1.0), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ys.dtype == torch.float32 and set(seen) == {torch.float32}
    assert abs(float(ys[1]) - math.exp(0.5)) < 1e-5


def test_former_crashes():
    # a single time point that requires grad
    t = torch.tensor([0.0], requires_grad=True)
    y0 = torch.ones(2, requires_grad=True)
    ys = nodezoo.odeint(lambda t, y: -y, y0, t)
    assert ys.shape == (1, 2) and torch.equal(ys[0], y0)
    ys.sum().backward()
    assert torch.equal(y0.grad, torch.ones(2))
    # adjoint when f depends on neither y nor any parameter: dy1/dy0 = 1
    y0 = torch.ones(2, requires_grad=True)
    ys = nodezoo.odeint_adjoint(lambda t, y: torch.ones(2), y0, T, adjoint_params=())
    ys[-1].sum().backward()
    assert torch.allclose(y0.grad, torch.ones(2))


def test_options_that_cannot_apply_are_refused():
    f = lambda t, y: -y
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method, options, match in [
            ("rk4", {"first_step": 0.1}, "do not apply to fixed-step"),
            ("dopri5", {"grid_constructor": lambda f, y, t: t}, "do not apply to adaptive"),
            ("dopri5", {"max_iters": 3}, "do not apply"),
            ("scipy_solver", {"step_t": [0.5]}, "do not apply"),
            ("scipy_solver", {"solver": "Euler"}, "not one of scipy"),
            ("dopri5", {"step_t": [0.5], "jump_t": [0.5]}, "share"),
            ("dopri5", {"min_step": 1.0, "max_step": 0.5}, "larger than"),
        ]:
            with pytest.raises(SolverConfigError, match=match):
                nodezoo.odeint(f, torch.ones(2), T, method=method, options=options)
