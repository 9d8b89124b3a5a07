"""``backend='torchdiffeq'`` hands each SolverConfig setting to torchdiffeq (mutation survivors
of ``backends.py``; see tests/README.md, "Mutation testing"): the same solve called on
torchdiffeq directly, with the settings written out by hand (SolverConfig's defaults:
rtol = atol = 1e-3, seminorm on), gives the same states, gradients
and evaluation counts."""

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError, SolveStats

torchdiffeq = pytest.importorskip("torchdiffeq")

F64 = dict(dtype=torch.float64)
T = torch.linspace(0, 2, 3, **F64)


class Counted(torch.nn.Module):
    """y' = -k y + sin t, counting evaluations."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(0.7, **F64))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return -self.k * y + torch.sin(t)


CASES = {
    "adjoint_seminorm": (
        dict(gradient="adjoint", rtol=1e-7, atol=1e-9, seminorm=True, adjoint_rtol=1e-5,
             adjoint_atol=1e-6, adjoint_method="bosh3", max_steps=500),
        lambda f, y0: torchdiffeq.odeint_adjoint(
            f, y0, T, rtol=1e-7, atol=1e-9, method="dopri5", options={"max_num_steps": 500},
            adjoint_rtol=1e-5, adjoint_atol=1e-6, adjoint_method="bosh3",
            adjoint_options={"norm": "seminorm", "max_num_steps": 500}, adjoint_params=(f.k,),
        ),
    ),
    "adjoint_options_given": (  # the user's adjoint options, the config's seminorm beside them
        dict(gradient="adjoint", adjoint_method="rk4", adjoint_options={"step_size": 0.25}),
        lambda f, y0: torchdiffeq.odeint_adjoint(
            f, y0, T, rtol=1e-3, atol=1e-3, method="dopri5", options={"max_num_steps": 100000},
            adjoint_rtol=1e-3, adjoint_atol=1e-3, adjoint_method="rk4",
            adjoint_options={"norm": "seminorm", "step_size": 0.25}, adjoint_params=(f.k,),
        ),
    ),
    "adjoint_norm_given": (  # a norm in adjoint_options wins over the config's seminorm
        dict(gradient="adjoint", options={"jump_t": torch.tensor([1.5], **F64)},
             adjoint_options={"norm": lambda tensors: max(x.abs().max() for x in tensors)}),
        lambda f, y0: torchdiffeq.odeint_adjoint(
            f, y0, T, rtol=1e-3, atol=1e-3, method="dopri5",
            options={"jump_t": torch.tensor([1.5], **F64), "max_num_steps": 100000},
            adjoint_options={"norm": lambda tensors: max(x.abs().max() for x in tensors)},
            adjoint_params=(f.k,),
        ),
    ),
    "adjoint_inherits_options": (  # no adjoint_options: the forward's, less the norm
        dict(gradient="adjoint", options={"jump_t": torch.tensor([1.5], **F64),
                                          "norm": lambda y: y.abs().max()}),
        lambda f, y0: torchdiffeq.odeint_adjoint(
            f, y0, T, rtol=1e-3, atol=1e-3, method="dopri5",
            options={"jump_t": torch.tensor([1.5], **F64), "max_num_steps": 100000,
                     "norm": lambda y: y.abs().max()},
            adjoint_options={"jump_t": torch.tensor([1.5], **F64), "max_num_steps": 100000,
                             "norm": "seminorm"},
            adjoint_params=(f.k,),
        ),
    ),
    "adjoint_fixed_step": (
        dict(gradient="adjoint", method="rk4", step_size=0.1),
        lambda f, y0: torchdiffeq.odeint_adjoint(
            f, y0, T, rtol=1e-3, atol=1e-3, method="rk4", options={"step_size": 0.1},
            adjoint_rtol=1e-3, adjoint_atol=1e-3, adjoint_method="rk4",
            adjoint_options={"norm": "seminorm", "step_size": 0.1}, adjoint_params=(f.k,),
        ),
    ),
    "backprop_first_step": (
        dict(gradient="backprop", first_step=0.3, max_steps=7),
        lambda f, y0: torchdiffeq.odeint(
            f, y0, T, rtol=1e-3, atol=1e-3, method="dopri5",
            options={"first_step": 0.3, "max_num_steps": 7},
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_torchdiffeq_backend_passes_every_setting(case):
    cfg, direct = CASES[case]
    cfg = dict(cfg)
    options = {k: cfg.pop(k) for k in ("options", "adjoint_options") if k in cfg}
    func, stats = Counted(), SolveStats()
    y0 = torch.tensor([1.0, -0.5], **F64)
    ys = nodezoo.solve(func, y0, T, {**cfg, "backend": "torchdiffeq"}, stats=stats, **options)
    forward_nfe = func.nfe
    (grad,) = torch.autograd.grad(ys[-1].sum(), func.k)
    assert (stats.nfe_forward, stats.nfe_backward) == (forward_nfe, func.nfe - forward_nfe)

    ref = Counted()
    ys_ref = direct(ref, y0)
    ref_forward = ref.nfe
    (grad_ref,) = torch.autograd.grad(ys_ref[-1].sum(), ref.k)
    assert torch.equal(ys, ys_ref) and torch.equal(grad, grad_ref)
    assert (forward_nfe, func.nfe) == (ref_forward, ref.nfe)


def test_torchdiffeq_backend_refuses_checkpointing():
    with pytest.raises(SolverConfigError, match=r"^torchdiffeq has no checkpointed gradients"):
        nodezoo.solve(
            Counted(), torch.ones(2, **F64), T, {"backend": "torchdiffeq", "gradient": "checkpoint"}
        )


def test_torchdiffeq_backend_passes_max_steps():
    """Two steps cannot cover [0, 2] at rtol = 1e-9: torchdiffeq stops with its own error."""
    cfg = {"backend": "torchdiffeq", "gradient": "backprop", "rtol": 1e-9, "atol": 1e-9}
    with pytest.raises(AssertionError, match="max_num_steps exceeded"):
        nodezoo.solve(Counted(), torch.ones(2, **F64), T, {**cfg, "max_steps": 2})
