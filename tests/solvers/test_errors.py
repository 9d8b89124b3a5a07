"""Failures give their own exception with a message that says what to try."""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers import (
    MaxStepsExceeded,
    NewtonFailed,
    NonFiniteState,
    SolverConfig,
    SolverConfigError,
    SolverError,
    StepSizeUnderflow,
    odeint,
)

T = torch.tensor([0.0, 1.0])


def test_max_steps_exceeded_names_time_and_remedy():
    with pytest.raises(MaxStepsExceeded, match="max_steps=5") as info:
        odeint(
            lambda t, y: torch.cos(50 * t) * y,
            torch.ones(2),
            T,
            rtol=1e-9,
            atol=1e-9,
            options={"max_num_steps": 5},
        )
    assert isinstance(info.value, SolverError)
    assert 0.0 <= info.value.t < 1.0 and info.value.step_size > 0
    assert "raise max_steps" in str(info.value)


def test_fixed_step_count_over_max_steps():
    with pytest.raises(MaxStepsExceeded, match="step_size"):
        nodezoo.solve(
            lambda t, y: -y,
            torch.ones(1),
            T,
            SolverConfig(method="rk4", step_size=1e-3, max_steps=10, gradient="backprop"),
        )


def test_blow_up_raises_non_finite_or_underflow_quickly():
    """y' = y^2 from y(0)=1 blows up at t=1; the solver must stop with a clear error."""
    with pytest.raises((NonFiniteState, StepSizeUnderflow)) as info:
        odeint(
            lambda t, y: y**2,
            torch.ones(1, dtype=torch.float64),
            torch.tensor([0.0, 2.0], dtype=torch.float64),
            rtol=1e-6,
            atol=1e-6,
        )
    assert 0.9 < info.value.t < 1.01
    assert "t=" in str(info.value)


def test_nan_field_raises_non_finite_state():
    f = lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y)
    with pytest.raises(NonFiniteState, match="NaN or infinite"):
        odeint(f, torch.ones(3, dtype=torch.float64), T.double())
    with pytest.raises(NonFiniteState):
        odeint(f, torch.ones(3), T, method="rk4", options={"step_size": 0.1})


@pytest.mark.parametrize(
    "func, match",
    [
        (lambda t, y: y[:1], "shape"),
        (lambda t, y: y.double(), "dtype"),
        (lambda t, y: y.to("meta"), "is on meta"),
        (lambda t, y: 3.0, "expected a tensor"),
    ],
)
def test_vector_field_output_mismatch(func, match):
    with pytest.raises(SolverConfigError, match=match):
        odeint(func, torch.ones(2), T)


def test_tuple_state_needs_tuple_output():
    with pytest.raises(SolverConfigError, match="tuple"):
        odeint(lambda t, s: s[0], (torch.ones(2), torch.ones(3)), T)


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
        (torch.tensor([0.0, 0.0, 1.0]), "strictly"),
        (torch.tensor([[0.0, 1.0]]), "1-D"),
        (torch.tensor([0, 1]), "floating-point"),
        (torch.tensor([0.0, math.nan]), "NaN"),
    ],
)
def test_bad_times(t, match):
    with pytest.raises(SolverConfigError, match=match):
        odeint(lambda t, y: -y, torch.ones(2), t)


def test_bad_state_and_settings():
    with pytest.raises(SolverConfigError, match="floating point"):
        odeint(lambda t, y: -y, torch.ones(2, dtype=torch.long), T)
    with pytest.raises(SolverConfigError, match="same device"):
        odeint(lambda t, y: -y, torch.ones(2), T.to("meta"))
    with pytest.raises(SolverConfigError, match="Unknown ODE method 'dopri4'"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="dopri4")
    with pytest.raises(SolverConfigError, match="Unknown solver option"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"stepsize": 0.1})
    with pytest.raises(SolverConfigError, match="do not apply to fixed-step"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="rk4", options={"min_step": 0.1})
    with pytest.raises(SolverConfigError, match="do not apply to adaptive"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"perturb": True})
    with pytest.raises(SolverConfigError, match="only applies with event_fn"):
        odeint(lambda t, y: -y, torch.ones(2), T, method="rk4", options={"interp": "cubic"})
    with pytest.raises(SolverConfigError, match="jump_t"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"grid_points": [0.5]})
    with pytest.raises(SolverConfigError, match="float64"):
        odeint(lambda t, y: -y, torch.ones(2), T, options={"dtype": torch.float32})
    with pytest.raises(MaxStepsExceeded):  # an event that never happens
        odeint(
            lambda t, y: -y,
            torch.ones(2),
            T,
            event_fn=lambda t, y: y,
            options={"max_num_steps": 50},
        )


def test_config_validation_and_round_trip():
    cfg = SolverConfig(method="tsit5", rtol=1e-5, atol=1e-6, gradient="checkpoint", seminorm=False)
    assert SolverConfig.from_dict(cfg.to_dict()) == cfg
    assert SolverConfig.from_dict(None) == SolverConfig()
    with pytest.raises(SolverConfigError, match=r"Unknown solver setting\(s\) \['rtoll'\]"):
        SolverConfig.from_dict({"rtoll": 1e-3})
    with pytest.raises(SolverConfigError, match="gradient="):
        SolverConfig(gradient="magic")
    with pytest.raises(SolverConfigError, match="backend="):
        SolverConfig(backend="jax")
    with pytest.raises(SolverConfigError, match="rtol"):
        SolverConfig(rtol=-1.0)
    with pytest.raises(SolverConfigError, match="step_size"):
        SolverConfig(step_size=0.0)
    assert SolverConfig(method="rk4").adaptive is False


class CountingDecay(torch.nn.Module):
    """dy/dt = -k y, counting evaluations (a refused solve never calls it)."""

    def __init__(self):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.0))
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        if isinstance(y, tuple):
            return tuple(-self.k * part for part in y)
        return -self.k * y


def _solve_checkpoint(f, y0, t):
    return nodezoo.solve(f, y0, t, SolverConfig(gradient="checkpoint"))


NON_FINITE_SOLVES = {
    "odeint dopri5": lambda f, y0, t: odeint(f, y0, t),
    "odeint rk4": lambda f, y0, t: odeint(f, y0, t, method="rk4"),
    "odeint euler step_size": lambda f, y0, t: odeint(f, y0, t, options={"step_size": 0.1}),
    "odeint gl4": lambda f, y0, t: odeint(f, y0, t, method="gl4"),
    "odeint implicit_adams": lambda f, y0, t: odeint(f, y0, t, method="implicit_adams"),
    "odeint_adjoint": lambda f, y0, t: nodezoo.odeint_adjoint(f, y0, t),
    "checkpoint": _solve_checkpoint,
    "odeint_dense": lambda f, y0, t: nodezoo.odeint_dense(f, y0, t[0], t[-1]),
    "scipy_solver": lambda f, y0, t: odeint(f, y0, t, method="scipy_solver"),
    "torchdiffeq backend": lambda f, y0, t: nodezoo.solve(
        f, y0, t, SolverConfig(backend="torchdiffeq", gradient="backprop")
    ),
}


@pytest.mark.parametrize("solve", NON_FINITE_SOLVES.values(), ids=NON_FINITE_SOLVES.keys())
def test_non_finite_y0_is_refused_before_solving(solve):
    """Not "the state became NaN near t=0 ... lower the learning rate": y0 itself is named."""
    f = CountingDecay()
    y0 = torch.tensor([1.0, math.nan, math.inf, -math.inf, 2.0], requires_grad=True)
    with pytest.raises(SolverConfigError, match="y0 is not finite") as info:
        solve(f, y0, T)
    message = str(info.value)
    assert "1 NaN and 2 infinite of its 5 entries" in message
    assert "before the ODE block" in message  # what to do
    assert "became NaN" not in message and "near t=" not in message
    assert f.calls == 0
    assert isinstance(info.value, NonFiniteState)  # what a diverging state raises too


@pytest.mark.parametrize("solve", ["odeint", "odeint_adjoint", "checkpoint"])
def test_non_finite_tuple_state_names_the_part(solve):
    f = CountingDecay()
    y0 = (torch.ones(3), torch.tensor([math.nan, math.nan]))
    run = {
        "odeint": lambda: odeint(f, y0, T),
        "odeint_adjoint": lambda: nodezoo.odeint_adjoint(f, y0, T),
        "checkpoint": lambda: _solve_checkpoint(f, y0, T),
    }[solve]
    with pytest.raises(SolverConfigError, match=r"y0 is not finite: y0\[1\] has 2 NaN") as info:
        run()
    assert "y0[0]" not in str(info.value) and f.calls == 0


def test_zero_rtol_and_atol_refused_for_adaptive_methods():
    with pytest.raises(SolverConfigError, match="rtol and atol are both 0") as info:
        SolverConfig(rtol=0, atol=0)
    assert "cannot control" in str(info.value)
    with pytest.raises(SolverConfigError, match="rtol and atol are both 0"):
        odeint(lambda t, y: -y, torch.ones(2), T, rtol=0.0, atol=0.0)
    with pytest.raises(SolverConfigError, match=r"rtol and atol are both 0 \(entry 1\)"):
        SolverConfig(rtol=[1e-3, 0.0], atol=(1e-6, 0.0))
    with pytest.raises(SolverConfigError, match="adjoint_rtol and adjoint_atol are both 0"):
        SolverConfig(adjoint_rtol=0.0, adjoint_atol=0.0)
    # one of the two may be 0 (pure absolute or pure relative control) ...
    assert SolverConfig(rtol=0.0, atol=1e-6).rtol == 0.0
    # ... and fixed steps control no error, so zero tolerances are harmless there
    ys = odeint(lambda t, y: -y, torch.ones(1), T, method="rk4", rtol=0.0, atol=0.0)
    assert torch.isfinite(ys).all()
    assert SolverConfig(rtol=0.0, atol=0.0, step_size=0.1).adaptive is False


@pytest.mark.parametrize("name", ["rtol", "atol", "adjoint_rtol"])
def test_unparseable_tolerance_names_the_setting_and_value(name):
    with pytest.raises(SolverConfigError, match=rf"^{name} must be a non-negative number") as info:
        SolverConfig(**{name: "1e-3x"})
    assert "'1e-3x'" in str(info.value) and "str" in str(info.value)


def test_tolerance_as_text_says_to_write_a_number():
    """``rtol: 1e-5`` in YAML 1.1 (PyYAML) is the string '1e-5'."""
    with pytest.raises(SolverConfigError, match=r"rtol must be a non-negative number.*1\.0e-5"):
        SolverConfig.from_dict({"rtol": "1e-5"})
    with pytest.raises(SolverConfigError, match="rtol"):
        odeint(lambda t, y: -y, torch.ones(2), T, rtol="1e-3x")


def test_several_bad_settings_are_reported_together():
    with pytest.raises(SolverConfigError) as info:
        SolverConfig(
            method="dopri4", rtol=-1.0, atol="x", step_size=0.0, max_steps=0, gradient="magic"
        )
    message = str(info.value)
    assert message.startswith("6 solver settings are invalid:")
    for cause in (
        "Unknown ODE method 'dopri4'",
        "rtol must be a non-negative number (or one per tuple entry), got -1.0",
        "atol must be a non-negative number",
        "step_size must be positive",
        "max_steps must be a whole number of at least 1, got 0",
        "gradient='magic'",
    ):
        assert cause in message
    assert len(info.value.problems) == 6
    with pytest.raises(SolverConfigError) as info:  # zero tolerances beside another mistake
        SolverConfig(rtol=0.0, atol=0.0, gradient="magic")
    assert "2 solver settings are invalid" in str(info.value)
    assert "rtol and atol are both 0" in str(info.value)
    with pytest.raises(SolverConfigError) as info:  # unknown keys and bad values at once
        SolverConfig.from_dict({"rtoll": 1e-3, "max_steps": "many"})
    assert "Unknown solver setting(s) ['rtoll']" in str(info.value)
    assert "max_steps must be a whole number of at least 1, got 'many'" in str(info.value)


def test_odeint_dense_checks_tolerances_too():
    with pytest.raises(SolverConfigError, match="rtol and atol are both 0"):
        nodezoo.odeint_dense(lambda t, y: -y, torch.ones(2), T[0], T[1], rtol=0.0, atol=0.0)


def test_y0_check_records_nothing_for_autograd():
    """The finiteness check must not add to the activation memory: isfinite on a tensor that
    requires grad would save it (through abs) for a backward that never comes."""
    from nodezoo.solvers.inputs import check_state

    saved = []
    y0 = (torch.ones(3, requires_grad=True), torch.ones(2, requires_grad=True))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        check_state(y0)
    assert saved == []


def test_large_finite_y0_is_accepted():
    """Entries whose sum overflows float32 are still finite: the quick check (a finite sum)
    falls back to looking at each entry, and lets them through."""
    y0 = torch.full((4,), 3e38)
    ys = odeint(lambda t, y: torch.zeros_like(y), y0, T, method="euler")
    assert torch.equal(ys[-1], y0)


class _Recorded(torch.nn.Module):
    """A field whose torchdiffeq-style ``callback_step`` records every attempted (t, dt)."""

    def __init__(self):
        super().__init__()
        self.attempts = []

    def forward(self, t, y):
        return torch.cos(3 * t) * y - y**3

    def callback_step(self, t0, y0, dt):
        self.attempts.append((float(t0), float(dt)))


@pytest.mark.parametrize("limit", [3, 5])
def test_max_steps_error_says_where_the_next_attempt_would_have_been(limit):
    """``t`` and ``step_size`` of the error are the (limit + 1)-th attempt of the same solve
    without a limit, as its callback saw it."""
    y0 = torch.tensor([1.0], dtype=torch.float64)
    t = torch.tensor([0.0, 5.0], dtype=torch.float64)
    free = _Recorded()
    nodezoo.odeint(free, y0, t, method="dopri5", rtol=1e-6, atol=1e-6)
    limited = _Recorded()
    with pytest.raises(MaxStepsExceeded) as err:
        nodezoo.odeint(
            limited, y0, t, method="dopri5", rtol=1e-6, atol=1e-6,
            options={"max_num_steps": limit},
        )  # fmt: skip
    assert limited.attempts == free.attempts[:limit]
    assert (err.value.t, err.value.step_size) == free.attempts[limit]


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_a_fixed_step_event_search_that_runs_out_says_where_it_stopped(direction):
    """5 steps of 0.125 without a root: the error stands at t = 5 x 0.125 in the direction of
    the search, with the step size it used."""
    y0 = torch.ones(1, dtype=torch.float64)
    t = torch.tensor([0.0, direction], dtype=torch.float64)
    with pytest.raises(MaxStepsExceeded, match="No event within max_steps=5") as err:
        nodezoo.odeint(
            lambda t, y: -y, y0, t, method="rk4", event_fn=lambda t, y: y + 5,
            options={"step_size": 0.125, "max_num_steps": 5},
        )  # fmt: skip
    assert (err.value.t, err.value.step_size) == (direction * 0.625, 0.125)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "radau5", "kvaerno5"])
def test_a_field_that_turns_nan_is_reported_where_it_does(method):
    """f is NaN from t = 0.5 on: the adaptive solve shrinks its step onto 0.5 and says so
    (``NonFiniteState.t``), with the step size it had come down to. The implicit methods
    see it as Newton failures on NaN iterates (they raised StepSizeUnderflow)."""
    f = lambda t, y: y if t < 0.5 else y * float("nan")
    y0 = torch.ones(1, dtype=torch.float64)
    with pytest.raises(NonFiniteState) as err:
        nodezoo.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method=method)
    assert err.value.t == pytest.approx(0.5, abs=1e-12)
    assert 0 < err.value.step_size < 1e-12


def test_a_fixed_step_blow_up_is_localised_to_the_output_times_around_it():
    """A fixed-step solve checks its state only at the end, so it names the first output time
    where the state is non-finite and the last one where it was finite (f turns NaN after 0.5:
    the outputs at 0.25 and 0.5 are finite, 0.75 is not)."""
    f = lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y)
    times = torch.linspace(0, 1, 5)
    with pytest.raises(NonFiniteState, match=r"between t=0.5 .* and t=0.75") as err:
        nodezoo.odeint(f, torch.ones(3), times, method="rk4", options={"step_size": 0.1})
    assert (err.value.t, err.value.step_size) == (0.75, 0.1)


@pytest.mark.parametrize(
    "method, options",
    [("implicit_euler", {"step_size": 0.1}), ("gl4", {"step_size": 0.1}), ("radau5", {})],
)
def test_an_implicit_solve_of_a_nan_field_says_so_at_once(method, options):
    """f is NaN at the initial state: no smaller step or fresh Jacobian can help, so the first
    failed Newton solve raises NonFiniteState at t=0 (it was NewtonFailed for fixed steps,
    and for radau5 StepSizeUnderflow after quartering the step to nothing)."""
    f = lambda t, y: y * math.nan
    with pytest.raises(
        NonFiniteState, match="vector field is NaN or infinite at the state at t=0"
    ) as err:
        nodezoo.odeint(
            f, torch.ones(2, dtype=torch.float64), T.double(), method=method, options=options
        )
    assert err.value.t == 0.0


def test_a_fixed_implicit_step_into_a_nan_region_says_the_iterates_went_non_finite():
    """f is finite at the step's start (t = 0.5) but NaN inside the step: a fixed step cannot
    shrink, so it stays NewtonFailed, flagged and worded as NaN iterates."""
    f = lambda t, y: torch.where(t > 0.5, torch.full_like(y, math.nan), -y)
    with pytest.raises(
        NewtonFailed, match=r"allowed\) \(the iterates became NaN or infinite\)"
    ) as err:
        nodezoo.odeint(f, torch.ones(1, dtype=torch.float64), T.double(), method="implicit_euler",
                       options={"step_size": 0.25})  # fmt: skip
    assert err.value.non_finite and err.value.t == 0.5


@pytest.mark.parametrize("rate", [0.5, 1.0, 4.0])
def test_radau5_survives_a_singular_error_filter(rate):
    """radau5 filters its error estimate through (I - h g0 J)^-1. On y' = rate y from
    first_step = 1 / (g0 rate) that matrix is exactly singular while the stage matrix is not:
    the step uses the unfiltered estimate (it raised LinAlgError) and the solve is accurate."""
    from nodezoo.solvers.implicit import _RADAU5_G0

    h = 1 / (_RADAU5_G0 * rate)
    y = nodezoo.odeint(lambda t, y: rate * y, torch.ones(1, dtype=torch.float64),
                       torch.tensor([0.0, 3 * h], dtype=torch.float64), method="radau5",
                       rtol=1e-6, atol=1e-6, options={"first_step": h})  # fmt: skip
    assert y[-1].item() == pytest.approx(math.exp(3 * rate * h), rel=1e-6)


@pytest.mark.parametrize(
    "method, rate, dtype", [("dopri5", 200.0, torch.float32), ("radau5", 1000.0, torch.float64)]
)
def test_a_backward_solve_that_blows_up_says_it_is_the_adjoints(method, rate, dtype):
    """y' = -k (y - cos t) contracts fast; the adjoint solves it backwards from t = 1, where it
    grows like exp(k t) until it overflows (float32 with k = 200; radau5 in float64 at k = 1000).
    The error keeps its class, t and step size, and says where it happened and what to use;
    checkpointed gradients of the same solve match backprop's."""
    from nodezoo.solvers import solve

    k = torch.tensor([rate], dtype=dtype, requires_grad=True)
    f = lambda t, y: -k * (y - torch.cos(t))
    times = torch.tensor([0.0, 1.0], dtype=dtype)
    config = {"method": method, "rtol": 1e-3, "atol": 1e-6}
    y = solve(f, torch.ones(1, dtype=dtype), times, {**config, "gradient": "adjoint"}, params=[k])
    with pytest.raises(NonFiniteState) as err:
        y[-1].sum().backward()
    message = str(err.value)
    assert message.startswith("In the adjoint's backward solve (from t=1 back to t=0): ")
    assert "use gradient='checkpoint'" in message
    assert 0 < err.value.t < 1 and err.value.step_size < 0  # backwards in time
    assert isinstance(err.value.__cause__, NonFiniteState)
    grads = []
    for gradient in ("checkpoint", "backprop"):
        k.grad = None
        y = solve(
            f, torch.ones(1, dtype=dtype), times, {**config, "gradient": gradient}, params=[k]
        )
        y[-1].sum().backward()
        grads.append(k.grad.clone())
    assert torch.isfinite(grads[0]).all()
    torch.testing.assert_close(grads[0], grads[1])
