"""``odeint_adjoint``'s arguments and the adjoint norm's layout (mutation survivors of
``odeint.odeint_adjoint`` and ``gradients.tuple_norm``; see tests/README.md, "Mutation
testing"), on y' = -k y, whose gradient dy(1)/dk = -y0 exp(-k) is known."""

import math

import pytest
import torch
from decay import Decay

import nodezoo
from nodezoo.solvers import SolverConfigError, SolveStats

F64 = dict(dtype=torch.float64)
T = torch.tensor([0.0, 1.0], **F64)


def _backward(**kwargs):
    """(backward NFE, dy(1)/dk) of odeint_adjoint on the decay from y0 = 1."""
    func, stats = Decay(), SolveStats()
    ys = nodezoo.odeint_adjoint(func, torch.ones(1, **F64), T, stats=stats, **kwargs)
    ys[-1].sum().backward()
    return stats.nfe_backward, float(func.k.grad)


def test_gradients_come_from_an_adjoint_solve():
    nfe, grad = _backward(rtol=1e-9, atol=1e-9)
    assert nfe > 0  # backprop through the forward solve would leave nfe_backward at 0
    assert grad == pytest.approx(-math.exp(-0.5), abs=1e-8)


def test_adjoint_method_and_tolerances_are_used():
    """rk4 with steps of 0.1 over [0, 1]: 10 steps of 4 evaluations. Looser adjoint
    tolerances than the forward ones (1e-9) take fewer backward evaluations."""
    nfe, grad = _backward(
        rtol=1e-9, atol=1e-9, adjoint_method="rk4", adjoint_options={"step_size": 0.1}
    )
    assert nfe == 40
    assert grad == pytest.approx(-math.exp(-0.5), abs=1e-6)  # rk4's error at h = 0.1
    tight = _backward(rtol=1e-9, atol=1e-9)[0]
    assert _backward(rtol=1e-9, atol=1e-9, adjoint_rtol=1e-3)[0] < tight
    assert _backward(rtol=1e-9, atol=1e-9, adjoint_atol=1e-2)[0] < tight


def test_refusals_say_what_is_wrong():
    y0 = torch.ones(1, **F64)
    with pytest.raises(
        SolverConfigError,
        match=r"^func must be an nn\.Module when .* Pass adjoint_params=\(\.\.\.\) or wrap func\.$",
    ):
        nodezoo.odeint_adjoint(lambda t, y: -y, y0, T)
    with pytest.raises(
        SolverConfigError,
        match=r"^adjoint_method differs from method, .* options: pass adjoint_options as well\.$",
    ):
        nodezoo.odeint_adjoint(
            Decay(), y0, T, method="dopri5", adjoint_method="rk4", options={"first_step": 0.1}
        )
    # each condition of that refusal alone is fine
    nodezoo.odeint_adjoint(Decay(), y0, T, method="rk4", adjoint_method="rk4",
                           options={"step_size": 0.1})  # fmt: skip
    nodezoo.odeint_adjoint(Decay(), y0, T, method="dopri5", adjoint_method="bosh3")
    nodezoo.odeint_adjoint(
        Decay(), y0, T, method="dopri5", adjoint_method="rk4",
        options={"first_step": 0.1}, adjoint_options={"step_size": 0.1},
    )  # fmt: skip


class Ball(torch.nn.Module):
    """Free fall from rest: lands at t* = sqrt(2 h0 / g), dt*/dg = -t* / (2 g)."""

    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(9.81, **F64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g])


def test_event_fn_reaches_the_solve():
    ball = Ball()
    t_event, _ = nodezoo.odeint_adjoint(
        ball, torch.tensor([10.0, 0.0], **F64), T, event_fn=lambda t, y: y[0],
        rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    t_star = math.sqrt(2 * 10.0 / 9.81)
    assert float(t_event) == pytest.approx(t_star, abs=1e-9)
    (dt_dg,) = torch.autograd.grad(t_event, ball.g)
    assert float(dt_dg) == pytest.approx(-t_star / (2 * 9.81), abs=1e-6)


class Affine(torch.nn.Module):
    """y' = -w * y + c with two parameters of the state's shape."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.5, 2.0], **F64))
        self.c = torch.nn.Parameter(torch.tensor([1.0, -3.0], **F64))

    def forward(self, t, y):
        return -self.w * y + self.c


def test_user_adjoint_norm_receives_each_parameter_channel():
    """torchdiffeq's adjoint norm gets (t, y, adj_y, adj_w, adj_c). Its second call is the
    first-step rule's norm(f_aug / scale); with adjoint rtol = 0, atol = 1 that is f_aug at
    t = 1 itself: f(y), -a df/dy = a w, -a df/dw = a y, -a df/dc = -a, with a = dL/dy = 1."""
    calls = []

    def norm(tensors):
        calls.append([p.detach().clone() for p in tensors])
        return max(p.abs().max() for p in tensors)

    func = Affine()
    ys = nodezoo.odeint_adjoint(
        func, torch.tensor([1.0, 1.0], **F64), T, rtol=1e-9, atol=1e-9,
        adjoint_rtol=0.0, adjoint_atol=1.0, adjoint_options={"norm": norm},
    )  # fmt: skip
    ys[-1].sum().backward()
    y1 = ys[-1].detach()
    w, c = func.w.detach(), func.c.detach()
    t, y, adj_y, adj_w, adj_c = calls[1]
    assert float(t) == 0.0
    assert torch.allclose(y, -w * y1 + c)
    assert torch.allclose(adj_y, w)
    assert torch.allclose(adj_w, y1)
    assert torch.allclose(adj_c, -torch.ones(2, **F64))


class Pair(torch.nn.Module):
    """y' = -k * y with a parameter of two entries."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor([0.5, 0.2], **F64))

    def forward(self, t, y):
        return -self.k * y


def _rms(v):
    return math.sqrt(sum(x * x for x in v) / len(v))


@pytest.mark.parametrize("seminorm", [False, True])
def test_default_adjoint_norm_is_torchdiffeqs(seminorm):
    """The norm on ``ys.grad_fn.adjoint_options`` is torchdiffeq's default adjoint norm:
    max(|t|, rms(y), rms(adj_y), rms(adj_k)); the seminorm leaves adj_k out."""
    options = {"norm": "seminorm"} if seminorm else None
    ys = nodezoo.odeint_adjoint(Pair(), torch.ones(2, **F64), T, adjoint_options=options)
    norm = ys.grad_fn.adjoint_options["norm"]
    t, y, adj_y, adj_k = (
        torch.tensor(v, **F64) for v in (0.1, [0.3, -0.4], [0.2, 0.1], [2.0, 1.0])
    )
    values = [0.1, _rms([0.3, -0.4]), _rms([0.2, 0.1])] + ([] if seminorm else [_rms([2.0, 1.0])])
    assert float(norm((t, y, adj_y, adj_k))) == pytest.approx(max(values))


def test_forward_state_norm_measures_y_and_adj_y_in_the_backward_solve():
    """As torchdiffeq: a forward ``options['norm']`` is not the adjoint norm; the default
    adjoint norm applies it to y and to adj_y, each in the state's own shape."""
    shapes = {"forward": [], "backward": []}
    phase = "forward"

    def norm(y):
        shapes[phase].append(tuple(y.shape))
        return y.abs().max()

    ys = nodezoo.odeint_adjoint(Pair(), torch.ones(2, **F64), T, options={"norm": norm})
    phase = "backward"
    ys[-1].sum().backward()
    assert shapes["forward"] and shapes["backward"]
    assert set(shapes["backward"]) == {(2,)}
