"""The model zoo: load, save, evaluate and publish pretrained nodezoo models.

``from_pretrained(ref)`` takes a zoo name (``odenet-fashion-mnist``), a local folder or a Hub repo
id; ``list_models()`` lists the shipped zoo with its headline metrics. Zoo model classes also get
``Class.from_pretrained``, ``model.save_pretrained`` and ``model.push_to_hub``.
"""

from __future__ import annotations

from . import registry
from .errors import HubAccessError, WeightsMismatchError, ZooError
from .pretrained import PretrainedMixin, from_pretrained, load_pretrained_weights, save_folder
from .registry import ZooArchitecture, get_architecture, register, registered, zoo_names, zoo_root

__all__ = [
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


def list_models() -> list[dict]:
    """One row per shipped zoo folder: name, architecture, headline metric and params."""
    from .pretrained import read_config, read_metrics

    rows = []
    for name in registry.zoo_names():
        folder = registry.zoo_root() / name
        entry = get_architecture(read_config(folder)["architecture"])
        metrics = read_metrics(folder)
        rows.append(
            {
                "name": name,
                "architecture": entry.name,
                "metric": entry.headline_metric,
                "value": metrics.get(entry.headline_metric),
                "params": metrics.get("model/params"),
                "epochs": metrics.get("run/epochs"),
            }
        )
    return rows


def evaluate(*args, **kwargs) -> dict:
    """See :func:`nodezoo.zoo.evaluate.evaluate` (imported lazily: it pulls in the data layer)."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def entrypoints() -> dict:
    """torch.hub entry points: ``pretrained(ref, **kw)`` plus one per zoo folder, named in snake
    case (``odenet_fashion_mnist``)."""

    def pretrained(ref, **kwargs):
        """Load any zoo model: a zoo name, a folder or a Hub repo id (see from_pretrained)."""
        return from_pretrained(ref, **kwargs)

    def _entry(name):
        def load(**kwargs):
            return from_pretrained(name, **kwargs)

        load.__name__ = name.replace("-", "_")
        load.__doc__ = f"The zoo model {name!r} (keyword args go to from_pretrained)."
        return load

    points = {"pretrained": pretrained}
    points.update({n.replace("-", "_"): _entry(n) for n in registry.zoo_names()})
    return points
