"""CNFs in the zoo: a tiny CNF trained a few steps is published from its checkpoint, loads back
strictly, and ``evaluate`` recomputes its card's NLL for the card's test seed (and not for
another); the digits CNF leads with bits/dim; ``nodezoo list`` shows CNF folders."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import yaml
from trainers import quiet_trainer

import nodezoo
from nodezoo.data.density import DigitsDensityDataModule, ToyDensityDataModule
from nodezoo.models.cnf import CNF, evaluate_nll
from nodezoo.zoo import registry
from nodezoo.zoo.commands import main_list, main_publish
from nodezoo.zoo.evaluation import evaluate
from nodezoo.zoo.folder import PICTURE_NAME, read_metrics

SOLVER = {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3, "gradient": "backprop"}
MODEL_ARGS = {"dim": 2, "hidden": 8, "layers": 1, "solver": SOLVER, "lr": 1e-2}
DATA_ARGS = {"dataset": "8gaussians", "n_train": 256, "n_val": 64, "n_test": 300, "batch_size": 128}
RECIPE_MAX_STEPS = 10  # the tiny run stops after 4: the card must say it was shortened
OTHER_SEED = 99


def _recipe(model_args: dict, data_class: str, data_args: dict) -> dict:
    return {
        "seed_everything": 0,
        "model": {"class_path": "nodezoo.models.cnf.CNF", "init_args": model_args},
        "data": {"class_path": f"nodezoo.data.density.{data_class}", "init_args": data_args},
        "trainer": {"max_steps": RECIPE_MAX_STEPS},
    }


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A 4-step CNF run on 8 Gaussians, published with ``nodezoo publish --out``."""
    root = tmp_path_factory.mktemp("cnf_run")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(MODEL_ARGS, "ToyDensityDataModule", DATA_ARGS)))
    pl.seed_everything(0)
    model = CNF(**MODEL_ARGS)
    trainer = quiet_trainer(max_steps=4, limit_val_batches=0, default_root_dir=root)
    trainer.fit(model, ToyDensityDataModule(**DATA_ARGS))
    checkpoint = root / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    folder = root / "zoo" / "cnf-8gaussians"
    argv = [str(checkpoint), "--out", str(folder), "--recipe", str(recipe)]
    argv += ["--fact", "run/command=bash model_cards/build_density.sh", "--fact", "run/seed=0"]
    argv += ["--fact", "run/hardware=test CPU"]
    assert main_publish(argv) == 0
    return folder, model


def test_publish_writes_folder_picture_and_honest_card(published):
    folder, _ = published
    metrics = read_metrics(folder)
    assert metrics["test/seed"] == 2  # ToyDensityDataModule's default test sample: seed + 2
    assert metrics["test/samples"] == DATA_ARGS["n_test"]
    assert metrics["run/global_step"] == 4
    assert (folder / PICTURE_NAME).stat().st_size > 10_000  # a real PNG, not an empty file
    card = (folder / "README.md").read_text()
    assert f"]({PICTURE_NAME})" in card
    assert "Shortened run:** trained for 4 of the recipe's 10 optimiser steps" in card
    assert "lower is better" in card
    assert f"| Test NLL (nats per example, exact trace) | {metrics['test/nll']:.4g} |" in card
    for fact in ("bash model_cards/build_density.sh", "| Training seed | 0 |", "test CPU"):
        assert fact in card
    # not a Hub pipeline task: the catch-all tag, with the task among the tags
    assert "pipeline_tag: other" in card and "- density-estimation" in card
    assert "continuous normalizing flows with discrete flows" in card  # a CNF's use, not a
    assert "accuracy" not in card.lower()  # classifier's
    assert "exact trace of the Jacobian" in card
    assert "model.log_prob(x)" in card


def test_folder_loads_strictly_as_the_trained_model(published):
    folder, trained = published
    points = torch.randn(16, 2)
    expected = trained.eval().log_prob(points)
    for loaded in (CNF.from_pretrained(folder), nodezoo.from_pretrained(folder)):
        assert type(loaded) is CNF
        assert not loaded.training
        for key, value in trained.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        torch.testing.assert_close(loaded.log_prob(points), expected)


def test_evaluate_reproduces_the_card_and_changes_with_the_seed(published):
    folder, _ = published
    card = read_metrics(folder)
    again = evaluate(folder)  # the card's own test seed, from metrics.json
    assert again["test/seed"] == card["test/seed"]
    assert again["test/nll"] == pytest.approx(card["test/nll"], rel=1e-6)
    assert again["test/nfe_forward"] == pytest.approx(card["test/nfe_forward"])
    other = evaluate(folder, seed=OTHER_SEED)
    assert other["test/seed"] == OTHER_SEED
    assert abs(other["test/nll"] - card["test/nll"]) > 1e-4
    # Independently: --seed S is a fresh test sample from S, the model author's definition.
    data = ToyDensityDataModule(**{**DATA_ARGS, "test_seed": OTHER_SEED})
    reference = evaluate_nll(CNF.from_pretrained(folder), data.test_dataloader())
    assert other["test/nll"] == pytest.approx(reference["test/nll"], rel=1e-6)


def test_list_shows_cnf_folders_with_their_direction(published, monkeypatch, capsys):
    folder, _ = published
    monkeypatch.setattr(registry, "zoo_root", lambda: folder.parent)
    assert main_list([]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("cnf-8gaussians"))
    assert "cnf" in row and "test/nll (lower is better)" in row
    rows = nodezoo.zoo.list_models()
    assert rows[0]["value"] == pytest.approx(read_metrics(folder)["test/nll"])


def test_digits_cnf_leads_with_bits_per_dim_and_reseeds_only_the_noise(tmp_path):
    """Digits: ``--seed`` re-dequantises the same test images (the training split is kept);
    bits/dim is the headline and follows from the NLL."""
    torch.manual_seed(0)
    model = CNF(dim=64, hidden=8, layers=1, solver=SOLVER, quantization_levels=17)
    data_args = {"batch_size": 50, "seed": 0}
    recipe = _recipe({}, "DigitsDensityDataModule", data_args)
    first = evaluate(model=model, recipe=recipe, seed=5, limit_batches=1)
    again = evaluate(model=model, recipe=recipe, seed=5, limit_batches=1)
    other = evaluate(model=model, recipe=recipe, seed=6, limit_batches=1)
    assert first["test/samples"] == 50 and first["test/seed"] == 5
    assert again["test/nll"] == first["test/nll"] != other["test/nll"]
    bits = (first["test/nll"] + 64 * math.log(17)) / (64 * math.log(2))
    assert first["test/bits_per_dim"] == pytest.approx(bits)
    same_images = [
        DigitsDensityDataModule(**data_args, noise_seed=s).pixels("test") for s in (5, 6)
    ]
    assert torch.equal(*same_images)
    folder = model.save_pretrained(tmp_path / "cnf-digits", metrics=first, recipe=recipe)
    assert registry.get_architecture("cnf").headline(read_metrics(folder)) == "test/bits_per_dim"
    card = (folder / "README.md").read_text()
    assert "Headline: Test bits per dimension = " in card and "lower is better" in card
    assert not (folder / PICTURE_NAME).exists()  # save_pretrained draws no picture


def test_compare_shows_a_cnf_folders_nll_and_sweeps_it(published, tmp_path):
    """``nodezoo compare`` on a CNF zoo folder: the card's test NLL in the table, and a test-time
    tolerance sweep in NLL (no accuracy): at the trained tolerance it is evaluate's number."""
    import csv

    from nodezoo.reports.commands import main_compare

    folder, _ = published
    out = tmp_path / "compare"
    assert main_compare([str(folder), "--out", str(out), "--tolerances", "1e-3", "1e-7"]) == 0
    (row,) = csv.DictReader((out / "table.csv").open())
    metrics = read_metrics(folder)
    assert float(row["test_nll"]) == metrics["test/nll"] and "test_acc" not in row
    sweep = {float(r["tolerance"]): r for r in csv.DictReader((out / "tolerance_sweep.csv").open())}
    assert float(sweep[1e-3]["test/nll"]) == pytest.approx(metrics["test/nll"], rel=1e-6)
    assert sweep[1e-3]["test/acc"] == "" and sweep[1e-7]["test/nll"] != sweep[1e-3]["test/nll"]
    assert float(sweep[1e-7]["test/nfe_forward"]) > float(sweep[1e-3]["test/nfe_forward"])
    assert (out / "tolerance_sweep.png").stat().st_size > 0
