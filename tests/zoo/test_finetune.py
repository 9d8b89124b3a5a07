"""The fine-tuning recipe runs through the ``nodezoo`` CLI with ``pretrained`` pointing at a zoo
folder, and the run starts from that folder's weights (lr 0 keeps them, so they can be compared)."""

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
    config = json.loads((zoo_folder / "config.json").read_text())
    run_dir = tmp_path / "run"
    overrides = {
        "model.init_args.pretrained": str(zoo_folder),
        "model.init_args.width": str(config["width"]),
        "model.init_args.solver": json.dumps(config["solver"]),
        "model.init_args.mean": "null",
        "model.init_args.std": "null",
        "model.init_args.lr": "0.0",
        "data.init_args.data_dir": str(data_dir),
        "data.init_args.batch_size": "16",
        "data.init_args.val_size": "16",
        "data.init_args.num_workers": "0",
        "trainer.default_root_dir": str(run_dir),
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2",
        "trainer.limit_val_batches": "1",
        "trainer.logger": "false",
    }
    args = [f"--{k}={v}" for k, v in overrides.items()]
    config_path = FINETUNE / f"{recipe}.yaml"
    cmd = [sys.executable, "-m", "nodezoo.cli", "fit", "--config", str(config_path), *args]
    proc = subprocess.run(cmd, env=clean_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["hyper_parameters"]["pretrained"] == str(zoo_folder)
    trained = checkpoint["state_dict"]
    for key, value in load_file(str(zoo_folder / "model.safetensors")).items():
        assert torch.equal(trained[key], value), key
