"""What a training run leaves behind, and the one way to read it back.

A run directory (``trainer.default_root_dir``) holds ``summary.json`` (written by
``nodezoo.callbacks.RunSummary``), the merged recipe ``config.yaml`` (written by LightningCLI) and
``checkpoints/*.ckpt``. The zoo (publishing) and the reports (``nodezoo compare``) both read runs
through this module: file names, metric keys, summaries, checkpoints -> models, ODE blocks and
parameter counts are defined once, here, below both of them.

Checkpoints are read with ``torch.load(weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .errors import NodezooError, RunFileError
from .nn import ODEBlock
from .weights import load_state_strict

__all__ = [
    "CHECKPOINT_SUFFIX",
    "HISTORY_KEY",
    "MODEL_PARAMS",
    "RUN_CONFIG_NAME",
    "SUMMARY_NAME",
    "TEST_NFE_FORWARD",
    "count_parameters",
    "find_run_dir",
    "find_summary",
    "flatten_metrics",
    "import_model_class",
    "model_class_path",
    "model_from_checkpoint",
    "ode_blocks",
    "read_checkpoint",
    "read_run_config",
    "read_summary",
]

SUMMARY_NAME = "summary.json"  # RunSummary's record of the run
RUN_CONFIG_NAME = "config.yaml"  # the merged recipe LightningCLI saves into the run directory
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_SUFFIX = ".ckpt"
# How far above a checkpoint its run directory may be (<run dir>/checkpoints/x.ckpt is 2).
CHECKPOINT_DEPTH = 3
HISTORY_KEY = "history"  # summary.json's per-epoch columns

# Metric keys shared by the callbacks, the zoo and the reports (``group/name`` as logged).
MODEL_PARAMS = "model/params"
TEST_NFE_FORWARD = "test/nfe_forward"
RUN_GLOBAL_STEP = "run/global_step"
RUN_MODEL = "run/model"
RUN_NAME = "run/name"

# Only classes from this package may be built from a file's class path.
TRUSTED_PREFIX = "nodezoo."
# The init arg naming a source of starting weights: never followed when rebuilding a model.
PRETRAINED_ARG = "pretrained"
# Whether that source's classifier head was loaded too: about how a run started, so a zoo
# folder's config.json (whose weights are the model's own) leaves it out.
PRETRAINED_HEAD_ARG = "pretrained_head"


# ------------------------------------------------------------------------------------ models
def ode_blocks(module: nn.Module) -> list[ODEBlock]:
    """Every ``ODEBlock`` inside ``module`` (empty for discrete models)."""
    return [m for m in module.modules() if isinstance(m, ODEBlock)]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------ summaries
def flatten_metrics(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested groups (``{"test": {"acc": ...}}``) as the flat ``group/name`` keys the logs use;
    only scalar leaves (numbers, strings, booleans, None) are kept."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{name}/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            flat[name] = value
    return flat


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RunFileError(f"{path} is not a readable JSON file: {err}") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path} must hold a JSON object of metrics.")
    return data


def read_summary(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, list]]:
    """A summary.json (or any metrics JSON): flat scalars and the per-epoch ``history``."""
    data = read_json_object(path)
    history = data.pop(HISTORY_KEY, None) or {}
    return flatten_metrics(data), dict(history)


def find_run_dir(checkpoint: str | os.PathLike) -> Path:
    """The run directory of a checkpoint (``<run dir>/checkpoints/x.ckpt`` -> ``<run dir>``)."""
    parent = Path(checkpoint).resolve().parent
    return parent.parent if parent.name == CHECKPOINT_DIR else parent


def find_summary(checkpoint: str | os.PathLike) -> Path | None:
    """The summary.json of a checkpoint's run: the nearest in the folders above it."""
    for folder in list(Path(checkpoint).resolve().parents)[:CHECKPOINT_DEPTH]:
        if (folder / SUMMARY_NAME).is_file():
            return folder / SUMMARY_NAME
    return None


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """A recipe or a run's merged config.yaml as a dict."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise RunFileError(f"cannot read the recipe {path}: {err}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RunFileError(f"{path} is not a recipe (a YAML mapping with model/data/trainer).")
    return config


# ------------------------------------------------------------------------------------ checkpoints
def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning checkpoint as plain data, with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise RunFileError(f"checkpoint {str(path)!r} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError names the refused global
        raise RunFileError(
            f"{path} cannot be read as a weights-only checkpoint ({type(err).__name__}: {err}). "
            "nodezoo never unpickles arbitrary objects; re-save the checkpoint's state_dict."
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise RunFileError(f"{path} is not a Lightning checkpoint (no 'state_dict').")
    return checkpoint


def model_class_path(
    checkpoint: Mapping[str, Any], run_config: Mapping[str, Any] | None = None
) -> str | None:
    """The model's class path as LightningCLI recorded it: in the checkpoint's hyperparameters,
    else in the run's config.yaml / recipe; None when neither says."""
    hparams = checkpoint.get("hyper_parameters") or {}
    if hparams.get("_class_path"):
        return str(hparams["_class_path"])
    section = (run_config or {}).get("model")
    if isinstance(section, Mapping) and section.get("class_path"):
        return str(section["class_path"])
    return None


def import_nodezoo_class(
    class_path: str, what: str, error: type[NodezooError] = RunFileError
) -> type:
    """``nodezoo.x.Class`` -> the class, for class paths read from files (recipes, run configs,
    checkpoints): only classes of this package, so a downloaded file cannot run foreign code.
    ``what`` names the path in errors ("the model class"), raised as ``error``."""
    if not class_path.startswith(TRUSTED_PREFIX):
        raise error(
            f"refusing to import {what} {class_path!r}: not a nodezoo class (a file may only "
            "name classes of this package)."
        )
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise error(f"{what} {class_path!r} does not exist.") from None
    if not isinstance(cls, type):  # a function would be called with the file's arguments
        raise error(f"{what} {class_path!r} is not a class.")
    return cls


def import_model_class(class_path: str) -> type:
    """``nodezoo.models.x.Class`` -> the class; only classes of this package."""
    return import_nodezoo_class(class_path, "the model class")


def model_from_checkpoint(checkpoint: Mapping[str, Any], cls: type) -> nn.Module:
    """``cls`` built from the checkpoint's hyperparameters (starting weights never fetched
    again: the checkpoint has them) with its state dict loaded strictly, in eval mode."""
    hparams = {
        k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")
    }
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(hparams) - set(params))
    if unknown:
        raise RunFileError(
            f"the checkpoint's hyperparameters {unknown} are not init args of {cls.__name__}; "
            "it was written by another model class or version."
        )
    if PRETRAINED_ARG in params:
        hparams[PRETRAINED_ARG] = None
    model = cls(**hparams)
    load_state_strict(model, checkpoint["state_dict"], source="the checkpoint's state_dict")
    return model.eval()
