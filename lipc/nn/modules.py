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

from lipc.check.layers import L2_POOL_EPSILON
from lipc.nn.spectral import WarmStartedSpectralBound, spectral_norm_eigh

# Projection targets this fraction below the budget: a matrix divided by its spectral norm
# can land a rounding error above 1 in float32, never 1e-5 above it.
PROJECTION_MARGIN = 1e-5
# NOTE: the float64 eigenvalue solves and FFTs behind the operator norms of convolutions, and
# behind `certified_lipschitz()` of dense layers, are taken as exact. Their rounding error,
# about 1e-13 relative at these sizes, is assumed to stay below PROJECTION_MARGIN; no explicit
# error bound for LAPACK's results is computed. The projection of a dense layer uses a Cholesky
# certificate whose bound includes its rounding error (`certify_gram_eigenvalue`).


# Björck iterations run before the certified normalisation of a `bjorck` layer. They only
# bring singular values towards 1; the normalisation after them is what certifies the layer.
BJORCK_ITERATIONS = 15


def spectral_norm_upper_bound(matrix: torch.Tensor) -> float:
    """Largest singular value, exact up to float64 rounding (plus a tiny certified slack)."""
    return spectral_norm_eigh(matrix)


def frobenius_norm(tensor: torch.Tensor) -> float:
    return float(tensor.detach().to(torch.float64).norm())


def bjorck_orthogonalize(matrix: torch.Tensor, iterations: int = BJORCK_ITERATIONS) -> torch.Tensor:
    """Björck iterations W ← W·(1.5·I − 0.5·WᵀW) from W/‖W‖₂, in float64.

    Each iteration maps a singular value σ in (0, sqrt(3)) to σ·(1.5 − 0.5·σ²), which moves
    it towards 1. The result is close to orthogonal, not certified: normalise it afterwards.
    """
    weight = matrix.detach().to(torch.float64)
    norm = spectral_norm_upper_bound(weight)
    if norm == 0.0:
        return matrix.detach().clone()
    weight = weight / norm
    wide = weight.shape[0] < weight.shape[1]
    for _ in range(iterations):
        if wide:
            identity = torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)
            weight = (1.5 * identity - 0.5 * weight @ weight.T) @ weight
        else:
            identity = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
            weight = weight @ (1.5 * identity - 0.5 * weight.T @ weight)
    return weight.to(matrix.dtype)


def reshaped_kernel_bound(weight: torch.Tensor, max_coverage: int) -> float:
    """sqrt(m)·‖K_r‖₂, K_r the c_out × (c_in·kernel) reshape: ‖conv(x)‖² = Σ_p ‖K_r·patch_p‖² ≤ ‖K_r‖²·m·‖x‖²."""
    return math.sqrt(max_coverage) * spectral_norm_upper_bound(weight.flatten(1))


def fft_operator_norm(weight: torch.Tensor, sizes: tuple[int, ...]) -> float:
    """Operator norm of the circular convolution with `weight` on a grid of `sizes`, in float64.

    The DFT block-diagonalises a multi-channel circular convolution, with the c_out × c_in
    blocks K̂(ω), so its norm is max_ω ‖K̂(ω)‖₂. On the padded input, a convolution with zero
    padding keeps a subset of the output rows of the circular one on the padded size. A stride
    keeps a subset of rows too, so this is an upper bound for both.
    """
    kernel = weight.detach().to(torch.float64)
    spatial = tuple(range(2, kernel.dim()))
    # For a real kernel K̂(−ω) is the complex conjugate of K̂(ω), with the same singular values,
    # so the half spectrum from rfftn contains every value that the maximum needs.
    spectrum = torch.fft.rfftn(kernel, s=sizes, dim=spatial)
    blocks = spectrum.permute(*spatial, 0, 1).reshape(-1, kernel.shape[0], kernel.shape[1])
    return float(torch.linalg.matrix_norm(blocks, ord=2).max())


def _normalise_(weight: torch.Tensor, bound: float, rounding_gain: float) -> None:
    """W ← W / s, with s chosen so that the stored weight's operator norm is at most 1/(1 + margin).

    `bound` is a certified bound U on the operator norm of W. `rounding_gain` is R = c·‖W‖_F,
    where c bounds the change of the operator norm per unit Frobenius norm of a weight error
    (1 for a matrix, sqrt(m) for a convolution kernel). Dividing in the weight's dtype rounds s
    and each entry with relative error at most eps, so the stored weight's operator norm is at
    most (U + eps·R)·(1 + eps)/s.
    """
    if bound * (1.0 + PROJECTION_MARGIN) <= 1.0:
        return
    eps = torch.finfo(weight.dtype).eps
    scale = (bound + eps * rounding_gain) * (1.0 + eps) * (1.0 + PROJECTION_MARGIN)
    weight.div_(scale)


def _project_bias_(bias: torch.Tensor, bias_norm: float) -> None:
    """Rescale the bias onto the ball ‖b‖ ≤ bias_norm."""
    norm = float(bias.detach().to(torch.float64).norm())
    if bias_norm == 0.0:
        bias.zero_()
    elif norm * (1.0 + PROJECTION_MARGIN) > bias_norm:
        bias.mul_(bias_norm / (norm * (1.0 + PROJECTION_MARGIN)))


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


class _SortPairs(torch.autograd.Function):
    """Pair sort: orders each pair (dimension 2) descending, and backward applies the same swaps.

    A sort of two is a permutation and its own inverse, so the gradient of each input is the
    gradient of the output it moved to. torch.maximum and torch.minimum give the same values,
    but their backward passes compare the inputs again: about three times the time, measured
    on one CPU thread. At a tie this sends the whole gradient to one input, while theirs splits
    it in half. Neither has a norm above that of the output gradient, which the bounds need.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = pairs.unbind(dim=2)
        keep = (first >= second).unsqueeze(2)
        return torch.where(keep, pairs, pairs.flip(2)), keep

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, keep = output
        ctx.mark_non_differentiable(keep)
        ctx.save_for_backward(keep)

    @staticmethod
    def backward(ctx, grad_ordered: torch.Tensor, _grad_keep: torch.Tensor) -> torch.Tensor:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad_ordered, grad_ordered.flip(2))


class GroupSort(nn.Module):
    """Sort each group of `group_size` consecutive channels (dimension 1) in descending order."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, *rest = x.shape
        groups = x.reshape(batch, channels // self.group_size, self.group_size, *rest)
        if self.group_size != 2:
            ordered = groups.sort(dim=2, descending=True).values
        elif torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            # Max and min of each pair: the same values, and simpler operators in ONNX.
            first, second = groups.unbind(dim=2)
            ordered = torch.stack((torch.maximum(first, second), torch.minimum(first, second)), dim=2)
        else:
            ordered, _ = _SortPairs.apply(groups)
        return ordered.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class SpectralDense(nn.Module):
    """y = W x + b with ‖W‖₂ ≤ 1 and, when a bias is used, ‖b‖ ≤ bias_norm.

    With constraint="bjorck", each projection orthogonalises W by Björck iterations before
    the certified normalisation.
    """

    def __init__(self, in_features: int, out_features: int, bias_norm: float | None = None, constraint: str = "spectral") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.orthogonal_(self.weight)
        self.bias_norm = bias_norm
        self.constraint = constraint
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias_norm is not None else None
        # Certifies ‖W‖₂ in each projection with a Cholesky factorisation, which includes
        # its own rounding error, warm-started from the previous projection.
        self._projection_bound = WarmStartedSpectralBound()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    @torch.no_grad()
    def project_(self) -> None:
        if self.constraint == "bjorck":
            self.weight.copy_(bjorck_orthogonalize(self.weight))
        _normalise_(self.weight, self._projection_bound(self.weight), frobenius_norm(self.weight))
        if self.bias is not None:
            _project_bias_(self.bias, self.bias_norm)

    def certified_lipschitz(self) -> float:
        return spectral_norm_upper_bound(self.weight)

    def bound_method(self) -> str:
        return f"{self.constraint}: Cholesky certificate on the float64 Gram matrix in each projection; eigenvalue solve of the Gram matrix for the certified constant"

    def extra_repr(self) -> str:
        bias = f", bias_norm={self.bias_norm:g}" if self.bias is not None else ""
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}{bias}, constraint={self.constraint}"


class LipschitzConv(nn.Module):
    """A 1-D or 2-D convolution with explicit zero or circular padding and operator norm ≤ 1.

    `padding` lists (before, after) per spatial axis. The certified bound on the operator norm
    is the smaller of sqrt(m)·‖K_r‖₂ and the FFT bound on `fft_sizes`: the padded input size
    for zero padding, the input size for circular padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[tuple[int, int], ...],
        circular: bool,
        fft_sizes: tuple[int, ...],
        max_coverage: int,
        bias_norm: float | None = None,
        constraint: str = "spectral",
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        nn.init.orthogonal_(self.weight)
        self.bias_norm = bias_norm
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias_norm is not None else None
        self.stride = stride
        self.padding = padding
        self.circular = circular
        self.fft_sizes = fft_sizes
        self.max_coverage = max_coverage
        self.constraint = constraint
        # Equal zero padding on both sides of every axis is the convolution's own padding, which
        # saves a padded copy of the input in the forward and the backward pass. Other padding
        # goes through F.pad, which lists the last axis first.
        builtin = not circular and all(before == after for before, after in padding)
        self._builtin_padding = tuple(before for before, _ in padding) if builtin else 0
        self._pad = () if builtin else tuple(amount for before_after in reversed(padding) for amount in before_after)

    def convolve(self, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Apply this layer's padding, stride and convolution to `x`, with `kernel` and `bias`."""
        if any(self._pad):
            x = F.pad(x, self._pad, mode="circular" if self.circular else "constant")
        function = F.conv1d if kernel.dim() == 3 else F.conv2d
        return function(x, kernel, bias, stride=self.stride, padding=self._builtin_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.weight, self.bias)

    def operator_norm_bounds(self) -> dict[str, float]:
        """Each certified upper bound on the operator norm, by method."""
        return {
            "reshaped kernel": reshaped_kernel_bound(self.weight, self.max_coverage),
            "FFT": fft_operator_norm(self.weight, self.fft_sizes),
        }

    @torch.no_grad()
    def project_(self) -> None:
        if self.constraint == "bjorck":
            reshaped = bjorck_orthogonalize(self.weight.flatten(1))
            self.weight.copy_(reshaped.reshape(self.weight.shape))
        # A kernel error E changes the operator norm by at most sqrt(m)·‖E_r‖₂ ≤ sqrt(m)·‖E‖_F.
        _normalise_(self.weight, self.certified_lipschitz(), math.sqrt(self.max_coverage) * frobenius_norm(self.weight))
        if self.bias is not None:
            _project_bias_(self.bias, self.bias_norm)

    def certified_lipschitz(self) -> float:
        return min(self.operator_norm_bounds().values())

    def bound_method(self) -> str:
        bounds = self.operator_norm_bounds()
        chosen = min(bounds, key=bounds.get)
        sizes = "x".join(str(n) for n in self.fft_sizes)
        return (
            f"{self.constraint}: min(reshaped kernel sqrt({self.max_coverage})·‖K_r‖₂ = {bounds['reshaped kernel']:.4g}, "
            f"FFT on {sizes} = {bounds['FFT']:.4g}), now {chosen}"
        )

    def extra_repr(self) -> str:
        kernel = tuple(self.weight.shape[2:])
        bias = f", bias_norm={self.bias_norm:g}" if self.bias is not None else ""
        mode = "circular" if self.circular else "zeros"
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, kernel_size={kernel}, stride={self.stride}, padding={self.padding} ({mode}){bias}, constraint={self.constraint}"


class Abs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


class WindowPool(nn.Module):
    """Pooling with window = stride on every spatial axis: max, scaled average, or ℓ2 norm.

    The scaled average is Σ_window x / sqrt(n), n the window's number of positions; the ℓ2
    norm pooling is sqrt(Σ_window x² + ε).
    """

    def __init__(self, kind: str, window: int) -> None:
        super().__init__()
        self.kind = kind
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.dim() - 2
        positions = self.window**spatial
        if self.kind == "maxpool":
            pool = F.max_pool1d if spatial == 1 else F.max_pool2d
            return pool(x, self.window, self.window)
        pool = F.avg_pool1d if spatial == 1 else F.avg_pool2d
        if self.kind == "avgpool":
            return pool(x, self.window, self.window) * math.sqrt(positions)
        return (pool(x * x, self.window, self.window) * positions + L2_POOL_EPSILON).sqrt()

    def extra_repr(self) -> str:
        return f"{self.kind}, window={self.window}"


class GlobalAvgPool(nn.Module):
    """Mean over all spatial positions of each channel: Lipschitz constant 1/sqrt(P)."""

    def __init__(self, positions: int) -> None:
        super().__init__()
        self.positions = positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=_spatial_dims(x))

    def certified_lipschitz(self) -> float:
        return 1.0 / math.sqrt(self.positions)


class GlobalL2Pool(nn.Module):
    """sqrt(Σ_positions x² + ε) per channel: 1-Lipschitz."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x * x).sum(dim=_spatial_dims(x)) + L2_POOL_EPSILON).sqrt()


class Centering(nn.Module):
    """Subtract the mean of each channel over its positions (`channel`), or of each example (`layer`)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = _spatial_dims(x) if self.mode == "channel" else tuple(range(1, x.dim()))
        return x - x.mean(dim=dims, keepdim=True)

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


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

    def bound_methods(self) -> dict[str, str]:
        """Return, by module name, how each constrained layer's operator norm is certified."""
        return {name: module.bound_method() for name, module in self.named_modules() if hasattr(module, "bound_method")}


class Residual(nn.Module):
    """y = (1 − α)·x + α·f(x): Lipschitz constant (1 − α) + α·Lip(f)."""

    def __init__(self, alpha: float, inner: LipschitzSequential) -> None:
        super().__init__()
        self.alpha = alpha
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alpha) * x + self.alpha * self.inner(x)

    @torch.no_grad()
    def project_(self) -> None:
        self.inner.project_()

    def certified_lipschitz(self) -> float:
        return (1.0 - self.alpha) + self.alpha * self.inner.certified_lipschitz()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"
