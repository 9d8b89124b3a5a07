"""Stop times (``step_t``, ``jump_t``, the end) and events in adaptive solves (mutation
survivors of the eighth run): the explicit loop's step that lands exactly on a stop, and an
event solve with stops, in the explicit loop (``rk._integrate_adaptive``) and the implicit one
(``ImplicitRungeKutta.integrate_adaptive``, which refused stops and events until session 9)."""

import pytest
import torch

import nodezoo
from nodezoo.solvers.stats import last_stats

F64 = torch.float64


def test_a_step_landing_exactly_on_a_stop_time_moves_on_to_the_next():
    """y' = 1 has a zero error estimate, so dopri5's steps only grow: from ``first_step=0.5``
    the first step ends exactly on step_t = 0.5 and the second on t = 1. By hand: 2 accepted
    steps and 1 + 2 * 6 evaluations (FSAL). Counting that landing as "short of the stop" left
    the stop pending: a zero-length step to it, then a step size of 0 (StepSizeUnderflow)."""
    y = nodezoo.odeint(lambda t, y: torch.ones_like(y), torch.zeros(1, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64), method="dopri5",
                       options={"step_t": [0.5], "first_step": 0.5})  # fmt: skip
    assert y[-1].item() == pytest.approx(1.0, abs=1e-15)
    stats = last_stats()
    assert (stats.steps_accepted, stats.steps_rejected, stats.nfe_forward) == (2, 0, 13)


@pytest.mark.parametrize("method", ["dopri5", "radau5", "kvaerno5"])
@pytest.mark.parametrize("option", ["jump_t", "step_t"])
def test_an_event_solve_stops_at_the_given_times_on_its_way(option, method):
    """y' = 1 before t = 0.5 and 3 after, y(0) = 0: y reaches 1 at t = 0.5 + 0.5 / 3 = 2/3.
    Stop times before the start are ignored; the event solve has no end time, so its stops
    are the given ones only."""

    def field(t, y):
        return torch.where(t < 0.5, 1.0, 3.0) * torch.ones_like(y)

    t_event, ys = nodezoo.odeint_event(
        field, torch.zeros(1, dtype=F64), torch.tensor(0.0, dtype=F64),
        event_fn=lambda t, y: y[0] - 1.0, method=method, rtol=1e-10, atol=1e-10,
        options={option: [-1.0, 0.5]},
    )  # fmt: skip
    assert t_event.item() == pytest.approx(2 / 3, abs=1e-9)
    assert ys[-1].item() == pytest.approx(1.0, abs=1e-9)


class Recorder(torch.nn.Module):
    """A field that records each attempted step's (start, size)."""

    def __init__(self, rhs):
        super().__init__()
        self.rhs, self.steps = rhs, []

    def forward(self, t, y):
        return self.rhs(t, y)

    def callback_step(self, t, y, dt):
        self.steps.append((float(t), float(dt)))


@pytest.mark.parametrize("method", ["radau5", "kvaerno5"])
@pytest.mark.parametrize("option", ["step_t", "jump_t"])
def test_an_adaptive_implicit_solve_steps_onto_its_stop_times(option, method):
    """Some step ends exactly on each stop (0.3, 0.7; -1 lies outside), going either way."""
    for t_span, stops in (([0.0, 1.0], [0.3, 0.7]), ([1.0, 0.0], [0.7, 0.3])):
        f = Recorder(lambda t, y: -y)
        y = nodezoo.odeint(f, torch.ones(1, dtype=F64), torch.tensor(t_span, dtype=F64),
                           method=method, rtol=1e-6, atol=1e-8,
                           options={option: [-1.0, 0.3, 0.7]})  # fmt: skip
        ends = [t + dt for t, dt in f.steps]
        starts = [t for t, _ in f.steps]
        for stop in stops:
            assert stop in ends and stop in starts, (stop, f.steps)
        assert y[-1].item() == pytest.approx(torch.e ** -(t_span[1] - t_span[0]), rel=1e-5)
