"""``FirstStepMemory`` and ``SolverConfig(warm_start=True)``: a solve starts with the step size
the previous one's controller proposed after its first accepted step, and nothing else about the
solve changes (same error control, so the same accuracy against an independent reference)."""

import math

import pytest
import torch
from scipy.integrate import solve_ivp

from nodezoo.nn import ODEBlock
from nodezoo.solvers import (
    FirstStepMemory,
    SolverConfig,
    SolverConfigError,
    SolveStats,
    odeint,
    odeint_adjoint,
    solve,
)

F64 = torch.float64
T = torch.tensor([0.0, 2.0], dtype=F64)


class Oscillator(torch.nn.Module):
    """y'' = -k y - c y' + sin(3t) as a first-order system; records every attempted step."""

    def __init__(self, k=4.0, c=0.3):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=F64))
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=F64))
        self.steps, self.adjoint_steps = [], []

    def forward(self, t, y):
        pos, vel = y[..., :1], y[..., 1:]
        return torch.cat([vel, -self.k * pos - self.c * vel + torch.sin(3 * t)], -1)

    def callback_step(self, t0, y0, dt):
        self.steps.append(float(dt))

    def callback_step_adjoint(self, t0, y0, dt):
        self.adjoint_steps.append(float(dt))


def scipy_reference(y0, t_end, k=4.0, c=0.3):
    def f(t, y):
        return [y[1], -k * y[0] - c * y[1] + math.sin(3 * t)]

    sol = solve_ivp(f, (0.0, t_end), y0, method="DOP853", rtol=1e-12, atol=1e-12)
    return torch.tensor(sol.y[:, -1], dtype=F64)


Y0 = torch.tensor([1.0, 0.0], dtype=F64)


def test_the_second_solve_starts_where_the_first_one_settled():
    field, memory = Oscillator(), FirstStepMemory()
    plain = Oscillator()
    with torch.no_grad():
        expected = odeint(plain, Y0, T, rtol=1e-6, atol=1e-8)
        first = odeint(field, Y0, T, rtol=1e-6, atol=1e-8, options={"first_step": memory})
    # the first solve (nothing learnt) is the plain solve, step for step and to the bit
    assert field.steps == plain.steps and torch.equal(first, expected)
    # what it learnt: the controller's proposal after the first accepted step, i.e. the
    # second attempt's size (the first step here is accepted and the second not clipped)
    assert memory.value == field.steps[1] and field.steps[1] > 2 * field.steps[0]
    learnt, stats = memory.value, SolveStats()
    field.steps.clear()
    with torch.no_grad():
        second = solve(
            field, Y0, T, {"rtol": 1e-6, "atol": 1e-8, "gradient": "backprop"},
            options={"first_step": memory}, stats=stats,
        )  # fmt: skip
    assert field.steps[0] == learnt
    assert stats.nfe_forward < len(plain.steps) * 6 + 2  # no first-step selection, fewer steps
    reference = scipy_reference([1.0, 0.0], 2.0)
    assert torch.allclose(second[-1], reference, rtol=0, atol=2e-5)
    assert torch.allclose(first[-1], reference, rtol=0, atol=2e-5)


def test_a_too_large_memory_is_rejected_and_corrected():
    field = Oscillator()
    memory = FirstStepMemory(1.5)
    with torch.no_grad():
        out = odeint(field, Y0, T, rtol=1e-6, atol=1e-8, options={"first_step": memory})
    assert field.steps[0] == 1.5 and field.steps[1] < 1.5  # rejected, retried smaller
    assert memory.value < 1.5
    assert torch.allclose(out[-1], scipy_reference([1.0, 0.0], 2.0), rtol=0, atol=2e-5)


def test_a_backward_in_time_solve_steps_backward_from_the_memory():
    field = Oscillator()
    memory = FirstStepMemory(0.1)
    with torch.no_grad():
        odeint(field, Y0, T.flip(0), rtol=1e-6, atol=1e-8, options={"first_step": memory})
    assert field.steps[0] == -0.1 and memory.value > 0


def test_a_single_step_solve_still_learns():
    """The first accepted step may end the solve: the proposal is learnt all the same."""
    field = Oscillator()
    memory = FirstStepMemory(0.01)
    with torch.no_grad():
        odeint(field, Y0, torch.tensor([0.0, 0.01], dtype=F64), options={"first_step": memory})
    assert field.steps == [0.01] and memory.value > 0.01


def test_the_adjoint_does_not_inherit_the_forward_memory_and_keeps_its_own():
    field = Oscillator()
    forward, backward = FirstStepMemory(), FirstStepMemory()
    out = odeint_adjoint(field, Y0, T, rtol=1e-6, atol=1e-8, options={"first_step": forward})
    learnt_forward = forward.value
    out[-1].sum().backward()
    assert forward.value == learnt_forward  # the backward solve did not write into it
    out = odeint_adjoint(
        field, Y0, T, rtol=1e-6, atol=1e-8, options={"first_step": forward},
        adjoint_options={"first_step": backward},
    )  # fmt: skip
    field.adjoint_steps.clear()
    out[-1].sum().backward()
    learnt_backward = backward.value
    assert learnt_backward is not None and field.adjoint_steps[1] == -learnt_backward
    field.adjoint_steps.clear()
    out = odeint_adjoint(
        field, Y0, T, rtol=1e-6, atol=1e-8, adjoint_options={"first_step": backward}
    )
    out[-1].sum().backward()
    assert field.adjoint_steps[0] == -learnt_backward


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_gradients_are_those_of_a_solve_given_the_same_first_step(gradient):
    """The memory only sets the first step: the gradient equals that of a solve handed that
    step as a number (the same steps), in every gradient mode."""
    config = {"rtol": 1e-7, "atol": 1e-9, "gradient": gradient}
    grads = []
    for first_step in (FirstStepMemory(0.3), 0.3):
        field = Oscillator()
        adjoint = {"adjoint_options": {"first_step": 0.2}} if gradient == "adjoint" else {}
        out = solve(field, Y0, T, config, options={"first_step": first_step}, **adjoint)
        out[-1].sum().backward()
        grads.append(torch.stack([field.k.grad, field.c.grad]))
    assert torch.equal(grads[0], grads[1])


def test_solve_with_warm_start_needs_a_memory():
    with pytest.raises(SolverConfigError, match="solve\\(\\) cannot remember"):
        solve(Oscillator(), Y0, T, {"warm_start": True})
    memory = FirstStepMemory()
    solve(Oscillator(), Y0, T, {"warm_start": True, "gradient": "backprop"},
          options={"first_step": memory})  # fmt: skip
    assert memory.value is not None


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"method": "rk4"}, "method='rk4' is not one"),
        ({"method": "radau5"}, "method='radau5' is not one"),
        ({"adjoint_method": "radau5"}, "adjoint_method='radau5' is not one"),
        ({"step_size": 0.1}, "step_size makes every step fixed"),
        ({"per_sample": True, "gradient": "backprop"}, "turn one of the two off"),
        ({"backend": "torchdiffeq"}, "needs backend='native'"),
        ({"warm_start": "yes"}, "warm_start must be true or false, got 'yes'"),
    ],
)
def test_config_refuses_what_warm_start_cannot_do(settings, says):
    with pytest.raises(SolverConfigError, match=says.replace("(", "\\(").replace(")", "\\)")):
        SolverConfig(**{"warm_start": True, **settings})


def test_an_adjoint_method_on_its_own_is_fine_when_gradients_are_not_adjoint():
    SolverConfig(warm_start=True, adjoint_method="radau5", gradient="backprop")


@pytest.mark.parametrize("method", ["radau5", "scipy_solver"])
def test_methods_without_the_rk_step_loop_refuse_a_memory(method):
    with pytest.raises(SolverConfigError, match="FirstStepMemory"):
        odeint(Oscillator(), Y0, T, method=method, options={"first_step": FirstStepMemory()})


def test_fixed_step_methods_refuse_a_memory_like_any_first_step():
    with pytest.raises(SolverConfigError, match="do not apply to fixed-step method 'rk4'"):
        odeint(Oscillator(), Y0, T, method="rk4", options={"first_step": FirstStepMemory()})


def test_the_torchdiffeq_backend_refuses_a_memory():
    pytest.importorskip("torchdiffeq")
    with pytest.raises(SolverConfigError, match="torchdiffeq takes a number"):
        solve(Oscillator(), Y0, T, {"backend": "torchdiffeq"},
              options={"first_step": FirstStepMemory()})  # fmt: skip


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_a_memory_holds_a_positive_finite_step(value):
    with pytest.raises(ValueError, match="positive finite step"):
        FirstStepMemory(value)


def test_reset_forgets():
    memory = FirstStepMemory(0.5)
    memory.reset()
    assert memory.value is None and repr(memory) == "FirstStepMemory(value=None)"


class TanhField(torch.nn.Module):
    """A small tanh MLP field, the kind an ODE block trains: its solves settle on steps far
    larger than the automatic first step (14 -> 7 evaluations per solve at 1e-3, 38 -> 31 at
    1e-5 for this one). Where the first step is not what limits a solve (a linear contraction
    over 3 time units at rtol 1e-6), the steps move and the count can go either way by a step
    or two: the memory helps where solves are cautious at the start, as the ODE-Net's are."""

    def __init__(self, d=4, hidden=16, gain=2.0):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(hidden, d, generator=gen, dtype=F64) * gain / 2)
        self.w2 = torch.nn.Parameter(torch.randn(d, hidden, generator=gen, dtype=F64) * gain / 4)

    def forward(self, t, y):
        return torch.tanh(y @ self.w1.T) @ self.w2.T


@pytest.mark.parametrize("gradient", ["adjoint", "backprop"])
def test_an_ode_block_warm_starts_in_training_only(gradient):
    config = {"rtol": 1e-3, "atol": 1e-3, "gradient": gradient, "warm_start": True}
    block = ODEBlock(TanhField(), solver=config)
    cold = ODEBlock(TanhField(), solver={**config, "warm_start": False})
    y0 = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    nfe = []
    for _ in range(3):
        block(y0).sum().backward()
        nfe.append((block.stats.nfe_forward, block.stats.nfe_backward))
    cold(y0).sum().backward()
    assert nfe[0] == (cold.stats.nfe_forward, cold.stats.nfe_backward)
    assert nfe[2][0] < nfe[0][0]
    if gradient == "adjoint":
        assert nfe[2][1] < nfe[0][1] and block.first_steps[1].value is not None
    learnt = [m.value for m in block.first_steps]
    block.eval()
    cold.eval()
    with torch.no_grad():  # evaluation: the usual first step, the learnt ones untouched
        assert torch.equal(block(y0), cold(y0))
    assert [m.value for m in block.first_steps] == learnt
    assert block.stats.nfe_forward == cold.stats.nfe_forward
    assert "warm_start=True" in repr(block)


def test_an_ode_block_seeds_its_forward_memory_with_first_step_and_forgets_on_a_new_config():
    block = ODEBlock(TanhField(), solver={"warm_start": True, "first_step": 0.25})
    assert [m.value for m in block.first_steps] == [0.25, None]
    block.solver = {"warm_start": True}
    assert [m.value for m in block.first_steps] == [None, None]
    block.solver = {}
    assert block.first_steps is None


def test_a_regularised_ode_block_warm_starts():
    block = ODEBlock(
        TanhField(), solver={"rtol": 1e-3, "atol": 1e-3, "warm_start": True},
        regularisation={"kinetic": 0.1},
    )  # fmt: skip
    y0 = torch.randn(16, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    nfe = []
    for _ in range(3):
        (block(y0).sum() + block.regularisation_loss).backward()
        nfe.append(block.stats.nfe_forward)
    assert nfe[2] < nfe[0] and block.first_steps[1].value is not None
