"""Regularised dynamics that make an ODE cheaper to solve: RNODE's kinetic-energy and
Jacobian-Frobenius integrals (Finlay et al. 2020) and STEER's random end time (Ghosh et al. 2020).

The integrals ride along the solve as extra state channels: the state becomes the tuple
``(z, r)`` with ``dr/dt = +-[||f||^2, ||eps^T df/dz||^2]`` per sample (the sign of the time
direction, so the integrals are positive), and backprop, the adjoint and checkpointing all
differentiate ``r`` like any other output of ``solve``. The Jacobian term is Hutchinson's
estimate, ``E[||eps^T J||^2] = ||J||_F^2``, with a Rademacher ``eps`` of the state's shape drawn
once per call and kept along the whole solve (and the adjoint's backward solve). It costs one
vector-Jacobian product per evaluation (a double backward in the backward pass), about twice
the cost of an evaluation; the kinetic term alone costs nothing extra.

Error control: the ``r`` channels are left out of the forward solve's error norm (a seminorm,
as Kidger et al. 2021 do for the adjoint's parameter channels), through ``solve``'s ``norm``
option. Nothing feeds back from ``r`` into ``z``, so their local error never harms the
solution; measured, they would force smaller steps (20 evaluations instead of 14 on the test
suite's MLP field) to integrate a penalty more precisely than the loss needs. Left out, the
forward pass takes exactly the steps the unregularised solve of the same field takes. The
adjoint's backward solve takes no norm through ``solve``: there ``r`` sits in the state part of
the solver's own norm, among ``B x state`` entries of ``z``; its adjoint is constant.

Tuple states (a CNF's ``(z, log-density change)``): the generic integrands would not know which
part is "the" state, so such a field says it itself through a ``field_and_regularisers(t,
state, terms)`` method returning ``(d state/dt, {term: per-sample rate})``. A CNF's dynamics
already form ``eps^T df/dz`` for Hutchinson's trace, so its Jacobian term reuses that product
and that ``eps``, as RNODE does, instead of paying for a second one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch

from ..solvers import SolverConfig, SolveStats, solve
from ..solvers.step_control import rms_norm

TERMS = ("kinetic", "jacobian")


@dataclass(frozen=True)
class RegularisationConfig:
    """Weights of the regularisers of an ODE block (plain numbers, so they serialise).

    ``kinetic``: weight of ``int ||f(t, z)||^2 dt``; ``jacobian``: weight of
    ``int ||df/dz||_F^2 dt`` (Hutchinson estimate). Both are sums over a sample's state
    entries, integrated over the solve and averaged over the batch (the first dimension of the
    state), as in RNODE; the weighted sum is what a model adds to its loss. ``steer``: STEER's
    half-width ``b``: in training the block integrates to an end time drawn uniformly from
    ``[t1 - b, t1 + b]`` (``0 <= b < |t1 - t0|``). All act in training mode only; at evaluation
    the block solves exactly as an unregularised one.
    """

    kinetic: float = 0.0
    jacobian: float = 0.0
    steer: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"regularisation {f.name} must be a number, got {type(value).__name__}."
                )
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(
                    f"regularisation {f.name} must be a finite number >= 0, got {value}."
                )
            object.__setattr__(self, f.name, float(value))

    @property
    def weights(self) -> dict[str, float]:
        """The integral terms that are switched on, with their weights."""
        return {name: getattr(self, name) for name in TERMS if getattr(self, name) > 0}

    @property
    def active(self) -> bool:
        return bool(self.weights) or self.steer > 0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | RegularisationConfig | None) -> RegularisationConfig:
        """From a plain dict (YAML, JSON); unknown keys are an error, not ignored."""
        if data is None:
            return cls()
        if isinstance(data, RegularisationConfig):
            return data
        if not isinstance(data, dict):
            raise TypeError(
                f"regularisation must be a dict or RegularisationConfig, got {type(data).__name__}."
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown regularisation setting(s) {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**data)


def rademacher_like(z: torch.Tensor) -> torch.Tensor:
    """Entries +-1 with equal probability (Hutchinson's lowest-variance probe)."""
    return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype).mul_(2).sub_(1)


def _per_sample_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch (first) dimension; a 1-D state is one sample."""
    return x.pow(2).sum() if x.dim() < 2 else x.pow(2).flatten(1).sum(1)


class RegularisedField:
    """``(t, (z, r)) -> (f(t, z), dr/dt)``: the field with its regulariser integrands.

    ``direction`` (+-1) makes the integrals positive when time runs backwards. With the
    Jacobian term the vector-Jacobian product is taken with a graph whenever the caller
    differentiates (backprop, or the adjoint's and checkpoint's backward passes, which call the
    field under ``enable_grad``), so its gradient flows by double backward.
    """

    def __init__(self, field, terms: Sequence[str], direction: float, probe: torch.Tensor | None):
        self.field = field
        self.terms = tuple(terms)
        self.direction = direction
        self.probe = probe

    def __call__(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]):
        inner = state[0] if len(state) == 2 else state[:-1]
        if hasattr(self.field, "field_and_regularisers"):
            f, rates = self.field.field_and_regularisers(t, inner, self.terms)
            r_dot = torch.stack([rates[name] for name in self.terms])
            return (*(f if isinstance(f, tuple) else (f,)), r_dot * self.direction)
        z = inner
        if "jacobian" not in self.terms:
            f = self.field(t, z)
            rates = {"kinetic": _per_sample_sum(f)}
        else:
            differentiating = torch.is_grad_enabled()
            with torch.enable_grad():
                z_in = z if z.requires_grad else z.detach().requires_grad_(True)
                f = self.field(t, z_in)
                (vjp,) = torch.autograd.grad(
                    f, z_in, self.probe, create_graph=differentiating, allow_unused=True
                )
            if vjp is None:  # f does not depend on z
                vjp = torch.zeros_like(z)
            if not differentiating:
                f = f.detach()
            rates = {"jacobian": _per_sample_sum(vjp)}
            if "kinetic" in self.terms:
                rates["kinetic"] = _per_sample_sum(f)
        r_dot = torch.stack([rates[name] for name in self.terms])
        return f, r_dot * self.direction


def _state_norm(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The solver's default norm of the ODE state alone (every part but the last: RMS, the
    largest over the parts of a tuple): the regulariser channels are not error-controlled, and
    the state is measured exactly as in the unregularised solve."""
    return torch.stack([rms_norm(part) for part in state[:-1]]).max()


def steer_end_time(t1: float, half_width: float) -> float:
    """STEER's end time: uniform in ``[t1 - b, t1 + b]`` (``t1`` itself when ``b = 0``). The
    owners check ``b`` against their time span when it is configured (ODEBlock, CNF)."""
    if half_width == 0:
        return t1
    return t1 + half_width * (2 * float(torch.rand(())) - 1)


def solve_regularised(
    field,
    y0: torch.Tensor,
    t: torch.Tensor,
    config: SolverConfig,
    terms: Sequence[str],
    *,
    params: Sequence[torch.Tensor],
    stats: SolveStats,
    options: dict | None = None,
    adjoint_options: dict | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``solve`` with the integrals of ``terms`` (``kinetic``/``jacobian``) as extra state.
    ``y0`` is a tensor, or a tuple when ``field`` has ``field_and_regularisers``. ``options``
    go to ``solve`` beside the norm that leaves the integrals out of the error control.

    Returns the states at ``t`` (as ``solve`` would) and each integral over the whole of ``t``
    averaged over the batch (0-d tensors that carry gradients in every gradient mode).
    """
    if config.per_sample:
        raise ValueError(
            "RNODE's integrals are solved as a tuple state, which per-sample solves "
            "(per_sample=True) do not take: turn one of the two off for this block."
        )
    is_tuple = isinstance(y0, tuple)
    if is_tuple and not hasattr(field, "field_and_regularisers"):
        raise TypeError(
            "Regularised solves need a single-tensor state, or a field with a "
            "field_and_regularisers(t, state, terms) method that says which part is the state; "
            f"this block's state is a tuple and its {type(field).__name__} has no such method. "
            "Turn the regularisation off for it."
        )
    if not is_tuple and not isinstance(y0, torch.Tensor):
        raise TypeError(
            f"The state must be a tensor or a tuple of tensors, got {type(y0).__name__}."
        )
    unknown = sorted(set(terms) - set(TERMS))
    if unknown or not terms:
        raise ValueError(f"terms must be a non-empty subset of {TERMS}, got {list(terms)}.")
    z0 = y0[0] if is_tuple else y0
    batch_shape = z0.shape[:1] if z0.dim() >= 2 else ()
    r0 = z0.new_zeros((len(terms), *batch_shape))
    direction = 1.0 if float(t[-1]) >= float(t[0]) else -1.0
    probe = rademacher_like(z0) if "jacobian" in terms and not is_tuple else None
    augmented = RegularisedField(field, terms, direction, probe)
    *ys, rs = solve(
        augmented, (*(y0 if is_tuple else (y0,)), r0), t, config, params=params, stats=stats,
        options={**(options or {}), "norm": _state_norm}, adjoint_options=adjoint_options,
    )  # fmt: skip
    integrals = rs[-1].reshape(len(terms), -1).mean(1)
    return (tuple(ys) if is_tuple else ys[0]), dict(zip(terms, integrals, strict=True))
