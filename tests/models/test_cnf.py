"""CNF: densities against a flow with a known answer, the trace estimator, inversion, gradients."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from trainers import quiet_trainer

from nodezoo.callbacks import SolverStatsMonitor
from nodezoo.data.density import ToyDensityDataModule
from nodezoo.models import CNF
from nodezoo.models.cnf import (
    CNFDynamics,
    ConcatSquashField,
    divergence,
    draw_noise,
    evaluate_nll,
    nats_to_bits_per_dim,
    standard_normal_log_prob,
)
from nodezoo.models.cnf_plots import DensityPlotCallback

TIGHT = {"rtol": 1e-9, "atol": 1e-9}


class LinearField(nn.Module):
    """``f(t, z) = A z``: the flow is ``z(T) = exp(A T) z(0)`` and its log-determinant
    ``T tr(A)``, so ``log p(x) = log N(exp(-A T) x; 0, I) - T tr(A)`` exactly."""

    def __init__(self, a: torch.Tensor):
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, z):
        return z @ self.a.T


def linear_cnf(dim: int, t1: float, gradient: str = "adjoint", seed: int = 0) -> CNF:
    torch.manual_seed(seed)
    model = CNF(dim=dim, t1=t1, solver={"gradient": gradient, **TIGHT}).double()
    model.dynamics.field = LinearField(0.4 * torch.randn(dim, dim, dtype=torch.float64))
    return model


@pytest.mark.parametrize("dim", [2, 5])
def test_log_prob_of_a_linear_flow_is_the_gaussian_it_pushes_forward(dim):
    t1 = 0.7
    model = linear_cnf(dim, t1)
    a = model.dynamics.field.a.detach()
    x = torch.randn(16, dim, dtype=torch.float64)
    expected = standard_normal_log_prob(x @ torch.linalg.matrix_exp(-a * t1).T) - t1 * a.trace()
    # also the closed form: x ~ N(0, S S^T) with S = exp(A T)
    s = torch.linalg.matrix_exp(a * t1)
    gaussian = torch.distributions.MultivariateNormal(torch.zeros(dim).double(), s @ s.T)
    torch.testing.assert_close(expected, gaussian.log_prob(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(model.log_prob(x, trace="exact"), expected, rtol=0, atol=1e-7)
    # a linear field's Hutchinson estimate is exact for Rademacher noise only on the diagonal:
    # it must differ from the truth per sample (it is an estimate) but agree on average
    torch.manual_seed(1)
    estimates = torch.stack([model.log_prob(x, trace="hutchinson") for _ in range(100)])
    assert (estimates[0] - expected).abs().max() > 1e-3
    stderr = estimates.std(0) / math.sqrt(len(estimates))
    assert ((estimates.mean(0) - expected).abs() < 4.5 * stderr + 1e-9).all()


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_estimate_is_unbiased_for_the_exact_trace(noise):
    torch.manual_seed(0)
    field = ConcatSquashField(3, hidden=16, layers=2).double()
    n = 20_000  # draws, all at the same point: one batch of copies
    z = torch.randn(1, 3, dtype=torch.float64).expand(n, 3).clone().requires_grad_(True)
    t = torch.tensor(0.3, dtype=torch.float64)
    dz = field(t, z)
    exact, frobenius = divergence(dz, z, None, create_graph=False)
    torch.testing.assert_close(exact, exact[:1].expand(n))
    jac = torch.autograd.functional.jacobian(lambda v: field(t, v), z[:1].detach())[0, :, 0]
    torch.testing.assert_close(exact[0], jac.trace())  # against an independent Jacobian
    torch.testing.assert_close(frobenius[0], jac.pow(2).sum())  # RNODE's ||J||_F², for free
    draws, frob_draws = divergence(dz, z, draw_noise(z, noise), create_graph=False)
    assert draws.std() > 0.05  # a real estimate, not the exact trace
    for estimate, truth in ((draws, exact[0]), (frob_draws, frobenius[0])):
        stderr = estimate.std() / math.sqrt(n)
        assert abs(float(estimate.mean() - truth)) < 4 * stderr
    # and the test can fail: a mis-scaled noise (E[εεᵀ] = 1.2² I) is a biased estimator
    biased, _ = divergence(field(t, z), z, 1.2 * draw_noise(z, noise), create_graph=False)
    assert abs(float(biased.mean() - exact[0])) > 4 * biased.std() / math.sqrt(n)


def test_sample_inverts_the_map_of_log_prob():
    torch.manual_seed(0)
    model = CNF(dim=2, hidden=32, layers=2, t1=1.0, solver=TIGHT).double().eval()
    z0 = model.base_sample(64)
    times = torch.tensor([0.0, 1.0])
    x = model.trajectory(z0, times)[-1]
    back = model.trajectory(x, times.flip(0))[-1]
    torch.testing.assert_close(back, z0, rtol=0, atol=1e-6)
    assert (x - z0).abs().max() > 1e-2  # the flow moved the points
    # log p(x) from the backward solve equals log N(z0) minus the forward log-determinant
    model.dynamics.noise = None
    _, logdet = model.ode((z0, z0.new_zeros(64)), times)
    torch.testing.assert_close(
        model.log_prob(x), standard_normal_log_prob(z0) + logdet[-1], rtol=0, atol=1e-6
    )
    torch.manual_seed(3)
    samples = model.sample(64)
    torch.manual_seed(3)
    torch.testing.assert_close(samples, model.trajectory(model.base_sample(64), times)[-1])


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_gradient_modes_agree(trace):
    x = torch.randn(8, 2, dtype=torch.float64)
    grads = {}
    for gradient in ("backprop", "adjoint", "checkpoint"):
        torch.manual_seed(0)  # same weights and, for Hutchinson, the same noise
        model = CNF(dim=2, hidden=16, layers=2, solver={"gradient": gradient, **TIGHT}).double()
        loss = -model.log_prob(x, trace=trace).mean()
        loss.backward()
        grads[gradient] = torch.cat([p.grad.flatten() for p in model.parameters()])
        if gradient != "backprop":
            assert model.ode.nfe_backward > 0
    for gradient in ("adjoint", "checkpoint"):
        torch.testing.assert_close(grads[gradient], grads["backprop"], rtol=1e-6, atol=1e-8)


def test_trace_choice_auto_is_exact_only_in_low_dimensions():
    assert CNF(dim=4)._exact(None) is True  # training mode, trace="auto"
    assert CNF(dim=5)._exact(None) is False
    assert CNF(dim=5).eval()._exact(None) is True  # eval_trace="exact"
    assert CNF(dim=2, trace="hutchinson")._exact(None) is False


def test_zero_field_gives_the_base_density_and_its_bits_per_dim():
    model = CNF(dim=64, quantization_levels=17, trace="hutchinson").eval()
    for p in model.parameters():
        nn.init.zeros_(p)
    x = torch.rand(10, 64)
    torch.testing.assert_close(model.log_prob(x), standard_normal_log_prob(x))
    nll = -standard_normal_log_prob(x).mean()
    expected = (nll + 64 * math.log(17)) / (64 * math.log(2))
    torch.testing.assert_close(nats_to_bits_per_dim(nll, 64, 17), expected)
    metrics = evaluate_nll(model, [x[:4], x[4:]])  # as the zoo's evaluate will call it
    assert metrics["test/nll"] == pytest.approx(float(nll), rel=1e-5)
    assert metrics["test/bits_per_dim"] == pytest.approx(float(expected), rel=1e-5)
    assert metrics["test/nfe_forward"] > 0
    assert nats_to_bits_per_dim(0.0, 64, 17) == pytest.approx(math.log2(17))  # uniform on [0,1)


def test_bad_inputs_and_settings_say_what_to_do():
    model = CNF(dim=2)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        model.log_prob(torch.randn(4, 3))
    with pytest.raises(TypeError, match="floating-point"):
        model.log_prob(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="trace='exakt' is not one of"):
        CNF(trace="exakt")
    with pytest.raises(ValueError, match="t1"):
        CNF(t1=0.0)
    with pytest.raises(ValueError, match="n >= 1"):
        model.sample(0)


def test_dynamics_without_density_is_the_bare_field():
    field = ConcatSquashField(2, hidden=8, layers=1)
    dyn = CNFDynamics(field)
    z, t = torch.randn(5, 2), torch.tensor(0.5)
    torch.testing.assert_close(dyn(t, z), field(t, z))
    dz, neg_div = dyn(t, (z, torch.zeros(5)))
    assert dz.shape == (5, 2) and neg_div.shape == (5,)
    assert neg_div.requires_grad  # differentiable in the weights, for training
    with torch.no_grad():  # and no graph kept when none is wanted (evaluation, adjoint forward)
        _, neg_div = dyn(t, (z, torch.zeros(5)))
    assert not neg_div.requires_grad


def test_a_short_fit_lowers_the_nll_and_the_monitor_sees_the_solves(tmp_path):
    pl.seed_everything(0)
    data = ToyDensityDataModule("8gaussians", n_train=2048, n_val=512, n_test=512, batch_size=256)
    model = CNF(dim=2, hidden=32, layers=2, solver={"rtol": 1e-3, "atol": 1e-3}, lr=5e-3)
    trainer = quiet_trainer(
        max_epochs=3,
        default_root_dir=tmp_path,
        callbacks=[
            SolverStatsMonitor(),
            DensityPlotCallback(every_n_epochs=3, n_samples=200, grid=10),
        ],
    )
    before = trainer.validate(model, data, verbose=False)[0]["val/nll"]
    trainer.fit(model, data)
    after = trainer.callback_metrics["val/nll"].item()
    assert after < before - 0.3, (before, after)
    plots = sorted((tmp_path / "plots").glob("density_step*.png"))
    assert [p.name for p in plots] == ["density_step000024.png"]  # after epoch 3 only
    assert trainer.callback_metrics["nfe/forward"] > 0
    assert trainer.callback_metrics["nfe/backward"] > 0  # adjoint by default


def test_model_and_data_dimensions_must_agree(tmp_path):
    data = ToyDensityDataModule("moons", n_train=64, n_val=64, n_test=64, batch_size=64)
    trainer = quiet_trainer(max_steps=1, default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="dim=3 but the data module gives 2"):
        trainer.fit(CNF(dim=3), data)


DENSITY_RECIPES = sorted(
    (Path(__file__).resolve().parents[2] / "recipes" / "density").glob("*.yaml")
)


def test_the_four_density_recipes_exist():
    names = {p.stem for p in DENSITY_RECIPES}
    assert {"cnf_checkerboard", "cnf_two_spirals", "cnf_8gaussians", "cnf_digits"} <= names


@pytest.mark.parametrize("recipe", DENSITY_RECIPES, ids=lambda p: p.stem)
def test_density_recipes_parse(recipe, capsys):
    from nodezoo.cli import main

    with pytest.raises(SystemExit) as info:
        main(["fit", f"--config={recipe}", "--print_config"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: nodezoo.models.cnf.CNF" in printed
    assert "nodezoo.callbacks.SolverStatsMonitor" in printed
    assert "rtol: 1.0e-05" in printed


def test_digits_recipe_trains_validates_and_tests_through_the_cli(tmp_path):
    from nodezoo.cli import main

    recipe = next(p for p in DENSITY_RECIPES if p.stem == "cnf_digits")
    common = [
        f"--config={recipe}",
        "--model.init_args.hidden=8",
        "--model.init_args.solver={rtol: 1.0e-2, atol: 1.0e-2}",
        "--data.init_args.batch_size=32",
        "--trainer.limit_val_batches=1",
        "--trainer.limit_test_batches=1",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    fit = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.check_val_every_n_epoch=1",
        "--trainer.max_steps=-1",
    ]
    assert main(["fit", *common, *fit]) in (0, None)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["nfe/forward"] > 0 and summary["nfe/backward"] > 0
    assert math.isfinite(summary["val/bits_per_dim"]) and summary["val/bits_per_dim"] > 0
    assert main(["test", *common, f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"]) in (
        0,
        None,
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"test/nll", "test/bits_per_dim", "test/nfe_forward"} <= set(summary)


@pytest.mark.parametrize("dim", [2, 64])
def test_card_picture_is_drawn(tmp_path, dim):
    from nodezoo.models.cnf_plots import plot_cnf

    torch.manual_seed(0)
    model = CNF(dim=dim, hidden=8, layers=1, solver={"rtol": 1e-3, "atol": 1e-3})
    data = torch.randn(300, dim) if dim == 2 else torch.rand(40, dim)
    path = plot_cnf(model, data, tmp_path / "card.png", n_samples=300, grid=20, n_times=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert model.training  # put back as it was
    with pytest.raises(ValueError, match="2-D models or square images"):
        plot_cnf(CNF(dim=3), torch.randn(5, 3), tmp_path / "x.png")


def test_standardized_model_is_the_same_flow_in_data_units():
    torch.manual_seed(0)
    model = CNF(dim=3, hidden=8, layers=1, standardize=True, solver=TIGHT).double()
    shift, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.1, 3.0, 1.0])
    model.set_standardization(shift, scale)
    x = shift + scale * torch.randn(7, 3, dtype=torch.float64)
    plain = CNF(dim=3, hidden=8, layers=1, solver=TIGHT).double()
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if "data_" not in k}, strict=False
    )
    expected = plain.log_prob((x - shift) / scale) - scale.log().sum()
    torch.testing.assert_close(model.log_prob(x), expected)
    for p in model.dynamics.parameters():  # zero field: the base pushed through the affine map
        nn.init.zeros_(p)
    normal = torch.distributions.Normal(shift.double(), scale.double())
    torch.testing.assert_close(model.log_prob(x), normal.log_prob(x).sum(-1))
    torch.manual_seed(1)
    samples = model.sample(5)
    torch.manual_seed(1)
    torch.testing.assert_close(samples, shift + scale * model.base_sample(5))
    with pytest.raises(ValueError, match="positive"):
        model.set_standardization(shift, -scale)
    with pytest.raises(ValueError, match="standardize=False"):
        plain.set_standardization(shift, scale)


# ---- RNODE and STEER on the CNF (the regularisation of nodezoo.nn.regularisation) ----


def regularised_linear_cnf(regularisation: dict, gradient: str = "adjoint", t1: float = 0.8):
    """The linear-field CNF of ``linear_cnf`` with ``regularisation`` (same field, seed 0)."""
    model = CNF(dim=2, t1=t1, solver={"gradient": gradient, **TIGHT}, regularisation=regularisation)
    model = model.double()
    model.dynamics.field = linear_cnf(2, t1, gradient).dynamics.field
    return model


def test_rnode_integrals_of_a_linear_flow_match_their_closed_forms():
    """f = A z: along log_prob's solve z(t) = exp(A (t - T)) x, so the kinetic integral is
    int_0^T ||A exp(A (t - T)) x||^2 dt (quadrature) and, with the exact trace, the Frobenius
    integral is T ||A||_F^2; the density itself is the unregularised one."""
    from scipy.integrate import quad_vec
    from scipy.linalg import expm

    t1 = 0.8
    model = regularised_linear_cnf({"kinetic": 1.0, "jacobian": 1.0})
    plain = linear_cnf(2, t1)
    x = torch.randn(6, 2, dtype=torch.float64)
    log_p = model.log_prob(x, trace="exact")  # training mode: the integrals ride along
    torch.testing.assert_close(log_p, plain.log_prob(x, trace="exact"), rtol=0, atol=1e-9)
    assert model.ode.nfe_forward == plain.ode.nfe_forward  # the channels take no extra steps

    a = model.dynamics.field.a.detach().numpy()
    xs = x.numpy()

    def kinetic_rate(t):
        z = xs @ expm(a * (t - t1)).T
        return (((z @ a.T) ** 2).sum(1)).mean()

    kinetic, _ = quad_vec(kinetic_rate, 0.0, t1, epsabs=1e-13, epsrel=1e-12)
    regs = model.ode.regularisers
    assert regs["kinetic"].item() == pytest.approx(float(kinetic), rel=1e-7)
    assert regs["jacobian"].item() == pytest.approx(t1 * (a**2).sum(), rel=1e-9)
    expected_loss = 1.0 * float(kinetic) + 1.0 * t1 * (a**2).sum()
    assert model.ode.regularisation_loss.item() == pytest.approx(expected_loss, rel=1e-7)


def test_rnode_frobenius_term_reuses_the_hutchinson_trace_noise():
    """With Hutchinson's trace the Frobenius integrand is ||eps^T A||^2 for the trace's own eps
    (RNODE's shared probe), so the integral is T * mean ||eps^T A||^2 exactly."""
    model = regularised_linear_cnf({"jacobian": 1.0})
    x = torch.randn(5, 2, dtype=torch.float64)
    model.log_prob(x, trace="hutchinson")
    eps = model.dynamics.noise
    a = model.dynamics.field.a.detach()
    expected = 0.8 * (eps @ a).pow(2).sum(1).mean()
    assert set(eps.unique().tolist()) <= {-1.0, 1.0}
    assert model.ode.regularisers["jacobian"].item() == pytest.approx(expected.item(), rel=1e-9)


def test_regularised_cnf_gradients_agree_across_modes():
    x = torch.randn(8, 2, dtype=torch.float64)
    grads = {}
    for gradient in ("backprop", "adjoint", "checkpoint"):
        torch.manual_seed(0)  # same weights and the same Hutchinson noise
        model = CNF(
            dim=2, hidden=16, layers=2, trace="hutchinson", solver={"gradient": gradient, **TIGHT},
            regularisation={"kinetic": 0.5, "jacobian": 0.25},
        ).double()  # fmt: skip
        loss = -model.log_prob(x).mean() + model.ode.regularisation_loss
        loss.backward()
        grads[gradient] = torch.cat([p.grad.flatten() for p in model.parameters()])
    for gradient in ("adjoint", "checkpoint"):
        torch.testing.assert_close(grads[gradient], grads["backprop"], rtol=1e-6, atol=1e-8)
    torch.manual_seed(0)
    unregularised = CNF(dim=2, hidden=16, layers=2, trace="hutchinson", solver=TIGHT).double()
    (-unregularised.log_prob(x).mean()).backward()
    plain = torch.cat([p.grad.flatten() for p in unregularised.parameters()])
    assert not torch.allclose(plain, grads["backprop"])  # the regulariser does pull


def test_steer_draws_t_in_training_and_keeps_it_at_evaluation():
    t1, b = 0.8, 0.3
    model = regularised_linear_cnf({"steer": b}, t1=t1)
    x = torch.randn(4, 2, dtype=torch.float64)
    torch.manual_seed(5)
    drawn = t1 + b * (2 * float(torch.rand(())) - 1)
    torch.manual_seed(5)
    log_p = model.log_prob(x, trace="exact")
    torch.testing.assert_close(log_p, linear_cnf(2, drawn).log_prob(x, trace="exact"))
    assert model.ode.regularisation_loss is None  # STEER alone adds no loss term
    model.eval()
    torch.testing.assert_close(
        model.log_prob(x), linear_cnf(2, t1).log_prob(x, trace="exact"), rtol=0, atol=1e-12
    )


def test_regularisation_is_training_only_and_checked():
    model = regularised_linear_cnf({"kinetic": 1.0}).eval()
    model.log_prob(torch.randn(3, 2, dtype=torch.float64))
    assert model.ode.regularisers == {} and model.ode.regularisation_loss is None
    with pytest.raises(ValueError, match=r"steer=1\.0 must be smaller than t1=1\.0"):
        CNF(dim=2, regularisation={"steer": 1.0})
    with pytest.raises(ValueError, match="Unknown regularisation setting"):
        CNF(dim=2, regularisation={"kinetc": 1.0})
    assert CNF(dim=2, regularisation={"kinetic": 0.1}).hparams.regularisation == {
        "kinetic": 0.1, "jacobian": 0.0, "steer": 0.0
    }  # fmt: skip


def test_training_step_adds_the_weighted_integrals_to_the_nll(monkeypatch):
    model = regularised_linear_cnf({"kinetic": 0.5, "jacobian": 2.0})
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    x = torch.randn(6, 2, dtype=torch.float64)
    torch.manual_seed(1)
    loss = model.training_step(x, 0)
    regs = model.ode.regularisers
    torch.manual_seed(1)
    nll = -model.log_prob(x).mean()
    expected = nll + 0.5 * regs["kinetic"] + 2.0 * regs["jacobian"]
    torch.testing.assert_close(loss, expected)
