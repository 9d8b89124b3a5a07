"""``pretrained``'s and ``registry``'s promises that mutation testing found unpinned: errors name
the reference and the class, the attached data module's init args reach recipe.yaml as plain
data, and the registry finds classes by identity (module and name), not by either alone.

Folders come from ``save_pretrained`` on tiny untrained models: no training run is needed."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from nodezoo.models.classifier import ImageClassifier
from nodezoo.models.rnn_baseline import RNNBaseline
from nodezoo.zoo import WeightsMismatchError, ZooError, registry
from nodezoo.zoo.registry import (
    ZooArchitecture,
    architecture_for_class,
    get_architecture,
    register,
    zoo_names,
)

ARGS = dict(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pins")
    torch.manual_seed(0)
    ImageClassifier(**ARGS).save_pretrained(root / "classifier")
    RNNBaseline(hidden=4).save_pretrained(root / "forecaster")
    return root


def test_refusing_another_architecture_names_the_reference_and_the_class(folders):
    ref = str(folders / "forecaster")
    expected = (
        f"pretrained={ref!r} is a 'rnn-forecaster' model; it cannot initialise a "
        "'image-classifier' (ImageClassifier). Give pretrained= a 'image-classifier' model, or "
        "none to start from random weights."
    )
    with pytest.raises(ZooError, match=re.escape(expected)):
        ImageClassifier(**ARGS, pretrained=ref)


def test_weights_that_do_not_fit_name_the_pretrained_reference(folders):
    ref = str(folders / "classifier")
    with pytest.raises(WeightsMismatchError, match=re.escape(f"pretrained weights {ref!r}")):
        ImageClassifier(**{**ARGS, "width": 6}, pretrained=ref)


def test_a_new_head_is_fresh_and_the_rest_is_loaded(folders):
    """num_classes differs: every non-head tensor comes from the folder, the head is the new
    model's own initialisation (the same as without ``pretrained``)."""
    saved = ImageClassifier.from_pretrained(folders / "classifier").state_dict()
    torch.manual_seed(1)
    fresh = ImageClassifier(**{**ARGS, "num_classes": 5}).state_dict()
    torch.manual_seed(1)
    tuned = ImageClassifier(**{**ARGS, "num_classes": 5}, pretrained=str(folders / "classifier"))
    for key, value in tuned.state_dict().items():
        expected = fresh[key] if key.startswith("head.") else saved[key]
        assert torch.equal(value, expected), key


def test_attached_data_module_args_are_recorded_as_plain_data(tmp_path):
    """save_pretrained without a recipe records the trainer's data module: its class path and
    every init arg, paths as strings (recipe.yaml stays plain YAML)."""
    from nodezoo.data.images import FashionMNISTDataModule

    model = ImageClassifier(**{**ARGS, "num_classes": 10})  # Fashion-MNIST's 10 classes
    data = FashionMNISTDataModule(data_dir=tmp_path / "data", batch_size=7)
    assert isinstance(data.hparams["data_dir"], Path)  # not JSON: must become a string
    model._trainer = SimpleNamespace(datamodule=data)
    folder = model.save_pretrained(tmp_path / "attached")
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    expected = {k: str(v) if isinstance(v, Path) else v for k, v in data.hparams.items()}
    assert recipe["data"] == {
        "class_path": "nodezoo.data.images.FashionMNISTDataModule",
        "init_args": expected,
    }
    assert recipe["data"]["init_args"]["data_dir"] == str(tmp_path / "data")
    assert recipe["data"]["init_args"]["batch_size"] == 7
    assert recipe["model"]["class_path"] == "nodezoo.models.classifier.ImageClassifier"
    assert recipe["model"]["init_args"]["width"] == 4


def test_an_explicit_recipe_wins_over_the_attached_data_module(tmp_path):
    from nodezoo.data.images import FashionMNISTDataModule

    model = ImageClassifier(**{**ARGS, "num_classes": 10})
    model._trainer = SimpleNamespace(datamodule=FashionMNISTDataModule(data_dir=str(tmp_path)))
    recipe = {"data": {"class_path": "nodezoo.data.MNISTDataModule", "init_args": {}}}
    folder = model.save_pretrained(tmp_path / "explicit", recipe=recipe)
    assert yaml.safe_load((folder / "recipe.yaml").read_text()) == recipe
    assert "trained on MNIST" in (folder / "README.md").read_text()


# ------------------------------------------------------------------------------------ registry
class ImageClassifier2(torch.nn.Module):  # a class that is no zoo architecture
    pass


ImageClassifier2.__qualname__ = "ImageClassifier"  # the zoo class's name, another module


def test_a_class_is_found_by_module_and_name_together():
    class Subclass(ImageClassifier):
        pass

    assert architecture_for_class(ImageClassifier).name == "image-classifier"
    assert architecture_for_class(Subclass).name == "image-classifier"  # through the MRO
    assert architecture_for_class(RNNBaseline).name == "rnn-forecaster"
    with pytest.raises(ZooError, match="ImageClassifier2 is not a zoo architecture"):
        architecture_for_class(ImageClassifier2)  # same name, not the same class
    with pytest.raises(ZooError, match=r"register it with nodezoo\.zoo\.register"):
        architecture_for_class(torch.nn.Linear)


def test_register_adds_an_entry_that_the_zoo_then_finds(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    entry = ZooArchitecture(
        name="my-linear",
        model_class="torch.nn.modules.linear:Linear",
        evaluate="nodezoo.zoo.evaluation:evaluate_image_classifier",
        task="image-classification",
        headline_metric="test/acc",
        metric_name="accuracy",
    )
    assert register(entry) is entry
    assert get_architecture("my-linear") is entry
    assert registry.registered()["my-linear"] is entry
    assert architecture_for_class(torch.nn.Linear) is entry
    assert entry.load_class() is torch.nn.Linear
    assert entry.class_path == "torch.nn.modules.linear.Linear"
    assert entry.load_picture() is None
    assert entry.direction == "higher is better"


def test_registered_is_a_copy():
    copy = registry.registered()
    copy.pop("cnf")
    assert "cnf" in registry.registered()


def test_an_unknown_architecture_lists_the_known_ones_sorted():
    known = ", ".join(sorted(registry.registered()))
    with pytest.raises(ZooError, match=re.escape(f"unknown architecture 'gpt' in config.json; "
                                                  f"this nodezoo knows {known}.")):  # fmt: skip
        get_architecture("gpt")


def test_headline_prefers_the_first_preferred_key_present():
    entry = ZooArchitecture(
        name="x",
        model_class="torch.nn:Linear",
        evaluate="x:y",
        task="t",
        headline_metric="test/nll",
        metric_name="nll",
        higher_is_better=False,
        preferred_headlines=("test/bits_per_dim", "test/other"),
    )
    assert entry.headline({"test/nll": 1.0}) == "test/nll"
    assert entry.headline({"test/other": 1.0, "test/nll": 1.0}) == "test/other"
    assert entry.headline({"test/other": 1, "test/bits_per_dim": 2}) == "test/bits_per_dim"
    assert entry.direction == "lower is better"
    cnf = get_architecture("cnf")
    assert cnf.load_picture().__name__ == "card_picture"


def test_zoo_names_are_the_sorted_folders_with_a_config(tmp_path, monkeypatch):
    for name in ("b-model", "a-model", "no-config"):
        (tmp_path / name).mkdir()
    (tmp_path / "b-model" / "config.json").write_text("{}")
    (tmp_path / "a-model" / "config.json").write_text("{}")
    (tmp_path / "c-file").write_text("")
    (tmp_path / "no-config" / "config.json").mkdir()  # a directory, not a file
    monkeypatch.setattr(registry, "zoo_root", lambda: tmp_path)
    assert zoo_names() == ["a-model", "b-model"]


def test_a_head_missing_from_the_weights_is_refused_when_the_head_fits(folders, tmp_path):
    """Leaving the head out is allowed only when it is replaced (a different shape); weights
    that simply lack it are broken and must not leave a random head in a 'pretrained' model."""
    import shutil

    from safetensors.torch import load_file, save_file

    from nodezoo.zoo.folder import write_checksums

    folder = Path(shutil.copytree(folders / "classifier", tmp_path / "headless"))
    state = load_file(str(folder / "model.safetensors"))
    del state["head.bias"]
    save_file(state, str(folder / "model.safetensors"))
    write_checksums(folder)
    with pytest.raises(WeightsMismatchError, match=r"missing from pretrained weights .*head\.bias"):
        ImageClassifier(**ARGS, pretrained=str(folder))


def test_num_classes_equal_to_the_saved_count_keeps_the_trained_head(folders):
    from nodezoo.zoo import from_pretrained

    saved = from_pretrained(folders / "classifier")
    saved.label_names = None
    same = from_pretrained(folders / "classifier", num_classes=3)
    for key in ("head.weight", "head.bias"):
        assert torch.equal(same.state_dict()[key], saved.state_dict()[key]), key


def test_num_classes_for_a_model_without_a_classifier_head_is_refused(folders):
    with pytest.raises(ZooError, match="RNNBaseline has no classifier head to reset"):
        RNNBaseline.from_pretrained(folders / "forecaster", num_classes=5)


def test_a_hub_failure_names_the_reference(monkeypatch, tmp_path):
    from nodezoo.zoo import HubAccessError, from_pretrained
    from nodezoo.zoo import pretrained as pretrained_module

    def offline(*args, **kwargs):
        raise HubAccessError("the Hub could not be reached.")

    monkeypatch.setattr(pretrained_module, "download_folder", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HubAccessError, match=r"^no model 'acme/odenet' found; tried it as a"):
        from_pretrained("acme/odenet")


def test_a_path_like_reference_that_is_no_folder_is_named(tmp_path, monkeypatch):
    from nodezoo.zoo import from_pretrained

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZooError, match=r"^no model 'x/y/z' found; tried it as a folder"):
        from_pretrained("x/y/z")
    with pytest.raises(ZooError, match=r"^no model 'no-such-model' found; tried it as a folder"):
        from_pretrained("no-such-model")
