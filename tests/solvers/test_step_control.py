"""The adaptive loop against a controller written out by hand, on a problem whose local error
estimate is known in closed form.

For ``y' = (t, 0)`` with ``adaptive_heun`` (Heun's method, embedded Euler), the stages are
``(t, t + h, t + h)`` and the error estimate is ``h * (b - b_low) . K = (h**2 / 2, 0)``: with
``rtol = 0`` the RMS error ratio is ``h**2 / (2 * sqrt(2) * atol)`` whatever the state. So the
whole step sequence (first step, rejections, PI updates) follows from the textbook rules below,
written independently of ``nodezoo.solvers.step_control``.
"""

import math

import pytest
import torch

from nodezoo.solvers import SolveStats, solve

ATOL = 1e-3
T0, T1 = 1.0, 2.0
Y0 = (1.0, 0.0)


def _ratio(h):
    """RMS over the two components of err / atol (the second error component is zero)."""
    return math.sqrt(((h * h / 2) / ATOL) ** 2 / 2)


def _first_step(y0=Y0, t0=T0):
    """Hairer, Nørsett & Wanner, Solving ODEs I, II.4 (p. 169), with the embedded order 1."""
    rms = lambda *v: math.sqrt(sum(x * x for x in v) / len(v))
    d0, d1 = rms(*y0) / ATOL, rms(t0, 0.0) / ATOL
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    d2 = rms(h0, 0.0) / ATOL / h0  # f(t0 + h0) - f(t0) = (h0, 0)
    h1 = (0.01 / max(d1, d2)) ** (1 / 2)
    return min(100 * h0, h1)


def _hand_controller(
    h, *, t0=T0, safety=0.9, ifactor=10.0, dfactor=0.2, pcoeff=0.0, icoeff=1.0, k=2
):
    """Accepted and rejected (t, h) of the PI controller (Söderlind; torchdiffeq's defaults)."""
    t, prev = t0, 1.0
    accepted, rejected = [], []
    while t < T1:
        h_try = min(h, T1 - t)
        r = _ratio(h_try)
        if r <= 1.0:
            accepted.append((t, h_try))
            t = T1 if h_try == T1 - t else t + h_try
            factor = safety * r ** (-(icoeff + pcoeff) / k) * prev ** (pcoeff / k)
            prev = r
            h = h_try * min(ifactor, max(1.0, factor))
        else:
            rejected.append((t, h_try))
            h = h_try * min(1.0, max(dfactor, safety * r ** (-1 / k)))
    return accepted, rejected


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.accepted, self.rejected = [], []

    def forward(self, t, y):
        return torch.stack([t, torch.zeros_like(t)])

    def callback_accept_step(self, t, y, dt):
        self.accepted.append((float(t), float(dt)))

    def callback_reject_step(self, t, y, dt):
        self.rejected.append((float(t), float(dt)))


def _run(y0=Y0, t0=T0, **options):
    func, stats = Recorder(), SolveStats()
    solve(
        func,
        torch.tensor(y0, dtype=torch.float64),
        torch.tensor([t0, T1], dtype=torch.float64),
        dict(method="adaptive_heun", rtol=0.0, atol=ATOL, gradient="backprop"),
        options=options,
        stats=stats,
    )
    return func, stats


def _assert_same(got, want):
    assert len(got) == len(want), (got, want)
    for (t, h), (t_ref, h_ref) in zip(got, want):
        assert t == pytest.approx(t_ref, rel=1e-9) and h == pytest.approx(h_ref, rel=1e-9)


CASES = {
    "defaults": ({}, {}),
    "pi": (dict(pcoeff=0.4, icoeff=0.3), dict(pcoeff=0.4, icoeff=0.3)),
    "safety": (dict(safety=0.5), dict(safety=0.5)),
    "rejections": (dict(first_step=0.5), {}),
    # a small |y0| makes the first-step rule's 100 * h0 cap the binding one
    "small_start": (dict(y0=(1e-3, 0.0)), {}),
    # y0 = f0 = 0: the rule's fallback h0 = 1e-6 (then capped at 100 * h0)
    "zero_start": (dict(y0=(0.0, 0.0), t0=0.0), dict(t0=0.0)),
    # |f0| small against its change: the second-derivative estimate d2 sets the step
    "curvature_binds": (dict(t0=0.5), dict(t0=0.5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_sequence_matches_hand_controller(case):
    options, ctrl = CASES[case]
    func, stats = _run(**options)
    h = options.get("first_step") or _first_step(options.get("y0", Y0), options.get("t0", T0))
    accepted, rejected = _hand_controller(h, **ctrl)
    _assert_same(func.accepted, accepted)
    _assert_same(func.rejected, rejected)
    if case == "rejections":
        assert len(rejected) >= 2  # the case exercises the rejection rule and dfactor
    assert stats.steps_accepted == len(accepted) and stats.steps_rejected == len(rejected)
    # f(t0), the probe of the first-step rule, then 2 new stages per attempt (FSAL)
    assert case != "small_start" or h == pytest.approx(100 * 0.01 * 1e-3)
    assert case != "zero_start" or h == pytest.approx(100 * 1e-6)
    probe = 0 if "first_step" in options else 1
    assert stats.nfe_forward == 1 + probe + 2 * (len(accepted) + len(rejected))


def test_pi_term_changes_the_sequence():
    """Guards the test above: the PI case is not the I case in disguise."""
    h = _first_step()
    assert _hand_controller(h)[0] != _hand_controller(h, pcoeff=0.4, icoeff=0.3)[0]


class Still(Recorder):
    def forward(self, t, y):
        return torch.zeros_like(y)


def test_zero_field_starts_at_the_floor_and_grows_by_ifactor():
    """f = 0: d1 = d2 = 0, so the first-step rule falls back to max(1e-6, h0 * 1e-3) with
    h0 = 1e-6; every error ratio is 0, so each accepted step grows by ifactor (10)."""
    func = Still()
    solve(
        func,
        torch.tensor(Y0, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64),
        dict(method="adaptive_heun", rtol=0.0, atol=ATOL, gradient="backprop"),
    )
    steps = [h for _, h in func.accepted]
    assert steps[:6] == pytest.approx([1e-6 * 10**k for k in range(6)], rel=1e-12)
    assert not func.rejected


@pytest.mark.parametrize(
    "options, named",
    [
        ({"safety": 1.2}, ["safety=1.2"]),
        ({"safety": 0.0}, ["safety=0.0"]),
        ({"dfactor": 1.0}, ["dfactor=1.0"]),
        ({"ifactor": 1.0}, ["ifactor=1.0"]),
        ({"icoeff": 0.0}, ["icoeff=0.0"]),
        ({"pcoeff": -0.1}, ["pcoeff=-0.1"]),
        ({"safety": float("nan"), "dfactor": 0.0}, ["safety=nan", "dfactor=0.0"]),
    ],
)
def test_controller_settings_that_would_loop_are_refused(options, named):
    """safety > 1 or dfactor >= 1 retry a barely rejected step at the same size forever."""
    from nodezoo.solvers import SolverConfigError, odeint

    y0, t = torch.ones(2), torch.tensor([0.0, 1.0])
    with pytest.raises(SolverConfigError) as err:
        odeint(lambda t, y: -y, y0, t, method="dopri5", options=options)
    problems = err.value.problems
    assert len(problems) == len(named)
    assert all(name in problem for name, problem in zip(named, problems))


def test_controller_bounds_are_allowed():
    from nodezoo.solvers import odeint

    y0, t = torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    options = {"safety": 1.0, "dfactor": 0.99, "ifactor": 1.01, "pcoeff": 0.0}
    y = odeint(lambda t, y: -y, y0, t, method="dopri5", rtol=1e-8, atol=1e-8, options=options)
    assert float(y[-1]) == pytest.approx(math.exp(-1.0), rel=1e-6)
