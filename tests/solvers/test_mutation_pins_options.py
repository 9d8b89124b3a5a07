"""``parse_options`` (mutation survivors): ``step_size`` turns an adaptive method into a
fixed-step one, so the fixed-step options apply and the adaptive ones are refused with that
reason; a bad ``step_t``/``jump_t`` is named in the error; SolverConfig checks both method names."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfig, SolverConfigError

T = torch.tensor([0.0, 1.0], dtype=torch.float64)
Y0 = torch.ones(1, dtype=torch.float64)


def decay(t, y):
    return -y


def test_step_size_makes_an_adaptive_method_take_fixed_steps():
    fixed_only = {"step_size": 0.25, "perturb": True}  # accepted: dopri5 now steps like rk4
    ys = nodezoo.odeint(decay, Y0, T, method="dopri5", options=fixed_only)
    assert abs(ys[-1].item() - math.exp(-1.0)) < 1e-6  # y = exp(-t)
    with pytest.raises(SolverConfigError, match="step_size makes an adaptive method take fixed"):
        nodezoo.odeint(
            decay, Y0, T, method="dopri5", options={"step_size": 0.25, "first_step": 0.1}
        )


@pytest.mark.parametrize("key", ["step_t", "jump_t"])
def test_a_time_list_that_is_no_sequence_is_named(key):
    with pytest.raises(SolverConfigError, match=rf"options\['{key}'\] must be a 1-D tensor"):
        nodezoo.odeint(decay, Y0, T, options={key: 0.5})


def test_solver_config_checks_both_method_names_and_refuses_no_method():
    # mutation survivor of SolverConfig._problems: adjoint_method went unchecked
    with pytest.raises(SolverConfigError, match="2 solver settings") as info:
        SolverConfig(method="nope", adjoint_method="nada")
    assert "'nope'" in str(info.value) and "'nada'" in str(info.value)
    with pytest.raises(SolverConfigError, match="method must be a string, got int"):
        SolverConfig(method=5)


@pytest.mark.parametrize("alias, name", [("heun2", "heun"), ("explicit_midpoint", "midpoint")])
def test_torchdiffeq_aliases_name_the_same_methods(alias, name):
    options = {"step_size": 0.25}
    ys = nodezoo.odeint(decay, Y0, T, method=alias, options=options)
    assert torch.equal(ys, nodezoo.odeint(decay, Y0, T, method=name, options=options))
