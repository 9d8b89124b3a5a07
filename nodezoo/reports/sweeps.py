"""Measurements ``nodezoo compare`` makes itself: the paper's Figure 3a/b and its memory claim.

- ``tolerance_sweep``: re-evaluate trained ODE models (checkpoints, zoo folders) on the test set
  (or its first batches) at several solver tolerances (rtol = atol), setting each ``ODEBlock``'s
  solver: test accuracy and NFE per forward pass against tolerance.
- ``memory_sweep``: one training step of a small ODE-Net with each gradient mode at several
  tolerances, and of ResNet/RevNet at several depths, on a random batch, measuring the bytes
  autograd saves for backward with the same meter as ``ResourceMonitor``. Seconds on a CPU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..callbacks import SavedTensorMeter
from ..models.classifier import ImageClassifier
from ..runs import (
    RUN_CONFIG_NAME,
    import_model_class,
    model_class_path,
    model_from_checkpoint,
    ode_blocks,
    read_checkpoint,
    read_run_config,
)
from ..zoo.errors import ZooError
from ..zoo.evaluation import evaluate
from ..zoo.folder import RECIPE_NAME, read_recipe
from ..zoo.pretrained import from_pretrained
from .sources import ReportError, RunRecord

__all__ = [
    "GRADIENTS",
    "load_model_and_recipe",
    "memory_sweep",
    "set_tolerance",
    "tolerance_sweep",
]

GRADIENTS = ("backprop", "adjoint", "checkpoint")
DEPTH_BACKBONES = ("resnet", "revnet")
SWEEP_METRICS = ("test/acc", "test/nll", "test/nfe_forward", "test/loss", "test/samples")
# The model class of a checkpoint whose run recorded none (runs made with a plain Trainer).
DEFAULT_MODEL_CLASS = "nodezoo.models.classifier.ImageClassifier"


def _checkpoint_model(record: RunRecord, recipe_path: Path | None) -> tuple[nn.Module, dict]:
    path = recipe_path or record.source / RUN_CONFIG_NAME
    if not path.is_file():
        raise ReportError(
            f"{record.checkpoint}: no {RUN_CONFIG_NAME} in {record.source} names its test data; "
            "pass --recipe <the recipe it was trained with>."
        )
    recipe = read_run_config(path)
    checkpoint = read_checkpoint(record.checkpoint)
    cls = import_model_class(model_class_path(checkpoint, recipe) or DEFAULT_MODEL_CLASS)
    return model_from_checkpoint(checkpoint, cls), recipe


def load_model_and_recipe(
    record: RunRecord, recipe_path: Path | None = None
) -> tuple[nn.Module, dict] | None:
    """The trained model behind ``record`` and the recipe naming its test data; None when the
    record carries no weights (a bare run directory or W&B run)."""
    if record.checkpoint is not None:
        return _checkpoint_model(record, recipe_path)
    if record.zoo_folder is not None:
        recipe = read_run_config(recipe_path) if recipe_path else read_recipe(record.zoo_folder)
        if recipe is None:
            raise ReportError(f"{record.zoo_folder} has no {RECIPE_NAME}; pass --recipe.")
        return from_pretrained(record.zoo_folder), recipe
    return None


def set_tolerance(model: nn.Module, tolerance: float) -> None:
    """rtol = atol = ``tolerance`` in every ODE block, the rest of each solver kept (a model
    saved afterwards records it: its blocks are its solver's one source of truth)."""
    for block in ode_blocks(model):
        block.solver = dataclasses.replace(block.solver, rtol=tolerance, atol=tolerance)


def tolerance_sweep(
    records: Sequence[RunRecord],
    tolerances: Sequence[float],
    *,
    limit_batches: int | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
    recipe_path: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Rows ``{name, model, tolerance, test/acc, test/nfe_forward, test/loss, test/samples,
    test_batches}`` for each ODE model with weights, on the whole test set unless
    ``limit_batches`` (``test_batches`` is then that limit, else ``"all"``); other records are
    skipped (and said so through ``log``)."""
    test_batches = "all" if limit_batches is None else limit_batches
    on = "the whole test set"
    if limit_batches is not None:
        on = f"the first {limit_batches} test batch{'es' if limit_batches != 1 else ''}"
    rows = []
    for record in records:
        loaded = load_model_and_recipe(record, recipe_path)
        if loaded is None:
            continue
        model, recipe = loaded
        if not ode_blocks(model):
            log(f"tolerance sweep: {record.name} has no ODE block; skipped.")
            continue
        log(f"tolerance sweep: {record.name} at {len(tolerances)} tolerance(s) on {on}")
        for tolerance in tolerances:
            set_tolerance(model, tolerance)
            try:
                metrics = evaluate(
                    model=model,
                    recipe=recipe,
                    data_dir=data_dir,
                    batch_size=batch_size,
                    limit_batches=limit_batches,
                )
            except ZooError as err:
                log(f"tolerance sweep: {record.name} not evaluated: {err}")
                break
            rows.append(
                {
                    "name": record.name,
                    "model": record.model,
                    "tolerance": tolerance,
                    **{k: metrics.get(k) for k in SWEEP_METRICS},
                    "test_batches": test_batches,
                }
            )
    return rows


def _one_training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """Saved-for-backward bytes of one forward pass (parameters excluded), then backward."""
    exclude = {p.untyped_storage().data_ptr() for p in model.parameters()}
    model.train()
    with SavedTensorMeter(exclude) as meter:
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    blocks = ode_blocks(model)
    return {
        "nfe_forward": sum(b.nfe_forward for b in blocks) if blocks else None,
        "nfe_backward": sum(b.nfe_backward for b in blocks) if blocks else None,
        "saved_for_backward_mb": meter.bytes / 2**20,
    }


def memory_sweep(
    tolerances: Sequence[float],
    depths: Sequence[int] = (1, 2, 4, 8),
    *,
    batch_size: int = 16,
    width: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{model, gradient, tolerance, depth, nfe_forward, nfe_backward,
    saved_for_backward_mb}``: ODE-Net per gradient mode and tolerance (backprop is the RK-Net),
    ResNet/RevNet per depth. Same random batch and, per architecture, the same weights."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (batch_size,), generator=generator)

    def build(**kwargs) -> nn.Module:
        torch.manual_seed(seed)
        return ImageClassifier(width=width, lr_schedule="constant", **kwargs)

    rows = []
    for gradient in GRADIENTS:
        for tolerance in tolerances:
            solver = {"method": "dopri5", "rtol": tolerance, "atol": tolerance}
            model = build(backbone="odenet", solver={**solver, "gradient": gradient})
            row = {"model": "odenet", "gradient": gradient, "tolerance": tolerance, "depth": None}
            rows.append({**row, **_one_training_step(model, x, y)})
    for backbone in DEPTH_BACKBONES:
        for depth in depths:
            model = build(backbone=backbone, depth=depth)
            gradient = "reversible" if backbone == "revnet" else "backprop"
            row = {"model": backbone, "gradient": gradient, "tolerance": None, "depth": depth}
            rows.append({**row, **_one_training_step(model, x, y)})
    return rows
