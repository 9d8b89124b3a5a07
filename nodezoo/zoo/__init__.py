"""The model zoo: load, save, evaluate and publish pretrained nodezoo models.

``from_pretrained(ref)`` takes a zoo name (``odenet-fashion-mnist``), a local folder or a Hub repo
id; ``list_models()`` lists the shipped zoo with its headline metrics. Zoo model classes derive
from ``PretrainedMixin``: ``Class.from_pretrained``, ``model.save_pretrained``,
``model.push_to_hub``.

The modules stack in one direction, each importing only those above it in this list:

- ``registry``: architecture name -> model class (by import path; imports no models)
- ``cards``: the README.md model card, rendered from data
- ``folder``: the folder format (file names, config/metrics/recipe, weights, saving)
- ``hub``: the Hugging Face Hub (the only module using huggingface_hub's network API)
- ``pretrained``: references -> models, ``PretrainedMixin``
- ``catalog``: the shipped zoo as a list and as torch.hub entry points
- ``evaluation``: recompute a model's test metrics (imports the data layer)
- ``publish``: checkpoint -> folder
- ``commands``: the ``nodezoo list|evaluate|publish`` verbs

Nothing here imports ``nodezoo.reports``. ``evaluate`` and the modules below ``catalog`` are
loaded on first use, so importing a model class (which imports ``pretrained``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .catalog import entrypoints, list_models
from .errors import CorruptWeightsError, HubAccessError, WeightsMismatchError, ZooError
from .folder import save_folder
from .pretrained import PretrainedMixin, from_pretrained, load_pretrained_weights
from .registry import ZooArchitecture, get_architecture, register, registered, zoo_names, zoo_root

__all__ = [
    "CorruptWeightsError",
    "HubAccessError",
    "PretrainedMixin",
    "WeightsMismatchError",
    "ZooArchitecture",
    "ZooError",
    "entrypoints",
    "evaluate",
    "from_pretrained",
    "get_architecture",
    "list_models",
    "load_pretrained_weights",
    "register",
    "registered",
    "save_folder",
    "zoo_names",
    "zoo_root",
]

# Attributes loaded on first access (they import the data layer): name -> module.
_LAZY = {"evaluate": ".evaluation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
