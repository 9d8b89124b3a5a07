"""Regularised dynamics (RNODE integrals, STEER) on the ODE block, checked against closed forms,
quadrature, finite differences and the unregularised block."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad_vec
from scipy.linalg import expm
from torch import nn

from nodezoo.nn import MLPField, ODEBlock, RegularisationConfig, regularisation_loss
from nodezoo.nn import regularisation as regmod
from nodezoo.solvers import solve

TIGHT = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-10}
A = np.array([[-0.5, 1.2, 0.3], [-0.9, 0.1, 0.4], [0.2, -0.7, -0.3]])


class Linear(nn.Module):
    """f(t, z) = z A^T (each row z_i evolves by A), so z(t) = expm(A t) z0 and df/dz = A."""

    def __init__(self, a: np.ndarray):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, t, z):
        return z @ self.a.T


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
@pytest.mark.parametrize("span", [(0.2, 1.5), (1.5, 0.2)])
def test_kinetic_energy_matches_quadrature(gradient, span):
    torch.manual_seed(0)
    z0 = torch.randn(5, 3, dtype=torch.float64)
    block = ODEBlock(
        Linear(A), {**TIGHT, "gradient": gradient}, *span, regularisation={"kinetic": 1.0}
    )
    block(z0)
    t0 = span[0]

    def integrand(t):  # ||A expm(A (t - t0)) z0_i||^2 for every sample i
        z = expm(A * (t - t0)) @ z0.numpy().T
        return ((A @ z) ** 2).sum(0)

    per_sample, _ = quad_vec(integrand, min(span), max(span), epsabs=1e-13, epsrel=1e-12)
    expected = per_sample.mean()
    assert block.regularisers["kinetic"].item() == pytest.approx(expected, rel=1e-8)
    assert block.regularisation_loss.item() == pytest.approx(expected, rel=1e-8)


def test_integrals_cover_every_output_time_and_the_torchdiffeq_backend():
    """A latent ODE solves over a grid of observation times: the integrals run from the first
    to the last time, whatever lies between, and torchdiffeq (same norm) agrees."""
    torch.manual_seed(0)
    z0 = torch.randn(5, 3, dtype=torch.float64)
    values = {}
    runs = [("native", [0.0, 1.2]), ("native", [0.0, 0.3, 0.7, 1.2]), ("torchdiffeq", [0.0, 1.2])]
    for backend, grid in runs:
        block = ODEBlock(
            Linear(A), {**TIGHT, "backend": backend}, 0.0, 1.2, regularisation={"kinetic": 1.0}
        )
        ys = block(z0, torch.tensor(grid, dtype=torch.float64))
        assert ys.shape == (len(grid), 5, 3)
        values[(backend, len(grid))] = block.regularisers["kinetic"].item()
    reference = values[("native", 2)]
    assert values[("native", 4)] == pytest.approx(reference, rel=1e-8)
    assert values[("torchdiffeq", 2)] == pytest.approx(reference, rel=1e-8)


def test_tuple_states_are_refused_with_a_reason():
    class Pair(nn.Module):
        def forward(self, t, state):
            return state

    block = ODEBlock(Pair(), regularisation={"kinetic": 1.0})
    with pytest.raises(TypeError, match="single-tensor state"):
        block((torch.ones(2, 1), torch.ones(2, 1)), torch.tensor([0.0, 1.0]))


def test_jacobian_integral_is_hutchinsons_estimate_of_the_frobenius_norm(monkeypatch):
    """For f = A z the integrand is ||eps^T A||^2 at every time: exactly, for a known probe; and
    in the mean over many probes, ||A||_F^2."""
    z0 = torch.randn(4, 3, dtype=torch.float64)
    probe = torch.tensor([[1.0, -1, 1], [-1, -1, 1], [1, 1, -1], [1, -1, -1]], dtype=z0.dtype)
    monkeypatch.setattr(regmod, "rademacher_like", lambda z: probe)
    block = ODEBlock(Linear(A), TIGHT, 0.0, 0.7, regularisation={"jacobian": 1.0})
    block(z0)
    exact = 0.7 * ((probe.numpy() @ A) ** 2).sum(1).mean()
    assert block.regularisers["jacobian"].item() == pytest.approx(exact, rel=1e-10)
    monkeypatch.undo()

    torch.manual_seed(0)
    many = torch.randn(20_000, 3, dtype=torch.float64)
    block(many)
    frobenius = 0.7 * (A**2).sum()
    assert block.regularisers["jacobian"].item() == pytest.approx(frobenius, rel=0.02)


def test_probe_is_rademacher():
    eps = regmod.rademacher_like(torch.empty(10_000, dtype=torch.float64))
    assert set(eps.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(eps.mean())) < 0.05


def _regularised_loss(gradient: str, field: nn.Module, z0: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(7)  # the same Hutchinson probe in every evaluation
    block = ODEBlock(
        field,
        {**TIGHT, "gradient": gradient},
        0.0,
        0.8,
        regularisation={"kinetic": 0.3, "jacobian": 0.2},
    )
    z1 = block(z0)
    weights = torch.linspace(-1, 1, z1.numel(), dtype=z1.dtype).view_as(z1)
    return (weights * z1).sum() + block.regularisation_loss


def test_regularised_loss_gradients_agree_across_modes_and_with_finite_differences():
    torch.manual_seed(0)
    field = MLPField(2, 8, layers=1, activation="tanh", time_dependent=True).double()
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(2.0)  # a field far from the identity flow
    z0 = torch.randn(3, 2, dtype=torch.float64)
    params = list(field.parameters())

    grads = {}
    for gradient in ("backprop", "adjoint", "checkpoint"):
        y0 = z0.clone().requires_grad_(True)
        loss = _regularised_loss(gradient, field, y0)
        grads[gradient] = torch.autograd.grad(loss, [y0, *params])
    flat = {k: torch.cat([g.reshape(-1) for g in v]) for k, v in grads.items()}
    torch.testing.assert_close(flat["checkpoint"], flat["backprop"], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(flat["adjoint"], flat["backprop"], rtol=1e-6, atol=1e-8)

    # directional finite differences of the whole regularised loss in y0 and the parameters
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        direction = [torch.randn(x.shape, generator=gen, dtype=x.dtype) for x in (z0, *params)]
        numeric = _central_difference(field, z0, direction, h=1e-5)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads["backprop"], direction))
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8)


def _central_difference(field, z0, direction, h):
    """(L(x + h d) - L(x - h d)) / 2h over (y0, parameters) along ``direction``."""
    params = list(field.parameters())

    def loss_at(s: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, direction[1:], strict=True):
                p.add_(s * d)
        try:
            return _regularised_loss("backprop", field, z0 + s * direction[0]).item()
        finally:
            with torch.no_grad():
                for p, d in zip(params, direction[1:], strict=True):
                    p.sub_(s * d)

    return (loss_at(h) - loss_at(-h)) / (2 * h)


def test_regularisation_off_is_the_plain_solve():
    """Default and all-zero configs: the same outputs, NFE and state_dict as a bare solve."""
    torch.manual_seed(0)
    field = MLPField(3, 16)
    z0 = torch.randn(6, 3, requires_grad=True)
    cfg = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-4, "gradient": "adjoint"}
    stats = []
    outputs = []
    for reg in (None, {}, {"kinetic": 0.0, "jacobian": 0.0, "steer": 0.0}):
        block = ODEBlock(field, cfg, regularisation=reg).train()
        outputs.append(block(z0))
        outputs[-1].sum().backward()
        stats.append((block.nfe_forward, block.nfe_backward))
        assert block.regularisers == {} and block.regularisation_loss is None
    reference = solve(field, z0, torch.tensor([0.0, 1.0]), cfg)[-1]
    for out in outputs:
        assert torch.equal(out, reference)
    assert len(set(stats)) == 1
    regularised = ODEBlock(field, cfg, regularisation={"kinetic": 1.0, "jacobian": 1.0})
    assert regularised.state_dict().keys() == ODEBlock(field, cfg).state_dict().keys()


@pytest.mark.parametrize("gradient", ["backprop", "adjoint", "checkpoint"])
@pytest.mark.parametrize("weights", [{"kinetic": 1.0}, {"kinetic": 1.0, "jacobian": 1.0}])
def test_regulariser_channels_do_not_change_the_forward_steps(gradient, weights):
    """Left out of the error norm, the integrals ride along the unregularised step sequence
    (measured, they would force 20 evaluations here instead of 14)."""
    torch.manual_seed(0)
    field = MLPField(3, 32)
    z0 = torch.randn(6, 3)
    cfg = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-4, "gradient": gradient}
    plain = ODEBlock(field, cfg)
    regularised = ODEBlock(field, cfg, regularisation=weights)
    torch.manual_seed(0)
    torch.testing.assert_close(regularised(z0), plain(z0), rtol=1e-6, atol=1e-7)
    assert regularised.stats.steps_accepted == plain.stats.steps_accepted
    assert regularised.stats.steps_rejected == plain.stats.steps_rejected
    assert regularised.nfe_forward == plain.nfe_forward == 14


def test_regularisers_are_training_only_and_accumulate_with_accumulate_stats():
    field = MLPField(2, 8)
    block = ODEBlock(field, regularisation={"kinetic": 0.5}, accumulate_stats=True)
    z0 = torch.randn(4, 2)
    block(z0)
    once = block.regularisers["kinetic"].item()
    block(z0)
    assert block.regularisers["kinetic"].item() == pytest.approx(2 * once)
    assert regularisation_loss(nn.Sequential(block)).item() == pytest.approx(once)
    block.reset_stats()
    block.eval()
    block(z0)
    assert block.regularisers == {} and regularisation_loss(block) is None


def _exp_block(steer: float) -> ODEBlock:
    """dz/dt = z from 0 to 1: the end time is log(z1 / z0)."""

    class Identity(nn.Module):
        def forward(self, t, z):
            return z

    return ODEBlock(Identity(), TIGHT, 0.0, 1.0, regularisation={"steer": steer})


def test_steer_draws_end_times_in_training_and_keeps_evaluation_fixed():
    torch.manual_seed(0)
    z0 = torch.ones(2, 1, dtype=torch.float64)
    block = _exp_block(steer=0.4)
    ends = [float(torch.log(block(z0)[0, 0])) for _ in range(60)]
    assert all(0.6 - 1e-9 <= e <= 1.4 + 1e-9 for e in ends)
    assert min(ends) < 0.7 and max(ends) > 1.3  # spread over the interval, not one value

    block.eval()
    plain = _exp_block(steer=0.0).eval()
    for _ in range(3):
        out = block(z0)
        assert torch.equal(out, plain(z0))
        assert float(out[0, 0]) == pytest.approx(math.e, rel=1e-9)


def test_steer_refuses_explicit_times_and_too_wide_intervals():
    block = _exp_block(steer=0.4)
    with pytest.raises(ValueError, match="explicit times"):
        block(torch.ones(2, 1, dtype=torch.float64), torch.tensor([0.0, 0.5, 1.0]).double())
    block.eval()  # evaluation ignores STEER, so explicit times are fine there
    block(torch.ones(2, 1, dtype=torch.float64), torch.tensor([0.0, 0.5, 1.0]).double())
    with pytest.raises(ValueError, match="smaller than the block's time span"):
        _exp_block(steer=1.0)


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"kinetc": 0.1}, ValueError, "Unknown regularisation setting"),
        ({"kinetic": -0.1}, ValueError, "kinetic must be a finite number >= 0"),
        ({"jacobian": float("nan")}, ValueError, "jacobian must be a finite"),
        ({"steer": True}, TypeError, "steer must be a number"),
        ("kinetic", TypeError, "must be a dict"),
    ],
)
def test_bad_settings_are_named(settings, error, match):
    with pytest.raises(error, match=match):
        RegularisationConfig.from_dict(settings)


def test_config_round_trips_as_plain_data():
    config = RegularisationConfig(kinetic=0.01, jacobian=0.02, steer=0.5)
    assert RegularisationConfig.from_dict(config.to_dict()) == config
    assert config.weights == {"kinetic": 0.01, "jacobian": 0.02}
    assert not RegularisationConfig().active


# ---- in a model: the classifier adds the weighted integrals to its loss, the callback logs them


def test_classifier_trains_on_the_regularised_loss_and_logs_it(tmp_path, tiny_fashion_dir):
    import torch.nn.functional as F
    from pytorch_lightning.loggers import CSVLogger
    from trainers import quiet_trainer

    from nodezoo.callbacks import SolverStatsMonitor
    from nodezoo.data import FashionMNISTDataModule
    from nodezoo.models.classifier import ImageClassifier

    weights = {"kinetic": 0.01, "jacobian": 0.02, "steer": 0.5}
    torch.manual_seed(0)
    model = ImageClassifier(width=8, regularisation=weights)
    plain = ImageClassifier(width=8)
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert model.hparams.regularisation == weights and plain.hparams.regularisation is None
    (block,) = [m for m in model.modules() if isinstance(m, ODEBlock)]
    assert block.regularisation == RegularisationConfig(**weights)

    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    logged = {}
    model.log = lambda name, value, **kwargs: logged.setdefault(name, value)  # no Trainer
    loss = model.training_step((x, y), 0)
    reg = block.regularisers
    assert set(reg) == {"kinetic", "jacobian"}
    expected = logged["train/loss"] + 0.01 * reg["kinetic"] + 0.02 * reg["jacobian"]
    torch.testing.assert_close(loss, expected)
    assert logged["train/loss"].item() == pytest.approx(
        F.cross_entropy(model(x), y).item(), abs=0.05
    )  # cross-entropy alone, at another STEER end time
    plain.load_state_dict(model.state_dict())
    assert torch.equal(model.eval()(x), plain.eval()(x))  # evaluation: no STEER, no integrals
    model.train()
    del model.log  # back to LightningModule.log for the Trainer

    data = FashionMNISTDataModule(data_dir=str(tiny_fashion_dir), batch_size=8, val_size=16)
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=CSVLogger(tmp_path),
        callbacks=[SolverStatsMonitor()],
    )
    trainer.fit(model, data)
    metrics = trainer.logged_metrics
    assert metrics["reg/kinetic"] > 0 and metrics["reg/jacobian"] > 0
    assert metrics["nfe/forward"] >= 6


def test_regularisation_needs_an_ode_block():
    from nodezoo.models.classifier import ImageClassifier

    with pytest.raises(ValueError, match="acts on ODE blocks"):
        ImageClassifier("resnet", width=8, depth=1, regularisation={"kinetic": 0.01})
