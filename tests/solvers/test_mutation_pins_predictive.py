"""Gustafsson's predictive step-size controller (used by the adaptive implicit methods) against
factors computed by hand from Hairer & Wanner II, IV.8 (8.21): after an accepted step,
min(s r^(-1/k), s r^(-1/k) (h/h_prev) (r_prev/r)^(1/k)) with s = safety * per-step safety,
clipped to [dfactor, ifactor]; after a rejection s r^(-1/k) clipped to [dfactor, 1]."""

import math

import pytest

from nodezoo.solvers.step_control import StepController


def test_first_accepted_step_is_an_i_controller_then_the_prediction_can_shrink_it():
    ctrl = StepController().start_predictive(3)  # k = 3, safety 0.9
    assert ctrl.accept(0.125, h=0.1) == pytest.approx(0.9 * 2.0)  # no previous step yet
    # 0.9 * 0.5**(-1/3) = 1.134; predicted 1.134 * (0.05 / 0.1) * (0.125 / 0.5)**(1/3) = 0.357
    assert ctrl.accept(0.5, h=0.05) == pytest.approx(0.9 * 0.5 ** (-1 / 3) * 0.5 * 0.25 ** (1 / 3))
    # the prediction is only ever a brake: here it would be 2.27 > 1.134
    assert ctrl.accept(0.5, h=0.1) == pytest.approx(0.9 * 0.5 ** (-1 / 3))


def test_the_previous_ratio_is_floored_at_one_hundredth_and_factors_are_clipped():
    ctrl = StepController().start_predictive(3)
    assert ctrl.accept(1e-6, h=0.1) == 10.0  # 0.9 * 100 clipped to ifactor
    # r_prev counts as 1e-2: 0.9 * 0.5**(-1/3) * (0.01 / 0.5)**(1/3) = 0.308
    assert ctrl.accept(0.5, h=0.1) == pytest.approx(0.9 * 0.5 ** (-1 / 3) * 0.02 ** (1 / 3))
    assert ctrl.accept(1e3, h=0.1) == 0.2  # 0.09 * ... clipped to dfactor
    assert ctrl.accept(0.0, h=0.1) == 10.0


def test_per_step_safety_multiplies_the_controllers_own():
    ctrl = StepController(safety=0.8).start_predictive(4)
    assert ctrl.accept(1 / 16, h=1.0, safety=0.5) == pytest.approx(0.8 * 0.5 * 2.0)
    assert ctrl.reject(16.0, safety=0.5) == 0.2  # 0.8 * 0.5 * 0.5 = 0.2 = dfactor
    assert ctrl.reject(16.0, safety=0.75) == pytest.approx(0.8 * 0.75 * 0.5)


def test_rejections_shrink_by_the_error_ratio_within_dfactor_and_one():
    ctrl = StepController().start_predictive(3)
    assert ctrl.reject(8.0) == pytest.approx(0.45)  # 0.9 * 8**(-1/3)
    assert ctrl.reject(1.0 + 1e-12) == pytest.approx(0.9)
    assert ctrl.reject(1e6) == 0.2
    assert ctrl.reject(math.inf) == 0.2 and ctrl.reject(math.nan) == 0.2
    # The cap at 1 cannot bind: StepController refuses safety > 1 (test_step_control.py).
