"""The zoo folder format: one folder (and one Hub repo) per model, read and written here only.

A zoo folder holds ``config.json`` (the ``architecture``, every init arg, and ``label_names`` for
classifiers), ``model.safetensors`` (weights only), ``metrics.json``, ``recipe.yaml`` and the card
``README.md`` (some families add the card's ``card.png``, drawn at publishing), plus
``SHA256SUMS`` (the SHA-256 of ``model.safetensors`` in ``sha256sum`` format, as the Hub records
LFS files' hashes; ``sha256sum -c SHA256SUMS`` checks it by hand). Loading verifies that hash and
refuses weights holding NaN or inf, so a damaged file fails at load time with its cause named,
not later as a solver error. Not huggingface_hub's ``ModelHubMixin`` format, because that one
loads with ``strict=False`` (a missing layer stays random, silently) and drops init args that are
not JSON. Here loading is strict, config keys are checked against the model's signature, and
nothing read is ever unpickled (safetensors and JSON only).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from ..files import write_atomic
from ..runs import MODEL_PARAMS, PRETRAINED_ARG, PRETRAINED_HEAD_ARG, count_parameters
from .cards import render_card
from .errors import CorruptWeightsError, ZooError
from .registry import architecture_for_class

__all__ = [
    "ARCHITECTURE_KEY",
    "CARD_NAME",
    "CHECKSUMS_NAME",
    "CONFIG_NAME",
    "FOLDER_FILES",
    "LABEL_NAMES_KEY",
    "METRICS_NAME",
    "PICTURE_NAME",
    "RECIPE_NAME",
    "WEIGHTS_NAME",
    "config_of",
    "init_args_from_config",
    "init_args_of",
    "read_config",
    "read_metrics",
    "read_recipe",
    "read_weights",
    "save_folder",
    "write_card",
    "write_checksums",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
RECIPE_NAME = "recipe.yaml"
CARD_NAME = "README.md"
CHECKSUMS_NAME = "SHA256SUMS"
PICTURE_NAME = "card.png"  # the card's figure (optional; drawn by the family's picture fn)
FOLDER_FILES = (
    CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME, RECIPE_NAME, CHECKSUMS_NAME, PICTURE_NAME,
)  # fmt: skip
# config.json keys that are not init args.
ARCHITECTURE_KEY = "architecture"
LABEL_NAMES_KEY = "label_names"  # class names, in output order (timm's config.json key)
METADATA_KEYS = (ARCHITECTURE_KEY, LABEL_NAMES_KEY)
# The init args holding a model's solvers (the latent ODE's ODE-RNN encoder has its own); their
# values are read from the model's properties of the same names, i.e. from its ODE blocks.
SOLVER_ARGS = ("solver", "encoder_solver")
# Init args that cannot change through ``**overrides`` (they have their own, explicit path).
NOT_OVERRIDABLE = (PRETRAINED_ARG, PRETRAINED_HEAD_ARG, "num_classes")


# ------------------------------------------------------------------------------------ config
def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return {
        name: p
        for name, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def init_args_of(model: nn.Module) -> dict[str, Any]:
    """The model's init args as it is now: its hparams, with ``solver`` (and ``encoder_solver``)
    read from the model's properties of that name (its ODE blocks' setting, which a tolerance
    sweep changes), so there is one source of truth for each solver."""
    args = dict(getattr(model, "hparams", {}))
    for name in SOLVER_ARGS:
        solver = getattr(model, name, None)
        if name in args and hasattr(solver, "to_dict"):
            args[name] = solver.to_dict()
    return args


def _check_label_names(label_names: Sequence[str] | None, num_classes: Any, where: str):
    if label_names is None:
        return None
    names = list(label_names)
    if not all(isinstance(n, str) for n in names):
        raise ZooError(f"{where}: {LABEL_NAMES_KEY} must be a list of strings.")
    if isinstance(num_classes, int) and len(names) != num_classes:
        raise ZooError(
            f"{where}: {len(names)} {LABEL_NAMES_KEY} for {num_classes} classes; give one name "
            "per class, in output order."
        )
    return names


def config_of(model: nn.Module, label_names: Sequence[str] | None = None) -> dict[str, Any]:
    """config.json for ``model``: its architecture, every init arg (``pretrained`` as null,
    ``pretrained_head`` left out) and, for classifiers, ``label_names`` (given, or the model's
    own ``label_names``)."""
    entry = architecture_for_class(type(model))
    hparams = init_args_of(model)
    config: dict[str, Any] = {ARCHITECTURE_KEY: entry.name}
    for name in _init_params(type(model)):
        if name == PRETRAINED_ARG:
            config[name] = None
            continue
        if name == PRETRAINED_HEAD_ARG:
            continue
        if name not in hparams:
            raise ZooError(
                f"{type(model).__name__} did not record init arg {name!r} in hparams; call "
                "self.save_hyperparameters() in __init__ so the zoo can save it."
            )
        config[name] = hparams[name]
    names = label_names if label_names is not None else getattr(model, LABEL_NAMES_KEY, None)
    names = _check_label_names(names, config.get("num_classes"), type(model).__name__)
    if names is not None:
        config[LABEL_NAMES_KEY] = names
    bad = [k for k, v in config.items() if not _is_json(v)]
    if bad:
        raise ZooError(
            f"init args {bad} of {type(model).__name__} are not plain JSON data (numbers, "
            "strings, lists, dicts); zoo models must be configured by plain data only."
        )
    return config


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ZooError(f"{folder} has no {CONFIG_NAME}: not a zoo folder.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(
            f"{path} is not valid JSON: {err}. Re-save the folder or download it again."
        ) from None
    if not isinstance(config, dict) or ARCHITECTURE_KEY not in config:
        raise ZooError(f"{path} must be a JSON object with an {ARCHITECTURE_KEY!r} key.")
    _check_label_names(config.get(LABEL_NAMES_KEY), config.get("num_classes"), str(path))
    return config


def read_metrics(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / METRICS_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(
            f"{path} is not valid JSON: {err}. Re-save the folder or download it again."
        ) from None


def read_recipe(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's recipe.yaml as a dict; None when the folder has none."""
    path = Path(folder) / RECIPE_NAME
    if not path.is_file():
        return None
    try:
        recipe = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ZooError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(recipe, dict):
        raise ZooError(f"{path} is not a recipe (a YAML mapping).")
    return recipe


def init_args_from_config(
    cls: type, config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The init args stored in ``config`` with ``overrides`` laid over them (dicts merged key by
    key, so ``solver={"rtol": 1e-5}`` keeps the rest of the saved solver). Unknown keys are errors;
    args missing from an older config take the class's defaults."""
    params = _init_params(cls)
    args = {k: v for k, v in config.items() if k not in METADATA_KEYS}
    unknown = sorted(set(args) - set(params))
    if unknown:
        raise ZooError(
            f"config.json has keys {unknown} that {cls.__name__} does not take (it takes "
            f"{', '.join(params)}). The folder was written by another version or edited by hand."
        )
    for name, value in (overrides or {}).items():
        if name not in params or name in NOT_OVERRIDABLE:
            allowed = [p for p in params if p not in NOT_OVERRIDABLE]
            hint = " (use num_classes= for a new head)" if name == "num_classes" else ""
            raise ZooError(
                f"cannot override {name!r}{hint}; overridable init args: {', '.join(allowed)}."
            )
        saved = args.get(name)
        args[name] = (
            {**saved, **value} if isinstance(saved, dict) and isinstance(value, dict) else value
        )
    if PRETRAINED_ARG in params:
        args[PRETRAINED_ARG] = None  # the weights come from this folder, not from the source
    return args


# ------------------------------------------------------------------------------------ weights
def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_checksums(folder: str | os.PathLike) -> Path:
    """(Re)write the folder's SHA256SUMS from its weights file as it is now."""
    folder = Path(folder)
    path = folder / CHECKSUMS_NAME
    write_atomic(path, f"{_sha256(folder / WEIGHTS_NAME)}  {WEIGHTS_NAME}\n")
    return path


def read_checksums(folder: str | os.PathLike) -> dict[str, str]:
    """File name -> recorded SHA-256 (hex); empty when the folder records none (older folders)."""
    path = Path(folder) / CHECKSUMS_NAME
    if not path.is_file():
        return {}
    recorded = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if not line.strip():
            continue
        if len(digest) != 64 or not name or any(c not in "0123456789abcdef" for c in digest):
            raise CorruptWeightsError(
                f"{path} is not in sha256sum format ('<64 hex digits>  <file name>' per line): "
                f"{line.strip()!r}. Re-save or re-publish the folder to rewrite it."
            )
        recorded[name.lstrip("*")] = digest
    return recorded


def _check_finite(state: Mapping[str, torch.Tensor], path: Path, action: str) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        shown = ", ".join(sorted(bad)[:8]) + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else "")
        raise CorruptWeightsError(
            f"not {action} {path}: NaN or inf in {len(bad)} tensor(s): {shown}. These weights are "
            "broken (a diverged training run or a damaged file); use a checkpoint from before the "
            "run diverged, or download the folder again."
        )


def read_weights(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The folder's weights, after checking them against the SHA-256 recorded in SHA256SUMS
    (when the folder has one) and checking that every floating-point value is finite."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise ZooError(
            f"{folder} has no {WEIGHTS_NAME}. Re-save the folder or download it again "
            "(force_download=True for a Hub repo)."
        )
    recorded = read_checksums(folder).get(WEIGHTS_NAME)
    if recorded is not None:
        actual = _sha256(path)
        if actual != recorded:
            raise CorruptWeightsError(
                f"{path} does not match the SHA-256 recorded in {CHECKSUMS_NAME} (recorded "
                f"{recorded[:12]}..., the file has {actual[:12]}...): the weights were changed or "
                "damaged after they were saved. Download the folder again (force_download=True "
                "for a Hub repo) or re-save it; the file was not loaded."
            )
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise CorruptWeightsError(
            f"{path} is not a readable safetensors file: {err}. Re-save the folder or download "
            "it again (force_download=True for a Hub repo)."
        ) from None
    _check_finite(state, path, "loading")
    return state


# ------------------------------------------------------------------------------------ saving
def _recipe_text(recipe: str | os.PathLike | Mapping | None) -> str | None:
    if recipe is None:
        return None
    if isinstance(recipe, Mapping):
        return yaml.safe_dump(dict(recipe), sort_keys=False)
    path = Path(recipe)
    if not path.is_file():
        raise ZooError(
            f"recipe {str(recipe)!r} is not a file; give the path of the recipe YAML, or the "
            "recipe as a dict."
        )
    return path.read_text()


def write_card(
    directory: str | os.PathLike,
    *,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    recipe_text: str | None,
    name: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
) -> Path:
    """(Re)write the folder's README.md from its config, metrics and recipe (and its picture,
    when the folder has one)."""
    directory = Path(directory)
    card = render_card(
        picture=PICTURE_NAME if (directory / PICTURE_NAME).is_file() else None,
        name=name or directory.resolve().name,
        config={k: v for k, v in config.items() if k != LABEL_NAMES_KEY},
        label_names=config.get(LABEL_NAMES_KEY),
        metrics=metrics,
        recipe_text=recipe_text,
        base_model=base_model,
        repo_id=repo_id,
    )
    path = directory / CARD_NAME
    write_atomic(path, card)
    return path


def save_folder(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    metrics: Mapping[str, Any] | None = None,
    recipe: str | os.PathLike | Mapping | None = None,
    name: str | None = None,
    base_model: str | None = None,
    label_names: Sequence[str] | None = None,
    repo_id: str | None = None,
    draw_picture: Callable[[Path], Any] | None = None,
) -> Path:
    """Write the zoo folder for ``model``: config, weights, metrics, recipe and the card
    (``repo_id``: the Hub repo it is for, if known). ``draw_picture(path)`` draws the card's
    picture; without it an old picture is removed (it would show other weights)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config_of(model, label_names)
    metrics = dict(metrics or {})
    metrics.setdefault(MODEL_PARAMS, count_parameters(model))
    recipe_text = _recipe_text(recipe)
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    _check_finite(weights, directory / WEIGHTS_NAME, "saving")
    # Written as bytes, not with safetensors' save_file: that one creates the file with mode
    # 0600, which other users of a shared folder cannot read; write_atomic honours the umask.
    # Every file is written atomically: a stop leaves the old file or the new one, never half.
    write_atomic(directory / WEIGHTS_NAME, safetensors_bytes(weights, metadata={"format": "pt"}))
    write_checksums(directory)
    write_atomic(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    write_atomic(directory / METRICS_NAME, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if recipe_text is not None:
        write_atomic(directory / RECIPE_NAME, recipe_text)
    elif (directory / RECIPE_NAME).exists():
        (directory / RECIPE_NAME).unlink()  # a stale recipe would mis-describe these weights
    if draw_picture is not None:
        draw_picture(directory / PICTURE_NAME)
    elif (directory / PICTURE_NAME).exists():
        (directory / PICTURE_NAME).unlink()
    write_card(
        directory,
        config=config,
        metrics=metrics,
        recipe_text=recipe_text,
        name=name,
        base_model=base_model,
        repo_id=repo_id,
    )
    return directory
