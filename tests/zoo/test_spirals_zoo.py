"""Spirals forecasters in the zoo: a card's RMSEs are what ``evaluate`` recomputes from the
folder, and the shipped Table 2 folders still reproduce their metrics.json."""

from __future__ import annotations

import dataclasses
import json

import pytest
import pytorch_lightning as pl
import torch
import yaml
from trainers import quiet_trainer

from nodezoo.data.spirals import SpiralsDataModule, make_spirals
from nodezoo.models.latent_ode import LatentODE
from nodezoo.models.rnn_baseline import RNNBaseline
from nodezoo.zoo import list_models
from nodezoo.zoo.evaluation import evaluate, forecast_rmse
from nodezoo.zoo.folder import read_metrics
from nodezoo.zoo.publish import build_folder
from nodezoo.zoo.registry import zoo_names, zoo_root

TEST_SEED = 777
DATA_ARGS = {"n_obs": [30, 50, 100], "n_train": 20, "n_val": 10, "n_test": 12, "horizon": 10}
RMSE_KEYS = ("test/rmse_n30", "test/rmse_n50", "test/rmse_n100")
TINY = {
    "latent-ode": lambda: LatentODE(
        obs_dim=2,
        latent_dim=2,
        encoder_hidden=4,
        field_hidden=4,
        decoder_hidden=4,
        solver={"method": "dopri5", "rtol": 1e-3, "atol": 1e-4, "gradient": "backprop"},
    ),
    "rnn-forecaster": lambda: RNNBaseline(obs_dim=2, hidden=4),
}


def _recipe(model) -> dict:
    cls = type(model)
    return {
        "seed_everything": 0,
        "model": {
            "class_path": f"{cls.__module__}.{cls.__name__}",
            "init_args": dict(model.hparams),
        },
        "data": {
            "class_path": "nodezoo.data.spirals.SpiralsDataModule",
            "init_args": {**DATA_ARGS, "batch_size": 10, "seed": 0},
        },
    }


@pytest.fixture(params=sorted(TINY))
def trained(request, tmp_path):
    """A checkpoint of a tiny model after a few real optimiser steps, and its recipe file."""
    torch.set_num_threads(1)
    pl.seed_everything(0)
    model = TINY[request.param]()
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, SpiralsDataModule(**DATA_ARGS, batch_size=10))
    ckpt = tmp_path / "run" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(model)))
    return request.param, model.eval(), ckpt, recipe


def test_card_numbers_are_what_evaluate_recomputes(trained, tmp_path):
    architecture, model, ckpt, recipe_path = trained
    recipe = yaml.safe_load(recipe_path.read_text())
    measured = evaluate(model=model, recipe=recipe, seed=TEST_SEED)
    assert set(RMSE_KEYS) <= set(measured)
    assert measured["test/seed"] == TEST_SEED and measured["test/samples"] == 12
    assert ("test/nfe_forward" in measured) == (architecture == "latent-ode")
    # The benchmark's definition: the seed itself draws the test spirals, n observed points.
    spirals = make_spirals(12, seed=TEST_SEED, n_obs=30, horizon=10)
    assert measured["test/rmse_n30"] == pytest.approx(forecast_rmse(model, spirals), rel=1e-6)

    out = build_folder(ckpt, tmp_path / "tiny", recipe=recipe_path, metrics=measured, name="tiny")
    card = (out / "README.md").read_text()
    shipped = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "config.json").read_text())["architecture"] == architecture
    fresh = evaluate(out)  # no seed given: the folder's recorded test seed
    for key in RMSE_KEYS:
        assert fresh[key] == pytest.approx(shipped[key], rel=1e-5)
        assert f"{shipped[key]:.4g}" in card
    assert evaluate(out, seed=TEST_SEED + 1)["test/rmse_n30"] != pytest.approx(
        shipped["test/rmse_n30"], rel=1e-5
    )


def test_limit_batches_keeps_the_first_series(trained):
    _, model, _, recipe_path = trained
    recipe = yaml.safe_load(recipe_path.read_text())
    quick = evaluate(model=model, recipe=recipe, seed=TEST_SEED, limit_batches=1, batch_size=5)
    assert quick["test/samples"] == 5
    spirals = make_spirals(12, seed=TEST_SEED, n_obs=50, horizon=10)
    first = dataclasses.replace(
        spirals,
        clean=spirals.clean[:5],
        noisy=spirals.noisy[:5],
        clockwise=spirals.clockwise[:5],
        obs_index=spirals.obs_index[:5],
    )
    assert quick["test/rmse_n50"] == pytest.approx(forecast_rmse(model, first), rel=1e-5)


SHIPPED = ("latent-ode-spirals", "latent-ode-odernn-spirals", "rnn-spirals")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_folder_reproduces_its_metrics(name):
    if name not in zoo_names():
        pytest.skip(f"{name} is not shipped in this checkout")
    torch.set_num_threads(1)
    folder = zoo_root() / name
    shipped = read_metrics(folder)
    fresh = evaluate(folder)  # with the folder's recorded test seed
    assert fresh["test/seed"] == shipped["test/seed"]
    assert fresh["model/params"] == shipped["model/params"]
    for key in (*RMSE_KEYS, "test/nfe_forward"):
        if key in shipped or key in fresh:
            assert fresh[key] == pytest.approx(shipped[key], rel=1e-5), key


def test_list_shows_spirals_models_with_their_rmse():
    rows = {r["name"]: r for r in list_models()}
    for name in SHIPPED:
        if name not in rows:
            continue
        assert rows[name]["metric"] == "test/rmse_n30"
        assert rows[name]["value"] == read_metrics(zoo_root() / name)["test/rmse_n30"]


def test_publish_measures_with_the_test_seed_it_is_given(trained, tmp_path):
    """publish measures missing test metrics itself; with ``--seed`` those are on the test
    spirals of that seed (the recipe's own seed draws the training spirals)."""
    from nodezoo.zoo.commands import main_publish

    _, model, ckpt, recipe_path = trained
    out = tmp_path / "published"
    args = [str(ckpt), "--out", str(out), "--recipe", str(recipe_path), "--seed", str(TEST_SEED)]
    assert main_publish(args) == 0
    shipped = json.loads((out / "metrics.json").read_text())
    assert shipped["test/seed"] == TEST_SEED
    spirals = make_spirals(12, seed=TEST_SEED, n_obs=50, horizon=10)
    assert shipped["test/rmse_n50"] == pytest.approx(forecast_rmse(model, spirals), rel=1e-6)
