"""Gaussian noise per parameter tensor, scaled to that tensor's sensitivity.

A step releases g_t + n_t for each tensor t, where g_t is the batch gradient of the loss
summed over the batch and divided by the expected batch size B. One example changes g_t by
at most Δ_t / B, and n_t ~ N(0, (σ_t·Δ_t / B)² I). Rescaling each block shows the step is one
Gaussian mechanism with noise multiplier σ_eff = (Σ_t σ_t⁻²)^(−1/2). Every strategy below
chooses the σ_t so that σ_eff equals the calibrated noise multiplier σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lipc.privacy.accounting import effective_noise_multiplier

NOISE_STRATEGIES = ("global", "per_tensor", "least_energy")

# Every σ_t is raised by this relative amount, so that float rounding in the allocation can
# never leave σ_eff below the calibrated σ.
ALLOCATION_TOLERANCE = 1e-9


@dataclass(frozen=True)
class TensorNoise:
    """Noise of one parameter tensor: its sensitivity Δ_t, multiplier σ_t and standard deviation."""

    sensitivity: float
    noise_multiplier: float
    standard_deviation: float


def _global_multipliers(sensitivities: dict[str, float], noise_multiplier: float) -> dict[str, float]:
    # σ_t = σ·sqrt(Σ_j Δ_j²)/Δ_t: every coordinate gets the standard deviation σ·sqrt(Σ_j Δ_j²)/B.
    total = math.sqrt(sum(value**2 for value in sensitivities.values()))
    return {name: noise_multiplier * total / value for name, value in sensitivities.items()}


def _per_tensor_multipliers(sensitivities: dict[str, float], noise_multiplier: float) -> dict[str, float]:
    # σ_t = σ·sqrt(k) for k tensors, so that σ_eff = σ (with σ_t = σ, σ_eff would be σ/sqrt(k)).
    return {name: noise_multiplier * math.sqrt(len(sensitivities)) for name in sensitivities}


def _least_energy_multipliers(sensitivities: dict[str, float], noise_multiplier: float, sizes: dict[str, int]) -> dict[str, float]:
    # With a_t = n_t·Δ_t², σ_t² = σ²·(Σ_j sqrt(a_j))/sqrt(a_t) minimises the total noise energy
    # Σ_t n_t·(σ_t·Δ_t/B)² subject to Σ_t σ_t⁻² = σ⁻² (Lagrange; by Cauchy–Schwarz it is at
    # most the energy of the global strategy).
    roots = {name: math.sqrt(sizes[name]) * value for name, value in sensitivities.items()}
    total = sum(roots.values())
    return {name: noise_multiplier * math.sqrt(total / roots[name]) for name in sensitivities}


def allocate_noise(
    sensitivities: dict[str, float],
    noise_multiplier: float,
    expected_batch_size: float,
    strategy: str = "global",
    sizes: dict[str, int] | None = None,
) -> dict[str, TensorNoise]:
    """Split noise across tensors so that the step's effective noise multiplier is `noise_multiplier`.

    Strategies: "global" gives every coordinate the same standard deviation, "per_tensor"
    gives every tensor the same multiplier σ_t, and "least_energy" minimises the total noise
    energy. The last one needs `sizes`, the number of coordinates of each tensor.
    """
    if strategy == "global":
        multipliers = _global_multipliers(sensitivities, noise_multiplier)
    elif strategy == "per_tensor":
        multipliers = _per_tensor_multipliers(sensitivities, noise_multiplier)
    elif strategy == "least_energy":
        if sizes is None or set(sizes) != set(sensitivities):
            raise ValueError("the least_energy strategy needs the size of every parameter tensor")
        multipliers = _least_energy_multipliers(sensitivities, noise_multiplier, sizes)
    else:
        raise ValueError(f"unknown noise strategy {strategy!r}; expected one of {', '.join(NOISE_STRATEGIES)}")

    multipliers = {name: multiplier * (1 + ALLOCATION_TOLERANCE) for name, multiplier in multipliers.items()}
    allocation = {
        name: TensorNoise(value, multipliers[name], multipliers[name] * value / expected_batch_size)
        for name, value in sensitivities.items()
    }
    achieved = effective_noise_multiplier([noise.noise_multiplier for noise in allocation.values()])
    if achieved < noise_multiplier:
        raise AssertionError(f"noise allocation gives σ_eff = {achieved} below the calibrated {noise_multiplier}")
    return allocation


def noise_energy(allocation: dict[str, TensorNoise], sizes: dict[str, int]) -> float:
    """Expected squared norm of one step's noise, Σ_t n_t·std_t²."""
    return sum(sizes[name] * noise.standard_deviation**2 for name, noise in allocation.items())


@torch.no_grad()
def add_noise_(parameters: dict[str, torch.nn.Parameter], allocation: dict[str, TensorNoise], generator: torch.Generator) -> None:
    """Add the allocated Gaussian noise to each parameter's `.grad` in place."""
    for name, parameter in parameters.items():
        noise = torch.randn(parameter.shape, generator=generator, device=parameter.device, dtype=parameter.dtype)
        parameter.grad.add_(noise, alpha=allocation[name].standard_deviation)


def noisy_update_(
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    parameters: dict[str, torch.nn.Parameter],
    allocation: dict[str, TensorNoise],
    generator: torch.Generator,
) -> None:
    """Add the allocated noise to every gradient, take the optimizer step, and project the weights.

    A parameter without a gradient, after an empty batch, gets its noise on a zero gradient:
    every step releases noise, whatever the batch.
    """
    for parameter in parameters.values():
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
    add_noise_(parameters, allocation, generator)
    optimizer.step()
    module.project_()


def format_noise_table(allocation: dict[str, TensorNoise], sizes: dict[str, int]) -> str:
    """Render the noise of each parameter tensor as an aligned text table."""
    header = ("parameter", "size", "sensitivity Δ", "noise multiplier σ_t", "noise std")
    rows = [
        (name, str(sizes[name]), f"{noise.sensitivity:.6g}", f"{noise.noise_multiplier:.6g}", f"{noise.standard_deviation:.6g}")
        for name, noise in allocation.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows])
