"""Per-solve statistics: function evaluations and steps, forward and backward.

The backward counts arrive only when autograd runs the backward pass, so a ``SolveStats`` is
mutable and shared between the forward call and the gradient code. ``last_stats()`` returns
the stats of the most recent solve in this thread, for functional callers.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass
class SolveStats:
    nfe_forward: int = 0
    nfe_backward: int = 0
    steps_accepted: int = 0
    steps_rejected: int = 0
    steps_backward: int = 0
    # implicit methods: forward and backward together
    newton_iterations: int = 0
    jacobian_evaluations: int = 0
    lu_decompositions: int = 0

    def add_newton(self, engine) -> None:
        """Add what an implicit engine counted since its last report (others count none)."""
        counts = getattr(engine, "counts", None)
        if counts is None:
            return
        self.newton_iterations += counts.newton_iterations
        self.jacobian_evaluations += counts.jacobian_evaluations
        self.lu_decompositions += counts.lu_decompositions
        counts.newton_iterations = counts.jacobian_evaluations = counts.lu_decompositions = 0

    @property
    def nfe(self) -> int:
        return self.nfe_forward + self.nfe_backward

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


_local = threading.local()


def _set_last(stats: SolveStats) -> None:
    _local.stats = stats


def last_stats() -> SolveStats:
    """Statistics of the most recent solve started in this thread (backward counts included
    once its backward pass has run)."""
    stats = getattr(_local, "stats", None)
    if stats is None:
        raise RuntimeError(
            "No ODE solve has run in this thread yet: call last_stats() after odeint or "
            "solve, in the thread that ran it (or pass stats=SolveStats() to the solve)."
        )
    return stats
