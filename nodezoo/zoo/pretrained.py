"""``from_pretrained``: a zoo name, folder or Hub repo id -> a model; and the base class that
gives every zoo model ``from_pretrained``/``save_pretrained``/``push_to_hub``.

Resolving a reference is this module's job; the folder format is :mod:`.folder`'s and the
network is :mod:`.hub`'s. Model classes derive from ``PretrainedMixin`` (``ImageClassifier``,
``ForecastingModel``), so the methods exist as soon as the class is imported.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..runs import CHECKPOINT_SUFFIX, PRETRAINED_ARG
from ..weights import load_state_strict
from . import registry
from .errors import ZooError
from .folder import (
    ARCHITECTURE_KEY,
    CONFIG_NAME,
    LABEL_NAMES_KEY,
    WEIGHTS_NAME,
    init_args_from_config,
    init_args_of,
    read_config,
    read_weights,
    save_folder,
)
from .hub import STALE_PATTERNS, download_folder, upload_folder
from .registry import architecture_for_class, get_architecture

__all__ = ["PretrainedMixin", "from_pretrained", "load_pretrained_weights", "resolve_ref"]


def _looks_like_hub_id(ref: str) -> bool:
    """``org/name``: two non-empty parts, no path syntax (``/x``, ``./x``, ``~/x``, ``a/b/c``)."""
    parts = ref.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and "\\" not in ref
        and not ref.startswith(("~", "."))
        and not Path(ref).is_absolute()
    )


def _not_found(ref: str, tried: list[str], hub_error: ZooError | None = None) -> ZooError:
    """One error listing every way ``ref`` was tried (a ``HubAccessError`` when the Hub was
    what failed, so callers can still tell network trouble apart)."""
    known = ", ".join(registry.zoo_names()) or "none"
    if hub_error is not None:
        tried = [*tried, f"as a Hub repo id ({str(hub_error).rstrip('.')})"]
    message = (
        f"no model {ref!r} found; tried it {'; '.join(tried)}. Pass a zoo folder (holding "
        f"{CONFIG_NAME} and {WEIGHTS_NAME}), a zoo name (known: {known}) or a Hub repo id such as "
        "'org/name'."
    )
    return (type(hub_error) if hub_error is not None else ZooError)(message)


def resolve_ref(ref: str | os.PathLike, revision: str | None = None, **hub_kwargs: Any) -> Path:
    """A local folder for ``ref``: a directory, a zoo name, or a Hub repo id (downloaded, with
    ``hub_kwargs`` for :func:`.hub.download_folder`: token, cache_dir, force_download,
    local_files_only). When none fits, the error lists each way ``ref`` was tried."""
    path = Path(ref).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ZooError(
                f"revision={revision!r} applies to Hub repos; {str(ref)!r} is a local folder. "
                "Drop revision=, or give the Hub repo id."
            )
        check_zoo_folder(path)
        return path
    ref = str(ref)
    if path.is_file():
        check_zoo_folder(path)
    tried = [f"as a folder (no directory {str(path.absolute())!r})"]
    if "/" not in ref and "\\" not in ref:
        candidate = registry.zoo_root() / ref
        if (candidate / CONFIG_NAME).is_file():
            if revision is not None:
                raise ZooError(
                    f"revision={revision!r} applies to Hub repos, not zoo name {ref!r}. Drop "
                    "revision= (a shipped model has one version), or give a Hub repo id."
                )
            return candidate
        tried.append("as a zoo name (not a shipped model)")
        raise _not_found(ref, [*tried, "as a Hub repo id (not of the form 'org/name')"])
    tried.append("as a zoo name (zoo names have no '/')")
    if not _looks_like_hub_id(ref):
        raise _not_found(ref, [*tried, "as a Hub repo id (not of the form 'org/name')"])
    try:
        return download_folder(ref, revision, **hub_kwargs)
    except ZooError as err:
        raise _not_found(ref, tried, err) from None


def check_zoo_folder(path: Path) -> None:
    """A run directory or Lightning checkpoint where a zoo folder is expected: say how to turn
    it into one (``nodezoo publish``)."""
    if (path / CONFIG_NAME).is_file():
        return
    if path.is_file() and path.suffix == CHECKPOINT_SUFFIX:
        raise ZooError(
            f"{str(path)!r} is a Lightning checkpoint, not a zoo folder. Turn it into one with "
            f"`nodezoo publish {path} --out DIR` (or nodezoo.zoo.build_folder), then load DIR."
        )
    checkpoints = sorted(path.glob(f"**/*{CHECKPOINT_SUFFIX}"))[:1] if path.is_dir() else []
    if checkpoints:
        raise ZooError(
            f"{str(path)!r} is a training run directory (it holds {checkpoints[0].name}), not a "
            f"zoo folder. Turn a checkpoint into one with `nodezoo publish {checkpoints[0]} "
            "--out DIR`, then load DIR."
        )
    if path.is_file():
        raise ZooError(
            f"{str(path)!r} is a file; pass the zoo folder holding {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}."
        )
    raise ZooError(
        f"{str(path)!r} has no {CONFIG_NAME}: not a zoo folder (one holds {CONFIG_NAME} and "
        f"{WEIGHTS_NAME}; `nodezoo publish` makes one from a checkpoint)."
    )


def _check_class(folder: Path, config: Mapping[str, Any], expected: type | None) -> type:
    entry = get_architecture(config[ARCHITECTURE_KEY])
    cls = entry.load_class()
    if expected is not None and not issubclass(cls, expected):
        raise ZooError(
            f"{folder} holds a {entry.name!r} model ({cls.__name__}), not a {expected.__name__}; "
            "load it with nodezoo.from_pretrained."
        )
    return cls


def from_pretrained(
    ref: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    num_classes: int | None = None,
    strict: bool = True,
    model_class: type | None = None,
    **overrides: Any,
) -> nn.Module:
    """Load a zoo model, in eval mode, on the CPU.

    ``ref``: a Hub repo id (``org/name``; ``revision`` pins a branch, tag or commit; ``token``,
    ``cache_dir``, ``force_download`` and ``local_files_only`` go to ``snapshot_download``), a
    local folder, or a zoo name (``odenet-fashion-mnist``). The class comes from config.json's
    ``architecture``. ``num_classes``: fine-tuning to a new label set — everything is loaded
    strictly, then the head is replaced by a fresh one with that many outputs. ``overrides``
    change init args that do not alter the weights' shapes (e.g. ``solver={"rtol": 1e-5}``).
    """
    folder = resolve_ref(
        ref,
        revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )
    config = read_config(folder)
    cls = _check_class(folder, config, model_class)
    model = cls(**init_args_from_config(cls, config, overrides))
    load_state_strict(model, read_weights(folder), strict=strict, source=f"weights in {folder}")
    model.label_names = config.get(LABEL_NAMES_KEY)
    if num_classes is not None and num_classes != config.get("num_classes"):
        reset = getattr(model, "reset_classifier", None)
        if reset is None:
            raise ZooError(
                f"{cls.__name__} has no classifier head to reset for num_classes={num_classes}; "
                "load it without num_classes= (only classifiers can change their classes)."
            )
        reset(num_classes)
        model.label_names = None  # the saved names are for the old classes
    return model.eval()


def load_pretrained_weights(model: nn.Module, ref: str | os.PathLike, *, head: bool = True) -> None:
    """Fine-tuning start: load ``ref``'s weights into a freshly built ``model``, strictly, except
    the classifier head when its shape differs (a different number of classes) or ``head`` is
    False (the same number of classes that mean something else: a head trained on other labels
    is a worse start than a fresh one)."""
    folder = resolve_ref(ref)
    config = read_config(folder)
    entry = architecture_for_class(type(model))
    if entry.name != config[ARCHITECTURE_KEY]:
        raise ZooError(
            f"pretrained={str(ref)!r} is a {config[ARCHITECTURE_KEY]!r} model; it cannot "
            f"initialise a {entry.name!r} ({type(model).__name__}). Give pretrained= a "
            f"{entry.name!r} model, or none to start from random weights."
        )
    state = read_weights(folder)
    prefix = entry.head + "."
    own = model.state_dict()
    head_keys = [k for k in state if k.startswith(prefix)]
    fresh_head = not head or any(k in own and own[k].shape != state[k].shape for k in head_keys)
    if fresh_head:
        state = {k: v for k, v in state.items() if k not in head_keys}
    load_state_strict(
        model,
        state,
        may_be_missing=(prefix,) if fresh_head else (),
        source=f"pretrained weights {str(ref)!r}",
    )


def _attached_datamodule(model: nn.Module):
    """The data module of the Lightning trainer ``model`` is attached to, else None."""
    trainer = getattr(model, "_trainer", None)
    return getattr(trainer, "datamodule", None) if trainer is not None else None


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _recipe_of(model: nn.Module, datamodule: Any) -> dict[str, Any]:
    """A recipe in LightningCLI's layout naming the model and the data module it was trained
    with (their init args as recorded by ``save_hyperparameters``)."""
    data_args = json.loads(json.dumps(dict(getattr(datamodule, "hparams", {})), default=str))
    return {
        "model": {"class_path": _class_path(model), "init_args": init_args_of(model)},
        "data": {
            "class_path": _class_path(datamodule),
            "init_args": data_args,  # paths etc. as strings: recipe.yaml stays plain data
        },
    }


class PretrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` for zoo model classes.

    A zoo model class derives from it (before ``LightningModule``) and is registered in
    :mod:`.registry`. ``label_names`` holds the class names a loaded classifier was saved with.
    Lightning checkpoints record the model's init args as they are now (``solver`` from the ODE
    blocks), the same as config.json does.
    """

    label_names: list[str] | None = None

    @classmethod
    def from_pretrained(cls, ref: str | os.PathLike, **kwargs: Any):
        """See :func:`nodezoo.zoo.from_pretrained`; also checks the folder holds this class."""
        return from_pretrained(ref, model_class=cls, **kwargs)

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        metrics: Mapping[str, Any] | None = None,
        recipe: str | os.PathLike | Mapping | None = None,
        *,
        name: str | None = None,
        label_names: Sequence[str] | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """Write this model as a zoo folder (the layout of its Hub repo). Without ``recipe``,
        the data module of the trainer this model is attached to (if any) is recorded, so the
        card says what the model was trained on, and its class names become ``label_names``."""
        base = getattr(self, "hparams", {}).get(PRETRAINED_ARG)
        datamodule = _attached_datamodule(self)
        if recipe is None and datamodule is not None:
            recipe = _recipe_of(self, datamodule)
        if label_names is None and getattr(self, LABEL_NAMES_KEY, None) is None:
            names = getattr(datamodule, LABEL_NAMES_KEY, None)
            label_names = list(names) if names is not None else None
        return save_folder(
            self,
            directory,
            metrics=metrics,
            recipe=recipe,
            name=name,
            base_model=base,
            label_names=label_names,
            repo_id=repo_id,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        recipe: str | os.PathLike | Mapping | None = None,
        label_names: Sequence[str] | None = None,
        private: bool = False,
        branch: str | None = None,
        create_pr: bool = False,
        delete_patterns: Sequence[str] | None = STALE_PATTERNS,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> str:
        """Save to a temporary folder and upload it (see :func:`.hub.upload_folder` for
        ``branch``, ``create_pr`` and ``delete_patterns``); returns the commit or PR URL."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / repo_id.split("/")[-1]
            self.save_pretrained(folder, metrics, recipe, label_names=label_names, repo_id=repo_id)
            return upload_folder(
                folder,
                repo_id,
                private=private,
                branch=branch,
                create_pr=create_pr,
                delete_patterns=delete_patterns,
                token=token,
                commit_message=commit_message,
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning hook: the checkpoint's hyperparameters are the live init args."""
        hparams = checkpoint.get("hyper_parameters")
        if isinstance(hparams, dict):
            hparams.update(init_args_of(self))
