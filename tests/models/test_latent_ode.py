"""LatentODE: ELBO on masked ragged batches, union-of-times solve, prediction API, a short fit."""

import pytest
import pytorch_lightning as pl
import torch
from ragged import ragged_batch
from trainers import quiet_trainer

from nodezoo.data.spirals import SpiralsDataModule, make_spirals, spiral_batch
from nodezoo.models.latent_ode import LatentODE
from nodezoo.models.latent_ode_plots import SpiralPlotCallback, plot_spirals
from nodezoo.nn import ODEBlock

TIGHT = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-8, "gradient": "backprop"}


def tiny(**kw) -> LatentODE:
    torch.manual_seed(0)
    args = dict(obs_dim=2, latent_dim=3, encoder_hidden=8, field_hidden=8, decoder_hidden=8)
    return LatentODE(**(args | kw))


def seeded_loss(model, batch):
    torch.manual_seed(1)
    return model.loss(batch)[0]


def test_masked_values_do_not_change_the_loss():
    model = tiny()
    batch = ragged_batch()
    loss = seeded_loss(model, batch)
    changed = dict(batch)
    changed["obs_x"] = batch["obs_x"].clone()
    changed["obs_x"][1, 2] = float("nan")
    changed["obs_t"] = batch["obs_t"].clone()
    changed["obs_t"][1, 2] = 42.0
    changed["target_x"] = batch["target_x"].clone()
    changed["target_x"][1, 1] = 1e6
    torch.testing.assert_close(seeded_loss(model, changed), loss)
    changed["target_x"][0, 1] += 1.0  # an observed value does matter
    assert not torch.allclose(seeded_loss(model, changed), loss)


def test_loss_is_negative_elbo_with_known_parts():
    model = tiny(n_samples=3)
    batch = ragged_batch()
    loss, logs = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and logs["kl"] > 0
    n_values = 2 * (3 + 2 + 2 + 1)  # observed obs + target points, 2 values each
    nll_sum = logs["nll_per_value"] * n_values
    torch.testing.assert_close(loss * 2, nll_sum + logs["kl"] * 2, rtol=1e-5, atol=1e-3)
    assert all(p.grad is not None for p in model.ode.parameters())


def test_union_of_times_matches_solving_each_series_alone():
    model = tiny(solver=TIGHT)
    z0 = torch.randn(2, 3)
    t = torch.tensor([[0.2, 0.9, 1.4], [0.5, 0.9, 2.0]])
    together = model.latents_at(z0, t)
    for b in range(2):
        alone = model.ode(z0[b : b + 1], torch.cat([torch.zeros(1), t[b]]))[1:, 0]
        torch.testing.assert_close(together[b], alone, rtol=1e-4, atol=1e-5)
    masked = model.latents_at(z0, t, torch.tensor([[True, False, True], [True, True, True]]))
    torch.testing.assert_close(masked[0, 1], z0[0])  # masked times get z0, never solved for
    with pytest.raises(ValueError, match="t0"):
        model.latents_at(z0, torch.tensor([-1.0, 0.5]))


def test_predict_and_sample_prior_shapes():
    model = tiny(encoder="odernn")
    batch = ragged_batch()
    query = torch.linspace(0.0, 2.0, 7)
    mean, samples = model.predict(batch["obs_t"], batch["obs_x"], query, 4, batch["obs_mask"])
    assert mean.shape == (2, 7, 2) and samples.shape == (4, 2, 7, 2)
    assert not torch.allclose(samples[0], samples[1])
    assert model.sample_prior(query, 5).shape == (5, 7, 2)
    assert any(isinstance(m, ODEBlock) for m in model.encoder.modules())


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="encoder"):
        LatentODE(encoder="transformer")
    with pytest.raises(ValueError, match="obs_std"):
        LatentODE(obs_std=0.0)
    model = tiny()
    with pytest.raises(ValueError, match="obs_dim"):
        model.encode(torch.zeros(3), torch.zeros(1, 3, 5))


def test_kl_warmup_is_linear():
    model = tiny(kl_warmup_steps=10)
    model.train()
    assert model.kl_weight() == 0.0  # global_step is 0 outside a trainer
    model.eval()
    assert model.kl_weight() == 1.0


def test_short_fit_lowers_the_loss_and_logs_rmse(tmp_path):
    pl.seed_everything(0)
    model = tiny(lr=0.02, solver={"rtol": 1e-3, "atol": 1e-4})
    data = SpiralsDataModule(
        n_obs=[5, 10],
        n_train=32,
        n_val=8,
        n_test=8,
        window=10,
        horizon=5,
        n_total=100,
        batch_size=32,
    )
    batch = next(iter(data.train_dataloader()))
    before = seeded_loss(model, batch).item()
    trainer = quiet_trainer(
        max_steps=25,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=25,
        callbacks=[SpiralPlotCallback(every_n_epochs=25, n_series=2, dirpath=str(tmp_path))],
    )
    trainer.fit(model, data)
    assert seeded_loss(model, batch).item() < 0.8 * before
    assert "val/rmse" in trainer.callback_metrics
    assert list((tmp_path / "plots").glob("spirals_step*.png"))


def test_plot_spirals_writes_png(tmp_path):
    spirals = make_spirals(3, seed=0, n_obs=[5, 8], window=10, horizon=5, n_total=100)
    longest = max(len(index) for index in spirals.obs_index)
    assert spiral_batch(spirals)["obs_x"].shape == (3, longest, 2)
    path = plot_spirals(tiny(), spirals, tmp_path / "fig8.png", n=2)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_user_series_with_missing_values_train_and_predict():
    import numpy as np
    import pandas as pd

    from nodezoo.data.timeseries import collate_series, series_from_frame
    from nodezoo.models.rnn_baseline import RNNBaseline

    rng = np.random.default_rng(0)
    rows = [
        {"id": s, "t": float(t), "a": rng.normal(), "b": rng.normal() if t % 3 else np.nan}
        for s in range(4)
        for t in np.sort(rng.choice(50, size=5 + s, replace=False))
    ]
    items, _ = series_from_frame(
        pd.DataFrame(rows), "id", "t", ["a", "b"], target_fraction=0.3, time_scale=10.0
    )
    batch = collate_series(items)
    assert batch["obs_mask"].shape == batch["obs_x"].shape and not batch["obs_mask"].all()
    for model in (tiny(), RNNBaseline(obs_dim=2, hidden=4)):
        loss, _ = model.loss(batch)
        loss.backward()
        assert torch.isfinite(loss)
        mean, _ = model.predict(
            batch["obs_t"], batch["obs_x"], batch["target_t"], 0, batch["obs_mask"]
        )
        assert mean.shape == batch["target_x"].shape and torch.isfinite(mean).all()


def test_odernn_encoder_solver_is_recorded_resolved_and_follows_its_block(tmp_path):
    """config.json records the encoder's solver as its block runs it, not the dict given."""
    from nodezoo.zoo.folder import init_args_of

    model = tiny(encoder="odernn")  # encoder_solver not given: the cell's rk4, step 0.5
    recorded = model.hparams.encoder_solver
    assert (recorded["method"], recorded["step_size"]) == ("rk4", 0.5)
    model.encoder_solver = {"method": "euler", "step_size": 0.25}
    block = model.encoder.odernn.ode.solver
    assert (block.method, block.step_size) == ("euler", 0.25)
    args = init_args_of(model)
    assert (args["encoder_solver"]["method"], args["encoder_solver"]["step_size"]) == (
        "euler",
        0.25,
    )
    rebuilt = LatentODE(**args)
    assert rebuilt.encoder_solver == block

    plain = tiny(encoder="rnn")
    assert plain.encoder_solver is None and plain.hparams.encoder_solver is None
    with pytest.raises(ValueError, match="encoder is an RNN"):
        plain.encoder_solver = {"method": "rk4"}
