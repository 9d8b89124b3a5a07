"""The shipped zoo as a list (``nodezoo list``, ``nodezoo.list_models``) and as torch.hub entry
points (``hubconf.py``)."""

from __future__ import annotations

from collections.abc import Callable

from ..runs import MODEL_PARAMS
from . import registry
from .folder import ARCHITECTURE_KEY, read_config, read_metrics
from .pretrained import from_pretrained
from .registry import get_architecture

__all__ = ["entrypoints", "list_models"]


def list_models() -> list[dict]:
    """One row per shipped zoo folder: name, architecture, headline metric (the folder's own:
    bits/dim for a digits CNF, NLL for a 2-D one), which way it is better, and params."""
    rows = []
    for name in registry.zoo_names():
        folder = registry.zoo_root() / name
        entry = get_architecture(read_config(folder)[ARCHITECTURE_KEY])
        metrics = read_metrics(folder)
        headline = entry.headline(metrics)
        rows.append(
            {
                "name": name,
                "architecture": entry.name,
                "metric": headline,
                "better": "higher" if entry.higher_is_better else "lower",
                "value": metrics.get(headline),
                "params": metrics.get(MODEL_PARAMS),
                "epochs": metrics.get("run/epochs"),
            }
        )
    return rows


def _entry(name: str) -> Callable:
    def load(**kwargs):
        return from_pretrained(name, **kwargs)

    load.__name__ = name.replace("-", "_")
    load.__doc__ = f"The zoo model {name!r} (keyword args go to from_pretrained)."
    return load


def pretrained(ref, **kwargs):
    """Load any zoo model: a zoo name, a folder or a Hub repo id (see from_pretrained)."""
    return from_pretrained(ref, **kwargs)


def entrypoints() -> dict[str, Callable]:
    """torch.hub entry points: ``pretrained(ref, **kw)`` plus one per zoo folder, named in snake
    case (``odenet_fashion_mnist``)."""
    points: dict[str, Callable] = {"pretrained": pretrained}
    points.update({n.replace("-", "_"): _entry(n) for n in registry.zoo_names()})
    return points
