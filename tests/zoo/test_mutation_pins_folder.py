"""The folder format's readers and writers, pinned where mutation testing found them loose:
each malformed file is refused with its path and cause, SHA256SUMS is read as ``sha256sum``
writes it, config keys and overrides follow the model's signature, and re-saving a folder leaves
nothing stale. Tiny untrained models only."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

from nodezoo.models.classifier import ImageClassifier
from nodezoo.zoo import CorruptWeightsError, ZooError
from nodezoo.zoo.folder import (
    _check_finite,
    config_of,
    init_args_from_config,
    read_checksums,
    read_config,
    read_metrics,
    read_recipe,
    read_weights,
    save_folder,
)

ARGS = dict(backbone="mlp", num_classes=3, in_channels=1, image_size=8, width=4)


@pytest.fixture(scope="module")
def model() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(**ARGS)


# ------------------------------------------------------------------------------ reading files
def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"config\.json is not valid JSON: "),
        ("[1, 2]", r"config\.json must be a JSON object with an 'architecture' key"),
        ('{"backbone": "mlp"}', r"config\.json must be a JSON object with an 'architecture' key"),
        (
            '{"architecture": "image-classifier", "num_classes": 3, "label_names": ["a"]}',
            r"config\.json: 1 label_names for 3 classes; give one name per class",
        ),
        (
            '{"architecture": "image-classifier", "label_names": ["a", 2]}',
            r"config\.json: label_names must be a list of strings",
        ),
    ],
)
def test_a_malformed_config_is_refused_with_its_path(tmp_path, text, message):
    folder = write(tmp_path / "f", "config.json", text)
    with pytest.raises(ZooError, match=re.escape(str(folder)) + ".*" + message):
        read_config(folder)


def test_config_without_a_class_count_accepts_any_number_of_names(tmp_path):
    folder = write(tmp_path / "f", "config.json", '{"architecture": "x", "label_names": ["a"]}')
    assert read_config(folder)["label_names"] == ["a"]
    with pytest.raises(ZooError, match=r"has no config\.json: not a zoo folder"):
        read_config(tmp_path / "empty")


def test_metrics_and_recipe_files(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    assert read_metrics(folder) == {} and read_recipe(folder) is None
    write(folder, "metrics.json", '{"test/acc": 0.5}')
    write(folder, "recipe.yaml", "data:\n  class_path: x.Y\n")
    assert read_metrics(folder) == {"test/acc": 0.5}
    assert read_recipe(folder) == {"data": {"class_path": "x.Y"}}
    write(folder, "recipe.yaml", "")
    assert read_recipe(folder) == {}
    write(folder, "metrics.json", "{oops")
    with pytest.raises(ZooError, match=r"metrics\.json is not valid JSON"):
        read_metrics(folder)
    write(folder, "recipe.yaml", "a: [unclosed")
    with pytest.raises(ZooError, match=r"recipe\.yaml is not valid YAML"):
        read_recipe(folder)
    write(folder, "recipe.yaml", "- a list\n")
    with pytest.raises(ZooError, match=r"recipe\.yaml is not a recipe \(a YAML mapping\)"):
        read_recipe(folder)


# ------------------------------------------------------------------------------ checksums
def test_checksums_are_read_as_sha256sum_writes_them(tmp_path):
    digest = "ab" * 32
    folder = write(
        tmp_path / "f",
        "SHA256SUMS",
        f"\n{digest}  model.safetensors\n{'cd' * 32}  *other.bin\n   \n",  # '*': binary mode
    )
    assert read_checksums(folder) == {"model.safetensors": digest, "other.bin": "cd" * 32}


@pytest.mark.parametrize(
    "line",
    [
        "AB" * 32 + "  model.safetensors",  # sha256sum writes lower case
        "ab" * 31 + "  model.safetensors",  # 62 digits
        "ab" * 33 + "  model.safetensors",
        "ab" * 32 + "  ",  # no file name
        "ab" * 32 + " model.safetensors",  # one space: not the format
        "zz" * 32 + "  model.safetensors",
    ],
)
def test_a_malformed_checksum_line_is_named(tmp_path, line):
    folder = write(tmp_path / "f", "SHA256SUMS", line + "\n")
    with pytest.raises(CorruptWeightsError, match="not in sha256sum format") as err:
        read_checksums(folder)
    assert repr(line.strip()) in str(err.value)


def test_weights_hash_and_readability(model, tmp_path):
    folder = save_folder(model, tmp_path / "f")
    weights = folder / "model.safetensors"
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert read_checksums(folder) == {"model.safetensors": expected}
    state = read_weights(folder)
    assert state.keys() == model.state_dict().keys()
    (folder / "SHA256SUMS").write_text(f"{'0' * 64}  model.safetensors\n")
    with pytest.raises(CorruptWeightsError) as err:
        read_weights(folder)
    assert f"(recorded {'0' * 12}..., the file has {expected[:12]}...)" in str(err.value)
    (folder / "SHA256SUMS").unlink()
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CorruptWeightsError, match="is not a readable safetensors file"):
        read_weights(folder)
    weights.unlink()
    with pytest.raises(ZooError, match=r"has no model\.safetensors"):
        read_weights(folder)


def test_non_finite_tensors_are_listed_up_to_eight():
    state = {f"w{i}": torch.tensor([float("nan")]) for i in range(10)}
    state["ok"] = torch.ones(2)
    state["steps"] = torch.tensor([3])  # integers cannot be NaN
    with pytest.raises(CorruptWeightsError) as err:
        _check_finite(state, Path("x.safetensors"), "loading")
    message = str(err.value)
    shown = ", ".join(sorted(f"w{i}" for i in range(10))[:8])
    assert f"not loading x.safetensors: NaN or inf in 10 tensor(s): {shown} (+2 more)." in message
    assert message.endswith(
        "use a checkpoint from before the run diverged, or download the folder again."
    )
    _check_finite({"ok": torch.ones(2), "inf_int": torch.tensor([1])}, Path("y"), "saving")
    with pytest.raises(CorruptWeightsError, match=r"in 1 tensor\(s\): a\. These"):
        _check_finite({"a": torch.tensor([float("-inf")])}, Path("y"), "saving")


# ------------------------------------------------------------------------------ config <-> args
def test_unknown_config_keys_list_what_the_class_takes(model):
    config = {**config_of(model), "dropout": 0.5, "zeta": 1}
    with pytest.raises(ZooError) as err:
        init_args_from_config(ImageClassifier, config)
    message = str(err.value)
    assert "config.json has keys ['dropout', 'zeta'] that ImageClassifier does not take" in message
    assert "(it takes backbone, num_classes, in_channels," in message


def test_args_missing_from_an_older_config_take_the_defaults(model):
    config = {k: v for k, v in config_of(model).items() if k not in ("lr", "label_names")}
    args = init_args_from_config(ImageClassifier, config)
    assert "lr" not in args and "architecture" not in args and args["pretrained"] is None
    assert ImageClassifier(**args).hparams.lr == ImageClassifier(**ARGS).hparams.lr


def test_overrides_replace_values_and_merge_dicts_only():
    config = config_of(ImageClassifier("odenet", width=4, image_size=12))
    args = init_args_from_config(ImageClassifier, config, {"lr": 0.5, "solver": {"rtol": 0.25}})
    assert args["lr"] == 0.5
    assert args["solver"] == {**config["solver"], "rtol": 0.25}
    assert init_args_from_config(ImageClassifier, config, {"solver": None})["solver"] is None
    with pytest.raises(ZooError) as err:
        init_args_from_config(ImageClassifier, config, {"bogus": 1})
    message = str(err.value)
    assert message.startswith("cannot override 'bogus'; overridable init args: backbone, ")
    assert "pretrained" not in message and "num_classes" not in message
    assert "use num_classes=" not in message


class NoPretrained(torch.nn.Module):
    def __init__(self, width: int = 2, *layers, **extra):
        super().__init__()


def test_classes_without_a_pretrained_arg_get_none_added():
    assert init_args_from_config(NoPretrained, {"architecture": "x", "width": 3}) == {"width": 3}
    with pytest.raises(ZooError, match=r"\['layers'\]"):  # *args/**kwargs are no config keys
        init_args_from_config(NoPretrained, {"layers": [1]})


def test_config_needs_every_init_arg_in_hparams_and_plain_data(model):
    broken = ImageClassifier(**ARGS)
    del broken.hparams["width"]
    with pytest.raises(ZooError, match=r"did not record init arg 'width' in hparams"):
        config_of(broken)
    odd = ImageClassifier(**ARGS)
    odd.hparams["lr"] = float("nan")  # not JSON (allow_nan=False)
    odd.hparams["width"] = {1, 2}
    with pytest.raises(ZooError, match=r"init args \['width', 'lr'\] of ImageClassifier"):
        config_of(odd)
    assert config_of(model)["architecture"] == "image-classifier"
    assert "label_names" not in config_of(model)
    assert config_of(model, label_names=("a", "b", "c"))["label_names"] == ["a", "b", "c"]


# ------------------------------------------------------------------------------ saving
def test_resaving_removes_what_would_describe_other_weights(model, tmp_path):
    drawn = []

    def draw(path):
        drawn.append(path)
        path.write_bytes(b"png")

    folder = save_folder(
        model, tmp_path / "f", recipe={"data": {"class_path": "x.Y"}}, draw_picture=draw
    )
    assert drawn == [folder / "card.png"]
    assert json.loads((folder / "config.json").read_text()) == config_of(model)
    assert (folder / "recipe.yaml").read_text() == "data:\n  class_path: x.Y\n"
    assert "](card.png)" in (folder / "README.md").read_text()
    save_folder(model, folder, metrics={"model/params": 1, "test/acc": 0.5})
    assert not (folder / "recipe.yaml").exists() and not (folder / "card.png").exists()
    assert "](card.png)" not in (folder / "README.md").read_text()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics == {"model/params": 1, "test/acc": 0.5}  # given params are kept
    assert (folder / "metrics.json").read_text().endswith("\n")
    assert (folder / "config.json").read_text().startswith('{\n  "architecture"')


def test_recipe_given_as_a_file_and_the_default_name(model, tmp_path):
    recipe = tmp_path / "recipe-in.yaml"
    recipe.write_text("# my recipe\ndata:\n  class_path: nodezoo.data.MNISTDataModule\n")
    folder = save_folder(model, tmp_path / "my-name", recipe=recipe)
    assert (folder / "recipe.yaml").read_text() == recipe.read_text()  # as written, comments too
    card = (folder / "README.md").read_text()
    assert "\n# my-name\n" in card and "trained on MNIST." in card
    params = sum(p.numel() for p in model.parameters())
    assert json.loads((folder / "metrics.json").read_text()) == {"model/params": params}
    with pytest.raises(ZooError, match=r"recipe '.*missing\.yaml' is not a file"):
        save_folder(model, tmp_path / "x", recipe=tmp_path / "missing.yaml")


def test_reading_non_finite_weights_says_it_did_not_load_them(model, tmp_path):
    from safetensors.torch import save_file

    from nodezoo.zoo.folder import write_checksums

    folder = save_folder(model, tmp_path / "f")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.bias"][0] = float("nan")
    save_file(state, str(folder / "model.safetensors"))
    write_checksums(folder)
    with pytest.raises(CorruptWeightsError) as err:
        read_weights(folder)
    assert str(err.value).startswith(f"not loading {folder / 'model.safetensors'}: NaN or inf")
