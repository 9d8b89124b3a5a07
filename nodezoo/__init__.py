"""nodezoo: the model zoo for neural ordinary differential equations."""

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
)

__version__ = "0.1.0"

__all__ = [
    "SolveStats",
    "SolverConfig",
    "SolverError",
    "last_stats",
    "odeint",
    "odeint_adjoint",
    "odeint_dense",
    "odeint_event",
    "solve",
]
