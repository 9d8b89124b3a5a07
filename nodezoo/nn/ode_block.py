"""``ODEBlock``: a layer that integrates a vector field, the building block of every ODE model."""

from __future__ import annotations

import torch
from torch import nn

from ..solvers import SolverConfig, SolveStats, solve


class ODEBlock(nn.Module):
    """Integrates ``dy/dt = field(t, y)`` from ``t0`` to ``t1`` (or over given times).

    ``forward(y0)`` returns the state at ``t1``; ``forward(y0, t)`` returns the states at every
    time in ``t`` (shape ``(len(t), *y0.shape)``). The last call's statistics are in ``stats``
    (``nfe_forward`` now, ``nfe_backward`` once its backward pass has run).

    ``accumulate_stats=True`` is for a block called many times per model pass (an ODE-RNN
    solves once per observation gap): ``stats`` then sums every call since ``reset_stats()``,
    which the owner calls at the start of its pass, so the NFE callbacks see the whole pass.
    """

    def __init__(
        self,
        field: nn.Module,
        solver: SolverConfig | dict | None = None,
        t0: float = 0.0,
        t1: float = 1.0,
        accumulate_stats: bool = False,
    ):
        super().__init__()
        self.field = field
        self.solver = SolverConfig.from_dict(solver)
        self.t0, self.t1 = float(t0), float(t1)
        self.accumulate_stats = accumulate_stats
        self.reset_stats()

    def reset_stats(self) -> None:
        """Start new statistics (the backward counts of earlier calls go to the old object)."""
        self.stats = SolveStats()

    @property
    def nfe_forward(self) -> int:
        return self.stats.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self.stats.nfe_backward

    def forward(self, y0: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        times = t
        if times is None:
            times = torch.tensor([self.t0, self.t1], dtype=y0.dtype, device=y0.device)
        if not self.accumulate_stats:
            self.reset_stats()
        params = tuple(p for p in self.field.parameters() if p.requires_grad)
        ys = solve(self.field, y0, times, self.solver, params=params, stats=self.stats)
        return ys[-1] if t is None else ys

    def extra_repr(self) -> str:
        s = self.solver
        return f"t=[{self.t0}, {self.t1}], method={s.method}, rtol={s.rtol}, gradient={s.gradient}"
