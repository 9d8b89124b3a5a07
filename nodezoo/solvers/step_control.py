"""Step-size control: error norms, the PI controller and the automatic first step.

All of it runs on Python floats: the solver reads one scalar error norm per step and decides
everything else on the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import invalid_settings

Norm = Callable[[torch.Tensor], torch.Tensor]


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x) / math.sqrt(max(x.numel(), 1))


def _homogeneous(norm: Norm) -> Norm:
    """Mark a built-in norm as absolutely homogeneous (norm(c x) = |c| norm(x)), which lets the
    step loop scale error ratios on the host (user norms are not assumed to be)."""
    norm.homogeneous = True
    return norm


_homogeneous(rms_norm)


def float_norm(norm: Norm) -> Callable[[torch.Tensor], float]:
    """The norm as a Python float; for the default RMS norm the division happens on the host,
    saving a tensor operation per step."""
    if norm is rms_norm:
        vector_norm, sqrt = torch.linalg.vector_norm, math.sqrt
        return lambda x: float(vector_norm(x)) / sqrt(max(x.numel(), 1))
    return lambda x: float(norm(x))


def mixed_norm(sizes: Sequence[int]) -> Norm:
    """Largest RMS norm over the parts of a flat tuple state (torchdiffeq's tuple default)."""
    sizes = list(sizes)
    if len(sizes) == 1:
        return rms_norm

    def norm(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([rms_norm(p) for p in x.split(sizes)]).max()

    return _homogeneous(norm)


def seminorm(n_measured: int, inner: Norm = rms_norm) -> Norm:
    """Measure only the first ``n_measured`` entries (Kidger et al. 2021).

    In the adjoint system the parameter-gradient channels do not feed back into the dynamics,
    so their error need not limit the step size; skipping them cuts backward NFE.
    """

    def norm(x: torch.Tensor) -> torch.Tensor:
        return inner(x[:n_measured])

    if getattr(inner, "homogeneous", False):
        _homogeneous(norm)
    return norm


def user_norm(norm: Norm, unflatten: Callable) -> Norm:
    """Call a torchdiffeq-style user norm with the state in its own shape (or tuple of shapes)."""

    def wrapped(x: torch.Tensor) -> torch.Tensor:
        return norm(unflatten(x))

    return wrapped


@dataclass(frozen=True)
class StepController:
    """PI step-size controller (Hairer & Wanner; Söderlind).

    After an accepted step with error ratio ``r`` (previous accepted ratio ``r_prev``), the step
    is scaled by ``safety * r**-(icoeff + pcoeff)/k * r_prev**(pcoeff/k)``, clipped to
    ``[1, ifactor]``; after a rejection by ``safety * r**(-1/k)`` clipped to ``[dfactor, 1)``.
    ``k`` is the method's order. The defaults (``pcoeff=0``) are torchdiffeq's I-controller, so
    step sequences match it; ``pcoeff > 0`` smooths step sizes on oscillatory problems.
    """

    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    pcoeff: float = 0.0
    icoeff: float = 1.0

    def __post_init__(self):
        # Outside these ranges a rejected step is retried at the same (or a larger) size, or an
        # accepted one never grows: the solve loops or crawls instead of failing.
        problems = []
        if not 0 < self.safety <= 1:
            problems.append(
                f"safety={self.safety!r} must be in (0, 1]: above 1 a step rejected by a "
                "small margin is retried at the same size forever (0.9 is the usual value)."
            )
        if not 0 < self.dfactor < 1:
            problems.append(
                f"dfactor={self.dfactor!r} must be in (0, 1): it is the most a rejected step "
                "shrinks by (0.2 is the usual value)."
            )
        if not self.ifactor > 1:
            problems.append(
                f"ifactor={self.ifactor!r} must be > 1: it is the most an accepted step grows "
                "by (10 is the usual value)."
            )
        if not (self.icoeff > 0 and self.pcoeff >= 0):
            problems.append(
                f"icoeff={self.icoeff!r} and pcoeff={self.pcoeff!r}: the integral gain must be "
                "> 0 and the proportional gain >= 0 (torchdiffeq's defaults are 1 and 0)."
            )
        if problems:
            raise invalid_settings(problems)

    def start(self, order: int) -> _ControllerState:
        return _ControllerState(self, order)

    def start_predictive(self, order: int) -> _PredictiveState:
        return _PredictiveState(self, order)


class _ControllerState:
    def __init__(self, ctrl: StepController, order: int):
        self.ctrl = ctrl
        self.beta1 = (ctrl.icoeff + ctrl.pcoeff) / order
        self.beta2 = ctrl.pcoeff / order
        self.inv_order = 1.0 / order
        self.prev = 1.0

    def accept(self, ratio: float) -> float:
        c = self.ctrl
        if ratio == 0.0:
            return c.ifactor
        factor = c.safety * ratio**-self.beta1
        if self.beta2:
            factor *= self.prev**self.beta2
        self.prev = max(ratio, 1e-4)
        return min(c.ifactor, max(1.0, factor))

    def reject(self, ratio: float) -> float:
        c = self.ctrl
        if not math.isfinite(ratio):
            return c.dfactor
        return min(1.0, max(c.dfactor, c.safety * ratio**-self.inv_order))


class _PredictiveState:
    """Gustafsson's predictive controller (Hairer & Wanner, Solving ODEs II, IV.8 (8.21)), for
    implicit methods: after an accepted step of ``h`` with error ratio ``r`` following one of
    ``h_prev`` with ``r_prev``, the factor is the smaller of ``safety * r**(-1/k)`` and
    ``safety * r**(-1/k) * (h/h_prev) * (r_prev/r)**(1/k)``: it shrinks the step before the
    error grows, saving the rejections (and Jacobians) an I-controller pays on stiff problems.
    ``safety`` may change per step (fewer Newton iterations, bolder steps); it is at most the
    controller's. Factors are clipped to ``[dfactor, ifactor]``."""

    def __init__(self, ctrl: StepController, order: int):
        self.ctrl = ctrl
        self.inv_order = 1.0 / order
        self.previous: tuple[float, float] | None = None

    def accept(self, ratio: float, h: float, safety: float = 1.0) -> float:
        c = self.ctrl
        if ratio == 0.0:
            return c.ifactor
        factor = c.safety * safety * ratio**-self.inv_order
        if self.previous is not None:
            h_prev, r_prev = self.previous
            factor = min(factor, factor * abs(h / h_prev) * (r_prev / ratio) ** self.inv_order)
        self.previous = (h, max(ratio, 1e-2))
        return min(c.ifactor, max(c.dfactor, factor))

    def reject(self, ratio: float, safety: float = 1.0) -> float:
        c = self.ctrl
        if not math.isfinite(ratio):
            return c.dfactor
        return min(1.0, max(c.dfactor, c.safety * safety * ratio**-self.inv_order))


class FirstStepMemory:
    """The first step of the next solve, learnt from the previous one: pass it as
    ``options["first_step"]`` (explicit Runge–Kutta methods) and each solve starts with the step
    size the controller proposed after the previous solve's first accepted step, then updates it.

    Why: the automatic first step (``initial_step_size``) is cautious by design. On the
    Fashion-MNIST ODE-Net it picks h = 0.085 on [0, 1] where the controller goes on to accept
    0.23 and 0.35, so each solve spends four dopri5 steps (and the selection's extra evaluation)
    where three pass; a training loop solves nearly the same problem thousands of times and can
    start where the last solve settled. The value converges in a few solves to the largest first
    step the controller accepts with its safety margin; when the dynamics change, a rejected first
    attempt shrinks the step as in any solve and the memory follows. ``ODEBlock`` keeps one for
    its forward and one for its adjoint solves (``SolverConfig(warm_start=True)``), in training
    mode only, so evaluation never depends on earlier calls.

    ``value`` is the step size's magnitude (``None``: nothing learnt yet, the automatic first
    step runs); the solve applies its own direction.
    """

    __slots__ = ("value",)

    def __init__(self, value: float | None = None):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"FirstStepMemory value must be a positive finite step, got {value}.")
        self.value = None if value is None else float(value)

    def reset(self) -> None:
        """Forget the learnt step: the next solve selects its first step automatically."""
        self.value = None

    def __repr__(self) -> str:
        return f"FirstStepMemory(value={self.value!r})"


_OPERANDS: dict[tuple, torch.Tensor] = {}


def scalar_operand(value: float, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a cached 0-d tensor of the dtype an operation on ``like`` computes a Python
    scalar in (float32 for half states), so the results are the same to the bit. A Python float
    operand is wrapped into a fresh tensor on every operation, which on small states costs as
    much as the operation itself."""
    dtype = torch.promote_types(like.real.dtype if like.is_complex() else like.dtype, torch.float32)
    key = (value, dtype, like.device)
    operand = _OPERANDS.get(key)
    if operand is None:
        if len(_OPERANDS) >= 256:
            _OPERANDS.clear()
        operand = _OPERANDS[key] = torch.full((), value, dtype=dtype, device=like.device)
    return operand


def initial_step_size(
    f: Callable,
    t0: float,
    y0: torch.Tensor,
    f0: torch.Tensor,
    order: int,
    rtol,
    atol,
    norm: Callable[[torch.Tensor], float],
    direction: float,
) -> float:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4); one extra evaluation.

    ``norm`` returns a Python float (see ``float_norm``).
    """
    with torch.no_grad():
        # 0-d operands: a Python float would be wrapped into a tensor per operation
        as_operand = lambda v: scalar_operand(v, y0) if isinstance(v, float) else v
        scale = y0.abs().mul_(as_operand(rtol)).add_(as_operand(atol))
        d0 = norm(y0 / scale)
        d1 = norm(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = f(t0 + direction * h0, torch.add(y0, f0, alpha=direction * h0))
        d2 = norm((f1 - f0).div_(scale)) / h0
    if not (math.isfinite(d1) and math.isfinite(d2)):
        return direction * 1e-6
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return direction * min(100 * h0, h1)
