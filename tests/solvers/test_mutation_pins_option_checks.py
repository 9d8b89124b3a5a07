"""Checks of solver settings that only some paths take (mutation survivors of the eighth run):
a method name that is not even hashable (``get_method``), ``step_size`` given alone
(``parse_options``' fast path, whose message ``rk`` repeats), tolerances given as a tensor or
numpy value (``SolverConfig``), ``interp`` in the adjoint's options (``parse_options``), and the
scipy no-gradient warning (``solve``)."""

import warnings

import numpy as np
import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError

F64 = torch.float64
Y0, TIMES = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)


def decay(t, y):
    return -y


def test_a_method_given_as_a_list_is_refused_with_the_type_message():
    """A list (a YAML ``[dopri5]``) cannot key the method cache: the type check comes first."""
    with pytest.raises(SolverConfigError, match="method must be a string, got list"):
        nodezoo.odeint(decay, Y0, TIMES, method=["dopri5"])


@pytest.mark.parametrize("step_size", [0, -0.1])
def test_a_step_size_given_alone_must_be_positive(step_size):
    with pytest.raises(SolverConfigError, match=rf"step_size must be positive, got {step_size}\."):
        nodezoo.odeint(decay, Y0, TIMES, method="rk4", options={"step_size": step_size})


@pytest.mark.parametrize(
    "rtol",
    [torch.tensor(1e-4, dtype=F64), np.float64(1e-4), np.array(1e-4), [1e-4], (np.float64(1e-4),)],
    ids=["tensor", "numpy", "numpy-0d-array", "list", "tuple-of-numpy"],
)
def test_a_tolerance_as_a_tensor_or_numpy_value_acts_as_the_float(rtol):
    expected = nodezoo.odeint(decay, Y0, TIMES, rtol=1e-4, atol=1e-9)
    assert torch.equal(nodezoo.odeint(decay, Y0, TIMES, rtol=rtol, atol=1e-9), expected)


def test_adjoint_options_refuse_interp_which_only_event_solves_use():
    """The backward solve has no event: an explicit ``interp`` there is a mistake."""
    k = torch.nn.Parameter(torch.tensor(1.0, dtype=F64))
    with pytest.raises(SolverConfigError, match=r"options\['interp'\] only applies with event_fn"):
        nodezoo.odeint_adjoint(lambda t, y: -k * y, Y0.clone().requires_grad_(), TIMES,
                               method="rk4", options={"step_size": 0.1}, adjoint_params=(k,),
                               adjoint_options={"step_size": 0.1, "interp": "cubic"})  # fmt: skip


def test_only_a_scipy_solve_that_needs_a_graph_warns_that_it_has_none():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():  # no graph needed: nothing to warn about, scipy or not
            nodezoo.odeint(decay, Y0, TIMES, method="scipy_solver", options={"solver": "RK45"})
            nodezoo.odeint(decay, Y0, TIMES, method="dopri5")
        nodezoo.odeint(decay, Y0.clone().requires_grad_(), TIMES, method="dopri5")
    with pytest.warns(UserWarning, match="scipy_solver runs outside autograd"):
        nodezoo.odeint(decay, Y0.clone().requires_grad_(), TIMES, method="scipy_solver",
                       options={"solver": "RK45"})  # fmt: skip


def test_tolerances_the_config_accepts_are_solved_with_and_mismatches_are_named():
    """``SolverConfig`` accepts numpy float32 and 0-d arrays; the solve once refused them."""
    out = nodezoo.odeint(decay, Y0, TIMES, rtol=np.float32(1e-4), atol=np.array(1e-9))
    expected = nodezoo.odeint(decay, Y0, TIMES, rtol=float(np.float32(1e-4)), atol=1e-9)
    assert torch.equal(out, expected)
    state = (torch.ones(2, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(SolverConfigError, match=r"one float per tuple entry \(2\); got 3 values"):
        nodezoo.odeint(lambda t, y: (-y[0], -y[1]), state, TIMES, rtol=[1e-3, 1e-4, 1e-5])
