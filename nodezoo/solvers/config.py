"""``SolverConfig``: the typed, serialisable solver settings that models and recipes share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .errors import SolverConfigError
from .methods import get_method

Gradient = Literal["backprop", "adjoint", "checkpoint"]
Backend = Literal["native", "torchdiffeq"]
GRADIENTS = ("backprop", "adjoint", "checkpoint")
BACKENDS = ("native", "torchdiffeq")


@dataclass(frozen=True)
class SolverConfig:
    """How to integrate and how to differentiate.

    ``gradient``: ``backprop`` differentiates through the solver's operations (memory grows with
    the number of steps); ``adjoint`` solves the paper's reverse-time augmented system (memory
    constant in the number of steps, gradients approximate to the adjoint tolerances);
    ``checkpoint`` keeps only each accepted step's starting state and recomputes the step in the
    backward pass (exact gradients of the discrete solve, memory O(steps x state)).
    ``adjoint_*`` default to the forward settings. ``seminorm`` leaves the parameter-gradient
    channels out of the adjoint's error control (Kidger et al. 2021). ``step_size`` makes any
    method take fixed steps; a fixed-step method (``rk4``...) without one steps from output time
    to output time, as in torchdiffeq. ``method`` is any name of ``methods.method_names()``
    (Runge–Kutta, Adams, ``scipy_solver``); ``checkpoint`` needs a Runge–Kutta method.
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    step_size: float | None = None
    first_step: float | None = None
    max_steps: int = 100_000
    gradient: Gradient = "adjoint"
    adjoint_method: str | None = None
    adjoint_rtol: float | None = None
    adjoint_atol: float | None = None
    seminorm: bool = True
    backend: Backend = "native"

    def __post_init__(self):
        get_method(self.method)
        if self.adjoint_method is not None:
            get_method(self.adjoint_method)
        if self.gradient not in GRADIENTS:
            raise SolverConfigError(
                f"gradient={self.gradient!r} is not one of {', '.join(GRADIENTS)}."
            )
        if self.backend not in BACKENDS:
            raise SolverConfigError(
                f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}."
            )
        for name in ("rtol", "atol", "adjoint_rtol", "adjoint_atol"):
            value = getattr(self, name)
            values = value.tolist() if hasattr(value, "tolist") else value
            values = values if isinstance(values, (list, tuple)) else [values]
            if value is not None and not all(v >= 0 for v in values):
                raise SolverConfigError(f"{name} must be non-negative, got {value}.")
        if self.step_size is not None and not self.step_size > 0:
            raise SolverConfigError(f"step_size must be positive, got {self.step_size}.")
        if self.max_steps < 1:
            raise SolverConfigError(f"max_steps must be at least 1, got {self.max_steps}.")

    @property
    def adaptive(self) -> bool:
        return self.step_size is None and get_method(self.method).adaptive

    def replace(self, **changes: Any) -> SolverConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | SolverConfig | None) -> SolverConfig:
        """Build from a plain dict (YAML, JSON); unknown keys are an error, not ignored."""
        if data is None:
            return cls()
        if isinstance(data, SolverConfig):
            return data
        if not isinstance(data, dict):
            raise SolverConfigError(
                f"A solver config must be a dict or SolverConfig, got {type(data).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SolverConfigError(
                f"Unknown solver setting(s) {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**data)
