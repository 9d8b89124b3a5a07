"""The fine-tuning recipes run through the ``nodezoo`` CLI with ``pretrained`` pointing at a zoo
folder, and the run starts from that folder's weights (lr 0 keeps them, so they can be compared);
on a user's own image folders, the fine-tuned model publishes with their class names."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FINETUNE = Path(__file__).resolve().parents[2] / "recipes" / "finetune"


def fit_overrides(zoo_folder: Path, run_dir: Path, **extra: str) -> list[str]:
    """Command-line overrides: the tiny zoo model's geometry, lr 0, two steps, no logger."""
    config = json.loads((zoo_folder / "config.json").read_text())
    overrides = {
        "model.init_args.pretrained": str(zoo_folder),
        "model.init_args.width": str(config["width"]),
        "model.init_args.solver": json.dumps(config["solver"]),
        "model.init_args.mean": "null",
        "model.init_args.std": "null",
        "model.init_args.lr": "0.0",
        "data.init_args.batch_size": "16",
        "data.init_args.num_workers": "0",
        "trainer.default_root_dir": str(run_dir),
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2",
        "trainer.limit_val_batches": "1",
        "trainer.logger": "false",
        **extra,
    }
    return [f"--{k}={v}" for k, v in overrides.items()]


def nodezoo(*args: str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nodezoo.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe", ["odenet_fashion_mnist_to_mnist", "odenet_fashion_mnist_to_digits"]
)
def test_finetune_recipe_starts_from_pretrained_weights(
    recipe, zoo_folder, tiny_fashion_dir, tmp_path, clean_env
):
    data_dir = tmp_path / "data"
    if recipe.endswith("mnist"):
        raw = data_dir / "MNIST" / "raw"  # MNIST's layout, filled with tiny IDX files
        raw.mkdir(parents=True)
        for gz in (tiny_fashion_dir / "FashionMNIST" / "raw").glob("*.gz"):
            shutil.copy(gz, raw / gz.name)
    else:
        pytest.importorskip("sklearn")  # the digits ship with scikit-learn (a dev dependency)
    run_dir = tmp_path / "run"
    args = fit_overrides(zoo_folder, run_dir, **{
        "data.init_args.data_dir": str(data_dir), "data.init_args.val_size": "16"})  # fmt: skip
    proc = nodezoo("fit", "--config", str(FINETUNE / f"{recipe}.yaml"), *args, env=clean_env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["hyper_parameters"]["pretrained"] == str(zoo_folder)
    # digits are not clothes: the recipes start a fresh head and load everything else
    assert checkpoint["hyper_parameters"]["pretrained_head"] is False
    trained = checkpoint["state_dict"]
    for key, value in load_file(str(zoo_folder / "model.safetensors")).items():
        assert torch.equal(trained[key], value) != key.startswith("head."), key


@pytest.mark.slow
def test_finetune_on_image_folders_publishes_their_classes(zoo_folder, tmp_path, clean_env):
    from PIL import Image

    data_dir = tmp_path / "my_images"
    for split, n in (("train", 6), ("test", 2)):
        for level, name in enumerate(("ankle", "bag", "coat")):
            folder = data_dir / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (36, 30), (60 * level + i,) * 3).save(folder / f"{i}.png")
    recipe = str(FINETUNE / "odenet_fashion_mnist_to_folder.yaml")
    run_dir = tmp_path / "run"
    data_args = {"data.init_args.data_dir": str(data_dir), "data.init_args.val_size": "0.25"}

    wrong = nodezoo("fit", "--config", recipe, *fit_overrides(zoo_folder, run_dir, **data_args),
                    env=clean_env)  # fmt: skip
    assert wrong.returncode != 0  # the recipe's 10 classes, the folders' 3
    assert "num_classes=10 but ImageFolderDataModule has num_classes=3" in wrong.stderr

    args = fit_overrides(zoo_folder, run_dir, **data_args, **{"model.init_args.num_classes": "3"})
    proc = nodezoo("fit", "--config", recipe, *args, env=clean_env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    trained = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    pretrained = load_file(str(zoo_folder / "model.safetensors"))
    assert trained["head.weight"].shape[0] == 3 != pretrained["head.weight"].shape[0]
    body = [key for key in pretrained if not key.startswith("head.")]
    assert body and all(torch.equal(trained[key], pretrained[key]) for key in body)

    out = tmp_path / "my-model"
    proc = nodezoo("publish", str(checkpoint), "--out", str(out), env=clean_env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "config.json").read_text())["label_names"] == ["ankle", "bag", "coat"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0  # measured on test/'s six images
    card = (out / "README.md").read_text()
    assert f"trained on the images in `{data_dir}` (one folder per class)" in card
    assert "`ankle`, `bag`, `coat`" in card
