"""Certified upper bounds on the spectral norm of a matrix, computed in float64."""

from __future__ import annotations

import math

import torch

# Relative slack added to every bound: float64 rounding in a Gram product or an eigenvalue
# solver is below n·1e-16 relative for the matrix sizes of neural networks.
FLOAT64_SLACK = 1e-9


def spectral_norm_eigh(matrix: torch.Tensor) -> float:
    """Largest singular value, from the largest eigenvalue of the smaller Gram matrix.

    σ_max(W)² = λ_max(W Wᵀ) = λ_max(Wᵀ W); a symmetric eigenvalue solve in float64 is exact
    up to rounding and several times cheaper than an SVD of W.
    """
    weight = matrix.detach().to(torch.float64).flatten(1)
    if weight.shape[0] > weight.shape[1]:
        weight = weight.T
    gram = weight @ weight.T
    largest = float(torch.linalg.eigvalsh(gram)[-1])
    return math.sqrt(max(largest, 0.0)) * (1.0 + FLOAT64_SLACK)


def spectral_norm_gram_iteration(matrix: torch.Tensor, iterations: int = 6) -> float:
    """Gram iteration bound: σ_max(W) ≤ ‖G_k‖_F^(1/2^k), with G_0 = W and G_{i+1} = G_iᵀ G_i.

    Each G_i is rescaled to unit Frobenius norm to avoid overflow, and the scales are
    accumulated in log space: log σ_max(W) ≤ Σ_i log ‖G_i‖_F / 2^i. The bound exceeds
    σ_max by at most a factor rank^(1/2^(k+1)) (Delattre et al., ICML 2023).
    """
    gram = matrix.detach().to(torch.float64).flatten(1)
    if gram.shape[0] > gram.shape[1]:
        gram = gram.T
    log_bound = 0.0
    for index in range(iterations):
        frobenius = float(torch.linalg.matrix_norm(gram))
        if frobenius == 0.0:
            return 0.0
        log_bound += math.log(frobenius) / 2**index
        gram = gram / frobenius
        gram = gram @ gram.T
    log_bound += math.log(float(torch.linalg.matrix_norm(gram))) / 2**iterations
    return math.exp(log_bound) * (1.0 + FLOAT64_SLACK)
