"""Poisson sampling: each example joins a step's batch independently with probability q."""

from __future__ import annotations

import torch


def poisson_sample(num_examples: int, sampling_rate: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Indices of the examples drawn into one batch; the batch may be empty."""
    mask = torch.rand(num_examples, generator=generator, device=device) < sampling_rate
    return mask.nonzero(as_tuple=True)[0]
