"""Contracts of a solve pinned after the eighth run's second sample (seed 88; mutation
survivors): an adaptive solve evaluates f no more once the last output is reached
(``rk._integrate_adaptive``), a user's error norm may keep the tensor it is given
(``_ErrorRatio``), a fixed-step implicit step solves its equation to 1e-2 of the tolerance scale
(``ImplicitRungeKutta``'s default Newton tolerance), a user's adjoint norm on a tuple state gets
the parts (``_adjoint_settings``), and tuple parts must share a dtype (``_check_state``)."""

import math
import re

import pytest
import torch

import nodezoo
from nodezoo.solvers.stats import last_stats

F64 = torch.float64


def test_no_evaluation_after_the_last_output_of_a_non_fsal_method():
    """fehlberg2 (3 stages, not FSAL) on y' = 1 from first_step = 1: one exact step over [0, 1],
    f(t0) plus 2 stages = 3 evaluations, and none for a next step that will not be taken."""
    y = nodezoo.odeint(lambda t, y: torch.ones_like(y), torch.zeros(1, dtype=F64),
                       torch.tensor([0.0, 0.5, 1.0], dtype=F64), method="fehlberg2",
                       options={"first_step": 1.0})  # fmt: skip
    assert y[:, 0].tolist() == [0.0, 0.5, 1.0]
    stats = last_stats()
    assert (stats.steps_accepted, stats.nfe_forward) == (1, 3)


def test_a_users_error_norm_may_keep_the_tensors_it_is_given():
    """Each error estimate handed to a user's norm is its own tensor: what the norm returned
    when called is still the max of what it kept, after the solve has moved on."""
    kept = []

    def norm(err):
        value = float(err.abs().max())
        kept.append((err, value))
        return err.abs().max()

    with torch.no_grad():  # the no-grad loop reuses its buffers: the norm must get its own
        nodezoo.odeint(lambda t, y: -y, torch.ones(2, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64), method="dopri5",
                       options={"norm": norm})  # fmt: skip
    assert len(kept) > 2
    assert [float(err.abs().max()) for err, _ in kept] == [value for _, value in kept]


def test_a_fixed_step_implicit_euler_step_solves_its_equation_to_a_hundredth_of_the_tolerance():
    """Implicit Euler on y' = -y**2 from y0 = 1 with h = 0.5 solves y1 = y0 - h y1**2:
    y1 = (sqrt(1 + 4 h) - 1) / (2 h). Newton stops when its estimated remaining error is below
    1e-2 of atol + rtol |y| (7.4e-10 here; asserted within twice that: 6.8e-10 measured); a
    tolerance of 1 instead left 4e-8."""
    h = 0.5
    y = nodezoo.odeint(lambda t, y: -(y**2), torch.ones(1, dtype=F64),
                       torch.tensor([0.0, h], dtype=F64), method="implicit_euler",
                       rtol=1e-7, atol=1e-9, options={"step_size": h})  # fmt: skip
    exact = (math.sqrt(1 + 4 * h) - 1) / (2 * h)
    assert abs(y[-1].item() - exact) < 2e-2 * (1e-9 + 1e-7 * exact)


def test_a_user_adjoint_norm_on_a_tuple_state_gets_the_parts_as_torchdiffeq_gives_them():
    """torchdiffeq calls a user's adjoint norm with (t, y parts, adj_y parts, adj_params) for a
    tuple state (``_adjoint_settings``' expansion; mutation survivor of the second sample)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))

        def forward(self, t, y):
            return (-self.k * y[0], -2 * self.k * y[1])

    def shapes_seen(odeint_adjoint):
        seen = set()

        def norm(tensors):
            seen.add(tuple(tuple(x.shape) for x in tensors))
            return torch.stack([x.abs().max() for x in tensors]).max()

        y0 = (torch.ones(2, dtype=F64), torch.ones(3, dtype=F64))
        ys = odeint_adjoint(Field(), y0, torch.tensor([0.0, 1.0], dtype=F64),
                            adjoint_options={"norm": norm})  # fmt: skip
        (ys[0][-1].sum() + ys[1][-1].sum()).backward()
        return seen

    expected = shapes_seen(torchdiffeq.odeint_adjoint)
    assert expected == {((), (2,), (3,), (2,), (3,), ())}  # t, y, adj_y parts, adj_k
    assert shapes_seen(nodezoo.odeint_adjoint) == expected


def test_a_tuple_state_whose_parts_differ_in_dtype_is_refused():
    """The parts are solved as one flat tensor: float64 and float32 parts cannot share it."""
    from nodezoo.solvers import SolverConfigError

    y0 = (torch.ones(1, dtype=F64), torch.ones(1, dtype=torch.float32))
    message = "share dtype and device: y0[0] is torch.float64 on cpu, y0[1] is torch.float32"
    with pytest.raises(SolverConfigError, match=re.escape(message)):
        nodezoo.odeint(lambda t, y: (-y[0], -y[1]), y0, torch.tensor([0.0, 1.0], dtype=F64))
