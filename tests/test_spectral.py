"""Certified spectral-norm bounds against SVD."""

from __future__ import annotations

import pytest
import torch

from lipc.nn.spectral import spectral_norm_eigh, spectral_norm_gram_iteration


def matrices():
    generator = torch.Generator().manual_seed(0)
    orthogonal = torch.linalg.qr(torch.randn(64, 64, dtype=torch.float64, generator=generator))[0]
    yield "gaussian_wide", torch.randn(30, 70, generator=generator)
    yield "gaussian_tall", torch.randn(90, 20, generator=generator)
    yield "orthogonal", orthogonal.float()
    yield "rank_one", torch.outer(torch.randn(40, generator=generator), torch.randn(25, generator=generator))
    yield "tiny", 1e-20 * torch.randn(5, 5, generator=generator)
    yield "huge", 1e20 * torch.randn(5, 5, generator=generator)


@pytest.mark.parametrize("name, matrix", list(matrices()))
def test_eigh_bound_matches_svd(name, matrix):
    exact = float(torch.linalg.svdvals(matrix.double())[0])
    bound = spectral_norm_eigh(matrix)
    assert bound >= exact
    assert bound <= exact * (1 + 1e-8) + 1e-300


@pytest.mark.parametrize("name, matrix", list(matrices()))
@pytest.mark.parametrize("iterations", [1, 3, 6])
def test_gram_iteration_is_upper_bound(name, matrix, iterations):
    exact = float(torch.linalg.svdvals(matrix.double())[0])
    bound = spectral_norm_gram_iteration(matrix, iterations)
    assert bound >= exact
    rank = min(matrix.shape)
    assert bound <= exact * rank ** (1 / 2 ** (iterations + 1)) * (1 + 1e-8)


def test_gram_iteration_of_zero_matrix():
    assert spectral_norm_gram_iteration(torch.zeros(3, 4)) == 0.0
