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
