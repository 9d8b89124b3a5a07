"""Publish a trained model: Lightning checkpoint -> zoo folder (Hub layout) -> Hub upload.

``build_folder`` converts a checkpoint (weights only, no optimizer state) into the zoo layout,
with the card rendered from the run's measured metrics and the recipe that made it.
``upload_folder`` sends a folder to the Hub. Checkpoints are read with
``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml

from .errors import HubAccessError, ZooError
from .pretrained import (
    PRETRAINED_ARG,
    init_args_from_config,
    load_state_strict,
    read_metrics,
    resolve_ref,
    save_folder,
)
from .registry import ZooArchitecture, registered

__all__ = [
    "RUN_CONFIG_NAME",
    "SUMMARY_NAME",
    "build_folder",
    "find_run_dir",
    "load_lightning_checkpoint",
    "read_summary",
    "upload_folder",
    "upload_token",
]

SUMMARY_NAME = "summary.json"  # written into the run dir by the RunSummary callback
RUN_CONFIG_NAME = "config.yaml"  # the merged recipe LightningCLI saves into the run dir


def find_run_dir(checkpoint: Path) -> Path:
    """The run directory of a checkpoint (``<run dir>/checkpoints/x.ckpt`` -> ``<run dir>``)."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else parent


def load_lightning_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning checkpoint as plain data, with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"checkpoint {str(path)!r} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError names the refused global
        raise ZooError(
            f"{path} cannot be read as a weights-only checkpoint ({type(err).__name__}: {err}). "
            "nodezoo never unpickles arbitrary objects; re-save the checkpoint's state_dict."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ZooError(f"{path} is not a Lightning checkpoint (no 'state_dict').")
    return checkpoint


def _architecture_for(hparams: Mapping[str, Any], run_config: Mapping[str, Any]) -> ZooArchitecture:
    """Which zoo architecture a checkpoint holds: from the class path LightningCLI recorded
    (in the hparams or the run's config.yaml), else the one whose init args match."""
    model_section = run_config.get("model") if isinstance(run_config, Mapping) else None
    class_path = hparams.get("_class_path") or (
        model_section.get("class_path") if isinstance(model_section, Mapping) else None
    )
    entries = list(registered().values())
    if class_path:
        for entry in entries:
            if entry.model_class.replace(":", ".") == class_path:
                return entry
        raise ZooError(f"the checkpoint's model {class_path!r} is not a zoo architecture.")
    keys = {k for k in hparams if not k.startswith("_")}
    matches = [
        e for e in entries if keys <= set(inspect.signature(e.load_class().__init__).parameters)
    ]
    if len(matches) != 1:
        raise ZooError(
            "cannot tell which zoo architecture this checkpoint holds (no class path recorded); "
            "publish it from its run directory (with config.yaml), or pass --recipe."
        )
    return matches[0]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
    return flat


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A run summary or metrics JSON as flat ``group/name`` keys (nested objects joined by /)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ZooError(f"cannot read metrics from {path}: {err}") from None
    if not isinstance(data, Mapping):
        raise ZooError(f"{path} must hold a JSON object of metrics.")
    return _flatten(data)


def _model_from_checkpoint(checkpoint: Mapping[str, Any], run_config: Mapping[str, Any]):
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    entry = _architecture_for(hparams, run_config)
    cls = entry.load_class()
    base_model = hparams.get(PRETRAINED_ARG)
    config = {k: v for k, v in hparams.items() if not k.startswith("_")}
    model = cls(**init_args_from_config(cls, config))
    load_state_strict(model, checkpoint["state_dict"], source="the checkpoint's state_dict")
    return model.eval(), entry, base_model


def _needs_evaluation(model, entry: ZooArchitecture, metrics: Mapping[str, Any]) -> bool:
    """The headline test metric is missing, or (for ODE models) the test-set NFE is: training
    logs don't measure the solver's cost on the test set."""
    from ..nn import ODEBlock

    has_ode = any(isinstance(m, ODEBlock) for m in model.modules())
    return entry.headline_metric not in metrics or (has_ode and "test/nfe_forward" not in metrics)


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
) -> Path:
    """Write the zoo folder for ``source`` (a Lightning checkpoint, or an existing zoo folder /
    name / repo id to re-render) into ``out``.

    Metrics: ``metrics`` (a dict or JSON file), else the run's summary.json next to the
    checkpoint, else the folder's metrics.json; ``metrics`` may also be a W&B (offline) run
    directory, for runs made before ``RunSummary`` existed. ``facts`` (``run/command``,
    ``run/hardware``, ``run/notes``, ...) are added as given. The recipe: ``recipe``, else the run's
    config.yaml. Test metrics the run did not record are measured (``nodezoo evaluate``), with
    ``seed`` for generated test data (spirals: pass the test seed, not the training seed).
    """
    from .evaluation import evaluate

    source_path = Path(source)
    found_metrics: dict[str, Any] = {}
    recipe_path = Path(recipe) if recipe is not None else None
    if source_path.is_file():
        checkpoint = load_lightning_checkpoint(source_path)
        run_dir = find_run_dir(source_path)
        if recipe_path is None and (run_dir / RUN_CONFIG_NAME).is_file():
            recipe_path = run_dir / RUN_CONFIG_NAME
        run_config = yaml.safe_load(recipe_path.read_text()) if recipe_path else {}
        model, entry, base_model = _model_from_checkpoint(checkpoint, run_config or {})
        for candidate in (source_path.parent / SUMMARY_NAME, run_dir / SUMMARY_NAME):
            if candidate.is_file():
                found_metrics = read_summary(candidate)
                break
        found_metrics.setdefault("run/global_step", checkpoint.get("global_step"))
    else:
        from .pretrained import from_pretrained, read_config
        from .registry import get_architecture

        folder = resolve_ref(source)
        model = from_pretrained(folder)
        entry = get_architecture(read_config(folder)["architecture"])
        base_model = None
        found_metrics = read_metrics(folder)
        if recipe_path is None and (folder / "recipe.yaml").is_file():
            recipe_path = folder / "recipe.yaml"
    if isinstance(metrics, Mapping):
        found_metrics = _flatten(metrics)
    elif metrics is not None and Path(metrics).is_dir():
        found_metrics = {**found_metrics, **metrics_from_wandb_run(metrics)}
    elif metrics is not None:
        found_metrics = read_summary(metrics)
    found_metrics.update(facts or {})
    found_metrics = {k: v for k, v in found_metrics.items() if v is not None}
    if evaluate_missing and _needs_evaluation(model, entry, found_metrics):
        if recipe_path is None and entry.headline_metric not in found_metrics:
            raise ZooError(
                f"no {entry.headline_metric} in the run's metrics and no recipe to measure it "
                "with; pass --metrics FILE or --recipe FILE."
            )
        if recipe_path is not None:
            recipe_dict = yaml.safe_load(recipe_path.read_text()) or {}
            measured = evaluate(
                model=model,
                recipe=recipe_dict,
                data_dir=data_dir,
                limit_batches=limit_batches,
                seed=seed,
            )
            found_metrics = {**measured, **found_metrics}  # the run's own numbers win
    return save_folder(
        model, out, metrics=found_metrics, recipe=recipe_path, name=name, base_model=base_model
    )


def metrics_from_wandb_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's summary and per-epoch history, read back with wandb's own tooling, in the
    ``RunSummary`` key names the card renders."""
    from ..reports.sources import read_wandb_run

    record = read_wandb_run(run_dir)
    out = {k: v for k, v in record.scalars.items() if "/" in k and not k.startswith("train/")}
    out.pop("trainer/global_step", None)
    epoch_times = [v for v in record.history.get("time/epoch_s", []) if v is not None]
    if epoch_times:
        out["run/epochs"] = len(epoch_times)
        out["time/total_s"] = sum(epoch_times)
    if record.scalars.get("trainer/global_step") is not None:
        out["run/global_step"] = int(record.scalars["trainer/global_step"]) + 1
    return out


def upload_token(token: str | None = None) -> str:
    """The token to upload with; errors at once when offline or not logged in (huggingface_hub
    would only find out after building the commit, or not at all before the request)."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise HubAccessError(
            "HF_HUB_OFFLINE is set, so nothing can be uploaded; unset it to publish, or build "
            "the folder only with --out DIR."
        )
    token = token or get_token()
    if not token:
        raise HubAccessError(
            "no Hugging Face token: log in with `hf auth login` or set HF_TOKEN (a token with "
            "write access), then publish again."
        )
    return token


def upload_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; returns the commit URL.

    Checks first for what huggingface_hub would only discover late (or as a traceback): offline
    mode and a missing token. Any HTTP failure becomes a ``HubAccessError`` with the reason.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HTTPError

    api = HfApi(token=upload_token(token))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            revision=revision,
            commit_message=commit_message or f"Publish {Path(folder).name} with nodezoo",
        )
    except HTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        what = f"HTTP {status}" if status else type(err).__name__
        raise HubAccessError(
            f"uploading to {repo_id!r} on {constants.ENDPOINT} failed ({what}): "
            f"{str(err).splitlines()[0] if str(err) else what}. Check the network, the token's "
            "write access and the repo id."
        ) from None
    except ValueError as err:  # huggingface_hub: the Hub rejected the card's metadata
        raise HubAccessError(f"the Hub refused {repo_id!r}: {err}") from None
    return str(getattr(info, "commit_url", info))
