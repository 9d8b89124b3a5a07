"""``SolverConfig``: the typed, serialisable solver settings that models and recipes share."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from .errors import SolverConfigError, invalid_settings
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
    ``per_sample``: each sample of the batch (the state's first dimension) gets its own steps
    and error control (``solve_independent``: results independent of the rest of the batch);
    explicit Runge–Kutta methods with ``backprop`` or ``checkpoint`` gradients.
    ``warm_start``: an ``ODEBlock`` in training mode starts each solve with the step size its
    previous solve settled on (a ``FirstStepMemory`` for the forward and one for the adjoint
    solves; the first starts at ``first_step`` if given) instead of the cautious automatic first
    step: a step fewer per solve on the ODE-Net. Evaluation solves are unaffected. ``solve``
    itself keeps no state: with ``warm_start`` it needs ``options={"first_step":
    FirstStepMemory()}``. Adaptive explicit Runge–Kutta methods, native backend.
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
    per_sample: bool = False
    warm_start: bool = False

    def __post_init__(self):
        problems = self._problems()
        if problems:
            raise invalid_settings(problems)

    def _problems(self) -> list[str]:
        """Every invalid setting, one sentence each (so a config is fixed in one go)."""
        problems = []
        for name in ("method", "adjoint_method"):
            value = getattr(self, name)
            if value is not None or name == "method":
                try:
                    get_method(value)
                except SolverConfigError as err:
                    problems.append(str(err))
        methods_known = not problems
        if self.gradient not in GRADIENTS:
            problems.append(f"gradient={self.gradient!r} is not one of {', '.join(GRADIENTS)}.")
        if self.backend not in BACKENDS:
            problems.append(f"backend={self.backend!r} is not one of {', '.join(BACKENDS)}.")
        tolerances = {}
        for name in ("rtol", "atol", "adjoint_rtol", "adjoint_atol"):
            value = getattr(self, name)
            if value is not None:
                tolerances[name] = tolerance_values(value)
                if tolerances[name] is None:
                    problems.append(_bad_tolerance(name, value))
        for name in ("step_size", "first_step"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and value > 0):
                problems.append(f"{name} must be positive, got {value!r}.")
        steps = self.max_steps
        if not (_is_number(steps) and float(steps).is_integer() and steps >= 1):
            problems.append(f"max_steps must be a whole number of at least 1, got {steps!r}.")
        if methods_known and None not in tolerances.values():
            problems += self._zero_tolerance_problems(tolerances)
        if self.per_sample not in (True, False):
            problems.append(f"per_sample must be true or false, got {self.per_sample!r}.")
        elif self.per_sample:
            problems += self._per_sample_problems(methods_known)
        if self.warm_start not in (True, False):
            problems.append(f"warm_start must be true or false, got {self.warm_start!r}.")
        elif self.warm_start and methods_known:
            problems += self._warm_start_problems()
        return problems

    def _warm_start_problems(self) -> list[str]:
        """``warm_start`` hands a ``FirstStepMemory`` to the explicit Runge–Kutta step loop of
        every adaptive solve the block runs (forward, and the adjoint's backward)."""
        problems = []
        methods = [("method", self.method)]
        if self.gradient == "adjoint" and self.adjoint_method is not None:
            methods.append(("adjoint_method", self.adjoint_method))
        for name, method in methods:
            spec = get_method(method)
            if spec.family != "runge_kutta" or not spec.adaptive:
                problems.append(
                    f"warm_start=True learns the first step of adaptive explicit Runge–Kutta "
                    f"solves; {name}={method!r} is not one (use dopri5, tsit5, bosh3, ...)."
                )
        if self.step_size is not None:
            problems.append(
                "warm_start=True learns the first step of adaptive solves; step_size makes "
                "every step fixed: drop one of the two."
            )
        if self.per_sample:
            problems.append(
                "warm_start=True and per_sample=True: per-sample solves pick each sample's "
                "first step on their own; turn one of the two off."
            )
        if self.backend != "native":
            problems.append("warm_start=True needs backend='native' (nodezoo's step loop).")
        return problems

    def _per_sample_problems(self, methods_known: bool) -> list[str]:
        """What ``solve_independent`` cannot do, said when the config is made."""
        problems = []
        if self.gradient == "adjoint":
            problems.append(
                "per_sample=True differentiates by backprop or checkpoint, not the adjoint (per "
                "sample it would carry a parameter gradient per sample): set gradient="
                "'checkpoint' (exact, little memory) or 'backprop'."
            )
        if methods_known and get_method(self.method).family != "runge_kutta":
            problems.append(
                f"per_sample=True runs explicit Runge–Kutta methods; method={self.method!r} is "
                "not one (use dopri5, tsit5, bosh3, rk4, ...)."
            )
        if self.backend != "native":
            problems.append("per_sample=True needs backend='native'.")
        return problems

    def _zero_tolerance_problems(self, tolerances: dict) -> list[str]:
        """An adaptive method sizes steps by error / (atol + rtol |y|): with both 0 (for some
        entry) no step is ever small enough. The adjoint's pair is checked where it is set or
        runs another method; otherwise it is the forward pair."""
        checks = [("rtol", "atol", self.method, self.adaptive)]
        if self.gradient == "adjoint":
            method = self.adjoint_method or self.method
            adaptive = self.step_size is None and get_method(method).adaptive
            checks.append(("adjoint_rtol", "adjoint_atol", method, adaptive))
        problems = []
        for r_name, a_name, method, adaptive in checks:
            inherited = r_name not in tolerances and a_name not in tolerances
            if not adaptive or (inherited and problems):
                continue
            entry = _both_zero(
                tolerances.get(r_name, tolerances["rtol"]),
                tolerances.get(a_name, tolerances["atol"]),
            )
            if entry is not None:
                where = f" (entry {entry})" if entry >= 0 else ""
                problems.append(
                    f"{r_name} and {a_name} are both 0{where}: adaptive method {method!r} cannot "
                    f"control the error against a zero tolerance. Give {a_name} > 0 (absolute "
                    f"error) or {r_name} > 0 (relative), or set step_size for fixed steps."
                )
        return problems

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
        if not unknown:
            return cls(**data)
        problems = [f"Unknown solver setting(s) {unknown}; valid keys are {sorted(known)}."]
        try:
            cls(**{k: v for k, v in data.items() if k in known})
        except SolverConfigError as err:
            problems += getattr(err, "problems", [str(err)])
        raise invalid_settings(problems)


def _is_number(value: Any) -> bool:
    """A real number (numpy's too), not a bool, a string or a container. Plain floats and ints
    are answered first: every ``odeint`` call builds a config, and the ABC check is slow."""
    kind = type(value)
    if kind is float or kind is int:
        return True
    return isinstance(value, numbers.Real) and kind is not bool


def tolerance_values(value: Any) -> list[float] | None:
    """The tolerance's values (one, or one per tuple entry), or None when it is not a valid
    tolerance: non-negative numbers or a tensor of them."""
    if type(value) is float:  # the usual case, without the generic checks below
        return [value] if value >= 0 else None
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if values and all(_is_number(v) and v >= 0 for v in values):
        return [float(v) for v in values]
    return None


def _both_zero(rtols: list[float], atols: list[float]) -> int | None:
    """The first entry whose rtol and atol are both 0 (-1 for scalar tolerances), else None;
    a single value stands for every entry."""
    n = max(len(rtols), len(atols))
    if len(rtols) not in (1, n) or len(atols) not in (1, n):
        return None  # a length mismatch is the solve's error to report, with the state's parts
    for i in range(n):
        if rtols[min(i, len(rtols) - 1)] == 0 and atols[min(i, len(atols) - 1)] == 0:
            return i if n > 1 else -1
    return None


def _bad_tolerance(name: str, value: Any) -> str:
    message = (
        f"{name} must be a non-negative number (or one per tuple entry), got {value!r} "
        f"({type(value).__name__})."
    )
    mantissa, e, exponent = value.partition("e") if isinstance(value, str) else ("", "", "")
    if e and mantissa.lstrip("+-").isdigit() and exponent.lstrip("+-").isdigit():
        message += (
            f" YAML 1.1 (PyYAML) reads {value} as text; write {mantissa}.0e{exponent} "
            "(a dot in the mantissa) or pass a float."
        )
    return message
