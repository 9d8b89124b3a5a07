"""The zoo's user-facing text, pinned whole: every ``ZooError`` a user can reach (one row each:
the bad input -> the exact message), the ``nodezoo <verb> --help`` text of each zoo verb, the
one-line CLI error and the JSON layouts (``nodezoo evaluate --json``, metrics.json).

``--help`` texts are compared with files under ``tests/zoo/expected/``. After changing a help
string on purpose, regenerate them and review the diff::

    NODEZOO_UPDATE_EXPECTED=1 python -m pytest -q tests/zoo/test_zoo_messages.py -k help
    git diff tests/zoo/expected/

Error rows are plain strings here: update a row in the same commit as its message. Messages
from ``nodezoo.zoo.hub`` are pinned in ``test_mutation_pins_hub.py`` (they need a fake Hub).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nodezoo.cli import main
from nodezoo.models.classifier import ImageClassifier
from nodezoo.models.rnn_baseline import RNNBaseline
from nodezoo.zoo import CorruptWeightsError, HubAccessError, ZooError, from_pretrained
from nodezoo.zoo.evaluation import datamodule_class, evaluate
from nodezoo.zoo.folder import read_metrics, read_recipe, save_folder
from nodezoo.zoo.pretrained import resolve_ref
from nodezoo.zoo.publish import build_folder
from nodezoo.zoo.registry import architecture_for_class, zoo_names

EXPECTED = Path(__file__).parent / "expected"
ARGS = dict(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)
CONFIG = {"architecture": "image-classifier", **ARGS}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """Folders saved from tiny untrained models (no training run)."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    ImageClassifier(**ARGS).save_pretrained(root / "classifier")
    RNNBaseline(hidden=4).save_pretrained(root / "forecaster")
    return root


def folder(tmp: Path, config=CONFIG, **files) -> Path:
    """A folder holding config.json (unless ``config`` is None) and ``files`` (name: text)."""
    out = tmp / "folder"
    out.mkdir()
    if config is not None:
        (out / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    for name, text in files.items():
        (out / name.replace("_", ".")).write_text(text)
    return out


def _copy(src: Path, tmp: Path) -> Path:
    out = tmp / "copy"
    out.mkdir()
    for f in src.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def _edited(tmp: Path, saved: Path, model: str = "classifier", **changes) -> Path:
    """A copy of a saved folder with config keys (lower case) or files (upper case) changed."""
    out = _copy(saved / model, tmp)
    config = json.loads((out / "config.json").read_text())
    for key, value in changes.items():
        if key.isupper():
            (out / key).write_text(value)
        else:
            config[key] = value
    (out / "config.json").write_text(json.dumps(config))
    return out


def _nan_weights(tmp: Path, saved: Path) -> None:
    out = _copy(saved / "classifier", tmp)
    (out / "SHA256SUMS").unlink()
    state = {"head.weight": torch.full((3, 4), torch.nan), "head.bias": torch.zeros(3)}
    save_file(state, str(out / "model.safetensors"))
    from_pretrained(out)


def _changed_weights(tmp: Path, saved: Path) -> None:
    """Weights of known bytes (so a known SHA-256) where SHA256SUMS records another."""
    out = _copy(saved / "classifier", tmp)
    save_file({"head.bias": torch.zeros(3)}, str(out / "model.safetensors"))
    (out / "SHA256SUMS").write_text("0" * 64 + "  model.safetensors\n")
    from_pretrained(out)


def _save_with_hparams(tmp: Path, saved: Path, **hparams) -> None:
    """Save a model whose hparams lost (None) or garbled an init arg."""
    model = ImageClassifier(**ARGS)
    for name, value in hparams.items():
        if value is None:
            del model.hparams[name]
        else:
            model.hparams[name] = value
    model.save_pretrained(tmp / "out")


def _checkpoint(tmp: Path, hparams: dict) -> Path:
    path = tmp / "last.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": hparams}, path)
    return path


# (id, trigger(tmp, saved), error, message). In a message TMP and SAVED stand for those paths
# and KNOWN for the shipped zoo names (data that grows with the zoo, not wording).
ROWS = [
    # --- references: resolve_ref / from_pretrained
    (
        "not-found",
        lambda tmp, saved: resolve_ref("no-such-model"),
        ZooError,
        (
            "no model 'no-such-model' found; tried it as a folder (no directory "
            "'TMP/no-such-model'); as a zoo name (not a shipped model); as a Hub repo id "
            "(not of the form 'org/name'). Pass a zoo folder (holding config.json and "
            "model.safetensors), a zoo name (known: KNOWN) or a Hub repo id such as "
            "'org/name'."
        ),
    ),
    (
        "not-found-path-like",
        lambda tmp, saved: resolve_ref("a/b/c"),
        ZooError,
        (
            "no model 'a/b/c' found; tried it as a folder (no directory 'TMP/a/b/c'); as a "
            "zoo name (zoo names have no '/'); as a Hub repo id (not of the form "
            "'org/name'). Pass a zoo folder (holding config.json and model.safetensors), a "
            "zoo name (known: KNOWN) or a Hub repo id such as 'org/name'."
        ),
    ),
    (
        "not-found-on-hub",
        lambda tmp, saved: resolve_ref("acme/none", local_files_only=True, cache_dir=str(tmp)),
        HubAccessError,
        (
            "no model 'acme/none' found; tried it as a folder (no directory "
            "'TMP/acme/none'); as a zoo name (zoo names have no '/'); as a Hub repo id "
            "(cannot load 'acme/none': local_files_only=True and it is not in the local "
            "cache (TMP). To fix: download it once without local_files_only, or pass a "
            "local folder instead). Pass a zoo folder (holding config.json and "
            "model.safetensors), a zoo name (known: KNOWN) or a Hub repo id such as "
            "'org/name'."
        ),
    ),
    (
        "revision-local-folder",
        lambda tmp, saved: resolve_ref(saved / "classifier", revision="v1"),
        ZooError,
        (
            "revision='v1' applies to Hub repos; 'SAVED/classifier' is a local folder. Drop "
            "revision=, or give the Hub repo id."
        ),
    ),
    (
        "revision-zoo-name",
        lambda tmp, saved: resolve_ref("mlp-fashion-mnist", revision="v1"),
        ZooError,
        (
            "revision='v1' applies to Hub repos, not zoo name 'mlp-fashion-mnist'. Drop "
            "revision= (a shipped model has one version), or give a Hub repo id."
        ),
    ),
    (
        "lightning-checkpoint",
        lambda tmp, saved: from_pretrained(_checkpoint(tmp, {})),
        ZooError,
        (
            "'TMP/last.ckpt' is a Lightning checkpoint, not a zoo folder. Turn it into one "
            "with `nodezoo publish TMP/last.ckpt --out DIR` (or nodezoo.zoo.build_folder), "
            "then load DIR."
        ),
    ),
    (
        "run-directory",
        lambda tmp, saved: (_checkpoint(tmp, {}), from_pretrained(tmp)),
        ZooError,
        (
            "'TMP' is a training run directory (it holds last.ckpt), not a zoo folder. Turn "
            "a checkpoint into one with `nodezoo publish TMP/last.ckpt --out DIR`, then "
            "load DIR."
        ),
    ),
    (
        "a-file",
        lambda tmp, saved: from_pretrained(folder(tmp) / "config.json"),
        ZooError,
        (
            "'TMP/folder/config.json' is a file; pass the zoo folder holding config.json "
            "and model.safetensors."
        ),
    ),
    (
        "no-config",
        lambda tmp, saved: from_pretrained(folder(tmp, config=None)),
        ZooError,
        (
            "'TMP/folder' has no config.json: not a zoo folder (one holds config.json and "
            "model.safetensors; `nodezoo publish` makes one from a checkpoint)."
        ),
    ),
    # --- what a folder holds
    (
        "config-not-json",
        lambda tmp, saved: from_pretrained(folder(tmp, config="{")),
        ZooError,
        (
            "TMP/folder/config.json is not valid JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1). Re-save the folder or download it "
            "again."
        ),
    ),
    (
        "config-no-architecture",
        lambda tmp, saved: from_pretrained(folder(tmp, config=ARGS)),
        ZooError,
        "TMP/folder/config.json must be a JSON object with an 'architecture' key.",
    ),
    (
        "label-names-not-strings",
        lambda tmp, saved: from_pretrained(
            folder(tmp, config={**CONFIG, "label_names": [1, 2, 3]})
        ),
        ZooError,
        "TMP/folder/config.json: label_names must be a list of strings.",
    ),
    (
        "label-names-count",
        lambda tmp, saved: from_pretrained(
            folder(tmp, config={**CONFIG, "label_names": ["a", "b"]})
        ),
        ZooError,
        (
            "TMP/folder/config.json: 2 label_names for 3 classes; give one name per class, "
            "in output order."
        ),
    ),
    (
        "unknown-architecture",
        lambda tmp, saved: from_pretrained(folder(tmp, config={"architecture": "transformer"})),
        ZooError,
        (
            "unknown architecture 'transformer' in config.json; this nodezoo knows cnf, "
            "image-classifier, latent-ode, rnn-forecaster. Upgrade nodezoo, or check the "
            "folder's config.json."
        ),
    ),
    (
        "config-unknown-keys",
        lambda tmp, saved: from_pretrained(_edited(tmp, saved, "forecaster", bogus=1)),
        ZooError,
        (
            "config.json has keys ['bogus'] that RNNBaseline does not take (it takes "
            "obs_dim, hidden, cell, time_gaps, min_std, lr, weight_decay, lr_schedule). The "
            "folder was written by another version or edited by hand."
        ),
    ),
    (
        "override-not-allowed",
        lambda tmp, saved: from_pretrained(saved / "forecaster", bogus=1),
        ZooError,
        (
            "cannot override 'bogus'; overridable init args: obs_dim, hidden, cell, "
            "time_gaps, min_std, lr, weight_decay, lr_schedule."
        ),
    ),
    (
        "override-pretrained",
        lambda tmp, saved: from_pretrained(saved / "classifier", pretrained="x"),
        ZooError,
        (
            "cannot override 'pretrained'; overridable init args: backbone, in_channels, "
            "image_size, width, depth, solver, augment_channels, mean, std, optimizer, lr, "
            "momentum, weight_decay, lr_schedule, lr_milestones, lr_gamma, lr_warmup, "
            "regularisation."
        ),
    ),
    (
        "no-weights",
        lambda tmp, saved: from_pretrained(folder(tmp)),
        ZooError,
        (
            "TMP/folder has no model.safetensors. Re-save the folder or download it again "
            "(force_download=True for a Hub repo)."
        ),
    ),
    (
        "weights-unreadable",
        lambda tmp, saved: from_pretrained(folder(tmp, model_safetensors="x")),
        CorruptWeightsError,
        (
            "TMP/folder/model.safetensors is not a readable safetensors file: Error while "
            "deserializing header: header too small. Re-save the folder or download it "
            "again (force_download=True for a Hub repo)."
        ),
    ),
    (
        "checksums-format",
        lambda tmp, saved: from_pretrained(_edited(tmp, saved, SHA256SUMS="abc  x\n")),
        CorruptWeightsError,
        (
            "TMP/copy/SHA256SUMS is not in sha256sum format ('<64 hex digits>  <file name>' "
            "per line): 'abc  x'. Re-save or re-publish the folder to rewrite it."
        ),
    ),
    (
        "checksum-mismatch",
        _changed_weights,
        CorruptWeightsError,
        (
            "TMP/copy/model.safetensors does not match the SHA-256 recorded in SHA256SUMS "
            "(recorded 000000000000..., the file has a80e095782a3...): the weights were "
            "changed or damaged after they were saved. Download the folder again "
            "(force_download=True for a Hub repo) or re-save it; the file was not loaded."
        ),
    ),
    (
        "weights-not-finite",
        _nan_weights,
        CorruptWeightsError,
        (
            "not loading TMP/copy/model.safetensors: NaN or inf in 1 tensor(s): "
            "head.weight. These weights are broken (a diverged training run or a damaged "
            "file); use a checkpoint from before the run diverged, or download the folder "
            "again."
        ),
    ),
    (
        "metrics-not-json",
        lambda tmp, saved: read_metrics(folder(tmp, metrics_json="{")),
        ZooError,
        (
            "TMP/folder/metrics.json is not valid JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1). Re-save the folder or download it "
            "again."
        ),
    ),
    (
        "recipe-not-yaml-mapping",
        lambda tmp, saved: read_recipe(folder(tmp, recipe_yaml="- a\n")),
        ZooError,
        "TMP/folder/recipe.yaml is not a recipe (a YAML mapping).",
    ),
    (
        "recipe-not-a-file",
        lambda tmp, saved: save_folder(
            ImageClassifier(**ARGS), tmp / "out", recipe=tmp / "missing.yaml"
        ),
        ZooError,
        (
            "recipe 'TMP/missing.yaml' is not a file; give the path of the recipe YAML, or "
            "the recipe as a dict."
        ),
    ),
    (
        "save-unrecorded-init-arg",
        lambda tmp, saved: _save_with_hparams(tmp, saved, width=None),
        ZooError,
        (
            "ImageClassifier did not record init arg 'width' in hparams; call "
            "self.save_hyperparameters() in __init__ so the zoo can save it."
        ),
    ),
    (
        "save-init-arg-not-plain-data",
        lambda tmp, saved: _save_with_hparams(tmp, saved, width={1}),
        ZooError,
        (
            "init args ['width'] of ImageClassifier are not plain JSON data (numbers, "
            "strings, lists, dicts); zoo models must be configured by plain data only."
        ),
    ),
    # --- classes and architectures
    (
        "wrong-model-class",
        lambda tmp, saved: ImageClassifier.from_pretrained(saved / "forecaster"),
        ZooError,
        (
            "SAVED/forecaster holds a 'rnn-forecaster' model (RNNBaseline), not a "
            "ImageClassifier; load it with nodezoo.from_pretrained."
        ),
    ),
    (
        "no-head-to-reset",
        lambda tmp, saved: RNNBaseline.from_pretrained(saved / "forecaster", num_classes=5),
        ZooError,
        (
            "RNNBaseline has no classifier head to reset for num_classes=5; load it without "
            "num_classes= (only classifiers can change their classes)."
        ),
    ),
    (
        "pretrained-other-architecture",
        lambda tmp, saved: ImageClassifier(**ARGS, pretrained=str(saved / "forecaster")),
        ZooError,
        (
            "pretrained='SAVED/forecaster' is a 'rnn-forecaster' model; it cannot "
            "initialise a 'image-classifier' (ImageClassifier). Give pretrained= a "
            "'image-classifier' model, or none to start from random weights."
        ),
    ),
    (
        "not-a-zoo-class",
        lambda tmp, saved: architecture_for_class(torch.nn.Linear),
        ZooError,
        "Linear is not a zoo architecture; register it with nodezoo.zoo.register(...).",
    ),
    # --- evaluate
    (
        "evaluate-nothing",
        lambda tmp, saved: evaluate(),
        ZooError,
        (
            "evaluate needs a zoo reference or a model: pass a zoo name, folder or Hub repo "
            "id, or model= with recipe=."
        ),
    ),
    (
        "evaluate-model-without-recipe",
        lambda tmp, saved: evaluate(model=ImageClassifier(**ARGS)),
        ZooError,
        (
            "evaluate(model=...) needs the recipe that names the data: pass recipe= (the "
            "training recipe as a dict)."
        ),
    ),
    (
        "evaluate-folder-without-recipe",
        lambda tmp, saved: evaluate(saved / "classifier"),
        ZooError,
        (
            "SAVED/classifier has no recipe.yaml; evaluate needs the recipe's data section "
            "to know the test set. Publish the folder with --recipe FILE, or call "
            "evaluate(model=..., recipe=...)."
        ),
    ),
    (
        "recipe-without-data-class",
        lambda tmp, saved: datamodule_class({"data": {}}),
        ZooError,
        (
            "the recipe has no data.class_path, so the test data is unknown. Give it the "
            "data section it was trained with (class_path and init_args, as in recipes/)."
        ),
    ),
    (
        "recipe-foreign-class",
        lambda tmp, saved: datamodule_class({"data": {"class_path": "os.system"}}),
        ZooError,
        (
            "refusing to import the recipe's data class 'os.system': not a nodezoo class (a "
            "file may only name classes of this package)."
        ),
    ),
    (
        "recipe-missing-class",
        lambda tmp, saved: datamodule_class({"data": {"class_path": "nodezoo.data.NoSuchData"}}),
        ZooError,
        "the recipe's data class 'nodezoo.data.NoSuchData' does not exist.",
    ),
    (
        "recipe-not-a-class",
        lambda tmp, saved: datamodule_class(
            {"data": {"class_path": "nodezoo.zoo.evaluation.evaluate"}}
        ),
        ZooError,
        "the recipe's data class 'nodezoo.zoo.evaluation.evaluate' is not a class.",
    ),
    # --- publish
    (
        "publish-metrics-directory",
        lambda tmp, saved: build_folder(saved / "classifier", tmp / "out", metrics=tmp),
        ZooError,
        "--metrics TMP: a directory; give a metrics JSON file (a run's summary.json).",
    ),
    (
        "publish-no-metrics",
        lambda tmp, saved: build_folder(saved / "classifier", tmp / "out"),
        ZooError,
        (
            "no test/acc in the run's metrics and no recipe to measure it with; pass "
            "--metrics FILE or --recipe FILE."
        ),
    ),
    (
        "publish-foreign-model",
        lambda tmp, saved: build_folder(
            _checkpoint(tmp, {"_class_path": "torch.nn.Linear"}), tmp / "out"
        ),
        ZooError,
        (
            "the checkpoint's model 'torch.nn.Linear' is not a zoo architecture, so it "
            "cannot be published; register the class with nodezoo.zoo.register(...) first."
        ),
    ),
    (
        "publish-unknown-checkpoint",
        lambda tmp, saved: build_folder(_checkpoint(tmp, {"bogus": 1}), tmp / "out"),
        ZooError,
        (
            "cannot tell which zoo architecture this checkpoint holds (no class path "
            "recorded); publish it from its run directory (with config.yaml), or pass "
            "--recipe."
        ),
    ),
]


@pytest.mark.parametrize(
    ("trigger", "error", "message"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_error_message(trigger, error, message, tmp_path, saved, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative reference is looked for (and named) here
    with pytest.raises(error) as info:
        trigger(tmp_path, saved)
    expected = (
        message.replace("SAVED", str(saved))
        .replace("TMP", str(tmp_path))
        .replace("KNOWN", ", ".join(zoo_names()))
    )
    assert type(info.value) is error
    assert str(info.value) == expected


# ---------------------------------------------------------------------------------------- CLI
def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``nodezoo ARGV`` in this process: exit code, stdout, stderr (argparse exits for --help
    and usage errors)."""
    try:
        code = main(argv)
    except SystemExit as done:
        code = done.code
    out = capsys.readouterr()
    return code, out.out, out.err


# argparse formats help differently across Python versions (3.13 changed how options with
# values are listed): the expected files are 3.11's, the version CI runs
ARGPARSE_3_11 = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11),
    reason="tests/zoo/expected/ holds argparse's output on Python 3.11; on this version "
    "regenerate it with NODEZOO_UPDATE_EXPECTED=1 to compare locally",
)


@ARGPARSE_3_11
@pytest.mark.parametrize("verb", ["list", "evaluate", "publish"])
def test_help(verb, capsys, monkeypatch):
    """The whole ``nodezoo VERB --help`` at 100 columns (argparse wraps to the terminal)."""
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run_cli([verb, "--help"], capsys)
    path = EXPECTED / f"help_{verb}.txt"
    if os.environ.get("NODEZOO_UPDATE_EXPECTED") == "1":
        path.write_text(out)
    assert (code, err) == (0, "")
    assert out == path.read_text()


@ARGPARSE_3_11
def test_publish_without_a_destination_says_what_to_give(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run_cli(["publish", "x.ckpt"], capsys)
    usage = (EXPECTED / "help_publish.txt").read_text().split("\n\n")[0]
    assert code == 2 and out == ""
    assert err == (
        f"{usage}\nnodezoo publish: error: give --repo-id ORG/NAME to upload, or --out DIR to "
        "only build the folder\n"
    )


def test_a_bad_fact_says_the_form_it_takes(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("COLUMNS", "100")
    code, _, err = run_cli(
        ["publish", "x.ckpt", "--out", str(tmp_path), "--fact", "epochs"], capsys
    )
    assert code == 2
    assert err.endswith(
        "nodezoo publish: error: --fact takes KEY=VALUE (e.g. run/max_epochs=30), got 'epochs'\n"
    )


def test_a_user_error_is_one_line_and_exit_code_2(capsys, tmp_path):
    missing = tmp_path / "table.md"
    code, out, err = run_cli(
        ["publish", "x.ckpt", "--out", str(tmp_path), "--comparison", str(missing)], capsys
    )
    assert (code, out) == (2, "")
    assert err == (
        f"nodezoo publish: error: --comparison {missing}: cannot read it (No such file or "
        "directory); give the Markdown file nodezoo compare wrote (table.md).\n"
    )


# --------------------------------------------------------------------------------- JSON layout
def _layout(data) -> str:
    """The layout nodezoo writes JSON in: 2-space indent, keys sorted, a final newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_evaluate_json_layout(zoo_folder, capsys):
    """``nodezoo evaluate --json``: the metrics as an indented object with sorted keys (so two
    evaluations diff line by line), nothing else on stdout."""
    code, out, _ = run_cli(["evaluate", str(zoo_folder), "--json", "--limit-batches", "1"], capsys)
    assert code == 0
    metrics = json.loads(out)
    assert set(metrics) >= {"test/acc", "test/loss", "test/samples", "model/params"}
    assert out == _layout(metrics)


def test_evaluate_table_has_no_trailing_spaces(zoo_folder, capsys):
    code, out, _ = run_cli(["evaluate", str(zoo_folder), "--limit-batches", "1"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) >= 3
    assert [line.rstrip() for line in lines] == lines
    # the columns line up: each header word starts where the cells below it start
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    for row in lines[1:-1]:
        assert all(i == 0 or row[i - 1] == " " for i in starts if i < len(row)), row


def test_metrics_json_layout(zoo_folder):
    text = (zoo_folder / "metrics.json").read_text()
    assert text == _layout(json.loads(text))
    assert list(json.loads(text)) == sorted(json.loads(text))
