"""Nothing broken is loaded silently: weights are checked against the SHA-256 recorded in the
folder and for NaN/inf; save_pretrained writes readable files and a card that names the data."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodezoo.data.images import FashionMNISTDataModule
from nodezoo.zoo import CorruptWeightsError, from_pretrained
from nodezoo.zoo.folder import CONFIG_NAME, write_checksums

MODEL_CARDS = Path(__file__).resolve().parents[2] / "model_cards"
SHIPPED = sorted(p for p in MODEL_CARDS.iterdir() if (p / CONFIG_NAME).is_file())


def copy_folder(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("folder", SHIPPED, ids=lambda p: p.name)
def test_shipped_folders_record_their_weights_hash(folder):
    assert (folder / "SHA256SUMS").read_text() == (
        f"{sha256_of(folder / 'model.safetensors')}  model.safetensors\n"
    )


def test_saved_folder_records_its_weights_hash(zoo_folder):
    line = (zoo_folder / "SHA256SUMS").read_text()
    assert line == f"{sha256_of(zoo_folder / 'model.safetensors')}  model.safetensors\n"


def test_overwritten_weight_data_is_refused_with_the_cause(zoo_folder, tmp_path):
    folder = copy_folder(zoo_folder, tmp_path)
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    data[header_end:] = b"\xff" * (len(data) - header_end)  # header intact, data overwritten
    path.write_bytes(bytes(data))
    recorded = r"does not match the SHA-256 recorded in SHA256SUMS"
    with pytest.raises(CorruptWeightsError, match=recorded):
        from_pretrained(folder)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_even_with_a_matching_hash(zoo_folder, tmp_path, value):
    folder = copy_folder(zoo_folder, tmp_path)
    path = folder / "model.safetensors"
    state = load_file(str(path))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = value
    save_file(state, str(path), metadata={"format": "pt"})
    write_checksums(folder)  # a hash of broken weights: the values are still checked
    with pytest.raises(CorruptWeightsError, match=rf"NaN or inf in 1 tensor\(s\): {name}"):
        from_pretrained(folder)


def test_a_malformed_checksum_file_is_named(zoo_folder, tmp_path):
    folder = copy_folder(zoo_folder, tmp_path)
    (folder / "SHA256SUMS").write_text("not-a-hash model.safetensors\n")
    with pytest.raises(CorruptWeightsError, match="SHA256SUMS is not in sha256sum format"):
        from_pretrained(folder)


def test_folders_without_a_checksum_file_still_load(zoo_folder, tmp_path):
    folder = copy_folder(zoo_folder, tmp_path)
    (folder / "SHA256SUMS").unlink()
    from_pretrained(folder)


def test_saving_non_finite_weights_is_refused(zoo_folder, tmp_path):
    model = from_pretrained(zoo_folder)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(CorruptWeightsError, match=r"not saving .*NaN or inf"):
        model.save_pretrained(tmp_path / "broken")


def test_save_pretrained_files_are_readable_by_others(zoo_folder, tmp_path):
    old = os.umask(0o022)
    try:
        folder = from_pretrained(zoo_folder).save_pretrained(tmp_path / "shared")
    finally:
        os.umask(old)
    for file in folder.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file.name


def test_card_names_the_attached_data_module(zoo_folder, tmp_path):
    model = from_pretrained(zoo_folder)
    model.label_names = None
    model._trainer = SimpleNamespace(datamodule=FashionMNISTDataModule(data_dir=str(tmp_path)))
    folder = model.save_pretrained(tmp_path / "attached")
    card = (folder / "README.md").read_text()
    assert "trained on Fashion-MNIST" in card
    assert "nodezoo.data.images.FashionMNISTDataModule" in (folder / "recipe.yaml").read_text()
    assert from_pretrained(folder).label_names[0] == "T-shirt/top"


def test_card_without_a_recipe_says_the_data_is_not_recorded(zoo_folder, tmp_path):
    folder = from_pretrained(zoo_folder).save_pretrained(tmp_path / "bare")
    card = (folder / "README.md").read_text()
    assert "trained on unknown data" not in card
    assert "data it was trained on is not recorded" in card
