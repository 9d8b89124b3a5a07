"""``ODEBlock``: a layer that integrates a vector field, the building block of every ODE model."""

from __future__ import annotations

import torch
from torch import nn

from ..solvers import FirstStepMemory, SolverConfig, SolveStats, solve
from .regularisation import RegularisationConfig, solve_regularised, steer_end_time


class ODEBlock(nn.Module):
    """Integrates ``dy/dt = field(t, y)`` from ``t0`` to ``t1`` (or over given times).

    ``forward(y0)`` returns the state at ``t1``; ``forward(y0, t)`` returns the states at every
    time in ``t`` (shape ``(len(t), *y0.shape)``). The last call's statistics are in ``stats``
    (``nfe_forward`` now, ``nfe_backward`` once its backward pass has run).

    ``accumulate_stats=True`` is for a block called many times per model pass (an ODE-RNN
    solves once per observation gap): ``stats`` then sums every call since ``reset_stats()``,
    which the owner calls at the start of its pass, so the NFE callbacks see the whole pass.

    ``regularisation`` (a :class:`RegularisationConfig` or its dict; settable later) switches
    on RNODE's kinetic-energy / Jacobian integrals and STEER, in training mode only. The last
    call's integrals (batch means, summed over calls with ``accumulate_stats``) are in
    ``regularisers`` and their weighted sum, which the model adds to its loss, in
    ``regularisation_loss`` (``None`` when nothing was integrated). With the default (all
    zero) the block solves exactly as without it.

    With ``SolverConfig(warm_start=True)`` the block keeps a ``FirstStepMemory`` for its forward
    solves and one for its adjoint solves: in training mode each solve starts with the step size
    the previous one settled on (``first_steps`` shows them); evaluation solves select their
    first step as usual, so a prediction never depends on earlier calls.
    """

    def __init__(
        self,
        field: nn.Module,
        solver: SolverConfig | dict | None = None,
        t0: float = 0.0,
        t1: float = 1.0,
        accumulate_stats: bool = False,
        regularisation: RegularisationConfig | dict | None = None,
    ):
        super().__init__()
        self.field = field
        self.solver = solver
        self.t0, self.t1 = float(t0), float(t1)
        self.accumulate_stats = accumulate_stats
        self.regularisation = regularisation
        self.reset_stats()

    @property
    def solver(self) -> SolverConfig:
        return self._solver

    @solver.setter
    def solver(self, value: SolverConfig | dict | None) -> None:
        config = SolverConfig.from_dict(value)
        self._solver = config
        # warm_start: the memories live here; solve() gets them, or in evaluation a config
        # without the flag (which solve() would refuse without a memory)
        self.first_steps: tuple[FirstStepMemory, FirstStepMemory] | None = None
        self._evaluation_solver = config
        if config.warm_start:
            self.first_steps = (FirstStepMemory(config.first_step), FirstStepMemory())
            self._evaluation_solver = config.replace(warm_start=False)

    @property
    def regularisation(self) -> RegularisationConfig:
        return self._regularisation

    @regularisation.setter
    def regularisation(self, value: RegularisationConfig | dict | None) -> None:
        config = RegularisationConfig.from_dict(value)
        if config.steer >= abs(self.t1 - self.t0):
            raise ValueError(
                f"STEER's half-width b={config.steer} must be smaller than the block's time "
                f"span |t1 - t0| = {abs(self.t1 - self.t0)}, or the end time could pass t0."
            )
        self._regularisation = config

    def reset_stats(self) -> None:
        """Start new statistics (the backward counts of earlier calls go to the old object)
        and forget the regularisers of earlier calls."""
        self.stats = SolveStats()
        self.regularisers: dict[str, torch.Tensor] = {}

    @property
    def regularisation_loss(self) -> torch.Tensor | None:
        """``sum(weight * integral)`` over the regularisers of the last call(s)."""
        weights = self.regularisation.weights
        terms = [weights[name] * value for name, value in self.regularisers.items()]
        return sum(terms[1:], terms[0]) if terms else None

    @property
    def nfe_forward(self) -> int:
        return self.stats.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self.stats.nfe_backward

    def forward(self, y0: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        reg = self.regularisation if self.training else RegularisationConfig()
        times = t
        if times is None:
            times = torch.tensor([self.t0, self._end_time(reg)], dtype=y0.dtype, device=y0.device)
        elif reg.steer > 0:
            raise ValueError(
                "STEER draws a random end for the block's own interval [t0, t1]; this call "
                "passes explicit times t, which are data and must not move. Set steer=0 for "
                "this block."
            )
        if not self.accumulate_stats:
            self.reset_stats()
        params = tuple(p for p in self.field.parameters() if p.requires_grad)
        terms = tuple(reg.weights)
        config, memories = self._solver, {}
        if self.first_steps is not None and self.training:
            memories["options"] = {"first_step": self.first_steps[0]}
            if config.gradient == "adjoint":
                memories["adjoint_options"] = {"first_step": self.first_steps[1]}
        elif self.first_steps is not None:
            config = self._evaluation_solver
        if not terms:
            ys = solve(self.field, y0, times, config, params=params, stats=self.stats, **memories)
        else:
            ys, integrals = solve_regularised(
                self.field, y0, times, config, terms, params=params, stats=self.stats, **memories
            )
            for name, value in integrals.items():
                earlier = self.regularisers.get(name)
                self.regularisers[name] = value if earlier is None else earlier + value
        return ys[-1] if t is None else ys

    def _end_time(self, reg: RegularisationConfig) -> float:
        """``t1``, or in training with STEER a draw from ``[t1 - b, t1 + b]``."""
        return steer_end_time(self.t1, reg.steer)

    def extra_repr(self) -> str:
        s = self.solver
        text = f"t=[{self.t0}, {self.t1}], method={s.method}, rtol={s.rtol}, gradient={s.gradient}"
        if s.warm_start:
            text += ", warm_start=True"
        if self.regularisation.active:
            reg = self.regularisation
            text += f", kinetic={reg.kinetic}, jacobian={reg.jacobian}, steer={reg.steer}"
        return text


def regularisation_loss(module: nn.Module) -> torch.Tensor | None:
    """The weighted regularisers of every ODE block in ``module`` from its last forward pass
    (what a model adds to its training loss); ``None`` when none is switched on."""
    losses = [
        m.regularisation_loss
        for m in module.modules()
        if isinstance(m, ODEBlock) and m.regularisation_loss is not None
    ]
    return sum(losses[1:], losses[0]) if losses else None


def configure_regularisation(module: nn.Module, config: RegularisationConfig | dict | None) -> None:
    """Give every ODE block in ``module`` the same regularisation (for models that build their
    blocks deep inside, e.g. a classifier's backbone)."""
    config = RegularisationConfig.from_dict(config)
    blocks = [m for m in module.modules() if isinstance(m, ODEBlock)]
    if config.active and not blocks:
        raise ValueError(
            f"regularisation {config.to_dict()} acts on ODE blocks, and this "
            f"{type(module).__name__} has none; use an ODE model or leave regularisation unset."
        )
    for block in blocks:
        block.regularisation = config
