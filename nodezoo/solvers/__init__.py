"""ODE solvers for PyTorch: explicit Runge–Kutta and Adams methods, implicit Runge–Kutta
methods for stiff problems (Newton with autograd Jacobians; ``radau5`` and ``kvaerno5``
adaptive), scipy's as a backend,
dense output, terminal events, and gradients by backprop, the adjoint method or
checkpointing. Pure torch: no Lightning, no Hub (scipy only for ``scipy_solver``).

``odeint``/``odeint_adjoint``/``odeint_event``/``odeint_dense`` match torchdiffeq's API, so
``import nodezoo as torchdiffeq`` works (its test suite passes, implicit methods included);
``solve(func, y0, t, SolverConfig(...))`` is the config-driven entry point models use;
``solve_independent`` solves each sample of a batch with its own times and steps;
``FirstStepMemory`` (``SolverConfig(warm_start=True)`` in an ``ODEBlock``) starts each solve of a
training loop with the step size the previous one settled on.
"""

from .config import SolverConfig
from .dense import odeint_dense
from .errors import (
    MaxStepsExceeded,
    NewtonFailed,
    NonFiniteInitialState,
    NonFiniteState,
    SolverConfigError,
    SolverError,
    StepSizeUnderflow,
)
from .independent import solve_independent
from .methods import MethodSpec, get_method, method_names
from .odeint import odeint, odeint_adjoint, odeint_event, solve
from .stats import SolveStats, last_stats
from .step_control import FirstStepMemory, StepController
from .tableaus import METHODS, ButcherTableau, get_tableau

__all__ = [
    "METHODS",
    "ButcherTableau",
    "FirstStepMemory",
    "MaxStepsExceeded",
    "MethodSpec",
    "NewtonFailed",
    "NonFiniteInitialState",
    "NonFiniteState",
    "SolveStats",
    "SolverConfig",
    "SolverConfigError",
    "SolverError",
    "StepController",
    "StepSizeUnderflow",
    "get_method",
    "get_tableau",
    "last_stats",
    "method_names",
    "odeint",
    "odeint_adjoint",
    "odeint_dense",
    "odeint_event",
    "solve",
    "solve_independent",
]
