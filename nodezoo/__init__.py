"""nodezoo: the model zoo for neural ordinary differential equations.

``import nodezoo`` loads only the solvers (``odeint``, ``solve``, ...): nodezoo is useful as a
fast torchdiffeq on its own. ``nodezoo.from_pretrained`` and ``nodezoo.list_models`` (as
``timm.create_model``/``timm.list_models``) load the zoo on first use.
"""

import importlib
from typing import Any

from .solvers import (
    SolverConfig,
    SolverError,
    SolveStats,
    last_stats,
    odeint,
    odeint_adjoint,
    odeint_dense,
    odeint_event,
    solve,
    solve_independent,
)

__version__ = "0.1.0"

__all__ = [
    "SolveStats",
    "SolverConfig",
    "SolverError",
    "from_pretrained",
    "last_stats",
    "list_models",
    "odeint",
    "odeint_adjoint",
    "odeint_dense",
    "odeint_event",
    "solve",
    "solve_independent",
]

# Attributes loaded on first access, so the solver-only use stays light: name -> module.
_LAZY = {"from_pretrained": ".zoo.pretrained", "list_models": ".zoo.catalog"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
