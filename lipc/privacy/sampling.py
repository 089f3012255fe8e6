"""Batch sampling: Poisson sampling, which the accounting assumes, and shuffled fixed-size batches.

Only Poisson sampling, where each example joins a step's batch independently with
probability q, is covered by the ε that dp-accounting computes. Shuffled fixed-size batches
(a random permutation cut into batches of B) are offered on explicit request only, and every
ε of such a run is labelled as computed under a Poisson assumption the run did not meet.
"""

from __future__ import annotations

import torch

SAMPLING_METHODS = ("poisson", "shuffle")

EPSILON_LABELS = {
    "poisson": "Poisson sampling at rate q, as the run used",
    "shuffle": "NOT COVERED: ε assumes Poisson sampling at rate q, but the run used shuffled fixed-size batches",
}


def epsilon_label(sampling: str) -> str:
    """Describe the sampling assumption behind a run's ε, for reports and metadata."""
    return EPSILON_LABELS[sampling]


def poisson_sample(num_examples: int, sampling_rate: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Indices of the examples drawn into one batch; the batch may be empty."""
    mask = torch.rand(num_examples, generator=generator, device=device) < sampling_rate
    return mask.nonzero(as_tuple=True)[0]


# NOTE: no accountant here covers shuffled batches; their ε is the Poisson one, labelled as such.
def shuffled_batches(num_examples: int, batch_size: int, num_batches: int, generator: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """`num_batches` batches of `batch_size` indices from one random permutation, wrapping around if needed."""
    permutation = torch.randperm(num_examples, generator=generator, device=device)
    needed = batch_size * num_batches
    if needed > num_examples:
        repeats = -(-needed // num_examples)
        permutation = torch.cat([permutation] + [torch.randperm(num_examples, generator=generator, device=device) for _ in range(repeats - 1)])
    return [permutation[start : start + batch_size] for start in range(0, needed, batch_size)]
