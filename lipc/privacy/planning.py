"""Privacy planning before training: noise multiplier, ε, or the largest number of epochs.

Each question takes the data set size N, the expected batch size B (so q = B/N), δ and an
accountant, and returns a `PrivacyPlan` that states every quantity the answer rests on.
The number of steps of a run is epochs × steps per epoch, with round(N/B) steps per epoch
(at least one), as `lipc train` counts them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from lipc.errors import UsageError
from lipc.privacy.accounting import (
    ACCOUNTANT_NAMES,
    NEIGHBORING_RELATION,
    calibrate_noise_multiplier,
    check_accountant,
    check_privacy_parameters,
    compute_epsilon,
    pld_interval,
    rdp_epsilon_and_order,
    warn_if_order_at_grid_edge,
)

logger = logging.getLogger(__name__)

# Largest number of epochs the epochs question searches; a plan that reaches it is marked `epochs_capped`.
MAX_PLANNED_EPOCHS = 1_000_000


@dataclass(frozen=True)
class PrivacyPlan:
    """One answered planning question, with everything its ε rests on."""

    accountant: str
    dataset_size: int
    batch_size: int
    sampling_rate: float
    steps_per_epoch: int
    epochs: int
    steps: int
    noise_multiplier: float
    epsilon: float
    delta: float
    neighboring_relation: str = NEIGHBORING_RELATION
    sampling: str = "poisson"
    epochs_capped: bool = False

    def describe(self) -> str:
        return (
            f"ε = {self.epsilon:.4g} at δ = {self.delta:g} for {self.epochs} epochs ({self.steps} steps) "
            f"with noise multiplier {self.noise_multiplier:.4f}; {ACCOUNTANT_NAMES[self.accountant]} accountant, "
            f"add-or-remove-one neighbouring, Poisson sampling q = {self.sampling_rate:.4g} "
            f"(N = {self.dataset_size}, expected batch size {self.batch_size})"
        )


def steps_per_epoch(dataset_size: int, batch_size: int) -> int:
    """Steps that draw, in expectation, as many examples as the data set holds."""
    return max(1, round(dataset_size / batch_size))


def _check_question(dataset_size: int, batch_size: int, epsilon: float | None, delta: float, accountant: str) -> float:
    """Validate the common inputs, warn about a weak δ, and return the sampling rate."""
    check_accountant(accountant)
    check_privacy_parameters(epsilon, delta)
    if dataset_size < 1:
        raise UsageError(f"data set size must be at least 1, not {dataset_size}")
    if not 1 <= batch_size <= dataset_size:
        raise UsageError(f"batch size must be between 1 and the data set size {dataset_size}, not {batch_size}", hint="lower the batch size")
    if delta >= 1 / dataset_size:
        logger.warning(
            "δ = %g is at least 1/N = %.3g: a mechanism that publishes one random example meets such a δ; use δ well below 1/N",
            delta, 1 / dataset_size,
        )
    return batch_size / dataset_size


def _check_epochs(epochs: int) -> None:
    if epochs < 1:
        raise UsageError(f"epochs must be at least 1, not {epochs}")


def _check_noise_multiplier(noise_multiplier: float) -> None:
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise UsageError(f"noise multiplier must be a positive finite number, not {noise_multiplier:g}", hint="use a noise multiplier such as 1.0")


def _spent_with_warning(sampling_rate: float, noise_multiplier: float, steps: int, delta: float, accountant: str, pld_discretization: float | None) -> float:
    """Compute the ε of a plan; with RDP, also warn when its best order is at the edge of the grid."""
    if accountant == "rdp":
        epsilon, order = rdp_epsilon_and_order(sampling_rate, noise_multiplier, steps, delta)
        warn_if_order_at_grid_edge(order)
        return epsilon
    return compute_epsilon(sampling_rate, noise_multiplier, steps, delta, accountant, pld_discretization)


def noise_multiplier_for_epsilon(epsilon: float, delta: float, dataset_size: int, batch_size: int, epochs: int, accountant: str = "rdp") -> PrivacyPlan:
    """Return the smallest noise multiplier whose run of `epochs` epochs spends at most ε."""
    sampling_rate = _check_question(dataset_size, batch_size, epsilon, delta, accountant)
    _check_epochs(epochs)
    per_epoch = steps_per_epoch(dataset_size, batch_size)
    steps = epochs * per_epoch
    noise_multiplier = calibrate_noise_multiplier(epsilon, delta, sampling_rate, steps, accountant)
    spent = _spent_with_warning(sampling_rate, noise_multiplier, steps, delta, accountant, pld_interval(epsilon, steps))
    return PrivacyPlan(accountant, dataset_size, batch_size, sampling_rate, per_epoch, epochs, steps, noise_multiplier, spent, delta)


def epsilon_for_noise_multiplier(noise_multiplier: float, delta: float, dataset_size: int, batch_size: int, epochs: int, accountant: str = "rdp") -> PrivacyPlan:
    """Return the ε that `epochs` epochs at `noise_multiplier` spend."""
    sampling_rate = _check_question(dataset_size, batch_size, None, delta, accountant)
    _check_epochs(epochs)
    _check_noise_multiplier(noise_multiplier)
    per_epoch = steps_per_epoch(dataset_size, batch_size)
    steps = epochs * per_epoch
    spent = _spent_with_warning(sampling_rate, noise_multiplier, steps, delta, accountant, None)
    return PrivacyPlan(accountant, dataset_size, batch_size, sampling_rate, per_epoch, epochs, steps, noise_multiplier, spent, delta)


def max_epochs_for_budget(noise_multiplier: float, epsilon: float, delta: float, dataset_size: int, batch_size: int, accountant: str = "rdp") -> PrivacyPlan:
    """Return the largest number of epochs at `noise_multiplier` that spends at most ε.

    ε grows with the number of steps, so an exponential search finds a bracket and a binary
    search over whole epochs finds the result. For PLD the RDP result, never larger, is the
    starting point. Above MAX_PLANNED_EPOCHS the plan is capped and says so.
    """
    sampling_rate = _check_question(dataset_size, batch_size, epsilon, delta, accountant)
    _check_noise_multiplier(noise_multiplier)
    per_epoch = steps_per_epoch(dataset_size, batch_size)
    # The PLD grid step stays fixed for the whole search, so that ε is monotone in the epochs.
    # It is sized for the RDP result, which is a lower bound on the PLD one.
    discretization = {"pld": None}

    def spent(epochs: int, name: str) -> float:
        return compute_epsilon(sampling_rate, noise_multiplier, epochs * per_epoch, delta, name, discretization[name] if name == "pld" else None)

    def largest_within_budget(name: str, known_good: int) -> int:
        """Largest epochs ≥ known_good within budget, given spent(known_good) ≤ ε."""
        good, bad = known_good, max(2 * known_good, 1)
        while bad <= MAX_PLANNED_EPOCHS and spent(bad, name) <= epsilon:
            good, bad = bad, 2 * bad
        if bad > MAX_PLANNED_EPOCHS:
            if spent(MAX_PLANNED_EPOCHS, name) <= epsilon:
                return MAX_PLANNED_EPOCHS
            bad = MAX_PLANNED_EPOCHS
        while bad - good > 1:
            middle = (good + bad) // 2
            if spent(middle, name) <= epsilon:
                good = middle
            else:
                bad = middle
        return good

    discretization["pld"] = pld_interval(epsilon, per_epoch)
    if spent(1, "rdp") > epsilon and (accountant == "rdp" or spent(1, accountant) > epsilon):
        one_epoch = spent(1, accountant)
        raise UsageError(
            f"one epoch at noise multiplier {noise_multiplier:g} already spends ε = {one_epoch:.4g}, above the target {epsilon:g}",
            hint="raise the noise multiplier or epsilon, or lower the batch size",
        )
    epochs = largest_within_budget("rdp", 1) if spent(1, "rdp") <= epsilon else 1
    if accountant == "pld":
        discretization["pld"] = pld_interval(epsilon, epochs * per_epoch)
        epochs = largest_within_budget("pld", epochs)

    steps = epochs * per_epoch
    spent_at_answer = _spent_with_warning(sampling_rate, noise_multiplier, steps, delta, accountant, discretization["pld"])
    capped = epochs >= MAX_PLANNED_EPOCHS
    if capped:
        logger.warning("the budget allows at least %d epochs, the most lipc searches", MAX_PLANNED_EPOCHS)
    return PrivacyPlan(
        accountant, dataset_size, batch_size, sampling_rate, per_epoch, epochs, steps, noise_multiplier,
        spent_at_answer, delta, epochs_capped=capped,
    )
