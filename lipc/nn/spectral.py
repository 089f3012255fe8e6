"""Certified upper bounds on the spectral norm of a matrix, computed in float64."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg.lapack
import scipy.sparse.linalg
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


# Unit roundoff u of float64: every basic operation has relative error at most u.
FLOAT64_UNIT_ROUNDOFF = 2.0**-53
# Each rounding-error term of the Cholesky certificate is multiplied by this factor, which
# covers the float64 arithmetic that sums the terms and any constant lost to blocking.
ROUNDING_SAFETY_FACTOR = 4.0

# The Cholesky certificate is tried at λ̂·(1 + gap), λ̂ the estimate of the largest eigenvalue;
# the gap grows by GAP_GROWTH after each failed attempt. After the last attempt the ∞-norm
# of the Gram matrix, a looser certified bound, is used instead.
CANDIDATE_RELATIVE_GAP = 2e-6
GAP_GROWTH = 100.0
CERTIFICATE_ATTEMPTS = 3
# The estimate of a Gram matrix up to this size is a direct float64 eigenvalue solve. Larger
# ones on the CPU get ARPACK's Lanczos iteration, warm-started from the previous eigenvector.
DIRECT_ESTIMATE_MAX_SIZE = 128
# A loose tolerance suffices: the Ritz value is within about 3e-7 of λ_max at 1e-4 on the
# Gram matrices of a noisy training run, and the candidate gap absorbs that.
LANCZOS_BASIS_SIZE = 12
LANCZOS_TOLERANCE = 1e-4


def _gamma(n: int) -> float:
    """γ_n = n·u / (1 − n·u): the relative error bound of a float64 sum or dot product of n terms."""
    nu = n * FLOAT64_UNIT_ROUNDOFF
    return nu / (1.0 - nu)


def gram_matrix(matrix: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Float64 Gram matrix of the smaller side of `matrix` (flattened to 2-D), and the length of its dot products."""
    weight = matrix.detach().to(torch.float64).flatten(1)
    if weight.shape[0] > weight.shape[1]:
        weight = weight.T
    if weight.device.type != "cpu":
        return weight @ weight.T, weight.shape[1]
    # NumPy computes A·Aᵀ with BLAS's symmetric rank-k update (syrk): half the work of a
    # general product, and an exactly symmetric result. Each entry is still one dot product of
    # length k, so the rounding bound of `certify_gram_eigenvalue` holds for it.
    rows = weight.contiguous().numpy()
    return torch.from_numpy(rows @ rows.T), weight.shape[1]


def _cholesky_completes(matrix: torch.Tensor) -> bool:
    """Return whether a Cholesky factorisation of the symmetric `matrix` (one triangle) completes."""
    if matrix.device.type != "cpu":
        return int(torch.linalg.cholesky_ex(matrix)[1]) == 0
    # SciPy's potrf factors in place, a little faster than torch's wrapper. The transposed view
    # is column-major, as LAPACK needs, so no copy is made, and potrf reads the upper triangle.
    _, info = scipy.linalg.lapack.dpotrf(matrix.numpy().T, lower=1, clean=0, overwrite_a=1)
    return info == 0


def certify_gram_eigenvalue(gram: torch.Tensor, inner_dimension: int, candidate: float) -> float | None:
    """Certified upper bound on λ_max(W Wᵀ) just above `candidate`, or None when the certificate fails.

    `gram` is Ĝ = fl(W Wᵀ), computed in float64 from dot products of length k = `inner_dimension`.
    The factorisation reads only one triangle, so Ĝ below means the symmetric matrix with that
    triangle. Each of its entries is one of the computed dot products, whichever triangle it is.
    The certificate is a Cholesky factorisation of A = fl(t·I − Ĝ) at t = `candidate`. When it
    completes, the standard backward error bound of Cholesky factorisation gives
    R̂ᵀR̂ = A + E with |E| ≤ γ_{n+1}·|R̂ᵀ|·|R̂|, so λ_min(A) ≥ −γ_{n+1}·tr(A)/(1 − γ_{n+1}).
    Adding the rounding of the shift (at most u·t) and of the Gram matrix itself
    (‖Ĝ − W Wᵀ‖₂ ≤ γ_k·‖W‖_F², with ‖W‖_F² ≤ tr(Ĝ)/(1 − γ_k)) bounds λ_max(W Wᵀ).
    """
    size = gram.shape[0]
    shifted = -gram
    shifted.diagonal().add_(candidate)
    if not _cholesky_completes(shifted):
        return None

    # NOTE: this assumes LAPACK's blocked Cholesky (potrf) meets the componentwise backward
    # error bound proven for the unblocked algorithm; ROUNDING_SAFETY_FACTOR leaves room for a
    # larger constant. Underflow is not covered: entries below 1e-290 would need extra terms.
    gamma_inner = _gamma(inner_dimension)
    gamma_cholesky = _gamma(size + 1)
    trace = float(gram.diagonal().sum()) * (1.0 + _gamma(size))
    gram_error = gamma_inner * trace / (1.0 - gamma_inner)
    shift_error = FLOAT64_UNIT_ROUNDOFF * candidate
    cholesky_error = gamma_cholesky * size * candidate * (1.0 + FLOAT64_UNIT_ROUNDOFF) / (1.0 - gamma_cholesky)
    return candidate + ROUNDING_SAFETY_FACTOR * (gram_error + shift_error + cholesky_error)


def _infinity_norm_bound(gram: torch.Tensor, inner_dimension: int) -> float:
    """λ_max(W Wᵀ) ≤ ‖S‖_∞ + ‖S − W Wᵀ‖₂, S = (Ĝ + Ĝᵀ)/2: any induced norm bounds the spectral radius.

    A product Ĝ may be slightly asymmetric; ‖S‖_∞ is at most the larger of the maximum row
    and column sums of |Ĝ|, and every entry of S is within the rounding bound of W Wᵀ.
    """
    size = gram.shape[0]
    magnitudes = gram.abs()
    row_sums = max(float(magnitudes.sum(dim=0).max()), float(magnitudes.sum(dim=1).max())) * (1.0 + _gamma(size))
    gamma_inner = _gamma(inner_dimension)
    trace = float(gram.diagonal().sum()) * (1.0 + _gamma(size))
    return (row_sums + ROUNDING_SAFETY_FACTOR * gamma_inner * trace / (1.0 - gamma_inner)) * (1.0 + FLOAT64_SLACK)


class WarmStartedSpectralBound:
    """Certified upper bound on ‖W‖₂ for a matrix that changes a little between calls.

    Each call forms the float64 Gram matrix, estimates its largest eigenvalue, and certifies
    a value slightly above the estimate with a Cholesky factorisation
    (`certify_gram_eigenvalue`). The estimate only chooses where to certify: a poor one costs
    a retry or a looser bound, never soundness. On the CPU the estimate comes from ARPACK's
    Lanczos iteration, warm-started from the previous call's eigenvector, which is several
    times cheaper than a dense eigenvalue solve of the Gram matrix.
    """

    def __init__(self) -> None:
        self._vector: np.ndarray | None = None

    def _estimate(self, gram: torch.Tensor) -> float:
        size = gram.shape[0]
        if size <= DIRECT_ESTIMATE_MAX_SIZE:
            return float(torch.linalg.eigvalsh(gram)[-1])
        if gram.device.type != "cpu":
            # cuSOLVER's float32 solve is fast; its error only costs a retry.
            return float(torch.linalg.eigvalsh(gram.float())[-1])

        start = self._vector if self._vector is not None and self._vector.shape == (size,) else None
        try:
            values, vectors = scipy.sparse.linalg.eigsh(
                gram.numpy(), k=1, which="LA", v0=start, ncv=LANCZOS_BASIS_SIZE, tol=LANCZOS_TOLERANCE
            )
        except scipy.sparse.linalg.ArpackError:
            self._vector = None
            return float(torch.linalg.eigvalsh(gram)[-1])
        self._vector = vectors[:, 0]
        return float(values[0])

    def __call__(self, matrix: torch.Tensor) -> float:
        gram, inner_dimension = gram_matrix(matrix)
        trace = float(gram.diagonal().sum())
        if trace == 0.0:
            return 0.0
        if not math.isfinite(trace):
            return math.inf

        # The mean eigenvalue tr/n lies below λ_max: a floor for an estimate that failed badly.
        estimate = max(self._estimate(gram), trace / gram.shape[0])
        gap = CANDIDATE_RELATIVE_GAP
        for _ in range(CERTIFICATE_ATTEMPTS):
            certified = certify_gram_eigenvalue(gram, inner_dimension, estimate * (1.0 + gap))
            if certified is not None:
                return math.sqrt(certified) * (1.0 + FLOAT64_SLACK)
            gap *= GAP_GROWTH
        return math.sqrt(_infinity_norm_bound(gram, inner_dimension))
