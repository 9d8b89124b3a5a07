"""Adams' corrector loop and jumps, and scipy's step-size arguments (mutation survivors of
``multistep.Adams.step`` and ``scipy_backend.ScipySolver``; see tests/README.md, "Mutation
testing"), against torchdiffeq and scipy called directly with the same settings."""

import math
import warnings

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolverConfigError, SolveStats

F64 = dict(dtype=torch.float64)
Y0 = torch.tensor([1.0, 0.0], **F64)
T = torch.tensor([0.0, 2.0], **F64)


def oscillator(t, y):
    return torch.stack([y[1], -y[0]])


class Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, t, y):
        self.calls += 1
        return self.f(t, y)


@pytest.mark.parametrize(
    "max_iters, tol, converges",
    [(4, 1e-6, True), (20, 1e-12, True), (1, 1e-6, False), (2, 1e-8, False)],
)
def test_implicit_adams_corrector_matches_torchdiffeq(max_iters, tol, converges):
    """The corrector stops when the change is within rtol/atol, else after max_iters and drops
    the oldest derivative: on an even grid the same values and evaluations as torchdiffeq.
    (The two convergence tests differ in detail, so cases where both stop at the same
    iteration are chosen: e.g. max_iters=8 at 1e-8 differs by 2e-9.)"""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    options = {"step_size": 0.25, "max_iters": max_iters}
    ours, theirs = Counted(oscillator), Counted(oscillator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = nodezoo.odeint(ours, Y0, T, method="implicit_adams", rtol=tol, atol=tol,
                           options=options)[-1]  # fmt: skip
    ref = torchdiffeq.odeint(theirs, Y0, T, method="implicit_adams", rtol=tol, atol=tol,
                             options=options)[-1]  # fmt: skip
    assert float((y - ref).abs().max()) < 1e-13
    assert ours.calls == theirs.calls
    failures = [w for w in caught if "did not converge" in str(w.message)]
    assert bool(failures) != converges


def test_implicit_adams_corrector_on_a_zero_field_converges_at_once():
    """f = 0: the prediction is exact, so each of the 6 Adams steps (after 2 rk4 starter steps)
    costs one corrector evaluation more than explicit Adams."""
    zero = Counted(lambda t, y: torch.zeros_like(y))
    nodezoo.odeint(zero, Y0, T, method="explicit_adams", options={"step_size": 0.25})
    explicit = zero.calls
    zero.calls = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = nodezoo.odeint(zero, Y0, T, method="implicit_adams", options={"step_size": 0.25})
    assert zero.calls == explicit + 6
    assert torch.equal(y[-1], Y0)


@pytest.mark.parametrize("method", ["implicit_adams", "explicit_adams"])
@pytest.mark.parametrize("jump", [0.5, 1.0])
def test_adams_steps_ending_on_a_jump_see_its_left_side(method, jump):
    """f = 1 from t = jump on, 0 before: y(jump) = 0 exactly when the step ending on the jump
    evaluates f just left of it (rk4 starter for jump = 0.5, the corrector for 1.0)."""
    t = torch.tensor([0.0, jump, 2.0], **F64)

    def step(t, y):
        return (t >= jump).to(y.dtype) * torch.ones_like(y)

    def solve(**extra):
        options = {"step_size": 0.25, **extra}
        return nodezoo.odeint(step, torch.zeros(1, **F64), t, method=method, options=options)

    assert float(solve(jump_t=torch.tensor([jump], **F64))[1]) == 0.0
    if method == "implicit_adams" or jump == 0.5:  # both evaluate f at the step's end
        assert float(solve()[1]) > 0.0  # without jump_t, f(jump) = 1 leaks in


def _scipy_reference(solver, **kwargs):
    from scipy.integrate import solve_ivp

    sol = solve_ivp(
        lambda t, y: [y[1], -y[0]], (0.0, 2.0), [1.0, 0.0], method=solver, t_eval=[0.0, 2.0],
        rtol=1e-3, atol=1e-3, **kwargs,
    )  # fmt: skip
    return torch.tensor(sol.y[:, -1], **F64), sol.nfev


@pytest.mark.parametrize(
    "solver, kwargs",
    [
        ("RK45", {"first_step": 0.3}),
        ("RK45", {"max_step": 0.05}),
        ("LSODA", {"first_step": 0.3}),
        ("LSODA", {"max_step": 0.05}),
    ],
)
def test_scipy_step_arguments_reach_solve_ivp(solver, kwargs):
    """The same values and evaluations as solve_ivp with that argument, and not those without
    it (each argument changes scipy's answer here)."""
    stats = SolveStats()
    ys = nodezoo.odeint(
        oscillator, Y0, T, method="scipy_solver", rtol=1e-3, atol=1e-3,
        options={"solver": solver, **kwargs}, stats=stats,
    )  # fmt: skip
    ref, nfev = _scipy_reference(solver, **kwargs)
    assert torch.equal(ys[-1], ref) and stats.nfe_forward == nfev
    assert not torch.equal(ys[-1], _scipy_reference(solver)[0])


def test_scipy_min_step_is_lsoda_only_and_an_infinite_max_step_is_the_default(monkeypatch):
    """LSODA's min_step changes nothing on this problem, so the call to solve_ivp is checked."""
    import scipy.integrate

    calls = []
    real = scipy.integrate.solve_ivp

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.integrate, "solve_ivp", spy)
    nodezoo.odeint(oscillator, Y0, T, method="scipy_solver", options={"min_step": 0.5})
    assert calls[-1]["method"] == "LSODA" and calls[-1]["min_step"] == 0.5
    refusal = r"^min_step applies only to scipy's LSODA, not RK45"
    with pytest.raises(SolverConfigError, match=refusal):
        nodezoo.odeint(oscillator, Y0, T, method="scipy_solver",
                       options={"solver": "RK45", "min_step": 0.1})  # fmt: skip
    ys = nodezoo.odeint(
        oscillator, Y0, T, method="scipy_solver", rtol=1e-3, atol=1e-3,
        options={"solver": "RK45", "max_step": math.inf},
    )  # fmt: skip
    assert torch.equal(ys[-1], _scipy_reference("RK45")[0])
    assert "max_step" not in calls[-1]
