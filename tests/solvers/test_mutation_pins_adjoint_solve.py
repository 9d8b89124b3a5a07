"""The backward solve's settings and bookkeeping (mutation survivors of
``odeint._adjoint_settings`` and ``gradients.AdjointSolve``; see tests/README.md, "Mutation
testing"), on decays y' = -k y, whose solution exp(-k t) and adjoint exp(-k (1 - t)) are known,
and against torchdiffeq's ``odeint_adjoint`` called with the same settings."""

import math
import warnings

import pytest
import torch
from decay import Decay

import nodezoo
from nodezoo.solvers import MaxStepsExceeded, SolverConfig, SolveStats, solve

F64 = dict(dtype=torch.float64)
T = torch.tensor([0.0, 1.0], **F64)


def test_backward_counts_accumulate_over_solves():
    """rk4 with steps of 0.25 over [0, 1]: 4 backward steps of 4 evaluations per solve; one
    SolveStats over two solves adds them up."""
    stats = SolveStats()
    for solves in (1, 2):
        ys = nodezoo.odeint_adjoint(
            Decay(), torch.ones(1, **F64), T, method="rk4", options={"step_size": 0.25},
            stats=stats,
        )  # fmt: skip
        ys[-1].sum().backward()
        assert (stats.nfe_backward, stats.steps_backward) == (16 * solves, 4 * solves)


def test_grid_constructor_holds_in_the_backward_solve():
    """The forward options (grid_constructor included) are the adjoint's by default: the
    backward rk4 takes the grid's 4 steps over [1, 0] (16 evaluations), and the constructor
    gets func and the augmented state (y, adj_y, adj_params) in the user's shapes."""
    seen = []

    def grid(func, y0, t):
        seen.append((func, t.tolist(), y0))
        return torch.linspace(float(t[0]), float(t[1]), 5, **F64)

    func, stats = Decay(), SolveStats()
    ys = nodezoo.odeint_adjoint(
        func, torch.ones(2, **F64), T, method="rk4", options={"grid_constructor": grid},
        stats=stats,
    )  # fmt: skip
    ys[-1].sum().backward()
    assert (stats.nfe_backward, stats.steps_backward) == (16, 4)
    assert [(f is func, times) for f, times, _ in seen] == [(True, [0.0, 1.0]), (True, [1.0, 0.0])]
    y, adj_y, adj_k = seen[1][2]
    assert y.shape == adj_y.shape == (2,) and adj_k.shape == (1,)
    assert torch.allclose(y, torch.full((2,), math.exp(-0.5), **F64), atol=1e-5)  # rk4, h = 0.25
    assert adj_y.tolist() == [1.0, 1.0] and adj_k.tolist() == [0.0]  # dL/dy(1) = 1, nothing yet
    assert float(func.k.grad) == pytest.approx(-2 * math.exp(-0.5), abs=1e-5)


class TupleDecay(torch.nn.Module):
    """(y1, y2)' = (-k y1, -2 k y2), recording what the backward step callback receives."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(0.5, **F64))
        self.seen = []

    def forward(self, t, y):
        return (-self.k * y[0], -2 * self.k * y[1])

    def callback_step_adjoint(self, t, y, dt):
        self.seen.append((float(t), float(dt), y))


def test_adjoint_step_callback_sees_a_tuple_state_in_its_parts():
    """Once per backward step, at the step's start t: y = (exp(-t/2), exp(-t)) and adj_y =
    (exp(-(1-t)/2), exp(-(1-t))) for L = sum(y(1)), each part in its own shape."""
    func, stats = TupleDecay(), SolveStats()
    ys = nodezoo.odeint_adjoint(
        func, (torch.ones(1, **F64), torch.ones(2, **F64)), T, rtol=1e-9, atol=1e-9,
        stats=stats,
    )  # fmt: skip
    (ys[0][-1].sum() + ys[1][-1].sum()).backward()
    assert len(func.seen) == stats.steps_backward > 1
    for t, dt, (y, adj_y, adj_k) in func.seen:
        assert dt < 0 and 0.0 < t <= 1.0
        assert [p.shape for p in y] == [p.shape for p in adj_y] == [(1,), (2,)]
        assert adj_k.shape == (1,)
        for part, rate in zip(y, (0.5, 1.0), strict=True):
            assert torch.allclose(part, torch.tensor(math.exp(-rate * t), **F64), atol=1e-7)
        for part, rate in zip(adj_y, (0.5, 1.0), strict=True):
            assert torch.allclose(part, torch.tensor(math.exp(-rate * (1 - t)), **F64), atol=1e-7)


def test_frozen_adjoint_parameter_is_reported():
    """A callable adjoint norm receives one channel per trainable parameter, so a frozen one in
    adjoint_params is left out: said in a warning. (Its stacklevel is not asserted: mutmut's
    trampolines add frames, so such a test fails under mutmut.)"""

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.5, **F64))
            self.j = torch.nn.Parameter(torch.tensor(0.1, **F64), requires_grad=False)

        def forward(self, t, y):
            return -(self.k + self.j) * y

    func = Two()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ys = nodezoo.odeint_adjoint(
            func, torch.ones(1, **F64), T, adjoint_params=(func.k, func.j),
            adjoint_options={"norm": lambda tensors: max(x.abs().max() for x in tensors)},
        )  # fmt: skip
    (warning,) = [w for w in caught if "does not require grad" in str(w.message)]
    assert "left out of the adjoint solve" in str(warning.message)
    ys[-1].sum().backward()
    assert float(func.k.grad) == pytest.approx(-math.exp(-0.6), abs=1e-6) and func.j.grad is None


def test_max_steps_holds_in_the_backward_solve():
    """The forward solve at rtol 1e-3 takes 2 steps; the adjoint at 1e-10 needs 12, so
    max_steps = 8 stops the backward solve (and 30 does not)."""
    for max_steps in (8, 30):
        stats = SolveStats()
        config = SolverConfig(max_steps=max_steps, adjoint_rtol=1e-10, adjoint_atol=1e-10)
        ys = solve(Decay(), torch.ones(1, **F64), T, config, stats=stats)
        assert stats.steps_accepted <= 8
        if max_steps == 8:
            with pytest.raises(MaxStepsExceeded, match="max_steps=8"):
                ys[-1].sum().backward()
        else:
            ys[-1].sum().backward()
            assert stats.steps_backward == 12


@pytest.mark.parametrize(
    "adjoint_options", [None, {"safety": 0.5}, {"ifactor": 2.0, "dfactor": 0.5}]
)
def test_adjoint_step_controller_matches_torchdiffeq(adjoint_options):
    """The controller settings of adjoint_options steer the backward solve: the same backward
    evaluations as torchdiffeq's odeint_adjoint with those settings (26, 38, 38)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    counts, grads = [], []
    for odeint_adjoint in (nodezoo.odeint_adjoint, torchdiffeq.odeint_adjoint):
        func = Decay()
        ys = odeint_adjoint(
            func, torch.ones(1, **F64), T, rtol=1e-6, atol=1e-6, adjoint_options=adjoint_options
        )
        forward = func.calls
        ys[-1].sum().backward()
        counts.append(func.calls - forward)
        grads.append(float(func.k.grad))
    assert counts[0] == counts[1]
    assert grads[0] == pytest.approx(grads[1], abs=1e-6)
    assert grads[0] == pytest.approx(-math.exp(-0.5), abs=1e-6)


class Unused(torch.nn.Module):
    """y' = c cos(t): independent of y, and of k."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(0.5, **F64))
        self.c = torch.nn.Parameter(torch.tensor(2.0, **F64))
        self.uses_c = True

    def forward(self, t, y):
        return (self.c if self.uses_c else 1.0) * torch.cos(t) * torch.ones_like(y)


@pytest.mark.parametrize("uses_c", [True, False])
def test_parameters_and_states_the_field_ignores_get_zero_gradients(uses_c):
    """y(1) = y0 + c sin(1): dL/dy0 = 1, dL/dk = 0, dL/dc = 2 sin(1) for L = sum(y(1)); without
    c, f depends on nothing the adjoint differentiates (no graph at all)."""
    func = Unused()
    func.uses_c = uses_c
    y0 = torch.ones(2, **F64, requires_grad=True)
    ys = nodezoo.odeint_adjoint(func, y0, T, rtol=1e-10, atol=1e-10)
    assert torch.allclose(ys[-1], 1 + (2.0 if uses_c else 1.0) * torch.tensor(math.sin(1.0), **F64))
    ys[-1].sum().backward()
    assert torch.equal(y0.grad, torch.ones(2, **F64))
    assert float(func.k.grad) == 0.0
    expected_c = 2 * math.sin(1.0) if uses_c else 0.0
    assert float(func.c.grad) == pytest.approx(expected_c, abs=1e-8)
