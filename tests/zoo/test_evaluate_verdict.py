"""`nodezoo evaluate` prints the card's values beside the recomputed ones and says whether they
match."""

from __future__ import annotations

import json
import re

import pytest

from nodezoo.cli import main
from nodezoo.zoo import evaluation
from nodezoo.zoo.commands import compare_with_card
from nodezoo.zoo.errors import ZooError


def test_matching_metrics_are_called_a_match():
    rows, verdict = compare_with_card({"test/acc": 0.9155}, {"test/acc": 0.9155})
    assert rows[1] == ("test/acc", "91.55%", "91.55%", "yes")
    assert verdict.startswith("All 1 metrics the card records match")


def test_a_different_metric_is_a_named_mismatch():
    rows, verdict = compare_with_card(
        {"test/acc": 0.90, "test/loss": 0.25}, {"test/acc": 0.9155, "test/loss": 0.25}
    )
    assert rows[1][3] == "NO" and rows[2][3] == "yes"
    assert verdict.startswith("MISMATCH: test/acc differ from the card")


def test_metrics_the_card_lacks_and_partial_runs_are_not_verdicts():
    rows, verdict = compare_with_card({"test/nfe_forward": 26.0}, {})
    assert rows[1] == ("test/nfe_forward", "-", "26", "-")
    assert "none of these metrics" in verdict
    _, verdict = compare_with_card(
        {"test/acc": 0.5}, {"test/acc": 0.9}, departure="--limit-batches: a subset of the test set"
    )
    assert "subset of the test set" in verdict


def test_evaluate_prints_card_beside_recomputed(zoo_folder, monkeypatch, capsys):
    card = json.loads((zoo_folder / "metrics.json").read_text())
    monkeypatch.setattr(evaluation, "evaluate", lambda ref, **kw: {"test/acc": card["test/acc"]})
    assert main(["evaluate", str(zoo_folder)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["metric", "card", "recomputed", "match"]
    assert out.splitlines()[1].split()[-1] == "yes"
    assert "All 1 metrics the card records match" in out


def test_evaluate_shows_progress(zoo_folder, capsys):
    evaluation.evaluate(zoo_folder, limit_batches=1)
    assert "evaluating on the test set: 1/1 batches" in capsys.readouterr().err


def test_evaluate_at_other_solver_settings_changes_the_solves_not_the_card(zoo_folder):
    """--solver: every ODE block solves with the given settings (the test NFE follows the
    tolerance), and the folder on disk keeps the recipe's solver."""
    config_before = (zoo_folder / "config.json").read_bytes()
    card = evaluation.evaluate(zoo_folder, limit_batches=1)
    loose = evaluation.evaluate(zoo_folder, limit_batches=1, solver={"rtol": 0.5, "atol": 0.5})
    tight = evaluation.evaluate(zoo_folder, limit_batches=1, solver={"rtol": 1e-6, "atol": 1e-6})
    assert loose["test/nfe_forward"] < card["test/nfe_forward"] < tight["test/nfe_forward"]
    assert (zoo_folder / "config.json").read_bytes() == config_before


def test_solver_overrides_reach_evaluate_parsed_and_the_verdict_says_so(
    zoo_folder, monkeypatch, capsys
):
    seen = {}

    def fake(ref, **kwargs):
        seen.update(kwargs)
        return {"test/acc": 0.1}

    monkeypatch.setattr(evaluation, "evaluate", fake)
    argv = ["evaluate", str(zoo_folder), "--solver", "rtol=1e-5", "--solver", "method=tsit5",
            "--solver", "warm_start=false", "--limit-batches", "2"]  # fmt: skip
    assert main(argv) == 0
    assert seen["solver"] == {"rtol": 1e-5, "method": "tsit5", "warm_start": False}
    assert capsys.readouterr().out.splitlines()[-1] == (
        "--solver rtol=1e-05 method=tsit5 warm_start=False: the card's metrics are for the "
        "recipe's solver; --limit-batches: a subset of the test set, so differences from the "
        "card are expected."
    )
    assert main(["evaluate", str(zoo_folder)]) == 0
    assert seen["solver"] is None


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"rtol": -1}, "rtol must be a non-negative number"),
        ({"mehtod": "rk4"}, "Unknown solver setting(s) ['mehtod']"),
    ],
)
def test_bad_solver_overrides_are_user_errors(zoo_folder, changes, says):
    with pytest.raises(ZooError, match=re.escape(says)):
        evaluation.evaluate(zoo_folder, limit_batches=1, solver=changes)


def test_solver_overrides_need_an_ode_block():
    from nodezoo.models.classifier import ImageClassifier

    with pytest.raises(ZooError, match="this ImageClassifier has none"):
        evaluation.override_solver(ImageClassifier("mlp", width=4), {"rtol": 1e-5})


def test_solver_option_wants_key_equals_value(zoo_folder, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", str(zoo_folder), "--solver", "rtol"])
    assert "--solver takes KEY=VALUE (e.g. rtol=1e-5), got 'rtol'" in capsys.readouterr().err


def test_solver_overrides_leave_a_callers_model_as_it_was(zoo_folder):
    from nodezoo.zoo.pretrained import from_pretrained

    model = from_pretrained(zoo_folder)
    (block,) = [m for m in model.modules() if hasattr(m, "first_steps")]
    before = block.solver
    recipe = evaluation._read_recipe(zoo_folder)
    evaluation.evaluate(model=model, recipe=recipe, limit_batches=1, solver={"rtol": 0.5})
    assert block.solver is before
