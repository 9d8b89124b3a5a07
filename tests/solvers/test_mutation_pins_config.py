"""SolverConfig's refusals in detail (mutation survivors of ``config.py``; see tests/README.md,
"Mutation testing"): every problem reported at once, per-entry zero tolerances named by entry,
the YAML hint only for YAML-looking text."""

import pytest

from nodezoo.solvers import SolverConfig, SolverConfigError


def _problems(**settings):
    with pytest.raises(SolverConfigError) as info:
        SolverConfig.from_dict(settings)
    return info.value.problems, str(info.value)


def test_from_dict_reports_unknown_keys_with_every_other_problem():
    problems, message = _problems(bogus=1, rtol=-1.0, atol="x")
    assert len(problems) == 3
    assert problems[0].startswith("Unknown solver setting(s) ['bogus']; valid keys are [")
    assert problems[1].startswith("rtol must be a non-negative number") and "(float)" in problems[1]
    assert problems[2].startswith("atol must be a non-negative number") and "(str)" in problems[2]
    assert message == "3 solver settings are invalid:" + "".join(f"\n  - {p}" for p in problems)
    problems, message = _problems(bogus=1, rtol=-1.0)  # one problem besides the unknown key
    assert len(problems) == 2 and problems[1].startswith("rtol must be")
    problems, message = _problems(bogus=1)
    assert problems == [message] and message.startswith("Unknown solver setting(s) ['bogus']")


def test_from_dict_takes_configs_and_none_and_refuses_other_types():
    config = SolverConfig(rtol=1e-6)
    assert SolverConfig.from_dict(config) is config
    assert SolverConfig.from_dict(None) == SolverConfig()
    with pytest.raises(
        SolverConfigError, match=r"^A solver config must be a dict or SolverConfig, got list\.$"
    ):
        SolverConfig.from_dict([("rtol", 1e-3)])


@pytest.mark.parametrize(
    "rtol, atol, entry",
    [
        (0.0, 0.0, ""),  # scalars: no entry named
        ([1e-3, 0.0], [0.0, 0.0], " (entry 1)"),
        ([0.0, 0.0], [1e-3, 0.0], " (entry 1)"),
        ([0.0], [1e-3, 0.0], " (entry 1)"),  # one rtol stands for every entry
        ([0.0, 1e-3], [0.0], " (entry 0)"),
        ([1e-3, 0.0], [0.0], " (entry 1)"),  # and one atol
    ],
)
def test_zero_tolerances_are_named_by_entry(rtol, atol, entry):
    with pytest.raises(SolverConfigError) as info:
        SolverConfig(rtol=rtol, atol=atol)
    assert str(info.value).startswith(f"rtol and atol are both 0{entry}: adaptive method 'dopri5'")


@pytest.mark.parametrize(
    "rtol, atol",
    [
        ([0.0, 1e-3], [1e-3, 0.0]),  # no entry has both 0
        ([0.0, 0.0, 0.0], [0.0, 0.0]),  # lengths differ: the solve reports it, with the state
        ([0.0, 0.0], [0.0, 0.0, 0.0]),
    ],
)
def test_tolerances_without_a_zero_pair_pass_the_config(rtol, atol):
    SolverConfig(rtol=rtol, atol=atol)


def test_inherited_zero_adjoint_tolerances_are_reported_once():
    """The adjoint inherits the forward pair: one problem, not two; a half-given adjoint pair
    is the adjoint's own and reported as such."""
    problems, _ = _problems(rtol=0.0, atol=0.0)
    assert len(problems) == 1 and problems[0].startswith("rtol and atol")
    problems, _ = _problems(rtol=0.0, atol=0.0, adjoint_rtol=0.0)
    assert [p.split(" are")[0] for p in problems] == [
        "rtol and atol",
        "adjoint_rtol and adjoint_atol",
    ]


@pytest.mark.parametrize("value", ["1e-3", "-1e-3", "1e+3"])
def test_yaml_style_exponent_gets_a_hint(value):
    mantissa, exponent = value.split("e")
    with pytest.raises(SolverConfigError) as info:
        SolverConfig(rtol=value)
    assert str(info.value).endswith(
        f" YAML 1.1 (PyYAML) reads {value} as text; write {mantissa}.0e{exponent} "
        "(a dot in the mantissa) or pass a float."
    )


@pytest.mark.parametrize("value", ["tight", "1.0e-3", "e3", "1e", "1e-3e1", "X1e-3", "1eX3"])
def test_other_text_gets_no_yaml_hint(value):
    with pytest.raises(SolverConfigError) as info:
        SolverConfig(rtol=value)
    assert "YAML" not in str(info.value)


def test_replace_returns_a_checked_copy():
    config = SolverConfig(rtol=1e-3)
    changed = config.replace(rtol=1e-6, method="rk4")
    assert (changed.rtol, changed.method, config.rtol, config.method) == (
        1e-6,
        "rk4",
        1e-3,
        "dopri5",
    )
    with pytest.raises(SolverConfigError, match=r"^rtol must be"):
        config.replace(rtol=-1.0)
