"""Load a state dict into a model strictly, naming every key that does not fit.

PyTorch's ``load_state_dict(strict=True)`` reports problems as one long RuntimeError, and
huggingface_hub's mixin loads with ``strict=False`` (a missing layer stays random, silently).
Both the zoo (safetensors folders) and the run files (Lightning checkpoints) load through here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .errors import WeightsMismatchError

__all__ = ["load_state_strict"]

MAX_LISTED = 8


def _listing(keys: Iterable[str], limit: int = MAX_LISTED) -> str:
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
