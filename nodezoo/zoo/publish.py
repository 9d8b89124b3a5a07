"""Publishing: a Lightning checkpoint (or an existing zoo folder) -> a zoo folder with its card.

``build_folder`` converts a checkpoint (weights only, no optimizer state) into the zoo layout,
with the card rendered from the run's measured metrics and the recipe that made it; test metrics
the run did not record are measured with :mod:`.evaluation`, and families with a picture function
(registry) get their card picture drawn against the test data. Uploading is :mod:`.hub`'s job.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..runs import (
    CHECKPOINT_SUFFIX,
    PRETRAINED_ARG,
    RUN_CONFIG_NAME,
    RUN_GLOBAL_STEP,
    TEST_NFE_FORWARD,
    find_run_dir,
    find_summary,
    flatten_metrics,
    model_class_path,
    model_from_checkpoint,
    ode_blocks,
    read_checkpoint,
    read_run_config,
    read_summary,
)
from .errors import ZooError
from .evaluation import build_datamodule, datamodule_class, evaluate, test_datamodule
from .folder import RECIPE_NAME, read_metrics, save_folder
from .pretrained import from_pretrained, resolve_ref
from .registry import ZooArchitecture, architecture_for_class, registered

__all__ = ["build_folder"]


def _architecture_for(checkpoint: Mapping[str, Any], run_config: Mapping[str, Any]):
    """Which zoo architecture a checkpoint holds: from the class path LightningCLI recorded
    (in the hparams or the run's config.yaml), else the one whose init args match."""
    entries = list(registered().values())
    class_path = model_class_path(checkpoint, run_config)
    if class_path:
        for entry in entries:
            if entry.class_path == class_path:
                return entry
        raise ZooError(
            f"the checkpoint's model {class_path!r} is not a zoo architecture, so it cannot be "
            "published; register the class with nodezoo.zoo.register(...) first."
        )
    keys = {k for k in checkpoint.get("hyper_parameters") or {} if not k.startswith("_")}
    matches = [e for e in entries if keys <= set(_init_arg_names(e))]
    if len(matches) != 1:
        raise ZooError(
            "cannot tell which zoo architecture this checkpoint holds (no class path recorded); "
            "publish it from its run directory (with config.yaml), or pass --recipe."
        )
    return matches[0]


def _init_arg_names(entry: ZooArchitecture) -> list[str]:
    return list(inspect.signature(entry.load_class().__init__).parameters)


def _needs_evaluation(model: nn.Module, entry: ZooArchitecture, metrics: Mapping) -> bool:
    """The headline test metric is missing, or (for ODE models) the test-set NFE is: training
    logs don't measure the solver's cost on the test set."""
    has_ode = bool(ode_blocks(model))
    return entry.headline_metric not in metrics or (has_ode and TEST_NFE_FORWARD not in metrics)


def _label_names(recipe: Mapping[str, Any] | None, model: nn.Module, data_dir: str | None):
    """Class names from the recipe's data module (``label_names``: a class attribute, or, for
    a user's image folders, read from the data), else the model's own."""
    if recipe and isinstance(recipe.get("data"), Mapping):
        names = getattr(datamodule_class(recipe), "label_names", None)
        if isinstance(names, property):
            names = build_datamodule(recipe, data_dir=data_dir).label_names
        if names is not None:
            return list(names)
    return getattr(model, "label_names", None)


def _picture_drawer(entry: ZooArchitecture, model, recipe, *, seed, data_dir):
    """``draw(path)`` for the family's card picture against the recipe's test data (with the
    same ``seed`` as the measured metrics), or None (no picture function, or no recipe)."""
    draw = entry.load_picture()
    if draw is None or recipe is None:
        return None
    return lambda path: draw(model, test_datamodule(recipe, seed=seed, data_dir=data_dir), path)


def _read_metrics_arg(metrics: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(metrics, Mapping):
        return flatten_metrics(metrics)
    if Path(metrics).is_dir():
        raise ZooError(
            f"--metrics {metrics}: a directory; give a metrics JSON file (a run's summary.json)."
        )
    return read_summary(metrics)[0]


def build_folder(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    recipe: str | os.PathLike | None = None,
    metrics: str | os.PathLike | Mapping[str, Any] | None = None,
    name: str | None = None,
    evaluate_missing: bool = True,
    data_dir: str | None = None,
    limit_batches: int | None = None,
    facts: Mapping[str, Any] | None = None,
    seed: int | None = None,
    repo_id: str | None = None,
) -> Path:
    """Write the zoo folder for ``source`` (a Lightning checkpoint, or an existing zoo folder /
    name / repo id to re-render) into ``out`` (which may be that folder itself).

    Metrics: ``metrics`` (a dict or JSON file), else the run's summary.json above the
    checkpoint, else the folder's metrics.json. ``facts`` (``run/command``, ``run/hardware``,
    ``run/notes``, ...) are added as given. The recipe: ``recipe``, else the run's config.yaml
    (the folder's recipe.yaml). Test metrics the run did not record are measured
    (``nodezoo evaluate``), with ``seed`` for generated test data (spirals: pass the test seed,
    not the training seed). ``repo_id``: the Hub repo the card is for.
    """
    source_path = Path(source)
    recipe_path = Path(recipe) if recipe is not None else None
    found: dict[str, Any] = {}
    if source_path.suffix == CHECKPOINT_SUFFIX or source_path.is_file():
        checkpoint = read_checkpoint(source_path)
        run_config_path = find_run_dir(source_path) / RUN_CONFIG_NAME
        if recipe_path is None and run_config_path.is_file():
            recipe_path = run_config_path
        recipe_dict = read_run_config(recipe_path) if recipe_path else None
        entry = _architecture_for(checkpoint, recipe_dict or {})
        model = model_from_checkpoint(checkpoint, entry.load_class())
        base_model = (checkpoint.get("hyper_parameters") or {}).get(PRETRAINED_ARG)
        summary = find_summary(source_path)
        if summary is not None:
            found = read_summary(summary)[0]
        found.setdefault(RUN_GLOBAL_STEP, checkpoint.get("global_step"))
    else:
        folder = resolve_ref(source)
        model = from_pretrained(folder)
        entry = architecture_for_class(type(model))
        found = read_metrics(folder)
        if recipe_path is None and (folder / RECIPE_NAME).is_file():
            recipe_path = folder / RECIPE_NAME
        recipe_dict = read_run_config(recipe_path) if recipe_path else None
        model_args = ((recipe_dict or {}).get("model") or {}).get("init_args") or {}
        base_model = model_args.get(PRETRAINED_ARG)
    if metrics is not None:
        found = _read_metrics_arg(metrics)
    found.update(facts or {})
    found = {k: v for k, v in found.items() if v is not None}
    if evaluate_missing and _needs_evaluation(model, entry, found):
        if recipe_dict is None and entry.headline_metric not in found:
            raise ZooError(
                f"no {entry.headline_metric} in the run's metrics and no recipe to measure it "
                "with; pass --metrics FILE or --recipe FILE."
            )
        if recipe_dict is not None:
            measured = evaluate(
                model=model,
                recipe=recipe_dict,
                data_dir=data_dir,
                limit_batches=limit_batches,
                seed=seed,
            )
            found = {**measured, **found}  # the run's own numbers win
    return save_folder(
        model,
        out,
        metrics=found,
        recipe=recipe_path,
        name=name,
        base_model=base_model,
        label_names=_label_names(recipe_dict, model, data_dir),
        repo_id=repo_id,
        draw_picture=_picture_drawer(
            entry,
            model,
            recipe_dict,
            seed=seed if seed is not None else found.get("test/seed"),
            data_dir=data_dir,
        ),
    )
