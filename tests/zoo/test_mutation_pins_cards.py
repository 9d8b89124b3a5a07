"""Model cards from data, pinned where mutation testing found them loose: number formats at
their thresholds, the "Shortened run" banner for epochs and steps, the Paper column, recipe
facts, Hub ids, each task's Use section and the Hub metadata. Pure functions: no model, no run.

The shipped folders' cards are checked byte for byte in ``test_shipped_cards.py``; these cases
cover what no shipped folder has (durations in hours, step budgets, fine-tuned bases, pictures,
unknown data)."""

from __future__ import annotations

import pytest
import yaml

from nodezoo.zoo.cards import (
    HUB_LIBRARY_URL,
    _count,
    _duration,
    _num,
    _pct,
    _results_table,
    _shortened,
    hub_id,
    recipe_facts,
    render_card,
)


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (59.94, "59.9 s"),
        (119.9, "119.9 s"),
        (120, "2.0 min"),
        (7199, "120.0 min"),
        (7200, "2.00 h"),
        (9000, "2.50 h"),
        (360_000, "100.00 h"),  # a 100-hour run: exact to the last digit shown
        ("30", "30.0 s"),  # a --fact value given as text
    ],
)
def test_durations_switch_units_at_two_minutes_and_two_hours(seconds, shown):
    assert _duration(seconds) == shown


def test_number_formats():
    assert _pct(0.91234) == "91.23%"
    assert _pct(1) == "100.00%"
    assert _num(0.123456) == "0.1235"
    assert _num(1234567.0) == "1.235e+06"
    assert _num(3) == "3"  # ints are shown as they are
    assert _count(1234567.0) == "1,234,567"


def test_recipe_facts():
    assert recipe_facts(None) == {} and recipe_facts("") == {}
    text = yaml.safe_dump(
        {
            "seed_everything": 7,
            "data": {"class_path": "nodezoo.data.MNISTDataModule", "init_args": {"a": 1}},
            "trainer": {"max_epochs": 3, "max_steps": -1},
        }
    )
    assert recipe_facts(text) == {
        "data_class": "MNISTDataModule",
        "data_args": {"a": 1},
        "max_epochs": 3,
        "max_steps": -1,
        "seed": 7,
    }
    bare = {"data_class": None, "data_args": {}, "max_epochs": None, "max_steps": None}
    assert recipe_facts("null\n") == {**bare, "seed": None}
    assert recipe_facts("data: some-string\nseed_everything: 1\n") == {**bare, "seed": 1}
    no_args = recipe_facts("data:\n  class_path: x.Y\n  init_args: null\n")
    assert no_args["data_class"] == "Y" and no_args["data_args"] == {}


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("acme/odenet", "acme/odenet"),
        ("odenet", None),
        ("a/b/c", None),
        ("/odenet", None),
        ("acme/", None),
        ("acme\\x/odenet", None),
        ("", None),
        (None, None),
    ],
)
def test_hub_id(ref, expected):
    assert hub_id(ref) == expected


def test_an_existing_local_path_is_no_hub_id(tmp_path, monkeypatch):
    (tmp_path / "acme" / "odenet").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert hub_id("acme/odenet") is None


# ------------------------------------------------------------------------------ shortened runs
def test_a_run_stopped_before_its_epochs_is_called_shortened():
    banner = _shortened({"run/epochs": 2}, {}, 3)
    assert banner.startswith("> **Shortened run:** trained for 2 of the recipe's 3 epochs; ")
    assert _shortened({"run/epochs": 3}, {}, 3) is None  # the full budget
    assert _shortened({"run/epochs": 2}, {}, None) is None  # no budget recorded


def test_a_run_stopped_before_its_steps_is_called_shortened():
    banner = _shortened({"run/global_step": 1500, "run/max_steps": 20000}, {}, None)
    assert "trained for 1,500 of the recipe's 20,000 optimiser steps" in banner
    # the recipe's max_steps counts when metrics.json records none
    assert "4 of the recipe's 10 optimiser steps" in _shortened(
        {"run/global_step": 4}, {"max_steps": 10}, None
    )
    # metrics.json's own max_steps wins over the recipe's
    assert _shortened({"run/global_step": 4, "run/max_steps": 4}, {"max_steps": 10}, None) is None
    assert _shortened({"run/global_step": 10}, {"max_steps": 10}, None) is None
    assert _shortened({"run/global_step": 0}, {"max_steps": 10}, None) is None
    assert _shortened({"run/global_step": 4}, {"max_steps": -1}, None) is None  # epoch-limited
    assert _shortened({"run/global_step": 4}, {}, None) is None
    # a full epoch budget falls through to the step budget
    assert "optimiser steps" in _shortened(
        {"run/epochs": 3, "run/global_step": 4}, {"max_steps": 10}, 3
    )


# ------------------------------------------------------------------------------ results table
def test_results_table_without_published_numbers():
    rows = _results_table(
        {"test/acc": 0.5, "test/loss": None, "zeta/x": 2.0, "alpha/y": 1, "run/notes": "n"},
        max_epochs=-1,  # a step-limited recipe: no max_epochs row
        max_steps=12000,
    )
    assert rows == [
        "| Quantity | Value |",
        "| --- | --- |",
        "| Test accuracy | 50.00% |",
        "| Recipe's max_steps | 12,000 |",
        "| `alpha/y` | 1 |",
        "| `zeta/x` | 2 |",
    ]


def test_results_table_with_a_paper_column():
    metrics = {
        "test/rmse_n30": 0.123456,
        "test/rmse_n50": 0.2,
        "paper/test/rmse_n30": 0.1642,
        "report/comparison": "| a |",
    }
    rows = _results_table(metrics, max_epochs=30, max_steps=None)
    assert rows == [
        "| Quantity | Value | Paper |",
        "| --- | --- | --- |",
        "| Predictive RMSE, 30 observed points | 0.1235 | 0.1642 |",
        "| Predictive RMSE, 50 observed points | 0.2 |  |",
        "| Recipe's max_epochs | 30 |  |",
    ]
    empty = _results_table({}, max_epochs=0, max_steps=0)
    assert empty == ["| Quantity | Value |", "| --- | --- |"]


# ------------------------------------------------------------------------------ whole cards
def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def test_forecaster_card_without_a_recipe():
    card = render_card(
        name="rnn-x",
        config={"architecture": "rnn-forecaster", "hidden": 4},
        metrics={"test/rmse_n30": 0.25, "test/rmse_n50": 0.2, "time/total_s": 7200},
    )
    meta = front_matter(card)
    assert meta["pipeline_tag"] == "time-series-forecasting"
    assert meta["metrics"] == ["rmse"]  # one metric type, listed once
    assert meta["model-index"][0]["name"] == "rnn-x"
    assert "datasets" not in meta and "base_model" not in meta
    (result,) = meta["model-index"][0]["results"]
    assert result["source"] == {"name": "nodezoo evaluate", "url": HUB_LIBRARY_URL}
    assert [m["value"] for m in result["metrics"]] == [0.25, 0.2]
    assert "# rnn-x\n" in card
    assert "A nodezoo `rnn-forecaster` model. The data it was trained on is not recorded" in card
    assert "Headline: Predictive RMSE, 30 observed points = 0.25 (lower is better)." in card
    assert "mean, _ = model.predict(obs_t, obs_x, query_t, 0, obs_mask)" in card
    assert "| Training time, total | 2.00 h |" in card
    assert "No recipe was recorded with these weights." in card
    assert "Reproduce with:" not in card and "## Compared with baselines" not in card
    assert "| `hidden` | `4` |" in card
    assert "Fine-tuned from" not in card and "![" not in card


def test_density_card_names_its_data_from_the_recipe_args():
    recipe = yaml.safe_dump(
        {
            "data": {
                "class_path": "nodezoo.data.density.ToyDensityDataModule",
                "init_args": {"dataset": "8gaussians"},
            },
            "trainer": {"max_steps": 10},
        }
    )
    card = render_card(
        name="cnf-x",
        config={"architecture": "cnf", "dim": 2},
        metrics={"test/nll": 2.5, "test/bits_per_dim": 1.5, "run/global_step": 4},
        recipe_text=recipe,
        picture="card.png",
        repo_id="acme/cnf-x",
    )
    assert "trained on the 2-D 8gaussians density (synthetic, as in FFJORD)." in card
    assert "Headline: Test bits per dimension = 1.5 (lower is better)." in card
    assert "log_p = model.log_prob(x)  # x (B, 2); nats per example, (B,)" in card
    assert "samples = model.sample(1000)  # (1000, 2)" in card
    assert "![cnf-x: the learned density beside the data" in card and "](card.png)" in card
    assert "trained for 4 of the recipe's 10 optimiser steps" in card
    assert "| Recipe's max_steps | 10 |" in card
    assert "Reproduce with:\n\n```bash\nnodezoo fit --config recipe.yaml\n```" in card
    meta = front_matter(card)
    assert meta["metrics"] == ["nll", "bits_per_dim"]
    results = meta["model-index"][0]["results"]
    assert {r["source"]["url"] for r in results} == {"https://huggingface.co/acme/cnf-x"}
    assert {r["dataset"]["name"] for r in results} == {
        "the 2-D 8gaussians density (synthetic, as in FFJORD)"
    }


def test_a_display_name_whose_argument_is_missing_is_shown_as_is():
    recipe = "data:\n  class_path: nodezoo.data.density.ToyDensityDataModule\n"
    card = render_card(
        name="cnf-y", config={"architecture": "cnf", "dim": 2}, metrics={}, recipe_text=recipe
    )
    assert "trained on the 2-D {dataset} density" in card
    assert "Headline:" not in card  # no metrics, no headline
    assert "model-index" not in front_matter(card)


def test_classifier_card_with_labels_base_model_notes_and_command():
    recipe = "data:\n  class_path: my.pkg.OwnDataModule\n"
    card = render_card(
        name="tuned",
        config={"architecture": "image-classifier", "in_channels": 3, "image_size": 32},
        metrics={"test/acc": 0.5, "run/notes": "Run on a laptop.", "run/command": "make it"},
        recipe_text=recipe,
        base_model="acme/odenet",
        label_names=["cat", "dog"],
    )
    meta = front_matter(card)
    assert meta["base_model"] == "acme/odenet"
    assert "datasets" not in meta  # own data: no Hub dataset id
    assert "trained on OwnDataModule." in card
    assert "Fine-tuned from `acme/odenet`." in card
    assert "logits = model(images)  # float images in [0, 1], shape (B, 3, 32, 32)" in card
    assert "model.label_names[logits.argmax(-1)[0]]" in card
    assert "(`label_names` in config.json): `cat`, `dog`." in card
    assert "Run on a laptop.\n\nReproduce with:\n\n```bash\nmake it\n```" in card
    assert "Headline: Test accuracy = 50.00% (higher is better)." in card
    unlabeled = render_card(
        name="plain",
        config={"architecture": "image-classifier"},
        metrics={},
        base_model="odenet-fashion-mnist",  # a zoo name: said in the text, not metadata
    )
    assert "model.label_names" not in unlabeled and "Classes, in output order" not in unlabeled
    assert "Fine-tuned from `odenet-fashion-mnist`." in unlabeled
    assert "base_model" not in front_matter(unlabeled)


def test_the_runs_own_budget_wins_over_the_recipes():
    """A run started with ``--trainer.max_epochs 5`` records run/max_epochs: that budget, not
    the recipe file's, decides whether the card calls the run shortened."""
    recipe = "trainer:\n  max_epochs: 30\n  max_steps: 90000\n"
    config = {"architecture": "image-classifier"}
    full = render_card(
        name="m",
        config=config,
        metrics={"run/epochs": 5, "run/max_epochs": 5, "run/max_steps": 500},
        recipe_text=recipe,
    )
    assert "Shortened run" not in full
    assert "| Recipe's max_epochs | 5 |" in full and "| Recipe's max_steps | 500 |" in full
    short = render_card(name="m", config=config, metrics={"run/epochs": 5}, recipe_text=recipe)
    assert "trained for 5 of the recipe's 30 epochs" in short
    assert "| Recipe's max_steps | 90,000 |" in short


def test_a_card_without_data_says_so_where_it_names_the_data():
    card = render_card(name="m", config={"architecture": "image-classifier"}, metrics={})
    assert "pass `recipe=` to `save_pretrained` to record it." in card
    assert "- Trained and evaluated on unknown data only;" in card


def test_a_headline_without_a_row_label_is_shown_by_its_key(monkeypatch):
    from nodezoo.zoo import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(
        registry.ZooArchitecture(
            name="f1-model",
            model_class="torch.nn.modules.linear:Linear",
            evaluate="x:y",
            task="image-classification",
            headline_metric="test/f1",
            metric_name="f1",
        )
    )
    card = render_card(name="m", config={"architecture": "f1-model"}, metrics={"test/f1": 0.5})
    assert "Headline: `test/f1` = 0.5 (higher is better)." in card
    assert "| `test/f1` | 0.5 |" in card
