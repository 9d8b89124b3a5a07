"""Every ODE method by name, whatever its family.

A method is a ``MethodSpec``: its family, whether it controls its own step size, and how to
build its engine. Families:

- ``runge_kutta``: an explicit Butcher tableau run by ``rk.RungeKutta`` (fixed or adaptive
  steps, dense output, every gradient mode);
- ``adams``: a multistep engine (``multistep.Adams``) with the same ``step`` interface, so it
  runs in the fixed-step loop of ``rk.integrate`` (grids, perturb, callbacks, events);
- ``scipy``: a whole-solve backend (``scipy_backend.ScipySolver``), called once per solve.

- ``implicit``: an implicit Runge–Kutta tableau run by ``implicit.ImplicitRungeKutta``, which
  solves its stage equations by Newton iterations inside the same ``step`` interface, so it
  runs in the same loops under the same ``solve``, ``SolverConfig``, statistics and gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from .errors import SolverConfigError
from .implicit import IMPLICIT_METHODS, ImplicitRungeKutta
from .multistep import Adams
from .rk import RungeKutta
from .scipy_backend import ScipySolver
from .tableaus import ALIASES, METHODS, ButcherTableau

Family = Literal["runge_kutta", "adams", "implicit", "scipy"]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    family: Family
    adaptive: bool
    tableau: ButcherTableau | None = None
    implicit: bool = False  # adams: the Moulton corrector

    def engine(self, dtype: torch.dtype, device: torch.device, options: dict):
        """The object that integrates: ``RungeKutta`` (cached per dtype/device), or a fresh
        engine configured by the family's own ``options``."""
        if self.family == "runge_kutta":
            return RungeKutta.get(self.tableau, dtype, device)
        if self.family == "adams":
            return Adams(dtype, device, implicit=self.implicit, **options)
        if self.family == "implicit":
            return ImplicitRungeKutta(IMPLICIT_METHODS[self.name], dtype, device, **options)
        return ScipySolver(**options)


_OTHER_METHODS = {
    "explicit_adams": MethodSpec("explicit_adams", "adams", adaptive=False),
    "implicit_adams": MethodSpec("implicit_adams", "adams", adaptive=False, implicit=True),
    "scipy_solver": MethodSpec("scipy_solver", "scipy", adaptive=True),
    **{
        name: MethodSpec(name, "implicit", adaptive=tab.adaptive)
        for name, tab in IMPLICIT_METHODS.items()
    },
}
# torchdiffeq's older name for the predictor-corrector.
_OTHER_ALIASES = {"fixed_adams": "implicit_adams"}


def method_names() -> list[str]:
    return sorted([*METHODS, *_OTHER_METHODS])


def get_method(method: str) -> MethodSpec:
    """Look a method up by its torchdiffeq-style name, with a helpful error."""
    if not isinstance(method, str):
        return _lookup(method)
    spec = _found.get(method)
    if spec is None:
        spec = _found[method] = _lookup(method)
    return spec


_found: dict[str, MethodSpec] = {}


def _lookup(method: str) -> MethodSpec:
    if not isinstance(method, str):
        raise SolverConfigError(f"method must be a string, got {type(method).__name__}.")
    name = ALIASES.get(method, _OTHER_ALIASES.get(method, method))
    if name in METHODS:
        tab = METHODS[name]
        return MethodSpec(name, "runge_kutta", adaptive=tab.adaptive, tableau=tab)
    if name in _OTHER_METHODS:
        return _OTHER_METHODS[name]
    raise SolverConfigError(
        f"Unknown ODE method {method!r}. Choose one of: {', '.join(method_names())}."
    )
