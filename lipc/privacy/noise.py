"""Gaussian noise per parameter tensor, scaled to that tensor's sensitivity.

A step releases g_t + n_t for each tensor t, where g_t is the batch gradient of the loss
summed over the batch and divided by the expected batch size B. One example changes g_t by
at most Δ_t / B, and n_t ~ N(0, (σ_t·Δ_t / B)² I). Rescaling each block shows the step is one
Gaussian mechanism with noise multiplier σ_eff = (Σ_t σ_t⁻²)^(−1/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lipc.privacy.accounting import effective_noise_multiplier


@dataclass(frozen=True)
class TensorNoise:
    """Noise of one parameter tensor: its sensitivity Δ_t, multiplier σ_t and standard deviation."""

    sensitivity: float
    noise_multiplier: float
    standard_deviation: float


def allocate_noise(sensitivities: dict[str, float], noise_multiplier: float, expected_batch_size: float, strategy: str = "global") -> dict[str, TensorNoise]:
    """Split noise across tensors so that the step's effective noise multiplier is `noise_multiplier`.

    "global" gives every coordinate the same standard deviation σ·sqrt(Σ_j Δ_j²)/B, that is
    σ_t = σ·sqrt(Σ_j Δ_j²)/Δ_t, and then σ_eff = σ.
    """
    if strategy != "global":
        raise ValueError(f"unknown noise strategy {strategy!r}")
    total_sensitivity = math.sqrt(sum(value**2 for value in sensitivities.values()))
    standard_deviation = noise_multiplier * total_sensitivity / expected_batch_size
    allocation = {
        name: TensorNoise(value, noise_multiplier * total_sensitivity / value, standard_deviation)
        for name, value in sensitivities.items()
    }
    achieved = effective_noise_multiplier([noise.noise_multiplier for noise in allocation.values()])
    if achieved < noise_multiplier * (1 - 1e-9):
        raise AssertionError(f"noise allocation gives σ_eff = {achieved} below the calibrated {noise_multiplier}")
    return allocation


@torch.no_grad()
def add_noise_(parameters: dict[str, torch.nn.Parameter], allocation: dict[str, TensorNoise], generator: torch.Generator) -> None:
    """Add the allocated Gaussian noise to each parameter's `.grad` in place."""
    for name, parameter in parameters.items():
        noise = torch.randn(parameter.shape, generator=generator, device=parameter.device, dtype=parameter.dtype)
        parameter.grad.add_(noise, alpha=allocation[name].standard_deviation)
