"""``odeint``'s input checks and callback binding (mutation survivors of ``_check_times`` and
``_hooks``): decreasing times with a repeat are refused like increasing ones; a fixed-step
method warns about the accept/reject callbacks it will not call, never about callback_step."""

import warnings

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError


def decay(t, y):
    return -y


@pytest.mark.parametrize("times", [[0.0, 0.5, 0.5], [1.0, 0.5, 0.5]])
def test_times_with_a_repeat_are_refused_in_either_direction(times):
    with pytest.raises(SolverConfigError, match="strictly increasing or strictly decreasing"):
        nodezoo.odeint(decay, torch.ones(1), torch.tensor(times))


def test_a_fixed_step_method_warns_only_about_the_callbacks_it_skips():
    calls = []

    class Field(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_step(self, t, y, dt):
            calls.append(float(t))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # callback_step alone: nothing to warn about
        nodezoo.odeint(Field(), torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4",
                       options={"step_size": 0.5})  # fmt: skip
    assert calls == [0.0, 0.5]
    f = Field()
    f.callback_accept_step = f.callback_reject_step = lambda t, y, dt: None
    unused = r"\['callback_accept_step', 'callback_reject_step'\] will not be called"
    with pytest.warns(UserWarning, match=unused):
        nodezoo.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4",
                       options={"step_size": 0.5})  # fmt: skip
    # An adaptive method given a step_size steps on that grid: it skips them too (mutation
    # survivor of ``solve`` ignoring step_size when binding the callbacks).
    with pytest.warns(UserWarning, match=unused):
        nodezoo.odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), method="dopri5",
                       options={"step_size": 0.5})  # fmt: skip


@pytest.mark.parametrize("method", ["rk4", "midpoint", "dopri5", "bosh3"])
def test_a_solve_with_grad_gives_the_no_grad_values_to_the_bit(method):
    """The autograd step combines the stages as the no-grad step does (same operations, same
    rounding), so attaching a graph never changes the values (mutation survivor of
    ``_step_autograd``: rk4's combination computed differently, 5e-7 apart in float32)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    y0, t = torch.randn(5, 3), torch.tensor([0.0, 0.5, 1.0])
    options = {"step_size": 0.1} if method in ("rk4", "midpoint") else {}
    with torch.no_grad():
        plain = nodezoo.odeint(lambda t, y: net(y), y0, t, method=method, options=options)
    graphed = nodezoo.odeint(
        lambda t, y: net(y), y0.clone().requires_grad_(), t, method=method, options=options
    )
    assert graphed.requires_grad and torch.equal(graphed.detach(), plain)
