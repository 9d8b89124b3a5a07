"""Publishing a checkpoint, pinned where mutation testing found it loose: each test calls
``build_folder`` itself (the session's ``zoo_folder`` is built once, so a mutant there is only
seen by the first test that asks for it). The recipe comes from the run directory, the base
model from the checkpoint, the step count from the checkpoint, and a run that recorded nothing
without a recipe to measure with is refused. Uses the tiny real run of ``conftest.py``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import nodezoo.zoo
from nodezoo.models.classifier import ImageClassifier
from nodezoo.zoo import ZooError
from nodezoo.zoo.commands import main_publish
from nodezoo.zoo.publish import build_folder


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---\n")[1])


def copy_run(trained_run, tmp_path: Path, *, config=True, summary=True) -> Path:
    """A copy of the tiny run's directory (optionally without config.yaml / summary.json);
    returns its checkpoint."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run["checkpoint"], run / "checkpoints" / "last.ckpt")
    if config:
        shutil.copy(trained_run["run_dir"] / "config.yaml", run / "config.yaml")
    if summary:
        shutil.copy(trained_run["run_dir"] / "summary.json", run / "summary.json")
    return run / "checkpoints" / "last.ckpt"


def test_the_recipe_base_model_and_steps_come_from_the_run(trained_run, tmp_path):
    ckpt = copy_run(trained_run, tmp_path)
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["pretrained"] = "acme/odenet-base"  # fine-tuned from it
    torch.save(checkpoint, ckpt)
    out = build_folder(ckpt, tmp_path / "out", evaluate_missing=False)
    recipe = (out / "recipe.yaml").read_text()
    assert recipe == (trained_run["run_dir"] / "config.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run/global_step"] == checkpoint["global_step"] == 2
    assert metrics["test/acc"] == trained_run["test_metrics"]["test/acc"]  # the summary's
    assert "test/nfe_forward" not in metrics  # evaluate_missing=False: nothing measured
    card = (out / "README.md").read_text()
    assert "Fine-tuned from `acme/odenet-base`." in card
    assert front_matter(card)["base_model"] == "acme/odenet-base"
    assert json.loads((out / "config.json").read_text())["pretrained"] is None


def test_missing_test_metrics_are_measured_and_the_runs_own_numbers_win(trained_run, tmp_path):
    ckpt = copy_run(trained_run, tmp_path)
    out = build_folder(ckpt, tmp_path / "out", limit_batches=1)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test/acc"] == trained_run["test_metrics"]["test/acc"]  # not re-measured
    assert metrics["test/samples"] == 16  # measured: one batch of 16 (limit_batches reached it)
    assert metrics["test/nfe_forward"] > 0


def test_a_run_without_metrics_or_recipe_is_refused(trained_run, tmp_path):
    ckpt = copy_run(trained_run, tmp_path, config=False, summary=False)
    with pytest.raises(ZooError, match="no test/acc in the run's metrics and no recipe to mea"):
        build_folder(ckpt, tmp_path / "out")
    # the headline given, no recipe: nothing can be measured, the folder is still written
    out = build_folder(ckpt, tmp_path / "out", metrics={"test": {"acc": 0.5}})
    assert json.loads((out / "metrics.json").read_text())["test/acc"] == 0.5
    assert not (out / "recipe.yaml").exists()
    with pytest.raises(ZooError, match="a directory; give a metrics JSON file"):
        build_folder(ckpt, tmp_path / "out2", metrics=tmp_path)


def test_republishing_a_folder_keeps_its_recipe_and_base_model(trained_run, tmp_path):
    model = ImageClassifier.from_pretrained(
        build_folder(copy_run(trained_run, tmp_path), tmp_path / "a")
    )
    recipe = yaml.safe_load((tmp_path / "a" / "recipe.yaml").read_text())
    recipe["model"]["init_args"]["pretrained"] = "acme/base"
    folder = model.save_pretrained(tmp_path / "b", recipe=recipe, metrics={"test/acc": 0.5})
    out = build_folder(folder, tmp_path / "c", evaluate_missing=False, name="again")
    assert yaml.safe_load((out / "recipe.yaml").read_text()) == recipe
    card = (out / "README.md").read_text()
    assert "# again\n" in card and "Fine-tuned from `acme/base`." in card


# ------------------------------------------------------------------------------ save_pretrained
def test_save_pretrained_name_base_model_and_own_label_names(trained_run, tmp_path):
    from nodezoo.data.images import MNISTDataModule

    model = ImageClassifier(**trained_run["recipe"]["model"]["init_args"])
    model.hparams["pretrained"] = "acme/odenet-base"
    model.label_names = [f"class {i}" for i in range(10)]
    model._trainer = SimpleNamespace(datamodule=MNISTDataModule(data_dir=str(tmp_path)))
    folder = model.save_pretrained(tmp_path / "dir-name", name="card-name")
    card = (folder / "README.md").read_text()
    assert "\n# card-name\n" in card
    assert "Fine-tuned from `acme/odenet-base`." in card
    config = json.loads((folder / "config.json").read_text())
    assert config["label_names"][0] == "class 0"  # the model's own, not MNIST's digits
    model.label_names = None
    names = json.loads((model.save_pretrained(tmp_path / "d2") / "config.json").read_text())
    assert names["label_names"] == list(MNISTDataModule.label_names)


# ------------------------------------------------------------------------------ publish verb
def test_publish_passes_every_option_on(monkeypatch, tmp_path, capsys):
    import nodezoo.zoo.hub as hub
    import nodezoo.zoo.publish as publish

    built, uploaded = {}, {}

    def fake_build(source, out, **kwargs):
        built.update(kwargs, source=source, out=out)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def fake_upload(folder, repo_id, **kwargs):
        uploaded.update(kwargs, folder=folder, repo_id=repo_id)
        return "http://hub/commit/1"

    monkeypatch.setattr(publish, "build_folder", fake_build)
    monkeypatch.setattr(hub, "upload_folder", fake_upload)
    monkeypatch.setattr(hub, "upload_token", lambda token=None: "hf_tok")
    argv = ["run.ckpt", "--repo-id", "acme/shown", "--out", str(tmp_path / "other")]
    argv += ["--recipe", "r.yaml", "--metrics", "m.json", "--data-dir", "d", "--seed", "5"]
    argv += ["--limit-batches", "3", "--private", "--branch", "dev", "--create-pr"]
    assert main_publish(argv) == 0
    assert built == {
        "source": "run.ckpt",
        "out": tmp_path / "other",
        "recipe": "r.yaml",
        "metrics": "m.json",
        "name": "shown",  # the repo's name, not the --out folder's
        "data_dir": "d",
        "limit_batches": 3,
        "facts": {},
        "seed": 5,
        "repo_id": "acme/shown",
    }
    assert uploaded == {
        "folder": tmp_path / "other",
        "repo_id": "acme/shown",
        "private": True,
        "branch": "dev",
        "create_pr": True,
    }
    out = capsys.readouterr().out.splitlines()
    assert out == [f"wrote {tmp_path / 'other'}", "published acme/shown: http://hub/commit/1"]


def test_the_zoo_package_loads_evaluate_lazily_and_names_missing_attributes():
    from nodezoo.zoo.evaluation import evaluate

    assert nodezoo.zoo.evaluate is evaluate
    with pytest.raises(AttributeError, match=r"module 'nodezoo\.zoo' has no attribute 'nope'"):
        nodezoo.zoo.nope  # noqa: B018


def test_the_card_picture_is_drawn_on_the_recorded_test_sample(tmp_path, monkeypatch):
    """Re-publishing a CNF folder: the picture uses the test seed its metrics were measured
    with (metrics.json's test/seed), so picture and numbers describe the same sample."""
    import nodezoo.models.cnf_plots as cnf_plots
    from nodezoo.models.cnf import CNF

    drawn = []

    def record(model, datamodule, path):
        drawn.append(datamodule.test_seed)
        path.write_bytes(b"png")

    monkeypatch.setattr(cnf_plots, "card_picture", record)
    recipe = {
        "data": {
            "class_path": "nodezoo.data.density.ToyDensityDataModule",
            "init_args": {"n_train": 8, "n_val": 4, "n_test": 8, "seed": 0},
        }
    }
    metrics = {"test/nll": 1.0, "test/seed": 99, "test/nfe_forward": 5.0}
    folder = CNF(dim=2, hidden=4, layers=1).save_pretrained(tmp_path / "cnf", metrics, recipe)
    out = build_folder(folder, tmp_path / "out", evaluate_missing=False)
    assert drawn == [99] and (out / "card.png").read_bytes() == b"png"
    build_folder(folder, tmp_path / "out2", evaluate_missing=False, seed=7)
    assert drawn == [99, 7]  # an explicit seed wins


def test_republishing_keeps_label_names_and_links_the_results_to_the_repo(tmp_path):
    model = ImageClassifier(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)
    folder = model.save_pretrained(
        tmp_path / "m", metrics={"test/acc": 0.5}, label_names=["cat", "dog", "eel"]
    )
    out = build_folder(folder, tmp_path / "out", evaluate_missing=False, repo_id="acme/pets")
    assert json.loads((out / "config.json").read_text())["label_names"] == ["cat", "dog", "eel"]
    (result,) = front_matter((out / "README.md").read_text())["model-index"][0]["results"]
    assert result["source"]["url"] == "https://huggingface.co/acme/pets"
