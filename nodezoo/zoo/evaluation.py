"""Recompute a zoo model's published metrics from its weights (``nodezoo evaluate``).

Like timm's validate.py and torchvision's weight tests: the card's numbers must be reproducible
from the folder alone. The data set comes from the folder's recipe (its ``data`` section); each
architecture registers one evaluation function ``fn(model, datamodule, *, limit_batches)``;
``--seed`` reaches the data module as the init arg its class names in ``TEST_SEED_ARG`` (default
``seed``: it seeds freshly generated test data such as spirals; the density modules take it as the
test sample's or the dequantisation noise's seed, keeping the training data). A folder whose
metrics.json records ``test/seed`` is evaluated with that seed unless told otherwise, so
``nodezoo evaluate NAME`` reproduces the card as it stands.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.spirals import Spirals, make_spirals, spiral_batch
from ..models.cnf import evaluate_nll
from ..nn.recurrent import masked_rmse
from ..progress import progress
from ..runs import (
    MODEL_PARAMS,
    TEST_NFE_FORWARD,
    count_parameters,
    import_nodezoo_class,
    ode_blocks,
)
from ..solvers import SolverConfig, SolverConfigError
from .errors import ZooError
from .folder import ARCHITECTURE_KEY, RECIPE_NAME, read_config, read_metrics, read_recipe
from .pretrained import from_pretrained, resolve_ref
from .registry import architecture_for_class, get_architecture

__all__ = [
    "SPIRALS_N_OBS",
    "build_datamodule",
    "datamodule_class",
    "evaluate",
    "evaluate_cnf",
    "evaluate_image_classifier",
    "evaluate_spirals",
    "forecast_rmse",
    "recipe_of",
    "test_datamodule",
]

# The paper's Table 2 columns: predictive RMSE with 30, 50 and 100 observed points.
SPIRALS_N_OBS = (30, 50, 100)

EMPTY_TEST_SET = (
    "the test set is empty (or limit_batches=0); nothing to evaluate. Check the recipe's data "
    "(its data_dir, or --data-dir) or give limit_batches >= 1."
)


def datamodule_class(recipe: Mapping[str, Any]) -> type:
    """The data module class the recipe names (only nodezoo classes)."""
    data = recipe.get("data")
    if not isinstance(data, Mapping) or "class_path" not in data:
        raise ZooError(
            "the recipe has no data.class_path, so the test data is unknown. Give it the data "
            "section it was trained with (class_path and init_args, as in recipes/)."
        )
    return import_nodezoo_class(str(data["class_path"]), "the recipe's data class", ZooError)


def build_datamodule(recipe: Mapping[str, Any], **overrides: Any):
    """The recipe's data module, with ``overrides`` (None values ignored) laid over its args."""
    cls = datamodule_class(recipe)
    args = dict(recipe["data"].get("init_args") or {})
    args.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**args)


def test_datamodule(
    recipe: Mapping[str, Any],
    *,
    seed: int | None = None,
    data_dir: str | None = None,
    batch_size: int | None = None,
):
    """The recipe's data module for testing: ``seed`` goes to the init arg the class names in
    ``TEST_SEED_ARG`` (default ``seed``); no worker processes."""
    seed_arg = getattr(datamodule_class(recipe), "TEST_SEED_ARG", "seed")
    return build_datamodule(
        recipe, data_dir=data_dir, batch_size=batch_size, num_workers=0, **{seed_arg: seed}
    )


@torch.no_grad()
def evaluate_image_classifier(
    model: nn.Module, datamodule, *, limit_batches: int | None = None
) -> dict[str, Any]:
    """Test accuracy, mean cross-entropy, mean NFE per forward pass (per batch) and params.

    Accuracy is computed by a fresh copy of the model's own test metric, so it is defined exactly
    as the number the training run logged (``test/acc``)."""
    blocks = ode_blocks(model)
    datamodule.prepare_data()
    datamodule.setup("test")
    model.eval()
    accuracy = copy.deepcopy(model.test_acc).cpu()
    accuracy.reset()
    loss_sum, count, nfe_sum, batches = 0.0, 0, 0, 0
    loader = datamodule.test_dataloader()
    total = len(loader) if limit_batches is None else min(len(loader), limit_batches)
    for x, y in progress(loader, total=total, desc="evaluating on the test set"):
        if limit_batches is not None and batches >= limit_batches:
            break
        logits = model(x)
        loss_sum += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
        accuracy.update(logits, y)
        count += y.numel()
        nfe_sum += sum(b.nfe_forward for b in blocks)
        batches += 1
    if count == 0:
        raise ZooError(EMPTY_TEST_SET)
    metrics = {
        "test/acc": accuracy.compute().item(),
        "test/loss": loss_sum / count,
        "test/samples": count,
        MODEL_PARAMS: count_parameters(model),
    }
    if blocks:
        metrics[TEST_NFE_FORWARD] = nfe_sum / batches
    return metrics


@torch.no_grad()
def forecast_rmse(model: nn.Module, spirals) -> float:
    """Predictive RMSE of ``model`` on ``spirals`` (a :class:`nodezoo.data.spirals.Spirals`):
    the predicted mean (Latent ODE: decoded posterior mean; RNN: its mean fed back) against the
    true trajectory at the points after the observation window, all series in one batch.

    This is the one definition of the Table 2 number: ``benchmarks/spirals_table2.py`` and
    ``evaluate_spirals`` both call it. One batch matters: an adaptive solver's steps depend on
    the whole batch, so splitting it would change the numbers slightly."""
    batch = spiral_batch(spirals, clean_targets=True)
    model.eval()
    mean, _ = model.predict(batch["obs_t"], batch["obs_x"], batch["target_t"], 0, batch["obs_mask"])
    return float(masked_rmse(mean, batch["target_x"], batch["target_mask"]))


def _first(spirals, count: int):
    """The first ``count`` series of ``spirals``."""
    return Spirals(
        times=spirals.times,
        clean=spirals.clean[:count],
        noisy=spirals.noisy[:count],
        clockwise=spirals.clockwise[:count],
        obs_index=spirals.obs_index[:count],
        window=spirals.window,
    )


@torch.no_grad()
def evaluate_spirals(model: nn.Module, datamodule, *, limit_batches: int | None = None) -> dict:
    """Table 2 of Chen et al. (2018) for one model: ``test/rmse_n{30,50,100}``, the predictive
    RMSE on the ``horizon`` points after the window with n observed points, on ``n_test`` fresh
    spirals drawn from the data module's ``seed`` itself (the benchmark's ``--test-seed``; the
    same spirals for every n, only the observed subset changes). Also ``model/params`` and, for
    models with ODE blocks, ``test/nfe_forward`` (mean over the three n).

    ``limit_batches=k`` keeps the first ``k * batch_size`` series (a quick check; the published
    numbers use all of them). Pass the test seed explicitly: the recipe's own seed is the
    training seed, and its spirals are the training spirals."""
    hp = datamodule.hparams
    blocks = ode_blocks(model)
    count = hp.n_test if limit_batches is None else min(hp.n_test, limit_batches * hp.batch_size)
    if count < 1:
        raise ZooError(EMPTY_TEST_SET)
    metrics: dict[str, Any] = {}
    nfe = []
    for n in SPIRALS_N_OBS:
        spirals = make_spirals(
            hp.n_test, hp.seed, n, hp.window, hp.horizon, hp.n_total, hp.noise_std
        )
        metrics[f"test/rmse_n{n}"] = forecast_rmse(model, _first(spirals, count))
        nfe.append(sum(b.nfe_forward for b in blocks))
    metrics["test/samples"] = count
    metrics["test/seed"] = hp.seed
    metrics[MODEL_PARAMS] = count_parameters(model)
    if blocks:
        metrics[TEST_NFE_FORWARD] = sum(nfe) / len(nfe)
    return metrics


def evaluate_cnf(model: nn.Module, datamodule, *, limit_batches: int | None = None) -> dict:
    """Test NLL of a CNF (nats per example, exact trace; bits/dim on dequantised data), NFE per
    forward pass and params, on the data module's test set: a fresh 2-D sample from its
    ``test_seed``, or the digits' test images with dequantisation noise from ``noise_seed``.
    ``test/seed`` records the seed that drew it, so the card names how to redraw the same set."""
    datamodule.setup("test")
    batches = list(itertools.islice(datamodule.test_dataloader(), limit_batches))
    count = sum(len(model._batch(b)) for b in batches)
    if count == 0:
        raise ZooError(EMPTY_TEST_SET)
    metrics: dict[str, Any] = dict(evaluate_nll(model, batches))
    metrics["test/samples"] = count
    test_seed = getattr(datamodule, "test_seed", None)
    if test_seed is not None:
        metrics["test/seed"] = test_seed
    metrics[MODEL_PARAMS] = count_parameters(model)
    return metrics


def _read_recipe(folder: Path) -> dict[str, Any]:
    recipe = read_recipe(folder)
    if recipe is None:
        raise ZooError(
            f"{folder} has no {RECIPE_NAME}; evaluate needs the recipe's data section to know "
            "the test set. Publish the folder with --recipe FILE, or call "
            "evaluate(model=..., recipe=...)."
        )
    return recipe


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
    solver: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Recompute the test metrics of zoo model ``ref`` (name, folder or repo id), or of a given
    ``model`` with a ``recipe``. ``seed``/``data_dir``/``batch_size`` override the recipe's data
    args (None keeps the recipe's); ``solver`` overrides settings of every ODE block's solver
    (``{"rtol": 1e-5}``: accuracy against test NFE at other tolerances, the paper's Figure 3)."""
    given = model is not None
    if model is None:
        if ref is None:
            raise ZooError(
                "evaluate needs a zoo reference or a model: pass a zoo name, folder or Hub repo "
                "id, or model= with recipe=."
            )
        folder = resolve_ref(ref, revision)
        model = from_pretrained(folder)
        if seed is None:
            seed = read_metrics(folder).get("test/seed")
        recipe = recipe if recipe is not None else _read_recipe(folder)
        architecture = read_config(folder)[ARCHITECTURE_KEY]
    else:
        architecture = architecture_for_class(type(model)).name
        if recipe is None:
            raise ZooError(
                "evaluate(model=...) needs the recipe that names the data: pass recipe= (the "
                "training recipe as a dict)."
            )
    entry = get_architecture(architecture)
    if solver:
        if given:  # the caller's own model keeps its solver
            model = copy.deepcopy(model)
        override_solver(model, solver)
    torch.manual_seed(0 if seed is None else seed)
    datamodule = test_datamodule(recipe, seed=seed, data_dir=data_dir, batch_size=batch_size)
    return entry.load_evaluate()(model, datamodule, limit_batches=limit_batches)


def override_solver(model: nn.Module, changes: Mapping[str, Any]) -> None:
    """Every ODE block of ``model`` solves with ``changes`` applied to its own settings."""
    blocks = ode_blocks(model)
    if not blocks:
        raise ZooError(
            f"solver settings {dict(changes)} act on ODE blocks, and this {type(model).__name__} "
            "has none: drop them for this model."
        )
    for block in blocks:
        try:
            block.solver = SolverConfig.from_dict({**block.solver.to_dict(), **changes})
        except SolverConfigError as err:
            raise ZooError(f"solver settings {dict(changes)}: {err}") from err
