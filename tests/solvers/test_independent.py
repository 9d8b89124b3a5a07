"""``solve_independent``: each sample solved as if alone (its own times, steps and error control).

The reference for every sample is ``solve`` on that sample alone (same config), itself checked
against analytic solutions, scipy and torchdiffeq elsewhere; here also against scipy directly.
"""

import math

import numpy as np
import pytest
import torch

from nodezoo import solvers
from nodezoo.solvers import (
    MaxStepsExceeded,
    NonFiniteState,
    SolverConfig,
    SolverConfigError,
    SolveStats,
    solve,
    solve_independent,
)

RATES = torch.tensor([2.0, 15.0, 0.3, 60.0], dtype=torch.float64)
SHIFTS = torch.tensor([0.0, 1.0, -0.5, 2.0], dtype=torch.float64)


def batch_field(t, y, stiffness=1.0):
    """Sample b: dy/dt = -rate_b y + cos(t + shift_b): stiffness and forcing differ per sample."""
    return -stiffness * RATES[:, None] * y + torch.cos(t + SHIFTS)[:, None]


def sample_field(b, stiffness=1.0):
    return lambda t, y: -stiffness * RATES[b] * y + torch.cos(t + SHIFTS[b])


def per_sample_times():
    """Rows of different spans, output gaps and directions (row 2, the slowest, runs backwards)."""
    return torch.stack(
        [
            torch.linspace(0.0, 1.0, 6),
            torch.linspace(0.5, 3.0, 6),
            torch.linspace(2.0, -1.0, 6),
            torch.tensor([0.0, 0.01, 0.02, 0.5, 0.51, 4.0]),
        ]
    ).double()


def y0_batch():
    return torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0], [-1.0, 2.0]], dtype=torch.float64)


@pytest.mark.parametrize(
    "method, step_size",
    [
        ("dopri5", None),
        ("tsit5", None),
        ("bosh3", None),
        ("fehlberg2", None),
        ("adaptive_heun", None),
        ("dopri8", None),
        ("rk4", None),  # output time to output time
        ("rk4", 0.07),
        ("euler", 0.01),
        ("dopri5", 0.05),  # an adaptive method at a fixed step
    ],
)
def test_each_sample_gets_what_solve_gives_it_alone(method, step_size):
    t, y0 = per_sample_times(), y0_batch()
    # low orders: thousands of steps at 1e-7, and at rate 60 fehlberg2 steps at its stability
    # limit, where error ratios near 1 make accept/reject a matter of rounding
    low_order = method in ("fehlberg2", "adaptive_heun", "bosh3")
    tol, stiffness = (1e-5, 0.2) if low_order else (1e-7, 1.0)
    config = SolverConfig(
        method=method, rtol=tol, atol=tol / 100, step_size=step_size, gradient="backprop"
    )
    stats = SolveStats()
    field = lambda s, y: batch_field(s, y, stiffness)
    ys = solve_independent(field, y0, t, config, stats=stats)
    assert ys.shape == (6, 4, 2)
    accepted = rejected = max_nfe = 0
    for b in range(4):
        alone = SolveStats()
        ref = solve(sample_field(b, stiffness), y0[b], t[b], config, stats=alone)
        # dopri8's error estimate cancels 13 terms with weights up to 1.7: the order of the
        # sum moves a tiny estimate by ~1e-4 of itself, so the step sizes by as much
        close = 1e-8 if method == "dopri8" else 1e-12
        torch.testing.assert_close(ys[:, b], ref, rtol=close, atol=close / 10)
        accepted += alone.steps_accepted
        rejected += alone.steps_rejected
        max_nfe = max(max_nfe, alone.nfe_forward)
        one = SolveStats()  # a batch of one: the same evaluations as solve's, no more
        solve_independent(
            sample_field(b, stiffness), y0[b : b + 1], t[b : b + 1], config, stats=one
        )
        assert one.nfe_forward == alone.nfe_forward
    assert (stats.steps_accepted, stats.steps_rejected) == (accepted, rejected)
    if step_size is None and method != "rk4":
        # whole-batch evaluations: as many as the sample that needs the most; a method without
        # FSAL evaluates the start of a step when any sample accepted (one per rejection more)
        if solvers.get_tableau(method).fsal:
            assert stats.nfe_forward == max_nfe
        else:
            assert max_nfe <= stats.nfe_forward <= max_nfe + rejected


def test_a_sample_does_not_depend_on_the_rest_of_its_batch():
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    y0 = y0_batch()
    config = SolverConfig(rtol=1e-6, atol=1e-8, gradient="backprop")
    together = solve_independent(batch_field, y0, t, config)
    alone = solve_independent(sample_field(0), y0[:1], t, config)  # t of shape (1,) broadcasts
    torch.testing.assert_close(together[:, :1], alone, rtol=1e-14, atol=1e-15)
    # the joint solve of the same batch steps for the stiffest sample and so differs
    joint = solve(batch_field, y0, t, config)
    assert (joint[:, 0] - together[:, 0]).abs().max() > 1e-9


def test_against_scipy_per_sample():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    t, y0 = per_sample_times(), y0_batch()
    ys = solve_independent(
        batch_field, y0, t, {"rtol": 1e-10, "atol": 1e-12, "gradient": "backprop"}
    )
    for b in range(4):
        rate, shift = float(RATES[b]), float(SHIFTS[b])
        ref = scipy_integrate.solve_ivp(
            lambda s, y, rate=rate, shift=shift: -rate * y + math.cos(s + shift),
            (float(t[b, 0]), float(t[b, -1])),
            y0[b].numpy(),
            t_eval=t[b].numpy(),
            method="DOP853",
            rtol=1e-12,
            atol=1e-14,
        )
        np.testing.assert_allclose(ys[:, b].numpy(), ref.y.T, rtol=1e-7, atol=1e-9)


def test_each_sample_meets_its_own_tolerance():
    """Linear decay at rates from 0.1 to 100: each sample's error is what it would be alone,
    whatever the batch; the joint solve's batch RMS lets the fastest samples' errors grow with
    the batch (its error on the fastest sample is several times larger)."""

    def errors(n, solver):
        rates = torch.logspace(-1, 2, n, dtype=torch.float64)
        t = torch.linspace(0, 0.1, 11, dtype=torch.float64)
        exact = torch.exp(-rates[None, :, None] * t[:, None, None])
        config = SolverConfig(rtol=1e-5, atol=1e-12, gradient="backprop")
        ys = solver(lambda s, y: -rates[:, None] * y, torch.ones(n, 1).double(), t, config)
        return ((ys - exact).abs() / exact).amax(dim=(0, 2))

    small, large = errors(16, solve_independent), errors(64, solve_independent)
    torch.testing.assert_close(small[-1], large[-1], rtol=1e-9, atol=0)
    assert large.max() < 1e-4  # rtol 1e-5: a global error of a few rtol
    assert errors(64, solve)[-1] > 4 * large[-1]


def test_first_steps_from_a_zero_state_or_derivative_and_one_entry_states():
    """The starting-step rule's special cases (y0 = 0; f(t0, y0) = 0) and 1-entry states, each
    sample as ``solve`` alone."""
    growth = torch.tensor([1.0, 2.0, -1.5, 1.0, 0.0], dtype=torch.float64)
    late = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0], dtype=torch.float64)

    def sample(s, y, b):
        return growth[b] * s * y + (1 - late[b]) * (s - 0.5) ** 2 + late[b] * torch.relu(s - 0.5)

    field = lambda s, y: torch.stack([sample(s[b], y[b], b) for b in range(5)])
    # row 0: y0 = 0; row 1: f0 = 0; row 3: y0 and f0 below atol (the rule's middle ground);
    # row 4: f = 0 until t = 0.5, so f0 and the probe's f1 are both 0
    y0 = torch.tensor([[0.0], [1.0], [-2.0], [3e-9], [1.0]], dtype=torch.float64)
    t = torch.tensor(
        [[0.0, 1.0], [0.5, 1.5], [0.0, 2.0], [0.50001, 1.0], [0.0, 1.0]], dtype=torch.float64
    )
    config = SolverConfig(rtol=1e-6, atol=1e-8, gradient="backprop")
    stats = SolveStats()
    ys = solve_independent(field, y0, t, config, stats=stats)
    accepted = 0
    for b in range(5):
        alone = SolveStats()
        ref = solve(lambda s, y, b=b: sample(s, y, b), y0[b], t[b], config, stats=alone)
        torch.testing.assert_close(ys[:, b], ref, rtol=1e-12, atol=1e-13)
        accepted += alone.steps_accepted
    assert stats.steps_accepted == accepted


def test_first_step_and_max_steps_as_solve():
    t, y0 = per_sample_times(), y0_batch()
    config = SolverConfig(rtol=1e-6, atol=1e-8, first_step=0.003, gradient="backprop")
    stats = SolveStats()
    ys = solve_independent(batch_field, y0, t, config, stats=stats)
    for b in range(4):
        ref = solve(sample_field(b), y0[b], t[b], config)
        torch.testing.assert_close(ys[:, b], ref, rtol=1e-12, atol=1e-13)
    attempts = (stats.nfe_forward - 1) // 6  # f0, then 6 new stages per dopri5 attempt
    assert stats.nfe_forward == 1 + 6 * attempts  # no first-step probe with first_step
    solve_independent(batch_field, y0, t, config.replace(max_steps=attempts))
    with pytest.raises(MaxStepsExceeded, match=f"max_steps={attempts - 1} attempts"):
        solve_independent(batch_field, y0, t, config.replace(max_steps=attempts - 1))


def test_absolute_tolerance_only():
    t, y0 = per_sample_times(), y0_batch()
    config = SolverConfig(rtol=0.0, atol=1e-8, gradient="backprop")
    ys = solve_independent(batch_field, y0, t, config)
    for b in range(4):
        ref = solve(sample_field(b), y0[b], t[b], config)
        torch.testing.assert_close(ys[:, b], ref, rtol=1e-12, atol=1e-13)


def test_shared_time_grid_and_decreasing_rows():
    t = torch.linspace(1.0, 0.0, 4, dtype=torch.float64)
    y0 = y0_batch()
    stats = SolveStats()
    ys = solve_independent(
        batch_field, y0, t, SolverConfig(rtol=1e-9, atol=1e-11, gradient="backprop"), stats=stats
    )
    accepted = 0
    for b in range(4):
        alone = SolveStats()
        ref = solve(sample_field(b), y0[b], t, SolverConfig(rtol=1e-9, atol=1e-11), stats=alone)
        accepted += alone.steps_accepted
        # Backwards, rate 60 grows the solution by e^60 over hundreds of steps: rounding
        # differences between the batched and the single-sample arithmetic (1.2e-12 relative on
        # an Intel Xeon, below 1e-12 on AMD EPYC) grow with it, so 1e-11 here; the same steps
        # are checked exactly below.
        torch.testing.assert_close(ys[:, b], ref, rtol=1e-11, atol=1e-13)
    assert stats.steps_accepted == accepted


def test_state_shapes_and_float32():
    y0 = torch.randn(3, 2, 4)
    t = torch.linspace(0, 1, 3).expand(3, -1)
    ys = solve_independent(lambda s, y: -y * (1 + s)[:, None, None], y0, t)
    assert ys.shape == (3, 3, 2, 4) and ys.dtype == torch.float32
    exact = y0 * torch.exp(-(t[0] + t[0] ** 2 / 2))[:, None, None, None]
    torch.testing.assert_close(ys, exact, rtol=2e-3, atol=2e-3)


def test_one_output_time_returns_y0_without_evaluating():
    stats = SolveStats()
    y0 = torch.randn(2, 3)
    ys = solve_independent(lambda s, y: y, y0, torch.zeros(2, 1), stats=stats)
    torch.testing.assert_close(ys, y0[None])
    assert stats.nfe_forward == 0


def test_gradients_match_solve_alone_and_finite_differences():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    ).double()
    field = lambda s, y: net(torch.cat([y, s[:, None]], 1))
    y0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.stack(
        [torch.linspace(0, 1, 4), torch.linspace(0, 0.3, 4), torch.linspace(1, 0, 4)]
    ).double()
    config = SolverConfig(rtol=1e-8, atol=1e-10, gradient="backprop")
    weights = torch.randn(4, 3, 2, dtype=torch.float64)

    def loss():
        return (solve_independent(field, y0, t, config) * weights).sum()

    grads = torch.autograd.grad(loss(), [y0, *net.parameters()])
    expected = [torch.zeros_like(g) for g in grads]
    for b in range(3):
        yb = y0[b].detach().clone().requires_grad_(True)
        out = solve(lambda s, y: net(torch.cat([y, s.reshape(1)])), yb, t[b], config)
        gb = torch.autograd.grad((out * weights[:, b]).sum(), [yb, *net.parameters()])
        expected[0][b] = gb[0]
        for e, g in zip(expected[1:], gb[1:]):
            e += g
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)
    # and one parameter entry by central differences
    w = net[0].weight
    eps = 1e-6
    with torch.no_grad():
        w[0, 0] += eps
        up = loss()
        w[0, 0] -= 2 * eps
        down = loss()
        w[0, 0] += eps
    assert abs(float(grads[1][0, 0]) - float(up - down) / (2 * eps)) < 1e-6


@pytest.mark.parametrize(
    "method, step_size", [("dopri5", None), ("fehlberg2", None), ("tsit5", None), ("rk4", 0.1)]
)
def test_checkpoint_gradients_equal_backprop(method, step_size):
    """Exact gradients of the same discrete solve, with the forward run without a graph."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)
    ).double()
    grad_modes = []

    def field(s, y):
        grad_modes.append(torch.is_grad_enabled())
        return net(torch.cat([y, s[:, None]], 1))

    t = torch.stack(
        [torch.linspace(0, 1, 5), torch.linspace(0, 2, 5), torch.linspace(1, -1, 5)]
    ).double()
    y0 = torch.randn(3, 2, dtype=torch.float64)
    weights = torch.randn(5, 3, 2, dtype=torch.float64)
    results = {}
    for gradient in ("backprop", "checkpoint"):
        config = SolverConfig(
            method=method, rtol=1e-6, atol=1e-8, step_size=step_size, gradient=gradient
        )
        y = y0.clone().requires_grad_(True)
        stats = SolveStats()
        grad_modes.clear()
        out = solve_independent(field, y, t, config, stats=stats, params=list(net.parameters()))
        forward_modes = list(grad_modes)
        grads = torch.autograd.grad((out * weights).sum(), [y, *net.parameters()])
        results[gradient] = (out.detach(), grads, stats, forward_modes)
    (out_b, grads_b, stats_b, modes_b), (out_c, grads_c, stats_c, modes_c) = results.values()
    torch.testing.assert_close(out_c, out_b, rtol=1e-12, atol=1e-13)
    for gc, gb in zip(grads_c, grads_b):
        torch.testing.assert_close(gc, gb, rtol=1e-9, atol=1e-11)
    assert not any(modes_c)  # no graph in the checkpointed forward
    assert sum(modes_b) >= len(modes_b) - 1  # backprop: all but the first step's probe
    assert stats_c.nfe_forward == stats_b.nfe_forward
    assert stats_b.nfe_backward == 0 < stats_c.nfe_backward <= stats_c.nfe_forward
    # every attempt is redone once: adaptive forward NFE = f0 and the first-step probe, then
    # stages - 1 per attempt (FSAL); fixed steps evaluate all stages each
    tab = solvers.get_tableau(method)
    if step_size is not None:
        assert stats_c.nfe_forward == stats_c.steps_backward * tab.stages
    elif tab.fsal:
        assert stats_c.nfe_forward == 2 + stats_c.steps_backward * (tab.stages - 1)


def test_checkpoint_gradients_reach_the_params_given():
    w = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    field = lambda s, y: torch.tanh(y * w) + s[:, None]
    y0 = torch.randn(4, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    unused = torch.ones(3, requires_grad=True)  # listed, but f does not read it
    grads = {}
    for gradient in ("backprop", "checkpoint"):
        w.grad = unused.grad = None
        config = {"gradient": gradient, "rtol": 1e-7}
        solve_independent(field, y0, t, config, params=[w, unused]).sum().backward()
        grads[gradient] = w.grad
        assert unused.grad is None
    torch.testing.assert_close(grads["checkpoint"], grads["backprop"], rtol=1e-9, atol=1e-12)


def test_bad_inputs_say_what_to_do():
    y0 = torch.ones(2, 3)
    field = lambda s, y: -y
    with pytest.raises(SolverConfigError, match="one tensor of shape"):
        solve_independent(field, (y0, y0), torch.zeros(2, 2))
    with pytest.raises(SolverConfigError, match=r"\(batch, n_t\) = \(2, n_t\)"):
        solve_independent(field, y0, torch.zeros(3, 2))
    with pytest.raises(SolverConfigError, match=r"not so in row 1\."):
        solve_independent(field, y0, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    with pytest.raises(SolverConfigError, match=r"NaN or infinite values in row 0\."):
        solve_independent(field, y0, torch.tensor([[0.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(SolverConfigError, match="radau5"):
        solve_independent(field, y0, torch.tensor([0.0, 1.0]), {"method": "radau5"})
    with pytest.raises(SolverConfigError, match=r"no adjoint gradients.*checkpoint"):
        solve_independent(
            field, y0.requires_grad_(), torch.tensor([0.0, 1.0]), {"gradient": "adjoint"}
        )
    with pytest.raises(SolverConfigError, match="no gradients with respect to t"):
        solve_independent(field, y0, torch.tensor([0.0, 1.0], requires_grad=True))
    with pytest.raises(SolverConfigError, match=r"y's shape \(2, 3\)"):
        solve_independent(lambda s, y: y[:, :2], y0.detach(), torch.tensor([0.0, 1.0]))
    with pytest.raises(SolverConfigError, match="batch dimension"):
        solve_independent(field, torch.tensor(1.0), torch.tensor([0.0, 1.0]))
    with pytest.raises(SolverConfigError, match="step_size must be positive"):
        solve_independent(
            field, y0.detach(), torch.tensor([0.0, 1.0]), {"method": "rk4", "step_size": -0.1}
        )
    repeats = torch.tensor([[0.0, 1.0]] * 2 + [[0.0, 0.0]] * 10)  # rows 2 to 11 repeat a time
    with pytest.raises(SolverConfigError, match=r"rows 2, 3, 4, 5, 6, 7, 8, 9 \(and 2 more\)\."):
        solve_independent(field, torch.ones(12, 1), repeats)
    # without a graph to differentiate, the adjoint setting is harmless
    with torch.no_grad():
        solve_independent(field, y0, torch.tensor([0.0, 1.0]), {"gradient": "adjoint"})


def test_failures_name_the_samples():
    y0 = torch.ones(3, 1, dtype=torch.float64)
    rates = torch.tensor([1.0, 1e6, 1.0], dtype=torch.float64)
    with pytest.raises(MaxStepsExceeded, match=r"sample 1 unfinished") as info:
        solve_independent(
            lambda s, y: -rates[:, None] * y,
            y0,
            torch.tensor([0.0, 1.0]),
            {"max_steps": 50, "gradient": "backprop"},
        )
    assert info.value.t is not None and info.value.t < 1.0

    def blows_up(s, y):  # sample 2 turns NaN after t = 0.5
        out = -y.clone()
        out[2] = torch.where(s[2] > 0.5, torch.nan, -1.0)
        return out

    with pytest.raises(NonFiniteState, match=r"sample 2 "):
        solve_independent(blows_up, y0, torch.tensor([0.0, 1.0]))
    with pytest.raises(NonFiniteState, match=r"sample 2\."):
        solve_independent(
            blows_up, y0, torch.tensor([0.0, 1.0]), {"method": "rk4", "step_size": 0.1}
        )


def test_exported_at_the_top():
    import nodezoo

    assert nodezoo.solve_independent is solvers.solve_independent is solve_independent


def test_per_sample_config_makes_solve_and_ode_blocks_solve_each_sample_alone():
    """``SolverConfig(per_sample=True)``: ``solve`` hands over to ``solve_independent``, so an
    ``ODEBlock`` (any model, any recipe) gives each sample what it gets alone."""
    from nodezoo.nn import ConvODEField, ODEBlock

    t, y0 = per_sample_times(), y0_batch()
    config = SolverConfig(rtol=1e-7, atol=1e-9, gradient="backprop", per_sample=True)
    torch.testing.assert_close(
        solve(batch_field, y0, t, config),
        solve_independent(batch_field, y0, t, config.replace(per_sample=False)),
        rtol=0,
        atol=0,
    )
    torch.manual_seed(0)
    block = ODEBlock(ConvODEField(8), {"per_sample": True, "gradient": "checkpoint"}).double()
    images = torch.randn(5, 8, 4, 4, dtype=torch.float64)
    together = block(images)
    together.sum().backward()
    assert block.stats.nfe_backward > 0
    for b in (0, 3):
        torch.testing.assert_close(block(images[b : b + 1]), together[b : b + 1].detach())
    block.regularisation = {"kinetic": 0.1}
    with pytest.raises(ValueError, match="per_sample=True"):
        block(images)
