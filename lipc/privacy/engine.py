"""lipc's privacy engine for users who write their own training loop.

`PrivacyEngine` calibrates the noise for a privacy target and draws Poisson batches. At each
step it adds the allocated Gaussian noise to the gradients, lets the optimizer update the
weights, projects them back onto their constraints, and counts the step for accounting.
The guarantee holds only if the loop draws every batch with `sample_batch`, computes its
loss with `batch_loss` (summed over the batch, divided by the expected batch size), and
changes the weights only through the wrapped optimizer.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from lipc.compiler import CompiledNetwork
from lipc.privacy.accounting import compute_epsilon, pld_interval
from lipc.privacy.ledger import PrivacyLedger
from lipc.privacy.noise import TensorNoise, allocate_noise, noisy_update_
from lipc.privacy.planning import noise_multiplier_for_epsilon
from lipc.privacy.sampling import poisson_sample

logger = logging.getLogger(__name__)


class PrivacyEngine:
    """Noise, projection and accounting for `compiled.module`, calibrated to (ε, δ) over `epochs` epochs."""

    def __init__(
        self,
        compiled: CompiledNetwork,
        dataset_size: int,
        batch_size: int,
        epochs: int,
        epsilon: float,
        delta: float = 1e-5,
        noise: str = "least_energy",
        accountant: str = "rdp",
        seed: int = 0,
    ) -> None:
        self.compiled = compiled
        self.module = compiled.module
        self.plan = noise_multiplier_for_epsilon(epsilon, delta, dataset_size, batch_size, epochs, accountant)
        sizes = {name: parameter.numel() for name, parameter in self.module.named_parameters()}
        self.allocation: dict[str, TensorNoise] = allocate_noise(compiled.sensitivities, self.plan.noise_multiplier, float(batch_size), noise, sizes)
        self.pld_discretization = pld_interval(epsilon, self.plan.steps) if accountant == "pld" else None
        device = next(self.module.parameters()).device
        # NOTE: torch's seeded generator makes runs reproducible but is not a cryptographically
        # secure source; an attacker who learns the seed can remove the noise.
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.ledger = PrivacyLedger(
            accountant=accountant,
            sampling="poisson",
            sampling_rate=self.plan.sampling_rate,
            expected_batch_size=float(batch_size),
            dataset_size=dataset_size,
            noise_multiplier=self.plan.noise_multiplier,
            noise_strategy=noise,
            delta=delta,
            target_epsilon=epsilon,
            steps_planned=self.plan.steps,
            pld_discretization=self.pld_discretization,
            tensors={name: dataclasses.asdict(value) for name, value in self.allocation.items()},
            preprocessing="not recorded: the caller's own data pipeline",
        )
        self.module.project_()

    @property
    def expected_batch_size(self) -> float:
        return self.ledger.expected_batch_size

    @property
    def steps_per_epoch(self) -> int:
        return self.plan.steps_per_epoch

    @property
    def steps_taken(self) -> int:
        return self.ledger.steps_taken

    @property
    def epsilon(self) -> float:
        """ε spent by the steps taken so far."""
        ledger = self.ledger
        return compute_epsilon(ledger.sampling_rate, ledger.noise_multiplier, ledger.steps_taken, ledger.delta, ledger.accountant, ledger.pld_discretization)

    def sample_batch(self) -> torch.Tensor:
        """Draw the indices of one Poisson batch (each example with probability q); it may be empty."""
        device = next(self.module.parameters()).device
        return poisson_sample(self.ledger.dataset_size, self.ledger.sampling_rate, self.generator, device)

    def batch_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Compute the loss of a batch: per-example losses summed, divided by the expected batch size B.

        Dividing by B rather than the realised batch size, which is private, keeps one
        example's influence at most Δ/B. An empty batch gives a zero loss.
        """
        return self.compiled.loss_function(outputs, labels).sum() / self.expected_batch_size

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Noise the gradients, take the optimizer step, project the weights, and count the step."""
        noisy_update_(self.module, optimizer, dict(self.module.named_parameters()), self.allocation, self.generator)
        self.ledger.steps_taken += 1
        if self.ledger.steps_taken == self.ledger.steps_planned + 1:
            logger.warning("more steps than the %d planned: ε now exceeds the target %g", self.ledger.steps_planned, self.ledger.target_epsilon)

    def wrap(self, optimizer: torch.optim.Optimizer) -> "PrivateOptimizer":
        """Wrap `optimizer` so that its `step()` is this engine's private step."""
        return PrivateOptimizer(self, optimizer)


class PrivateOptimizer:
    """A torch optimizer whose `step()` adds noise, projects the weights and counts the step."""

    def __init__(self, engine: PrivacyEngine, optimizer: torch.optim.Optimizer) -> None:
        self.engine = engine
        self.optimizer = optimizer

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        self.engine.step(self.optimizer)

    def __getattr__(self, name: str):
        # Everything else (param_groups, state_dict, ...) is the wrapped optimizer's.
        return getattr(self.optimizer, name)
