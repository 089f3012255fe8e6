"""Accounting and planning: agreement with dp-accounting, monotonicity, reference values, edge cases."""

from __future__ import annotations

import logging
import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from lipc.errors import UsageError
from lipc.privacy import planning
from lipc.privacy.accounting import (
    DEFAULT_PLD_INTERVAL,
    calibrate_noise_multiplier,
    compute_epsilon,
    pld_interval,
    rdp_epsilon_and_order,
)

RELATION = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
DIGITS_N = 1437


def direct_epsilon(accountant, q, sigma, steps, delta):
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.compose(event).get_epsilon(delta)


@pytest.mark.parametrize("q, sigma, steps", [(0.01, 1.1, 1000), (256 / 1437, 4.0, 240), (1.0, 5.0, 10), (0.5, 0.8, 1)])
def test_rdp_matches_dp_accounting(q, sigma, steps):
    expected = direct_epsilon(rdp.RdpAccountant(neighboring_relation=RELATION), q, sigma, steps, 1e-5)
    assert compute_epsilon(q, sigma, steps, 1e-5, "rdp") == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("q, sigma, steps", [(256 / 1437, 4.0, 60), (1.0, 2.0, 3)])
def test_pld_matches_dp_accounting(q, sigma, steps):
    expected = direct_epsilon(pld.PLDAccountant(RELATION, value_discretization_interval=DEFAULT_PLD_INTERVAL), q, sigma, steps, 1e-5)
    assert compute_epsilon(q, sigma, steps, 1e-5, "pld", DEFAULT_PLD_INTERVAL) == pytest.approx(expected, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    q=st.floats(1e-3, 1.0),
    sigma=st.floats(0.5, 20.0),
    steps=st.integers(1, 2000),
    extra=st.integers(1, 2000),
)
def test_epsilon_grows_with_steps(q, sigma, steps, extra):
    assert compute_epsilon(q, sigma, steps + extra, 1e-5) >= compute_epsilon(q, sigma, steps, 1e-5)


@settings(max_examples=25, deadline=None)
@given(
    q=st.floats(1e-3, 1.0),
    sigma=st.floats(0.5, 20.0),
    factor=st.floats(1.0, 4.0),
    steps=st.integers(1, 2000),
)
def test_epsilon_shrinks_with_noise(q, sigma, factor, steps):
    assert compute_epsilon(q, sigma * factor, steps, 1e-5) <= compute_epsilon(q, sigma, steps, 1e-5)


@pytest.mark.parametrize("steps", [1, 30, 60, 120])
def test_pld_monotone_in_steps_at_fixed_grid(steps):
    q, sigma, interval = 256 / 1437, 3.0, 1e-3
    assert compute_epsilon(q, sigma, steps + 30, 1e-5, "pld", interval) >= compute_epsilon(q, sigma, steps, 1e-5, "pld", interval)


@pytest.mark.parametrize("q, sigma, steps", [(0.05, 1.2, 500), (256 / 1437, 4.0, 240), (1.0, 3.0, 5), (0.01, 0.9, 2000)])
def test_pld_not_above_rdp(q, sigma, steps):
    assert compute_epsilon(q, sigma, steps, 1e-5, "pld") <= compute_epsilon(q, sigma, steps, 1e-5, "rdp") * 1.001


def test_reference_abadi_et_al():
    # Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016), section 3.1: q = 0.01,
    # σ = 4, δ = 1e-5, 10 000 steps give ε ≈ 1.26 with the moments accountant, which RDP
    # over a finer grid of orders can only tighten.
    rdp_epsilon = compute_epsilon(0.01, 4.0, 10_000, 1e-5, "rdp")
    assert 0.9 < rdp_epsilon <= 1.26


def analytic_gaussian_delta(epsilon, sigma):
    """δ(ε) of one Gaussian mechanism with sensitivity 1 (Balle and Wang, ICML 2018, Theorem 8)."""
    return norm.cdf(1 / (2 * sigma) - epsilon * sigma) - math.exp(epsilon) * norm.cdf(-1 / (2 * sigma) - epsilon * sigma)


@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
def test_reference_analytic_gaussian(sigma):
    # With q = 1 and one step the mechanism is one Gaussian, whose exact (ε, δ) curve is known.
    epsilon = compute_epsilon(1.0, sigma, 1, 1e-5, "pld", DEFAULT_PLD_INTERVAL)
    assert analytic_gaussian_delta(epsilon, sigma) <= 1e-5 * 1.0001
    assert analytic_gaussian_delta(epsilon * 0.99, sigma) > 1e-5


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("target", [0.5, 3.0, 8.0])
def test_calibration_meets_target(accountant, target):
    q, steps, delta = 256 / 1437, 60, 1e-5
    sigma = calibrate_noise_multiplier(target, delta, q, steps, accountant)
    reached = compute_epsilon(q, sigma, steps, delta, accountant, pld_interval(target, steps))
    assert reached <= target
    assert reached > 0.99 * target


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("epsilon, batch_size, epochs", [(0.01, 256, 40), (50.0, 256, 40), (50.0, DIGITS_N, 1), (0.01, DIGITS_N, 1)])
def test_noise_question_edge_cases(accountant, epsilon, batch_size, epochs):
    plan = planning.noise_multiplier_for_epsilon(epsilon, 1e-5, DIGITS_N, batch_size, epochs, accountant)
    assert plan.epsilon <= epsilon
    assert plan.epsilon > 0.98 * epsilon


def test_noise_question_single_step_full_batch():
    plan = planning.noise_multiplier_for_epsilon(3.0, 1e-5, 100, 100, 1)
    assert plan.steps == 1
    assert plan.sampling_rate == 1.0


def test_epsilon_question_matches_compute_epsilon():
    plan = planning.epsilon_for_noise_multiplier(4.0, 1e-5, DIGITS_N, 256, 40)
    assert plan.steps == 240
    assert plan.epsilon == pytest.approx(compute_epsilon(256 / DIGITS_N, 4.0, 240, 1e-5))


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_epochs_question_is_largest(accountant):
    plan = planning.max_epochs_for_budget(4.0, 3.0, 1e-5, DIGITS_N, 256, accountant)
    interval = pld_interval(3.0, plan.steps)
    over = compute_epsilon(plan.sampling_rate, 4.0, plan.steps + plan.steps_per_epoch, 1e-5, accountant, interval)
    assert plan.epsilon <= 3.0
    assert over > 3.0


def test_epochs_question_rejects_one_epoch_over_budget():
    with pytest.raises(UsageError) as caught:
        planning.max_epochs_for_budget(0.3, 0.5, 1e-5, DIGITS_N, 256)
    assert caught.value.message.startswith("one epoch at noise multiplier 0.3 already spends ε = ")


def test_epochs_question_capped():
    plan = planning.max_epochs_for_budget(1000.0, 50.0, 1e-5, 1000, 1)
    assert plan.epochs_capped
    assert plan.epochs == planning.MAX_PLANNED_EPOCHS


def test_delta_above_one_over_n_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="lipc"):
        planning.epsilon_for_noise_multiplier(2.0, 1e-3, DIGITS_N, 256, 1)
    assert "δ = 0.001 is at least 1/N = 0.000696" in caplog.text


@pytest.mark.parametrize(
    "epsilon, delta, message",
    [
        (0.0, 1e-5, "epsilon must be a positive finite number, not 0"),
        (-1.0, 1e-5, "epsilon must be a positive finite number, not -1"),
        (math.inf, 1e-5, "epsilon must be a positive finite number, not inf"),
        (3.0, 0.0, "delta must be in (0, 1), not 0"),
        (3.0, 1.0, "delta must be in (0, 1), not 1"),
        (3.0, math.nan, "delta must be in (0, 1), not nan"),
    ],
)
def test_out_of_range_rejected(epsilon, delta, message):
    with pytest.raises(UsageError) as caught:
        planning.noise_multiplier_for_epsilon(epsilon, delta, DIGITS_N, 256, 1)
    assert caught.value.message == message


def test_unreachable_target_rejected():
    with pytest.raises(UsageError) as caught:
        calibrate_noise_multiplier(1e-6, 1e-5, 1.0, 10**6)
    assert caught.value.message.startswith("no noise multiplier up to 10000 reaches ε = 1e-06")


def test_order_at_grid_edge_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="lipc"):
        planning.noise_multiplier_for_epsilon(0.01, 1e-5, DIGITS_N, 256, 40)
    assert "the best RDP order, 1024, is at the edge of dp-accounting's order grid [1.1, 1024]" in caplog.text


def test_dp_accounting_warnings_hidden(caplog):
    # Extreme settings make dp-accounting log one warning per order it drops.
    with caplog.at_level(logging.DEBUG):
        compute_epsilon(0.999, 0.06, 3, 1e-5)
    assert not [record for record in caplog.records if record.name == "absl" and record.levelno >= logging.WARNING]


def test_rdp_order_reported():
    epsilon, order = rdp_epsilon_and_order(0.01, 1.1, 1000, 1e-5)
    assert epsilon > 0
    assert 1 < order < 1024
