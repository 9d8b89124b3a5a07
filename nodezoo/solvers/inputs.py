"""Checks and conversions of a solve's inputs, shared by ``solve``, ``odeint_dense`` and
``solve_independent``: the state (floating point, one dtype and device, finite), tolerances,
the parameters a gradient reaches and the dtype ``func`` sees ``t`` in."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .config import tolerance_values
from .errors import NonFiniteInitialState, SolverConfigError

State = torch.Tensor | tuple[torch.Tensor, ...]


def check_state(y0: State) -> tuple[list[torch.Tensor], bool]:
    is_tuple = isinstance(y0, (tuple, list))
    parts = list(y0) if is_tuple else [y0]
    if not parts:
        raise SolverConfigError("y0 is an empty tuple; give at least one tensor.")
    for i, p in enumerate(parts):
        name = f"y0[{i}]" if is_tuple else "y0"
        if not isinstance(p, torch.Tensor):
            raise SolverConfigError(f"{name} must be a torch.Tensor, got {type(p).__name__}.")
        if not p.is_floating_point():
            raise SolverConfigError(
                f"{name} has dtype {p.dtype}; ODE states must be floating point "
                "(e.g. y0.float() or y0.double())."
            )
        if p.dtype != parts[0].dtype or p.device != parts[0].device:
            raise SolverConfigError(
                f"All parts of a tuple state must share dtype and device: y0[0] is "
                f"{parts[0].dtype} on {parts[0].device}, {name} is {p.dtype} on {p.device}."
            )
    if not all(all_finite(p) for p in parts):  # one check per solve
        raise NonFiniteInitialState(non_finite_report(parts, is_tuple))
    return parts, is_tuple


def all_finite(x: torch.Tensor) -> bool:
    """Whether every entry is finite: a finite sum proves it (NaN and inf propagate), at a
    twentieth of ``isfinite(x).all()``'s cost; only a non-finite sum (or an overflow) looks
    entry by entry. Detached, so nothing is recorded for autograd."""
    total = x.detach().sum()
    if math.isfinite(total.abs() if total.is_complex() else total):
        return True
    return bool(torch.isfinite(x.detach()).all())


def non_finite_report(parts: list[torch.Tensor], is_tuple: bool) -> str:
    """How many entries of y0 (of which part) are NaN or infinite, and where to look."""
    found = []
    for i, p in enumerate(p.detach() for p in parts):
        nan = int(torch.isnan(p).sum())
        inf = int(torch.isinf(p).sum())
        if nan or inf:
            counts = " and ".join(
                f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "infinite")) if n
            )
            found.append(
                f"{f'y0[{i}] has ' if is_tuple else ''}{counts} of its {p.numel()} "
                f"{'entry' if p.numel() == 1 else 'entries'}"
            )
    return (
        f"y0 is not finite: {'; '.join(found)}, so no solve can start from it. Check the initial "
        "state before solving; in a model, check the input data and the layers before the ODE "
        "block (a diverging run makes them NaN: lower the learning rate or clip gradients)."
    )


def tolerance(tol, parts: list[torch.Tensor], name: str):
    """A float, or a per-part tensor (torchdiffeq allows one per tuple entry). Any form
    ``SolverConfig`` accepts: Python and numpy numbers, 0-d arrays and tensors, sequences."""
    values = tolerance_values(tol)
    if values is None:
        raise SolverConfigError(f"{name} must be non-negative, got {tol}.")
    if len(values) == 1:
        return values[0]
    if len(values) == len(parts):
        return torch.cat([p.new_full((p.numel(),), v) for v, p in zip(values, parts)])
    raise SolverConfigError(
        f"{name} must be a float or one float per tuple entry ({len(parts)}); got "
        f"{len(values)} values."
    )


def default_params(func: Callable) -> tuple[torch.Tensor, ...]:
    if isinstance(func, torch.nn.Module):
        return tuple(p for p in func.parameters() if p.requires_grad)
    return ()


def time_dtype(y: torch.Tensor) -> torch.dtype:
    """torchdiffeq's rule: func sees t in the state's (real) dtype, whatever t's dtype."""
    return y.real.dtype if y.is_complex() else y.dtype


def check_time_tensor(t: torch.Tensor, y: torch.Tensor) -> None:
    """Output times must be floating point and on the state's device."""
    if not t.is_floating_point():
        raise SolverConfigError(f"t has dtype {t.dtype}; use floating-point times (t.float()).")
    if t.device != y.device:
        raise SolverConfigError(
            f"t is on {t.device} but y0 is on {y.device}; put both on the same device."
        )
