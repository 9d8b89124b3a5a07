"""from_pretrained / save_pretrained: strictness, round trips, no pickle, fine-tuning heads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodezoo.models.classifier import ImageClassifier
from nodezoo.zoo import (
    WeightsMismatchError,
    ZooError,
    from_pretrained,
    list_models,
    registry,
)
from nodezoo.zoo.folder import config_of, write_checksums

REPO_ROOT = Path(__file__).resolve().parents[2]


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def copy_folder(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_reload_gives_bit_identical_outputs(trained_run, zoo_folder):
    original = trained_run["model"].eval()
    reloaded = ImageClassifier.from_pretrained(zoo_folder)
    assert not reloaded.training
    x = images()
    with torch.no_grad():
        assert torch.equal(original(x), reloaded(x))


def test_config_round_trips_every_init_arg(trained_run, zoo_folder):
    config = json.loads((zoo_folder / "config.json").read_text())
    assert config["architecture"] == "image-classifier"
    assert config["pretrained"] is None
    for name, value in trained_run["recipe"]["model"]["init_args"].items():
        if name != "solver":
            assert config[name] == value, name
    # the solver is stored fully resolved, so defaults changing later cannot change the model
    assert config["solver"]["rtol"] == 1e-2 and config["solver"]["backend"] == "native"
    assert config_of(from_pretrained(zoo_folder)) == config


def test_loading_never_unpickles(zoo_folder, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be called on zoo files")

    monkeypatch.setattr(torch, "load", refuse)
    from_pretrained(zoo_folder)


def edit_weights(folder: Path, edit) -> None:
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))
    write_checksums(folder)  # a consistent hand edit: the key/shape checks are under test


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("head.bias"), "missing from weights in .*head.bias"),
        (lambda s: s.update(extra=torch.zeros(2)), "not in the model: extra"),
        (lambda s: s.update({"head.bias": torch.zeros(7)}), r"head.bias saved \(7,\) vs model"),
    ],
    ids=["missing", "unexpected", "shape"],
)
def test_weights_that_do_not_fit_are_errors(zoo_folder, tmp_path, edit, message):
    folder = copy_folder(zoo_folder, tmp_path)
    edit_weights(folder, edit)
    with pytest.raises(WeightsMismatchError, match=message):
        from_pretrained(folder)


def test_strict_false_warns_on_missing_keys_but_still_refuses_shapes(zoo_folder, tmp_path):
    folder = copy_folder(zoo_folder, tmp_path)
    edit_weights(folder, lambda s: s.pop("head.bias"))
    with pytest.warns(UserWarning, match="head.bias"):
        from_pretrained(folder, strict=False)
    edit_weights(folder, lambda s: s.update({"head.weight": torch.zeros(3, 3)}))
    with pytest.raises(WeightsMismatchError, match="shape mismatch"):
        from_pretrained(folder, strict=False)


def test_unknown_config_key_is_an_error(zoo_folder, tmp_path):
    folder = copy_folder(zoo_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["dropout"] = 0.5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZooError, match="'dropout'"):
        from_pretrained(folder)


def test_num_classes_keeps_features_and_resets_head(zoo_folder):
    base = from_pretrained(zoo_folder)
    tuned = from_pretrained(zoo_folder, num_classes=3)
    x = images()
    with torch.no_grad():
        assert torch.equal(base.forward_features(x), tuned.forward_features(x))
        assert tuned(x).shape == (4, 3)
    assert tuned.hparams.num_classes == 3
    assert config_of(tuned)["num_classes"] == 3


def test_overrides_merge_solver_and_refuse_weight_args(zoo_folder):
    model = from_pretrained(zoo_folder, solver={"rtol": 1e-4})
    assert model.solver.rtol == 1e-4 and model.solver.atol == 1e-2  # the rest is the saved one
    with pytest.raises(ZooError, match="cannot override 'dropout'"):
        from_pretrained(zoo_folder, dropout=0.1)


def test_override_of_num_classes_through_kwargs_is_refused(zoo_folder):
    from nodezoo.zoo.folder import init_args_from_config

    config = json.loads((zoo_folder / "config.json").read_text())
    with pytest.raises(ZooError, match="use num_classes="):
        init_args_from_config(ImageClassifier, config, {"num_classes": 3})
    with pytest.raises(ZooError, match="cannot override 'pretrained'"):
        init_args_from_config(ImageClassifier, config, {"pretrained": "x"})


@pytest.fixture
def zoo_with_folder(zoo_folder, tmp_path, monkeypatch) -> Path:
    """The shipped zoo replaced by a folder holding the tiny model as 'tiny-zoo'."""
    root = tmp_path / "model_cards"
    shutil.copytree(zoo_folder, root / "tiny-zoo")
    monkeypatch.setattr(registry, "zoo_root", lambda: root)
    return root


def test_zoo_names_and_list_models(zoo_with_folder, zoo_folder):
    model = from_pretrained("tiny-zoo")
    assert isinstance(model, ImageClassifier)
    (row,) = list_models()
    metrics = json.loads((zoo_folder / "metrics.json").read_text())
    assert row["name"] == "tiny-zoo" and row["value"] == metrics["test/acc"]
    assert row["params"] == sum(p.numel() for p in model.parameters())
    with pytest.raises(ZooError, match="known: tiny-zoo"):
        from_pretrained("no-such-model")


def test_torch_hub_load_local(zoo_with_folder, zoo_folder):
    by_name = torch.hub.load(str(REPO_ROOT), "tiny_zoo", source="local")
    generic = torch.hub.load(str(REPO_ROOT), "pretrained", str(zoo_folder), source="local")
    x = images()
    with torch.no_grad():
        assert torch.equal(by_name(x), generic(x))


def test_pretrained_init_arg_loads_weights(zoo_folder):
    config = json.loads((zoo_folder / "config.json").read_text())
    args = {
        k: v for k, v in config.items() if k not in ("architecture", "label_names", "pretrained")
    }
    saved = load_file(str(zoo_folder / "model.safetensors"))
    same = ImageClassifier(**args, pretrained=str(zoo_folder))
    assert all(torch.equal(same.state_dict()[k], v) for k, v in saved.items())
    # a new label set: all but the head comes from the folder
    other = ImageClassifier(**{**args, "num_classes": 5}, pretrained=str(zoo_folder))
    state = other.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if not k.startswith("head."))
    assert state["head.weight"].shape == (5, 8)
    # the same number of classes meaning other things: a fresh head, the rest from the folder
    torch.manual_seed(0)
    fresh = ImageClassifier(**args, pretrained=str(zoo_folder), pretrained_head=False)
    torch.manual_seed(0)
    untrained = ImageClassifier(**args)
    state = fresh.state_dict()
    for key, value in saved.items():
        if key.startswith("head."):
            assert torch.equal(state[key], untrained.state_dict()[key]), key
            assert not torch.equal(state[key], value), key
        else:
            assert torch.equal(state[key], value), key
    # the source is not a weights loop: the folder written from it says pretrained: null, and
    # nothing of how the head started
    assert config_of(other)["pretrained"] is None
    assert "pretrained_head" not in config_of(fresh)
    with pytest.raises(WeightsMismatchError, match="shape mismatch"):
        ImageClassifier(**{**args, "width": 16}, pretrained=str(zoo_folder))
