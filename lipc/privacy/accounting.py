"""Privacy accounting for Poisson-sampled Gaussian steps, with dp-accounting.

A run of T noisy steps at sampling rate q and noise multiplier σ is the event
SelfComposed(PoissonSampled(q, Gaussian(σ)), T) under add-or-remove-one neighbouring.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Iterator

import dp_accounting
from dp_accounting import pld, rdp

from lipc.errors import UsageError
from lipc.logging_utils import quiet_loggers

logger = logging.getLogger(__name__)

NEIGHBORING_RELATION = "add_or_remove_one"

# Range of the noise-multiplier search. Past the upper end no realistic run reaches its
# target; below the lower end the mechanism gives no useful privacy.
MIN_NOISE_MULTIPLIER = 0.05
MAX_NOISE_MULTIPLIER = 1e4


@contextlib.contextmanager
def _quiet_accountant() -> Iterator[None]:
    """Hide dp-accounting's warnings about RDP orders it could not evaluate.

    The RDP accountant drops an order whose series does not converge and minimises over the
    others, so its ε stays a valid upper bound (possibly a looser one); the warning is noise.
    """
    with warnings.catch_warnings(), quiet_loggers("absl"):
        warnings.simplefilter("ignore")
        yield


def make_accountant(name: str) -> dp_accounting.PrivacyAccountant:
    relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    if name == "rdp":
        return rdp.RdpAccountant(neighboring_relation=relation)
    if name == "pld":
        return pld.PLDAccountant(neighboring_relation=relation)
    raise UsageError(f"unknown accountant '{name}'", hint="use rdp or pld")


def training_event(sampling_rate: float, noise_multiplier: float, steps: int) -> dp_accounting.DpEvent:
    step = dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(noise_multiplier))
    return dp_accounting.SelfComposedDpEvent(step, steps)


def compute_epsilon(sampling_rate: float, noise_multiplier: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """ε spent by `steps` Poisson-sampled Gaussian steps, at the given δ."""
    if steps == 0:
        return 0.0
    engine = make_accountant(accountant)
    with _quiet_accountant():
        engine.compose(training_event(sampling_rate, noise_multiplier, steps))
        return float(engine.get_epsilon(delta))


def calibrate_noise_multiplier(target_epsilon: float, delta: float, sampling_rate: float, steps: int, accountant: str = "rdp") -> float:
    """Smallest noise multiplier (to a relative tolerance) whose ε is at most `target_epsilon`.

    Uses dp-accounting's own calibration, then checks the result and raises it slightly if
    the bisection ended on the wrong side of the target.
    """
    if not 0 < sampling_rate <= 1:
        raise UsageError(f"sampling rate must be in (0, 1], not {sampling_rate:g}", hint="lower the batch size")

    def calibrate(name: str, lower: float, upper: float) -> float:
        with _quiet_accountant():
            return dp_accounting.calibrate_dp_mechanism(
                lambda: make_accountant(name),
                lambda noise_multiplier: training_event(sampling_rate, noise_multiplier, steps),
                target_epsilon,
                delta,
                dp_accounting.ExplicitBracketInterval(lower, upper),
                tol=1e-4,
            )

    # RDP first: cheap at any noise level, and an upper bound on what PLD needs.
    if compute_epsilon(sampling_rate, MAX_NOISE_MULTIPLIER, steps, delta) > target_epsilon:
        raise UsageError(
            f"no noise multiplier up to {MAX_NOISE_MULTIPLIER:g} reaches ε = {target_epsilon:g} at δ = {delta:g} "
            f"with {steps} steps at sampling rate {sampling_rate:.4g}",
            hint="raise epsilon or delta, or train for fewer epochs",
        )
    noise_multiplier = calibrate("rdp", MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER)

    if accountant == "pld":
        # A PLD at a very small noise multiplier needs a huge grid, so search only below the
        # RDP answer, halving the lower end until it lies on the other side of the target.
        upper = noise_multiplier
        lower = upper / 2
        while lower > MIN_NOISE_MULTIPLIER and compute_epsilon(sampling_rate, lower, steps, delta, "pld") <= target_epsilon:
            upper, lower = lower, lower / 2
        if compute_epsilon(sampling_rate, upper, steps, delta, "pld") < target_epsilon:
            noise_multiplier = calibrate("pld", lower, upper)
        else:
            noise_multiplier = upper

    for _ in range(100):
        if compute_epsilon(sampling_rate, noise_multiplier, steps, delta, accountant) <= target_epsilon:
            return float(noise_multiplier)
        noise_multiplier *= 1.0001
    raise AssertionError("calibrated noise multiplier exceeds the privacy target")


def effective_noise_multiplier(noise_multipliers: list[float]) -> float:
    """σ_eff = (Σ_t σ_t⁻²)^(−1/2): the single Gaussian mechanism that a step with per-tensor noise is."""
    return 1.0 / math.sqrt(sum(1.0 / s**2 for s in noise_multipliers))
