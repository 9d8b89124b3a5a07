"""SolveStats bookkeeping (mutation survivors of ``stats.py``): Newton counts are added, not
overwritten, across the forward and backward reports of one solve and reset in the engine after
each report; ``to_dict`` lists every count; ``last_stats`` in a fresh thread says none ran."""

import threading
from types import SimpleNamespace

import pytest
import torch

import nodezoo
from nodezoo.solvers import SolveStats
from nodezoo.solvers.newton import NewtonCounts


def test_newton_counts_add_up_over_reports_and_reset_in_the_engine():
    stats = SolveStats()
    counts = NewtonCounts(newton_iterations=3, jacobian_evaluations=2, lu_decompositions=1)
    engine = SimpleNamespace(counts=counts)
    stats.add_newton(engine)  # the forward solve's report
    assert engine.counts == NewtonCounts()  # what was reported is not reported again
    engine.counts = NewtonCounts(newton_iterations=4, jacobian_evaluations=1, lu_decompositions=5)
    stats.add_newton(engine)  # the backward solve's report
    stats.add_newton(SimpleNamespace())  # an explicit engine counts none
    totals = (stats.newton_iterations, stats.jacobian_evaluations, stats.lu_decompositions)
    assert totals == (7, 3, 6)
    assert engine.counts == NewtonCounts()


def test_to_dict_lists_every_count():
    stats = SolveStats(nfe_forward=5, nfe_backward=3, steps_accepted=2, steps_rejected=1)
    assert stats.to_dict() == {
        "nfe_forward": 5, "nfe_backward": 3, "steps_accepted": 2, "steps_rejected": 1,
        "steps_backward": 0, "newton_iterations": 0, "jacobian_evaluations": 0,
        "lu_decompositions": 0,
    }  # fmt: skip
    assert stats.nfe == 8


def test_last_stats_in_a_thread_that_has_not_solved_says_so():
    caught = []

    def ask():
        with pytest.raises(RuntimeError) as info:
            nodezoo.last_stats()
        caught.append(str(info.value))

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join()
    assert caught[0].startswith(
        "No ODE solve has run in this thread yet: "
    )  # whole: test_solver_messages


@pytest.mark.parametrize("jumps", [[], [0.5], [0.3, 0.6]])
def test_dopri5_evaluates_once_more_per_jump_and_nowhere_else(jumps):
    """Hand count of dopri5's evaluations: f(t0), one probe for the first step, 6 new stages
    per attempted step (the 7th is the next step's first: FSAL), and one evaluation after each
    jump (f's other side; mutation survivor: re-evaluating on every step whose next stop is a
    jump, reached or not)."""
    calls = []
    stats = SolveStats()
    nodezoo.odeint(
        lambda t, y: calls.append(float(t)) or -y, torch.ones(1, dtype=torch.float64),
        torch.tensor([0.0, 1.0], dtype=torch.float64), method="dopri5", rtol=1e-6, atol=1e-6,
        options={"jump_t": jumps}, stats=stats,
    )  # fmt: skip
    attempts = stats.steps_accepted + stats.steps_rejected
    assert len(calls) == stats.nfe_forward == 2 + 6 * attempts + len(jumps)
