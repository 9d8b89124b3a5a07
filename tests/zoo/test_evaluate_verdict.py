"""`nodezoo evaluate` prints the card's values beside the recomputed ones and says whether they
match."""

from __future__ import annotations

import json

from nodezoo.cli import main
from nodezoo.zoo import evaluation
from nodezoo.zoo.commands import compare_with_card


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
    _, verdict = compare_with_card({"test/acc": 0.5}, {"test/acc": 0.9}, partial=True)
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
