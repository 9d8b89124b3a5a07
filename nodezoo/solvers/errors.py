"""Exceptions raised by the solvers: each says what went wrong and what to try."""

from __future__ import annotations


class SolverError(RuntimeError):
    """An ODE solve could not be completed.

    ``t`` is the time the solver reached, ``step_size`` the last step size it tried.
    """

    def __init__(self, message: str, *, t: float | None = None, step_size: float | None = None):
        super().__init__(message)
        self.t = t
        self.step_size = step_size


class MaxStepsExceeded(SolverError):
    """The solve needed more steps than ``max_steps`` allows."""


class StepSizeUnderflow(SolverError):
    """The adaptive step size became too small to make progress (a stiff or blowing-up problem)."""


class NonFiniteState(SolverError):
    """The state or the vector field became NaN or infinite."""


class NewtonFailed(SolverError):
    """Newton's iterations for an implicit step did not converge, even with a fresh Jacobian
    and (for adaptive methods) smaller steps.

    ``non_finite``: the iterates became NaN or infinite (the vector field returned such values
    at the stages, or Newton diverged); an adaptive solve that fails this way at ever smaller
    steps reports a ``NonFiniteState`` instead, as the explicit methods do."""

    def __init__(
        self,
        message: str,
        *,
        t: float | None = None,
        step_size: float | None = None,
        non_finite: bool = False,
    ):
        super().__init__(message, t=t, step_size=step_size)
        self.non_finite = non_finite


class SolverConfigError(ValueError):
    """Invalid solver settings or inputs (shapes, dtypes, devices, times, options)."""


def invalid_settings(problems: list[str]) -> SolverConfigError:
    """One error for all ``problems``: a single one as it is, several as a list."""
    if len(problems) == 1:
        err = SolverConfigError(problems[0])
    else:
        listed = "".join(f"\n  - {p}" for p in problems)
        err = SolverConfigError(f"{len(problems)} solver settings are invalid:{listed}")
    err.problems = list(problems)
    return err


class NonFiniteInitialState(SolverConfigError, NonFiniteState):
    """y0 holds NaN or infinite values: refused before solving. A ``SolverConfigError`` (bad
    input), and a ``NonFiniteState`` for code that catches a diverging state."""

    def __init__(self, message: str):
        NonFiniteState.__init__(self, message)
