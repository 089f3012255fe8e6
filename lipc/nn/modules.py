"""PyTorch modules for the layers of the language.

A constrained module implements `project_()`, which rescales its weights so that a certified
upper bound on its Lipschitz constant is at most its budget, and `certified_lipschitz()`,
which returns such a bound for its current weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from lipc.nn.spectral import spectral_norm_eigh

# Projection targets this fraction below the budget: a matrix divided by its spectral norm
# can land a rounding error above 1 in float32, never 1e-5 above it.
PROJECTION_MARGIN = 1e-5


def spectral_norm_upper_bound(matrix: torch.Tensor) -> float:
    """Largest singular value, exact up to float64 rounding (plus a tiny certified slack)."""
    return spectral_norm_eigh(matrix)


class ClipNorm(nn.Module):
    """Project each example onto the ℓ2 ball of radius `radius`: x · min(1, radius / ‖x‖)."""

    def __init__(self, radius: float) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = x.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (self.radius / norms).clamp(max=1.0)
        return x * scale.view(-1, *([1] * (x.dim() - 1)))

    def extra_repr(self) -> str:
        return f"radius={self.radius:g}"


class GroupSort(nn.Module):
    """Sort each group of `group_size` consecutive channels (dimension 1) in descending order."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *rest = x.shape
        groups = x.reshape(batch, channels // self.group_size, self.group_size, *rest)
        if self.group_size == 2:
            # Max and min of each pair: the same result as a sort, cheaper and simpler in ONNX.
            first, second = groups.unbind(dim=2)
            ordered = torch.stack((torch.maximum(first, second), torch.minimum(first, second)), dim=2)
        else:
            ordered = groups.sort(dim=2, descending=True).values
        return ordered.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class SpectralDense(nn.Module):
    """y = W x + b with ‖W‖₂ ≤ 1 and, when a bias is used, ‖b‖ ≤ bias_norm."""

    def __init__(self, in_features: int, out_features: int, bias_norm: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.orthogonal_(self.weight)
        self.bias_norm = bias_norm
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias_norm is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def project_(self) -> None:
        norm = spectral_norm_upper_bound(self.weight)
        scale = max(1.0, norm * (1.0 + PROJECTION_MARGIN))
        if scale > 1.0:
            self.weight.div_(scale)
        if self.bias is not None:
            bias_norm = float(self.bias.detach().to(torch.float64).norm())
            scale = max(1.0, bias_norm * (1.0 + PROJECTION_MARGIN) / self.bias_norm) if self.bias_norm > 0 else math.inf
            if scale == math.inf:
                self.bias.zero_()
            elif scale > 1.0:
                self.bias.div_(scale)

    def certified_lipschitz(self) -> float:
        return spectral_norm_upper_bound(self.weight)

    def extra_repr(self) -> str:
        bias = f", bias_norm={self.bias_norm:g}" if self.bias is not None else ""
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}{bias}"


class LipschitzSequential(nn.Sequential):
    """A sequence of layers whose certified Lipschitz constant is the product of theirs."""

    @torch.no_grad()
    def project_(self) -> None:
        """Bring every constrained layer back inside its constraint (post-processing)."""
        for module in self:
            if hasattr(module, "project_"):
                module.project_()

    def certified_lipschitz(self) -> float:
        """Certified Lipschitz constant (ℓ2 to ℓ2) of the network with its current weights."""
        constant = 1.0
        for module in self:
            if hasattr(module, "certified_lipschitz"):
                constant *= module.certified_lipschitz()
        return constant
