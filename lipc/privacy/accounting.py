"""Privacy accounting for Poisson-sampled Gaussian steps, with dp-accounting.

A run of T noisy steps at sampling rate q and noise multiplier σ is the event
SelfComposed(PoissonSampled(q, Gaussian(σ)), T) under add-or-remove-one neighbouring.
Both of dp-accounting's accountants are offered: RDP (Rényi DP over a grid of orders,
converted to (ε, δ)) and PLD (privacy loss distributions, tighter and slower).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Iterator

import dp_accounting
import numpy as np
from dp_accounting import pld, rdp
from dp_accounting.rdp import rdp_privacy_accountant

from lipc.errors import UsageError

logger = logging.getLogger(__name__)

NEIGHBORING_RELATION = "add_or_remove_one"
ACCOUNTANTS = ("rdp", "pld")
ACCOUNTANT_NAMES = {"rdp": "RDP", "pld": "PLD"}

# Range of the noise-multiplier search. Past the upper end no realistic run reaches its
# target; below the lower end the mechanism gives no useful privacy.
MIN_NOISE_MULTIPLIER = 0.05
MAX_NOISE_MULTIPLIER = 1e4

# Tolerance of dp-accounting's search for the noise multiplier, relative to the lower end of
# the search interval.
CALIBRATION_TOLERANCE = 1e-4

# dp-accounting's default PLD grid step. A coarser step costs less time and memory; the PLD
# stays a pessimistic (upper-bound) discretisation at any step, so only tightness is lost.
# NOTE: the looseness estimate is a heuristic, not a proven bound: each of T compositions
# rounds the privacy loss up by at most one step, so a step of PLD_RELATIVE_RESOLUTION·ε/T
# should loosen ε by about that fraction of ε. Soundness does not depend on it.
DEFAULT_PLD_INTERVAL = 1e-4
PLD_RELATIVE_RESOLUTION = 1e-3


class _AccountantWarnings(logging.Handler):
    """Collect the messages dp-accounting logs through absl while it searches RDP orders."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[_AccountantWarnings]:
    """Keep dp-accounting's warnings from the user and collect them for translation.

    The RDP accountant logs one warning per order whose series does not converge, and drops
    that order: ε stays a valid upper bound, minimised over the remaining orders. Those
    messages are logged here at DEBUG level only. A negative Rényi divergence is not harmless
    (dp-accounting then returns ε = 0 for that order); `_rdp_epsilon` removes such orders.
    """
    collector = _AccountantWarnings()
    absl_logger = logging.getLogger("absl")
    previous_propagate = absl_logger.propagate
    absl_logger.addHandler(collector)
    absl_logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield collector
    finally:
        absl_logger.removeHandler(collector)
        absl_logger.propagate = previous_propagate
        if collector.messages:
            logger.debug("dp-accounting: %d warnings while searching RDP orders, first: %s", len(collector.messages), collector.messages[0])


def check_accountant(name: str) -> None:
    if name not in ACCOUNTANTS:
        raise UsageError(f"unknown accountant '{name}'", hint="use rdp or pld")


def check_privacy_parameters(epsilon: float | None, delta: float) -> None:
    """Reject an ε or δ outside the range where (ε, δ)-DP means anything."""
    if epsilon is not None and not (math.isfinite(epsilon) and epsilon > 0):
        raise UsageError(f"epsilon must be a positive finite number, not {epsilon:g}", hint="use an epsilon such as 1, 3 or 8")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise UsageError(f"delta must be in (0, 1), not {delta:g}", hint="use a delta below 1/N, such as 1e-5")


def check_sampling(sampling_rate: float, steps: int) -> None:
    if not (math.isfinite(sampling_rate) and 0 < sampling_rate <= 1):
        raise UsageError(f"sampling rate must be in (0, 1], not {sampling_rate:g}", hint="use a batch size between 1 and the data set size")
    if steps < 0:
        raise UsageError(f"number of steps must be at least 0, not {steps}")


def pld_interval(epsilon_scale: float, steps: int) -> float:
    """Grid step of the PLD accountant for a run of `steps` steps whose ε is about `epsilon_scale`."""
    if steps == 0 or not math.isfinite(epsilon_scale):
        return DEFAULT_PLD_INTERVAL
    return max(DEFAULT_PLD_INTERVAL, PLD_RELATIVE_RESOLUTION * epsilon_scale / steps)


def make_accountant(name: str, pld_discretization: float = DEFAULT_PLD_INTERVAL) -> dp_accounting.PrivacyAccountant:
    relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    check_accountant(name)
    if name == "rdp":
        return rdp.RdpAccountant(neighboring_relation=relation)
    return pld.PLDAccountant(neighboring_relation=relation, value_discretization_interval=pld_discretization)


def training_event(sampling_rate: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, steps)


def rdp_epsilon_and_order(sampling_rate: float, noise_multiplier: float, steps: int, delta: float) -> tuple[float, float]:
    """ε of the RDP accountant and the Rényi order that attains it."""
    engine = make_accountant("rdp")
    with _quiet_accountant():
        engine.compose(training_event(sampling_rate, noise_multiplier, steps))
        divergences = np.asarray(engine.rdp)
        orders = np.asarray(engine.orders)
        if np.all(divergences >= 0):
            epsilon, order = engine.get_epsilon_and_optimal_order(delta)
            return float(epsilon), float(order)

        # dp-accounting turns a negative divergence (a numerical failure at extreme settings)
        # into ε = 0 for that order, which would be no bound at all: drop those orders.
        valid = divergences >= 0
        logger.warning(
            "dp-accounting returned negative Rényi divergences at %d orders (numerical instability at q = %.4g, "
            "noise multiplier %.4g); those orders are left out of ε", int((~valid).sum()), sampling_rate, noise_multiplier,
        )
        if not valid.any():
            return math.inf, math.nan
        epsilon, order = rdp_privacy_accountant.compute_epsilon(orders[valid], divergences[valid], delta)
        return float(epsilon), float(order)


def compute_epsilon(
    sampling_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    accountant: str = "rdp",
    pld_discretization: float | None = None,
) -> float:
    """ε spent by `steps` Poisson-sampled Gaussian steps, at the given δ.

    For PLD, `pld_discretization` is the grid step; by default it follows `pld_interval` of
    the RDP ε, which keeps large-ε questions fast.
    """
    check_accountant(accountant)
    if steps == 0:
        return 0.0
    if accountant == "rdp":
        return rdp_epsilon_and_order(sampling_rate, noise_multiplier, steps, delta)[0]
    if pld_discretization is None:
        pld_discretization = pld_interval(rdp_epsilon_and_order(sampling_rate, noise_multiplier, steps, delta)[0], steps)
    engine = make_accountant("pld", pld_discretization)
    with _quiet_accountant():
        engine.compose(training_event(sampling_rate, noise_multiplier, steps))
        return float(engine.get_epsilon(delta))


def warn_if_order_at_grid_edge(order: float) -> bool:
    """Warn when the best RDP order is the smallest or largest of the grid.

    ε is still an upper bound there, but orders beyond the grid might give a smaller one.
    """
    orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    if order not in (min(orders), max(orders)):
        return False
    logger.warning(
        "the best RDP order, %g, is at the edge of dp-accounting's order grid [%g, %g]: ε is valid but may be loose; "
        "--accountant pld gives a tighter value", order, min(orders), max(orders),
    )
    return True


def _calibrate(accountant: str, target_epsilon: float, delta: float, sampling_rate: float, steps: int, lower: float, upper: float, pld_discretization: float) -> float:
    with _quiet_accountant():
        return float(dp_accounting.calibrate_dp_mechanism(
            lambda: make_accountant(accountant, pld_discretization),
            lambda noise_multiplier: training_event(sampling_rate, noise_multiplier, steps),
            target_epsilon,
            delta,
            dp_accounting.ExplicitBracketInterval(lower, upper),
            tol=CALIBRATION_TOLERANCE * lower,
        ))


def _bracket_rdp(target_epsilon: float, delta: float, sampling_rate: float, steps: int) -> tuple[float, float] | None:
    """Find [σ, 2σ] with RDP ε above the target at σ and within it at 2σ, starting at σ = 1.

    Returns None when even MIN_NOISE_MULTIPLIER meets the target; raises when
    MAX_NOISE_MULTIPLIER does not.
    """

    def meets(noise_multiplier: float) -> bool:
        return compute_epsilon(sampling_rate, noise_multiplier, steps, delta) <= target_epsilon

    noise_multiplier = 1.0
    if meets(noise_multiplier):
        while not noise_multiplier / 2 < MIN_NOISE_MULTIPLIER:
            noise_multiplier /= 2
            if not meets(noise_multiplier):
                return noise_multiplier, 2 * noise_multiplier
        return None if meets(MIN_NOISE_MULTIPLIER) else (MIN_NOISE_MULTIPLIER, noise_multiplier)

    while noise_multiplier < MAX_NOISE_MULTIPLIER:
        upper = min(2 * noise_multiplier, MAX_NOISE_MULTIPLIER)
        if meets(upper):
            return noise_multiplier, upper
        noise_multiplier = upper
    raise UsageError(
        f"no noise multiplier up to {MAX_NOISE_MULTIPLIER:g} reaches ε = {target_epsilon:g} at δ = {delta:g} "
        f"with {steps} steps at sampling rate {sampling_rate:.4g}",
        hint="raise epsilon or delta, or train for fewer epochs",
    )


# Factor by which the PLD search lowers its lower end until ε exceeds the target there.
PLD_BRACKET_FACTOR = 0.8


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sampling_rate: float,
    steps: int,
    accountant: str = "rdp",
    pld_discretization: float | None = None,
) -> float:
    """Smallest noise multiplier (to a relative tolerance of 1e-4) whose ε is at most `target_epsilon`.

    Uses dp-accounting's `calibrate_dp_mechanism`, then checks the result with the same
    accountant and raises it slightly if the search ended on the wrong side of the target.
    For PLD, `pld_discretization` defaults to `pld_interval(target_epsilon, steps)`.
    """
    check_accountant(accountant)
    check_privacy_parameters(target_epsilon, delta)
    check_sampling(sampling_rate, steps)
    if steps == 0:
        raise UsageError("no steps to calibrate the noise for", hint="train for at least one step")

    # RDP first: cheap at any noise level, and an upper bound on what PLD needs.
    bracket = _bracket_rdp(target_epsilon, delta, sampling_rate, steps)
    if bracket is None:
        noise_multiplier = MIN_NOISE_MULTIPLIER
        logger.warning("noise multiplier %g, the smallest lipc searches, already meets ε = %g", MIN_NOISE_MULTIPLIER, target_epsilon)
    else:
        noise_multiplier = _calibrate("rdp", target_epsilon, delta, sampling_rate, steps, *bracket, DEFAULT_PLD_INTERVAL)

    if pld_discretization is None:
        pld_discretization = pld_interval(target_epsilon, steps)
    if accountant == "pld":
        noise_multiplier = _calibrate_pld_below(noise_multiplier, target_epsilon, delta, sampling_rate, steps, pld_discretization)

    # Raise σ by at most 1% in small steps until the accountant confirms the target.
    for _ in range(100):
        if compute_epsilon(sampling_rate, noise_multiplier, steps, delta, accountant, pld_discretization) <= target_epsilon:
            return float(noise_multiplier)
        noise_multiplier *= 1.0001
    raise AssertionError(f"calibrated noise multiplier {noise_multiplier} exceeds the privacy target {target_epsilon}")


def _calibrate_pld_below(rdp_noise_multiplier: float, target_epsilon: float, delta: float, sampling_rate: float, steps: int, pld_discretization: float) -> float:
    """Search for the PLD noise multiplier below the RDP one, which already meets the target.

    A PLD at a small noise multiplier needs a long grid, so the lower end of the bracket
    moves down in steps of PLD_BRACKET_FACTOR only until ε there exceeds the target.
    """

    def pld_epsilon(noise_multiplier: float) -> float:
        return compute_epsilon(sampling_rate, noise_multiplier, steps, delta, "pld", pld_discretization)

    upper = rdp_noise_multiplier
    if pld_epsilon(upper) >= target_epsilon:
        return upper
    lower = upper * PLD_BRACKET_FACTOR
    while lower > MIN_NOISE_MULTIPLIER and pld_epsilon(lower) <= target_epsilon:
        upper, lower = lower, lower * PLD_BRACKET_FACTOR
    if lower <= MIN_NOISE_MULTIPLIER:
        return upper
    return _calibrate("pld", target_epsilon, delta, sampling_rate, steps, lower, upper, pld_discretization)


def effective_noise_multiplier(noise_multipliers: list[float]) -> float:
    """σ_eff = (Σ_t σ_t⁻²)^(−1/2): the single Gaussian mechanism that a step with per-tensor noise is."""
    return 1.0 / math.sqrt(sum(1.0 / s**2 for s in noise_multipliers))
