"""The zoo's registry: architecture name -> model class, evaluation, headline metric.

config.json stores an ``architecture`` key; one loader reads it and asks the registry for the
class. Entries name their class and evaluation function by import path and are resolved on first
use, so the registry imports no models (and nothing else of the zoo), registering costs nothing
at import time, and a model family that is still being written can be registered before its
module exists. Adding a model family to the zoo is one ``register`` call below plus one
evaluation function; its class gets ``from_pretrained``/``save_pretrained`` by deriving from
``nodezoo.zoo.pretrained.PretrainedMixin`` (as ``ImageClassifier`` and ``ForecastingModel`` do).
"""

from __future__ import annotations

import importlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ZooError

__all__ = [
    "ZooArchitecture",
    "architecture_for_class",
    "get_architecture",
    "register",
    "registered",
    "zoo_names",
    "zoo_root",
]

ZOO_PACKAGE = "nodezoo.model_cards"


def _import(path: str) -> Any:
    """``"package.module:attr"`` -> the attribute."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ZooArchitecture:
    """How the zoo builds, evaluates and summarises one model family.

    ``model_class`` and ``evaluate`` are ``"module:attribute"`` import paths. ``headline_metric``
    is the metrics.json key that ``list_models`` and the card lead with; ``preferred_headlines``
    are keys that take its place in a folder that has them (a CNF on digits leads with bits/dim,
    one on 2-D data with its NLL); ``higher_is_better`` says which way they point. ``task``
    names what the family does: the card's Hugging Face pipeline tag where the Hub has that
    task, else a tag. ``head`` is the attribute holding the classifier head (left out when
    fine-tuning to new classes). ``picture``: optional ``"module:attribute"`` of
    ``fn(model, datamodule, path)`` that draws the card's picture at publishing;
    ``picture_caption`` says what it shows (the card's alt text).
    """

    name: str
    model_class: str
    evaluate: str
    task: str
    headline_metric: str
    metric_name: str
    higher_is_better: bool = True
    head: str = "head"
    preferred_headlines: tuple[str, ...] = ()
    picture: str | None = None
    picture_caption: str = "the model's figure"

    def headline(self, metrics: dict[str, Any]) -> str:
        """The key a folder with ``metrics`` leads with."""
        return next((k for k in self.preferred_headlines if k in metrics), self.headline_metric)

    @property
    def direction(self) -> str:
        """How to read the headline: ``"higher is better"`` or ``"lower is better"``."""
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def class_path(self) -> str:
        """The dotted class path LightningCLI records (``nodezoo.models.x.Class``)."""
        return self.model_class.replace(":", ".")

    def load_class(self) -> type:
        return _import(self.model_class)

    def load_evaluate(self):
        return _import(self.evaluate)

    def load_picture(self):
        """The picture function, or None when the family has none."""
        return _import(self.picture) if self.picture else None


_REGISTRY: dict[str, ZooArchitecture] = {}


def register(entry: ZooArchitecture) -> ZooArchitecture:
    """Add (or replace) an architecture; returns it."""
    _REGISTRY[entry.name] = entry
    return entry


def registered() -> dict[str, ZooArchitecture]:
    return dict(_REGISTRY)


def get_architecture(name: str) -> ZooArchitecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ZooError(
            f"unknown architecture {name!r} in config.json; this nodezoo knows "
            f"{', '.join(sorted(_REGISTRY))}. Upgrade nodezoo, or check the folder's config.json."
        ) from None


def architecture_for_class(cls: type) -> ZooArchitecture:
    """The entry whose class is ``cls`` (or a base of it)."""
    for entry in _REGISTRY.values():
        module, _, attr = entry.model_class.partition(":")
        for klass in cls.__mro__:
            if klass.__module__ == module and klass.__qualname__ == attr:
                return entry
    raise ZooError(
        f"{cls.__name__} is not a zoo architecture; register it with nodezoo.zoo.register(...)."
    )


def zoo_root() -> Path:
    """The folder holding the shipped zoo folders (``model_cards/`` in the repository)."""
    return Path(str(importlib.resources.files(ZOO_PACKAGE)))


def zoo_names() -> list[str]:
    """Names of the shipped zoo folders (those with a config.json)."""
    root = zoo_root()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file())


# ------------------------------------------------------------------------------------ the zoo
register(
    ZooArchitecture(
        name="image-classifier",
        model_class="nodezoo.models.classifier:ImageClassifier",
        evaluate="nodezoo.zoo.evaluation:evaluate_image_classifier",
        task="image-classification",
        headline_metric="test/acc",
        metric_name="accuracy",
    )
)
# Forecasters on irregular time series (Chen et al. 2018 §5.1, Table 2). The headline is the RMSE
# with 30 observed points: the sparse case the paper's comparison is about.
for _name, _class in (
    ("latent-ode", "nodezoo.models.latent_ode:LatentODE"),
    ("rnn-forecaster", "nodezoo.models.rnn_baseline:RNNBaseline"),
):
    register(
        ZooArchitecture(
            name=_name,
            model_class=_class,
            evaluate="nodezoo.zoo.evaluation:evaluate_spirals",
            task="time-series-forecasting",
            headline_metric="test/rmse_n30",
            metric_name="rmse",
            higher_is_better=False,
        )
    )
del _name, _class
# Continuous normalizing flows (FFJORD; Chen et al. 2018 §4, issue 16). Test NLL in nats per
# example; on dequantised discrete data (digits) bits per dimension lead, as in the papers.
register(
    ZooArchitecture(
        name="cnf",
        model_class="nodezoo.models.cnf:CNF",
        evaluate="nodezoo.zoo.evaluation:evaluate_cnf",
        task="density-estimation",
        headline_metric="test/nll",
        metric_name="nll",
        higher_is_better=False,
        preferred_headlines=("test/bits_per_dim",),
        picture="nodezoo.models.cnf_plots:card_picture",
        picture_caption=(
            "the learned density beside the data, samples, and how points flow from the base "
            "Gaussian over t"
        ),
    )
)
