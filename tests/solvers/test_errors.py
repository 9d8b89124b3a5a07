"""Failures give their own exception with a message that says what to try."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import (
    MaxStepsExceeded,
    NonFiniteState,
    SolverConfig,
    SolverConfigError,
    SolverError,
    StepSizeUnderflow,
    odeint,
)

T = torch.tensor([0.0, 1.0])


def test_max_steps_exceeded_names_time_and_remedy():
    with pytest.raises(MaxStepsExceeded, match="max_steps=5") as info:
        odeint(
            lambda t, y: torch.cos(50 * t) * y,
            torch.ones(2),
            T,
            rtol=1e-9,
            atol=1e-9,
            options={"max_num_steps": 5},
        )
    assert isinstance(info.value, SolverError)
    assert 0.0 <= info.value.t < 1.0 and info.value.step_size > 0
    assert "raise max_steps" in str(info.value)


def test_fixed_step_count_over_max_steps():
    with pytest.raises(MaxStepsExceeded, match="step_size"):
        nodezoo.solve(
            lambda t, y: -y,
            torch.ones(1),
            T,
            SolverConfig(method="rk4", step_size=1e-3, max_steps=10, gradient="backprop"),
        )


def test_blow_up_raises_non_finite_or_underflow_quickly():
    """y' = y^2 from y(0)=1 blows up at t=1; the solver must stop with a clear error."""
    with pytest.raises((NonFiniteState, StepSizeUnderflow)) as info:
        odeint(
            lambda t, y: y**2,
            torch.ones(1, dtype=torch.float64),
            torch.tensor([0.0, 2.0], dtype=torch.float64),
            rtol=1e-6,
            atol=1e-6,
        )
    assert 0.9 < info.value.t < 1.01
    assert "t=" in str(info.value)


def test_nan_field_raises_non_finite_state():
    f = lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y)
    with pytest.raises(NonFiniteState, match="NaN or infinite"):
        odeint(f, torch.ones(3, dtype=torch.float64), T.double())
    with pytest.raises(NonFiniteState):
        odeint(f, torch.ones(3), T, method="rk4", options={"step_size": 0.1})


@pytest.mark.parametrize(
    "func, match",
    [
        (lambda t, y: y[:1], "shape"),
        (lambda t, y: y.double(), "dtype"),
        (lambda t, y: y.to("meta"), "is on meta"),
        (lambda t, y: 3.0, "expected a tensor"),
    ],
)
def test_vector_field_output_mismatch(func, match):
    with pytest.raises(SolverConfigError, match=match):
        odeint(func, torch.ones(2), T)


def test_tuple_state_needs_tuple_output():
    with pytest.raises(SolverConfigError, match="tuple"):
        odeint(lambda t, s: s[0], (torch.ones(2), torch.ones(3)), T)


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
        (torch.tensor([0.0, 0.0, 1.0]), "strictly"),
        (torch.tensor([[0.0, 1.0]]), "1-D"),
        (torch.tensor([0, 1]), "floating-point"),
        (torch.tensor([0.0, math.nan]), "NaN"),
    ],
)
def test_bad_times(t, match):
    with pytest.raises(SolverConfigError, match=match):
        odeint(lambda t, y: -y, torch.ones(2), t)


def test_bad_state_and_settings():
    with pytest.raises(SolverConfigError, match="floating point"):
        odeint(lambda t, y: -y, torch.ones(2, dtype=torch.long), T)
    with pytest.raises(SolverConfigError, match="same device"):
        odeint(lambda t, y: -y, torch.ones(2), T.to("meta"))
    with pytest.raises(SolverConfigError, match="Unknown ODE method 'dopri4'"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="dopri4")
    with pytest.raises(SolverConfigError, match="Unknown solver option"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"stepsize": 0.1})
    with pytest.raises(SolverConfigError, match="do not apply to fixed-step"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="rk4", options={"min_step": 0.1})
    with pytest.raises(SolverConfigError, match="do not apply to adaptive"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"perturb": True})
    with pytest.raises(SolverConfigError, match="only applies with event_fn"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="rk4", options={"interp": "cubic"})
    with pytest.raises(SolverConfigError, match="jump_t"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"grid_points": [0.5]})
    with pytest.raises(SolverConfigError, match="float64"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"dtype": torch.float32})
    with pytest.raises(MaxStepsExceeded):  # an event that never happens
        odeint(
            lambda t, y: -y,
            torch.ones(2),
            T,
            event_fn=lambda t, y: y,
            options={"max_num_steps": 50},
        )


def test_config_validation_and_round_trip():
    cfg = SolverConfig(method="tsit5", rtol=1e-5, atol=1e-6, gradient="checkpoint", seminorm=False)
    assert SolverConfig.from_dict(cfg.to_dict()) == cfg
    assert SolverConfig.from_dict(None) == SolverConfig()
    with pytest.raises(SolverConfigError, match=r"Unknown solver setting\(s\) \['rtoll'\]"):
        SolverConfig.from_dict({"rtoll": 1e-3})
    with pytest.raises(SolverConfigError, match="gradient="):
        SolverConfig(gradient="magic")
    with pytest.raises(SolverConfigError, match="backend="):
        SolverConfig(backend="jax")
    with pytest.raises(SolverConfigError, match="rtol"):
        SolverConfig(rtol=-1.0)
    with pytest.raises(SolverConfigError, match="step_size"):
        SolverConfig(step_size=0.0)
    assert SolverConfig(method="rk4").adaptive is False
