"""Recompute a zoo model's published metrics from its weights (``nodezoo evaluate``).

Like timm's validate.py and torchvision's weight tests: the card's numbers must be reproducible
from the folder alone. The data set comes from the folder's recipe (its ``data`` section); each
architecture registers one evaluation function ``fn(model, datamodule, *, limit_batches)``;
``--seed`` reaches the data module (it seeds freshly generated test data such as spirals).
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .errors import ZooError
from .pretrained import RECIPE_NAME, from_pretrained, read_config, resolve_ref
from .registry import get_architecture

__all__ = ["build_datamodule", "evaluate", "evaluate_image_classifier", "recipe_of"]

# Recipes are downloaded files: only classes from this package may be built from them.
TRUSTED_PREFIX = "nodezoo."


def build_datamodule(recipe: Mapping[str, Any], **overrides: Any):
    """The recipe's data module, with ``overrides`` (None values ignored) laid over its args."""
    data = recipe.get("data")
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise ZooError("the recipe has no data.class_path, so the test data is unknown.")
    class_path = str(data["class_path"])
    if not class_path.startswith(TRUSTED_PREFIX):
        raise ZooError(
            f"the recipe's data class {class_path!r} is not a nodezoo class; refusing to import "
            "code named by a downloaded file."
        )
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ZooError(f"the recipe's data class {class_path!r} does not exist.") from None
    args = dict(data.get("init_args") or {})
    args.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**args)


def _ode_blocks(model: nn.Module) -> list[nn.Module]:
    from ..nn import ODEBlock

    return [m for m in model.modules() if isinstance(m, ODEBlock)]


@torch.no_grad()
def evaluate_image_classifier(
    model: nn.Module, datamodule, *, limit_batches: int | None = None
) -> dict[str, Any]:
    """Test accuracy, mean cross-entropy, mean NFE per forward pass (per batch) and params.

    Accuracy is computed by a fresh copy of the model's own test metric, so it is defined exactly
    as the number the training run logged (``test/acc``)."""
    blocks = _ode_blocks(model)
    datamodule.prepare_data()
    datamodule.setup("test")
    model.eval()
    accuracy = copy.deepcopy(model.test_acc).cpu()
    accuracy.reset()
    loss_sum, count, nfe_sum, batches = 0.0, 0, 0, 0
    for x, y in datamodule.test_dataloader():
        if limit_batches is not None and batches >= limit_batches:
            break
        logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        accuracy.update(logits, y)
        count += y.numel()
        nfe_sum += sum(b.nfe_forward for b in blocks)
        batches += 1
    if count == 0:
        raise ZooError("the test set is empty (or limit_batches=0); nothing to evaluate.")
    metrics = {
        "test/acc": accuracy.compute().item(),
        "test/loss": loss_sum / count,
        "test/samples": count,
        "model/params": sum(p.numel() for p in model.parameters()),
    }
    if blocks:
        metrics["test/nfe_forward"] = nfe_sum / batches
    return metrics


def _read_recipe(folder: Path) -> dict[str, Any]:
    path = folder / RECIPE_NAME
    if not path.is_file():
        raise ZooError(
            f"{folder} has no {RECIPE_NAME}; evaluate needs the recipe's data section to know "
            "the test set."
        )
    return yaml.safe_load(path.read_text()) or {}


def recipe_of(ref: str | os.PathLike, revision: str | None = None) -> dict[str, Any]:
    """The recipe (as a dict) that trained zoo model ``ref``."""
    return _read_recipe(resolve_ref(ref, revision))


def evaluate(
    ref: str | os.PathLike | None = None,
    *,
    model: nn.Module | None = None,
    recipe: Mapping[str, Any] | None = None,
    revision: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    limit_batches: int | None = None,
) -> dict[str, Any]:
    """Recompute the test metrics of zoo model ``ref`` (name, folder or repo id), or of a given
    ``model`` with a ``recipe``. ``seed``/``data_dir``/``batch_size`` override the recipe's data
    args (None keeps the recipe's)."""
    if model is None:
        if ref is None:
            raise ZooError("evaluate needs a zoo reference or a model.")
        folder = resolve_ref(ref, revision)
        model = from_pretrained(folder)
        recipe = recipe if recipe is not None else _read_recipe(folder)
        architecture = read_config(folder)["architecture"]
    else:
        from .registry import architecture_for_class

        architecture = architecture_for_class(type(model)).name
        if recipe is None:
            raise ZooError("evaluate(model=...) needs the recipe that names the data.")
    entry = get_architecture(architecture)
    torch.manual_seed(0 if seed is None else seed)
    datamodule = build_datamodule(
        recipe, data_dir=data_dir, batch_size=batch_size, num_workers=0, seed=seed
    )
    return entry.load_evaluate()(model, datamodule, limit_batches=limit_batches)
