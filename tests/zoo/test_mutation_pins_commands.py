"""The zoo verbs' own logic, pinned where mutation testing found it loose: the evaluate verdict's
tolerance (at the boundary and for a card value of 0), the ``list`` table, ``--fact`` parsing and
``publish``'s refusal without a destination. No model is trained or loaded here."""

from __future__ import annotations

import json

import pytest

from nodezoo.zoo import commands
from nodezoo.zoo.commands import MATCH_RTOL, compare_with_card, main_list, main_publish


def test_a_difference_of_exactly_the_tolerance_still_matches():
    published = 100_000.0  # MATCH_RTOL * published == 1.0 exactly in binary floating point
    assert MATCH_RTOL * published == 1.0
    rows, _ = compare_with_card({"test/nll": published + 1.0}, {"test/nll": published})
    assert rows[1][3] == "yes"
    rows, _ = compare_with_card({"test/nll": published + 2.0}, {"test/nll": published})
    assert rows[1][3] == "NO"


def test_a_card_value_of_zero_matches_only_zero():
    """The relative tolerance has a 1e-12 floor: 0 on the card is matched by 0 only."""
    assert compare_with_card({"test/loss": 0.0}, {"test/loss": 0.0})[0][1][3] == "yes"
    assert compare_with_card({"test/loss": 1e-6}, {"test/loss": 0.0})[0][1][3] == "NO"


def test_the_verdict_names_every_mismatched_metric():
    _, verdict = compare_with_card(
        {"test/acc": 0.5, "test/loss": 2.0, "test/samples": 16},
        {"test/acc": 0.9, "test/loss": 1.0, "test/samples": 16},
    )
    assert verdict.startswith("MISMATCH: test/acc, test/loss differ from the card")
    assert f"relative tolerance {MATCH_RTOL:g}" in verdict


def test_verdicts_for_partial_runs_and_cards_without_these_metrics():
    _, partial = compare_with_card(
        {"test/acc": 0.5}, {"test/acc": 0.5}, departure="--limit-batches: a subset of the test set"
    )
    assert partial.startswith("--limit-batches: a subset of the test set")
    _, nothing = compare_with_card({"test/acc": 0.5}, {"other": 1})
    assert nothing.startswith("The card records none of these metrics")


def test_non_numeric_values_are_shown_not_compared():
    rows, verdict = compare_with_card(
        {"run/hardware": "CPU", "test/acc": 0.25}, {"run/hardware": "GPU", "test/acc": 0.25}
    )
    assert rows[1] == ("run/hardware", "GPU", "CPU", "-")
    assert rows[2] == ("test/acc", "25.00%", "25.00%", "yes")
    assert verdict.startswith("All 1 metrics the card records match")


ROWS = [
    {
        "name": "odenet-x",
        "architecture": "image-classifier",
        "metric": "test/acc",
        "better": "higher",
        "value": 0.91234,
        "params": 208266,
        "epochs": None,
    },
    {
        "name": "rnn-y",
        "architecture": "rnn-forecaster",
        "metric": "test/rmse_n30",
        "better": "lower",
        "value": 0.123456,
        "params": 1234,
        "epochs": 30,
    },
]


def test_list_prints_an_aligned_table_with_formatted_values(monkeypatch, capsys):
    monkeypatch.setattr(commands, "list_models", lambda: ROWS)
    assert main_list([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["name", "architecture", "metric", "value", "params", "epochs"]
    assert lines[1].split() == [
        "odenet-x", "image-classifier", "test/acc", "(higher", "is", "better)", "91.23%",
        "208266", "-",
    ]  # fmt: skip
    assert lines[2].split()[-6:] == ["(lower", "is", "better)", "0.1235", "1234", "30"]
    # columns are aligned: every column starts at the same offset on every line
    start = lines[0].index("architecture")
    assert lines[1][start:].startswith("image-classifier")
    assert lines[2][start:].startswith("rnn-forecaster")
    assert lines[1][start - 2 : start] == "  "
    assert all(line == line.rstrip() for line in lines)


def test_list_json_and_an_empty_zoo(monkeypatch, capsys):
    monkeypatch.setattr(commands, "list_models", lambda: ROWS)
    assert main_list(["--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ROWS
    monkeypatch.setattr(commands, "list_models", lambda: [])
    assert main_list([]) == 0
    assert capsys.readouterr().out.startswith("The zoo is empty")


def stub_build_folder(monkeypatch) -> dict:
    """Replace build_folder by a stub recording its keyword arguments."""
    seen = {}

    def build_folder(source, out, **kwargs):
        seen.update(kwargs)
        out.mkdir(parents=True)
        return out

    import nodezoo.zoo.publish as publish

    monkeypatch.setattr(publish, "build_folder", build_folder)
    return seen


def test_fact_values_become_int_float_or_text(monkeypatch, tmp_path, capsys):
    seen = stub_build_folder(monkeypatch)
    argv = ["src.ckpt", "--out", str(tmp_path / "out"), "--name", "shown"]
    argv += ["--fact", "run/max_epochs=30", "--fact", "run/lr=0.5", "--fact", "run/hw=2 CPU=x"]
    assert main_publish(argv) == 0
    assert seen["facts"] == {"run/max_epochs": 30, "run/lr": 0.5, "run/hw": "2 CPU=x"}
    assert type(seen["facts"]["run/max_epochs"]) is int
    assert seen["name"] == "shown"
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'out'}"


def test_the_card_name_defaults_to_the_out_folder(monkeypatch, tmp_path):
    seen = stub_build_folder(monkeypatch)
    assert main_publish(["src.ckpt", "--out", str(tmp_path / "my-model")]) == 0
    assert seen["name"] == "my-model" and seen["facts"] == {}


@pytest.mark.parametrize("fact", ["novalue", "=3"])
def test_a_fact_without_key_or_value_is_a_usage_error(fact, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main_publish(["src.ckpt", "--out", str(tmp_path), "--fact", fact])
    assert exit_.value.code == 2
    assert (
        f"--fact takes KEY=VALUE (e.g. run/max_epochs=30), got {fact!r}" in capsys.readouterr().err
    )


def test_publish_needs_a_destination(capsys):
    with pytest.raises(SystemExit) as exit_:
        main_publish(["src.ckpt"])
    assert exit_.value.code == 2
    assert "give --repo-id ORG/NAME to upload, or --out DIR" in capsys.readouterr().err


def test_list_json_is_indented_for_reading(monkeypatch, capsys):
    monkeypatch.setattr(commands, "list_models", lambda: ROWS[:1])
    assert main_list(["--json"]) == 0
    assert capsys.readouterr().out.startswith('[\n  {\n    "name": "odenet-x",')


DESCRIPTIONS = {
    "list": "List the zoo's pretrained models and their metrics.",
    "evaluate": "Recompute a zoo model's published test metrics from its weights.",
    "publish": "Turn a Lightning checkpoint (or a zoo folder) into a zoo folder",
}
# every option each verb takes: (type, action class name, dest) as --help documents them
OPTIONS = {
    "list": {"--json": (None, "_StoreTrueAction", "json")},
    "evaluate": {
        "ref": (None, "_StoreAction", "ref"),
        "--revision": (None, "_StoreAction", "revision"),
        "--seed": (int, "_StoreAction", "seed"),
        "--data-dir": (None, "_StoreAction", "data_dir"),
        "--batch-size": (int, "_StoreAction", "batch_size"),
        "--limit-batches": (int, "_StoreAction", "limit_batches"),
        "--solver": (None, "_AppendAction", "solver"),
        "--json": (None, "_StoreTrueAction", "json"),
    },
    "publish": {
        "source": (None, "_StoreAction", "source"),
        "--repo-id": (None, "_StoreAction", "repo_id"),
        "--out": (None, "_StoreAction", "out"),
        "--name": (None, "_StoreAction", "name"),
        "--private": (None, "_StoreTrueAction", "private"),
        "--branch": (None, "_StoreAction", "branch"),
        "--revision": (None, "_StoreAction", "branch"),  # an alias of --branch
        "--create-pr": (None, "_StoreTrueAction", "create_pr"),
        "--recipe": (None, "_StoreAction", "recipe"),
        "--metrics": (None, "_StoreAction", "metrics"),
        "--fact": (None, "_AppendAction", "fact"),
        "--comparison": (None, "_StoreAction", "comparison"),
        "--data-dir": (None, "_StoreAction", "data_dir"),
        "--limit-batches": (int, "_StoreAction", "limit_batches"),
        "--seed": (int, "_StoreAction", "seed"),
    },
}


@pytest.mark.parametrize("verb", sorted(OPTIONS))
def test_each_verb_documents_every_option_it_takes(verb, monkeypatch):
    """The parser each verb builds (caught at parse time): its program name and description,
    and for every option its type, action and destination, with a help text."""
    import argparse

    built = []

    def capture(parser, args=None, namespace=None):
        built.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    main = {"list": main_list, "evaluate": commands.main_evaluate, "publish": main_publish}[verb]
    with pytest.raises(SystemExit):
        main([])
    (parser,) = built
    assert parser.prog == f"nodezoo {verb}"
    assert DESCRIPTIONS[verb] in parser.description
    actions = {
        name: action
        for action in parser._actions
        if action.dest != "help"
        for name in (action.option_strings or [action.dest])
    }
    assert set(actions) == set(OPTIONS[verb])
    for name, (type_, kind, dest) in OPTIONS[verb].items():
        action = actions[name]
        assert (action.type, type(action).__name__, action.dest) == (type_, kind, dest), name
        assert action.help and action.help.strip(), name
    if verb == "evaluate":
        assert actions["--solver"].default == [] and actions["--solver"].metavar == "KEY=VALUE"
    if verb == "publish":
        assert actions["--fact"].default == [] and actions["--fact"].metavar == "KEY=VALUE"
        assert actions["--comparison"].metavar == "FILE"


def test_evaluate_with_limit_batches_gives_no_verdict(tmp_path, monkeypatch, capsys):
    """A subset of the test set cannot confirm or refute the card: the verdict says so."""
    from nodezoo.models.classifier import ImageClassifier
    from nodezoo.zoo import evaluation

    folder = ImageClassifier("mlp", width=4).save_pretrained(
        tmp_path / "m", metrics={"test/acc": 0.9}
    )
    monkeypatch.setattr(evaluation, "evaluate", lambda ref, **kw: {"test/acc": 0.5})
    assert commands.main_evaluate([str(folder), "--limit-batches", "1"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("--limit-batches: a subset of the test set")
    assert commands.main_evaluate([str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("MISMATCH: test/acc differ")
