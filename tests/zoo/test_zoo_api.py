"""The zoo's public API after the redesign: methods from the base class (no patching at load
time), one source of truth for the solver, label names in config.json, Hub upload options, and
one-line user errors from every verb."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import nodezoo
from nodezoo.cli import COMMANDS, main
from nodezoo.errors import NodezooError
from nodezoo.models.classifier import ImageClassifier
from nodezoo.models.latent_ode import LatentODE
from nodezoo.reports.sweeps import set_tolerance
from nodezoo.zoo import ZooError, from_pretrained
from nodezoo.zoo.folder import read_config


def test_class_from_pretrained_in_a_fresh_process():
    """The method comes from the base class: nothing else need be imported (or loaded) first."""
    code = (
        "from nodezoo.models.latent_ode import LatentODE\n"
        "m = LatentODE.from_pretrained('latent-ode-spirals')\n"
        "print(type(m).__name__, m.training, m.solver.rtol)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["LatentODE", "False", "1e-05"]


def test_class_from_pretrained_checks_the_class():
    with pytest.raises(ZooError, match="holds a 'rnn-forecaster' model"):
        LatentODE.from_pretrained("rnn-spirals")


def test_top_level_from_pretrained_and_list_models():
    names = [row["name"] for row in nodezoo.list_models()]
    assert "latent-ode-spirals" in names
    model = nodezoo.from_pretrained("rnn-spirals")
    assert type(model).__name__ == "RNNBaseline"


def tiny_classifier() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier("odenet", width=4, image_size=12, lr_schedule="constant")


def test_a_model_saved_after_a_tolerance_sweep_records_the_new_solver(tmp_path):
    model = tiny_classifier()
    assert model.solver.rtol == 1e-3
    set_tolerance(model, 0.25)  # what nodezoo compare's sweep does: the blocks' solver changes
    assert model.solver.rtol == model.solver.atol == 0.25
    folder = model.save_pretrained(tmp_path / "swept")
    saved = read_config(folder)["solver"]
    assert saved["rtol"] == saved["atol"] == 0.25 and saved["method"] == "dopri5"
    reloaded = from_pretrained(folder)
    assert reloaded.solver == model.solver
    # the Lightning checkpoint's hyperparameters agree with config.json
    checkpoint = {"hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["hyper_parameters"]["solver"] == saved


def test_setting_a_models_solver_reaches_its_blocks_and_its_folder(tmp_path):
    model = from_pretrained("latent-ode-spirals")
    model.solver = {"method": "rk4", "step_size": 0.05, "gradient": "backprop"}
    assert model.ode.solver.method == "rk4"
    folder = model.save_pretrained(tmp_path / "rk4")
    assert read_config(folder)["solver"]["method"] == "rk4"
    assert from_pretrained(folder).ode.solver == model.ode.solver
    with pytest.raises(ValueError, match="has no ODE block"):
        ImageClassifier("resnet", width=4, depth=1, image_size=12).solver = {"rtol": 1e-2}


def test_label_names_in_config(zoo_folder, tmp_path):
    from nodezoo.data import FashionMNISTDataModule

    config = read_config(zoo_folder)
    assert config["label_names"] == list(FashionMNISTDataModule.label_names)
    model = from_pretrained(zoo_folder)
    assert model.label_names == config["label_names"]
    assert (
        read_config(model.save_pretrained(tmp_path / "again"))["label_names"]
        == (config["label_names"])
    )
    assert from_pretrained(zoo_folder, num_classes=3).label_names is None  # new head, new labels
    with pytest.raises(ZooError, match="2 label_names for 10 classes"):
        model.save_pretrained(tmp_path / "bad", label_names=["a", "b"])


def test_card_front_matter_follows_hub_conventions(zoo_folder):
    import yaml

    meta = yaml.safe_load((zoo_folder / "README.md").read_text().split("---\n")[1])
    (result,) = meta["model-index"][0]["results"]
    assert result["source"]["name"] == "nodezoo evaluate"
    assert "base_model" not in meta  # trained from scratch


def test_base_model_is_metadata_only_when_it_is_a_hub_id():
    from nodezoo.zoo.cards import hub_id

    assert hub_id("acme/odenet-fashion-mnist") == "acme/odenet-fashion-mnist"
    assert hub_id("odenet-fashion-mnist") is None  # a zoo name: said in the text only
    assert hub_id(None) is None


# ------------------------------------------------------------------------------ user errors
def one_line_error(capsys, verb: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nodezoo {verb}: error: "), err
    return err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["evaluate", "no-such-model"], "as a zoo name (not a shipped model)"),
        (["publish", "missing.ckpt", "--out", "x"], "does not exist"),
        (["compare", "no-such-run", "--out", "x"], "neither a path nor a shipped zoo name"),
        (["list"], None),
    ],
)
def test_cli_turns_user_errors_into_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    argv = [str(tmp_path / a) if a in ("missing.ckpt", "x") else a for a in argv]
    code = main(argv)
    if needle is None:
        assert code == 0
        return
    assert code == 2
    assert needle in one_line_error(capsys, argv[0])


def test_cli_catches_every_nodezoo_error_once(monkeypatch, capsys):
    class SomeNewError(NodezooError):
        pass

    def verb(argv):
        raise SomeNewError("first line\n  second line: what to do")

    monkeypatch.setitem(COMMANDS, "list", verb)
    assert main(["list"]) == 2
    assert "first line second line: what to do" in one_line_error(capsys, "list")

    def bug(argv):
        raise KeyError("a bug keeps its traceback")

    monkeypatch.setitem(COMMANDS, "list", bug)
    with pytest.raises(KeyError):
        main(["list"])


def test_data_errors_are_user_errors(zoo_folder, tmp_path, capsys):
    """A recipe whose data are nowhere (no data_dir files, no system copy) is a user error."""
    import shutil

    import yaml

    folder = tmp_path / "no-data"
    shutil.copytree(zoo_folder, folder)
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["data"]["init_args"]["system_dir"] = str(tmp_path / "no-system-copy")
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["evaluate", str(folder), "--data-dir", str(tmp_path / "empty")]) == 2
    assert "FashionMNIST" in one_line_error(capsys, "evaluate")


# ------------------------------------------------------------------------------ Hub uploads (stub)
@pytest.fixture
def stub_hub_at(stub_hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", stub_hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("HF_TOKEN", "hf_stub_token")
    return stub_hub


def test_push_to_hub_removes_stale_zoo_files_only(zoo_folder, stub_hub_at):
    """Against the STUB Hub: the repo holds an old recipe.yaml and a user's picture; the new
    upload has no recipe, so the stale recipe goes and the picture stays."""
    stub_hub_at.remote_files = ["README.md", "recipe.yaml", "picture.png", ".gitattributes"]
    model = from_pretrained(zoo_folder)
    model.push_to_hub("acme/pushed", metrics={"test/acc": 0.25})
    assert stub_hub_at.deleted == ["recipe.yaml"]
    assert set(stub_hub_at.files) == {
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "SHA256SUMS",
    }
    stub_hub_at.deleted.clear()
    model.push_to_hub("acme/pushed", delete_patterns=None)
    assert stub_hub_at.deleted == []


def test_push_to_hub_branch_and_pull_request(zoo_folder, stub_hub_at):
    """Against the STUB Hub: ``branch`` creates the branch and commits to it; ``create_pr``
    opens a pull request and returns its URL."""
    model = from_pretrained(zoo_folder)
    model.push_to_hub("acme/pushed", branch="dev")
    assert stub_hub_at.branches == ["dev"]
    assert stub_hub_at.commits[-1].split("?")[0].endswith("/commit/dev")
    url = model.push_to_hub("acme/pushed", create_pr=True, metrics={"test/acc": 0.5})
    assert len(stub_hub_at.pull_requests) == 1 and stub_hub_at.pull_requests[0]["pullRequest"]
    assert "refs%2Fpr%2F7" in stub_hub_at.commits[-1]  # committed to the pull request's branch
    assert url.endswith("/acme/pushed/discussions/7")
    card = stub_hub_at.files["README.md"].decode()
    assert "url: https://huggingface.co/acme/pushed\n" in card  # results' source: the repo


def test_cli_publish_branch_and_pr(zoo_folder, stub_hub_at, capsys):
    assert main(["publish", str(zoo_folder), "--repo-id", "acme/x", "--branch", "v2"]) == 0
    assert stub_hub_at.branches == ["v2"]
    assert main(["publish", str(zoo_folder), "--repo-id", "acme/x", "--create-pr"]) == 0
    assert "discussions/7" in capsys.readouterr().out
    assert json.loads(stub_hub_at.files["config.json"])["architecture"] == "image-classifier"
