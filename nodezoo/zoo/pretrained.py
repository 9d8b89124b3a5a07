"""Load and save zoo models: ``from_pretrained``, ``save_pretrained``, ``push_to_hub``.

A zoo folder (and its Hub repo) holds ``config.json`` (the ``architecture`` and every init arg),
``model.safetensors`` (weights only), ``metrics.json``, ``recipe.yaml`` and the card
``README.md``. Our own small mixin instead of huggingface_hub's ``ModelHubMixin``, because that
one loads with ``strict=False`` (a missing layer stays random, silently) and drops init args that
are not JSON. Here loading is strict, config keys are checked against the model's signature, and
nothing downloaded is ever unpickled (safetensors and JSON only).
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import registry
from .errors import HubAccessError, WeightsMismatchError, ZooError
from .registry import architecture_for_class, get_architecture

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "METRICS_NAME",
    "RECIPE_NAME",
    "WEIGHTS_NAME",
    "PretrainedMixin",
    "config_of",
    "from_pretrained",
    "install_pretrained_api",
    "load_pretrained_weights",
    "load_state_strict",
    "read_config",
    "read_metrics",
    "resolve_ref",
    "save_folder",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
RECIPE_NAME = "recipe.yaml"
CARD_NAME = "README.md"
FOLDER_FILES = (CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME, RECIPE_NAME)
# config.json keys that are not init args.
ARCHITECTURE_KEY = "architecture"
# The init arg that names a source of weights: saved as null, so a reload never chases it.
PRETRAINED_ARG = "pretrained"
# Init args that cannot change through ``**overrides`` (they have their own, explicit path).
NOT_OVERRIDABLE = (PRETRAINED_ARG, "num_classes")
MAX_LISTED = 8


# ------------------------------------------------------------------------------------ references
def resolve_ref(ref: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder for ``ref``: a directory, a zoo name, or a Hub repo id (downloaded)."""
    path = Path(ref)
    if path.is_dir():
        if revision is not None:
            raise ZooError(
                f"revision={revision!r} applies to Hub repos; {ref!r} is a local folder."
            )
        return path
    ref = str(ref)
    if "/" not in ref and "\\" not in ref:
        candidate = registry.zoo_root() / ref
        if (candidate / CONFIG_NAME).is_file():
            if revision is not None:
                raise ZooError(f"revision={revision!r} applies to Hub repos, not zoo name {ref!r}.")
            return candidate
        names = registry.zoo_names()
        raise ZooError(
            f"{ref!r} is not a folder and not a zoo model (known: {', '.join(names) or 'none'}). "
            "Pass a zoo name, a folder holding config.json and model.safetensors, or a Hub repo "
            "id such as 'org/name'."
        )
    return download_from_hub(ref, revision)


def download_from_hub(repo_id: str, revision: str | None = None) -> Path:
    """Download the zoo files of ``repo_id`` (or use the cache when offline) and return the folder.

    Imports huggingface_hub lazily: it reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE`` at import.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        HTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from .. import __version__

    where = f"{repo_id!r}" + (f" at revision {revision!r}" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=list(FOLDER_FILES),
            etag_timeout=5,
            library_name="nodezoo",
            library_version=__version__,
        )
    except HFValidationError as err:
        raise ZooError(
            f"{repo_id!r} is not a folder, a zoo name or a valid Hub repo id ('org/name'): {err}"
        ) from None
    except RepositoryNotFoundError:
        raise HubAccessError(
            f"no model repo {where} on {constants.ENDPOINT} (or it is private: log in with "
            "`hf auth login` or set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise HubAccessError(f"{repo_id!r} has no revision {revision!r}.") from None
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            reason = "HF_HUB_OFFLINE is set and it is not in the local cache"
            fix = "download it once while online, or unset HF_HUB_OFFLINE"
        else:
            reason = f"{constants.ENDPOINT} could not be reached and it is not in the local cache"
            fix = "check the network (and HF_ENDPOINT), or download it once while online"
        raise HubAccessError(
            f"cannot load {where}: {reason} ({constants.HF_HUB_CACHE}). To fix: {fix}, "
            "or pass a local folder instead."
        ) from None
    except HTTPError as err:
        raise HubAccessError(
            f"downloading {where} from {constants.ENDPOINT} failed: {err}"
        ) from None
    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
        raise ZooError(
            f"Hub repo {where} has no {CONFIG_NAME} and {WEIGHTS_NAME}: not a nodezoo model."
        )
    return folder


# ------------------------------------------------------------------------------------ config
def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls.__init__).parameters)
    params.pop("self", None)
    return {
        name: p
        for name, p in params.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }


def config_of(model: nn.Module) -> dict[str, Any]:
    """config.json for ``model``: its architecture and every init arg (``pretrained`` as null)."""
    entry = architecture_for_class(type(model))
    hparams = dict(getattr(model, "hparams", {}))
    config: dict[str, Any] = {ARCHITECTURE_KEY: entry.name}
    for name in _init_params(type(model)):
        if name == PRETRAINED_ARG:
            config[name] = None
            continue
        if name not in hparams:
            raise ZooError(
                f"{type(model).__name__} did not record init arg {name!r} in hparams; call "
                "self.save_hyperparameters() in __init__ so the zoo can save it."
            )
        config[name] = hparams[name]
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError):
        bad = [k for k, v in config.items() if not _is_json(v)]
        raise ZooError(
            f"init args {bad} of {type(model).__name__} are not plain JSON data (numbers, "
            "strings, lists, dicts); zoo models must be configured by plain data only."
        ) from None
    return config


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ZooError(f"{folder} has no {CONFIG_NAME}: not a zoo folder.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict) or ARCHITECTURE_KEY not in config:
        raise ZooError(f"{path} must be a JSON object with an {ARCHITECTURE_KEY!r} key.")
    return config


def read_metrics(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METRICS_NAME
    return json.loads(path.read_text()) if path.is_file() else {}


def init_args_from_config(
    cls: type, config: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The init args stored in ``config`` with ``overrides`` laid over them (dicts merged key by
    key, so ``solver={"rtol": 1e-5}`` keeps the rest of the saved solver). Unknown keys are errors;
    args missing from an older config take the class's defaults."""
    params = _init_params(cls)
    args = {k: v for k, v in config.items() if k != ARCHITECTURE_KEY}
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
def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise ZooError(f"{folder} has no {WEIGHTS_NAME}.")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise ZooError(f"{path} is not a readable safetensors file: {err}") from None


def _listing(keys, limit: int = MAX_LISTED) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    may_be_missing: tuple[str, ...] = (),
    source: str = "the saved weights",
) -> None:
    """Load ``state`` into ``model``; any missing/unexpected key or shape mismatch is an error
    naming the keys (``strict=False``: missing/unexpected keys only warn; shapes still must fit).
    Keys starting with a prefix in ``may_be_missing`` may be absent (a head being replaced)."""
    expected = model.state_dict()
    missing = {k for k in expected if k not in state and not k.startswith(may_be_missing)}
    unexpected = set(state) - set(expected)
    wrong_shape = {
        k: (tuple(state[k].shape), tuple(expected[k].shape))
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    }
    problems = []
    if missing:
        problems.append(f"missing from {source}: {_listing(missing)}")
    if unexpected:
        problems.append(f"in {source} but not in the model: {_listing(unexpected)}")
    if wrong_shape:
        shapes = [f"{k} saved {s} vs model {m}" for k, (s, m) in sorted(wrong_shape.items())]
        problems.append("shape mismatch: " + "; ".join(shapes[:MAX_LISTED]))
    name = type(model).__name__
    if wrong_shape or (strict and problems):
        raise WeightsMismatchError(
            f"{source} do not fit this {name}: " + " | ".join(problems) + ". The config and "
            "weights disagree (a corrupted or hand-edited folder, or a different architecture); "
            "for a new number of classes pass num_classes=."
        )
    if problems:
        warnings.warn(f"loading {name} with strict=False: " + " | ".join(problems), stacklevel=3)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def _check_class(folder: Path, config: Mapping[str, Any], expected: type | None) -> type:
    entry = get_architecture(config[ARCHITECTURE_KEY])
    cls = entry.load_class()
    if expected is not None and not issubclass(cls, expected):
        raise ZooError(
            f"{folder} holds a {entry.name!r} model ({cls.__name__}), not a {expected.__name__}; "
            "load it with nodezoo.zoo.from_pretrained."
        )
    return cls


def from_pretrained(
    ref: str | os.PathLike,
    *,
    revision: str | None = None,
    num_classes: int | None = None,
    strict: bool = True,
    model_class: type | None = None,
    **overrides: Any,
) -> nn.Module:
    """Load a zoo model, in eval mode, on the CPU.

    ``ref``: a Hub repo id (``org/name``; ``revision`` pins a branch, tag or commit), a local
    folder, or a zoo name (``odenet-fashion-mnist``). The class comes from config.json's
    ``architecture``. ``num_classes``: fine-tuning to a new label set — everything is loaded
    strictly, then the head is replaced by a fresh one with that many outputs. ``overrides`` change
    init args that do not alter the weights' shapes (e.g. ``solver={"rtol": 1e-5}``).
    """
    folder = resolve_ref(ref, revision)
    config = read_config(folder)
    cls = _check_class(folder, config, model_class)
    model = cls(**init_args_from_config(cls, config, overrides))
    load_state_strict(model, read_weights(folder), strict=strict, source=f"weights in {folder}")
    if num_classes is not None and num_classes != config.get("num_classes"):
        reset = getattr(model, "reset_classifier", None)
        if reset is None:
            raise ZooError(f"{cls.__name__} has no classifier head to reset for num_classes=.")
        reset(num_classes)
    return model.eval()


def load_pretrained_weights(model: nn.Module, ref: str | os.PathLike) -> None:
    """Fine-tuning start: load ``ref``'s weights into a freshly built ``model``, strictly, except
    the classifier head when its shape differs (a different number of classes)."""
    folder = resolve_ref(ref)
    config = read_config(folder)
    entry = architecture_for_class(type(model))
    if entry.name != config[ARCHITECTURE_KEY]:
        raise ZooError(
            f"pretrained={str(ref)!r} is a {config[ARCHITECTURE_KEY]!r} model; it cannot "
            f"initialise a {entry.name!r} ({type(model).__name__})."
        )
    state = read_weights(folder)
    head = entry.head
    own = model.state_dict()
    head_keys = [k for k in state if k.startswith(head + ".")]
    head_differs = any(k in own and own[k].shape != state[k].shape for k in head_keys)
    if head_differs:
        state = {k: v for k, v in state.items() if k not in head_keys}
    load_state_strict(
        model,
        state,
        may_be_missing=(head + ".",) if head_differs else (),
        source=f"pretrained weights {str(ref)!r}",
    )


# ------------------------------------------------------------------------------------ saving
def _recipe_text(recipe: str | os.PathLike | Mapping | None) -> str | None:
    if recipe is None:
        return None
    if isinstance(recipe, Mapping):
        import yaml

        return yaml.safe_dump(dict(recipe), sort_keys=False)
    path = Path(recipe)
    if not path.is_file():
        raise ZooError(f"recipe {str(recipe)!r} is not a file.")
    return path.read_text()


def save_folder(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    metrics: Mapping[str, Any] | None = None,
    recipe: str | os.PathLike | Mapping | None = None,
    name: str | None = None,
    base_model: str | None = None,
) -> Path:
    """Write the zoo folder for ``model``: config, weights, metrics, recipe and the card."""
    from safetensors.torch import save_file

    from .cards import render_card

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = config_of(model)
    metrics = dict(metrics or {})
    metrics.setdefault("model/params", sum(p.numel() for p in model.parameters()))
    recipe_text = _recipe_text(recipe)
    weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (directory / METRICS_NAME).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if recipe_text is not None:
        (directory / RECIPE_NAME).write_text(recipe_text)
    elif (directory / RECIPE_NAME).exists():
        (directory / RECIPE_NAME).unlink()  # a stale recipe would mis-describe these weights
    card = render_card(
        name=name or directory.resolve().name,
        config=config,
        metrics=metrics,
        recipe_text=recipe_text,
        base_model=base_model,
    )
    (directory / CARD_NAME).write_text(card)
    return directory


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` for zoo model classes."""

    @classmethod
    def from_pretrained(
        cls,
        ref: str | os.PathLike,
        *,
        revision: str | None = None,
        num_classes: int | None = None,
        strict: bool = True,
        **overrides: Any,
    ):
        """See :func:`nodezoo.zoo.from_pretrained`; also checks the folder holds this class."""
        return from_pretrained(
            ref,
            revision=revision,
            num_classes=num_classes,
            strict=strict,
            model_class=cls,
            **overrides,
        )

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        metrics: Mapping[str, Any] | None = None,
        recipe: str | os.PathLike | Mapping | None = None,
        *,
        name: str | None = None,
    ) -> Path:
        """Write this model as a zoo folder (the layout of its Hub repo)."""
        base = getattr(self, "hparams", {}).get(PRETRAINED_ARG)
        return save_folder(
            self, directory, metrics=metrics, recipe=recipe, name=name, base_model=base
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        recipe: str | os.PathLike | Mapping | None = None,
        private: bool = False,
        revision: str | None = None,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Save to a temporary folder and upload it; returns the commit URL."""
        from .publish import upload_folder

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / repo_id.split("/")[-1]
            self.save_pretrained(folder, metrics, recipe)
            return upload_folder(
                folder,
                repo_id,
                private=private,
                revision=revision,
                token=token,
                commit_message=commit_message,
            )


PRETRAINED_API = ("from_pretrained", "save_pretrained", "push_to_hub")


def install_pretrained_api(cls: type, architecture: str) -> None:
    """Give a registered class the mixin's methods (unless it already inherits them), so model
    modules need not import the zoo layer."""
    if issubclass(cls, PretrainedMixin):
        return
    for method in PRETRAINED_API:
        if method not in cls.__dict__:
            setattr(cls, method, PretrainedMixin.__dict__[method])
