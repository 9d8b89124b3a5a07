"""Norms and the first-step rule against numbers worked out by hand (mutation survivors of
``nodezoo/solvers/step_control.py``; see tests/README.md, "Mutation testing").

``test_step_control.py`` drives the whole adaptive loop on a problem where the first-step
rule's probe sees a field linear in ``t``; here the rule is called directly on fields where the
probe's side, the branch for small ``|f0|`` and the non-finite fallback each change the answer.
"""

import math

import pytest
import torch

import nodezoo
from nodezoo.solvers.step_control import (
    float_norm,
    initial_step_size,
    mixed_norm,
    rms_norm,
)


def test_rms_norm_is_the_root_mean_square():
    assert float(rms_norm(torch.tensor([3.0, 4.0]))) == pytest.approx(math.sqrt(12.5))
    assert float(rms_norm(torch.tensor([-2.0]))) == pytest.approx(2.0)  # one entry: |x|
    assert float(rms_norm(torch.zeros(0))) == 0.0  # an empty state divides by 1, not 0
    assert float_norm(rms_norm)(torch.tensor([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))


def test_mixed_norm_is_the_largest_part_rms():
    """torchdiffeq's tuple norm: each part's RMS, then the maximum."""
    norm = mixed_norm([2, 1])
    assert float(norm(torch.tensor([3.0, 4.0, 1.0]))) == pytest.approx(math.sqrt(12.5))
    assert float(norm(torch.tensor([0.1, 0.1, 5.0]))) == pytest.approx(5.0)
    assert mixed_norm([3]) is rms_norm
    assert float_norm(norm)(torch.tensor([0.1, 0.1, 5.0])) == pytest.approx(5.0)


def test_user_norm_receives_the_state_in_its_own_shapes():
    """torchdiffeq calls ``options['norm']`` with the tuple state, not the flat vector. The
    first call is the first-step rule's ``norm(y0 / scale)``: with atol = 1, rtol = 0 it is y0."""
    seen = []

    def norm(state):
        seen.append(tuple(p.clone() for p in state))
        return torch.stack([p.abs().max() for p in state]).max()

    y0 = (torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([[3.0]], dtype=torch.float64))
    nodezoo.odeint(
        lambda t, y: (-y[0], -y[1]), y0, torch.tensor([0.0, 0.5], dtype=torch.float64),
        rtol=0.0, atol=1.0, options={"norm": norm},
    )  # fmt: skip
    assert len(seen) > 2
    assert all(p.shape == q.shape for p, q in zip(seen[0], y0))
    assert all(torch.equal(p, q) for p, q in zip(seen[0], y0))


def _hnw_first_step(f, t0, y0, order, atol, direction=1.0):
    """Hairer, Nørsett & Wanner, Solving ODEs I, II.4, on plain floats (rtol = 0)."""
    rms = lambda v: math.sqrt(sum(x * x for x in v) / len(v))
    f0 = f(t0, y0)
    d0, d1 = rms(y0) / atol, rms(f0) / atol
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = f(t0 + direction * h0, [y + direction * h0 * g for y, g in zip(y0, f0)])
    d2 = rms([a - b for a, b in zip(f1, f0)]) / atol / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1 / (order + 1))
    return direction * min(100 * h0, h1)


def _call_rule(f, t0, y0, order, atol, direction=1.0):
    y0 = torch.tensor(y0, dtype=torch.float64)
    g = lambda t, y: torch.as_tensor(f(t, y.tolist()), dtype=torch.float64)
    return initial_step_size(
        g, t0, y0, g(t0, y0), order, 0.0, atol, float_norm(rms_norm), direction
    )


# (f, direction, order). With f = c * t**2 the probe's change depends on which side of t0 it
# looks; a constant f leaves d2 = 0, so d1 alone sets the step.
CASES = {
    "forward": (lambda t, y: [t * t for _ in y], 1.0, 2),
    "backward": (lambda t, y: [t * t for _ in y], -1.0, 2),
    # |f0| / atol = 0.1 (between 1e-5 and 1): h0 = 0.01 * d0 / d1 = 100 stays, as in the rule
    "small_slope": (lambda t, y: [1e-4 * t * t for _ in y], 1.0, 3),
    # max(d1, d2) = 0.1: small but not zero, so the power rule, not the 1e-3 * h0 fallback
    "constant_small": (lambda t, y: [1e-4 for _ in y], 1.0, 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_step_rule_matches_the_textbook(case):
    f, direction, order = CASES[case]
    want = _hnw_first_step(f, 1.0, [1.0, 1.0], order, 1e-3, direction)
    assert _call_rule(f, 1.0, [1.0, 1.0], order, 1e-3, direction) == pytest.approx(want, rel=1e-9)
    assert math.copysign(1.0, want) == direction


def test_first_step_rule_sides_and_branches_change_the_answer():
    """Guards the test above: each case separates the rule from a plausible slip."""
    f = lambda t, y: [t * t for _ in y]
    forward = _hnw_first_step(f, 1.0, [1.0, 1.0], 2, 1e-3)
    mirrored = _hnw_first_step(lambda t, y: f(2.0 - t, y), 1.0, [1.0, 1.0], 2, 1e-3)
    assert forward != pytest.approx(mirrored, rel=1e-6)  # probing at t0 - h0 differs
    small = _hnw_first_step(lambda t, y: [1e-4 * t * t for _ in y], 1.0, [1.0, 1.0], 3, 1e-3)
    assert small == pytest.approx((0.01 / 10.2) ** 0.25, rel=1e-3)  # h0 = 100, d2 = 10.2
    constant = _hnw_first_step(CASES["constant_small"][0], 1.0, [1.0, 1.0], 2, 1e-3)
    assert constant == pytest.approx((0.01 / 0.1) ** (1 / 3))  # not max(1e-6, 1e-3 * h0) = 0.1


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_non_finite_probe_falls_back_to_a_tiny_first_step(direction):
    """f is finite at t0 but not at the probe: the rule cannot estimate, so it returns 1e-6."""
    f = lambda t, y: [1.0 if t == 1.0 else math.inf for _ in y]
    assert _call_rule(f, 1.0, [1.0, 1.0], 2, 1e-3, direction) == direction * 1e-6
