"""The Cholesky-certified spectral bound of the projection, and the weights' norms during training."""

from __future__ import annotations

import pytest
import torch

import lipc
from lipc.nn.modules import LipschitzConv, SpectralDense
from lipc.nn.spectral import WarmStartedSpectralBound, certify_gram_eigenvalue, gram_matrix
from lipc.privacy.noise import allocate_noise
from lipc.train.trainer import parameter_sizes, private_step

# Largest relative excess of the certified bound over the exact spectral norm.
TIGHTNESS = 1e-5


def exact_norm(matrix: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(matrix.detach().double().flatten(1))[0])


def matrices():
    generator = torch.Generator().manual_seed(0)
    orthogonal = torch.linalg.qr(torch.randn(300, 200, dtype=torch.float64, generator=generator))[0].T.float()
    yield "gaussian_wide", torch.randn(30, 70, generator=generator)
    yield "gaussian_tall", torch.randn(300, 160, generator=generator)
    yield "orthogonal_rows", orthogonal
    yield "rank_one", torch.outer(torch.randn(150, generator=generator), torch.randn(140, generator=generator))
    yield "kernel", torch.randn(16, 8, 3, 3, generator=generator)
    yield "tiny", 1e-15 * torch.randn(5, 5, generator=generator)
    yield "huge", 1e15 * torch.randn(5, 5, generator=generator)


@pytest.mark.parametrize("name, matrix", list(matrices()))
def test_bound_is_tight_upper_bound(name, matrix):
    bound = WarmStartedSpectralBound()(matrix)
    exact = exact_norm(matrix)
    assert bound >= exact
    assert bound <= exact * (1 + TIGHTNESS)


def test_bound_of_zero_matrix():
    assert WarmStartedSpectralBound()(torch.zeros(3, 4)) == 0.0


def test_warm_bound_follows_changes():
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(200, 300, generator=generator)
    bound = WarmStartedSpectralBound()
    for _ in range(5):
        matrix = matrix + 0.3 * torch.randn(matrix.shape, generator=generator)
        exact = exact_norm(matrix)
        value = bound(matrix)
        assert value >= exact
        assert value <= exact * (1 + TIGHTNESS)


@pytest.mark.parametrize("shape", [(40, 60), (60, 40)])
def test_gram_matrix_is_symmetric_product_of_smaller_side(shape):
    matrix = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    gram, inner = gram_matrix(matrix)
    weight = matrix.double() if shape[0] <= shape[1] else matrix.double().T
    assert inner == max(shape)
    assert torch.equal(gram, gram.T)
    torch.testing.assert_close(gram, weight @ weight.T, rtol=1e-12, atol=1e-12)


def test_certificate_fails_below_largest_eigenvalue():
    generator = torch.Generator().manual_seed(2)
    gram, inner = gram_matrix(torch.randn(40, 60, generator=generator))
    largest = float(torch.linalg.eigvalsh(gram)[-1])
    assert certify_gram_eigenvalue(gram, inner, largest * (1 - 1e-6)) is None


def test_certificate_above_largest_eigenvalue():
    generator = torch.Generator().manual_seed(3)
    gram, inner = gram_matrix(torch.randn(40, 60, generator=generator))
    largest = float(torch.linalg.eigvalsh(gram)[-1])
    certified = certify_gram_eigenvalue(gram, inner, largest * (1 + 1e-6))
    assert certified is not None
    assert largest <= certified <= largest * (1 + 2e-6)


def test_bad_estimate_falls_back_to_upper_bound(monkeypatch):
    monkeypatch.setattr(WarmStartedSpectralBound, "_estimate", lambda self, gram: 0.0)
    matrix = torch.randn(50, 80, generator=torch.Generator().manual_seed(4))
    assert WarmStartedSpectralBound()(matrix) >= exact_norm(matrix)


def test_nonfinite_weights_give_infinite_bound():
    matrix = torch.ones(4, 4)
    matrix[1, 2] = float("nan")
    assert WarmStartedSpectralBound()(matrix) == float("inf")


NETWORK = """\
network n {
    input shape=[2, 8, 8] clip_norm=1.0
    conv2d 4 kernel=3 padding=same
    groupsort 2
    conv2d 4 kernel=3 padding=same constraint=bjorck bias_norm=0.3
    groupsort 2
    flatten
    dense 160
    groupsort 2
    dense 150 constraint=bjorck
    groupsort 2
    dense 3
}
loss cross_entropy temperature=0.1
"""


def test_weights_within_budget_every_step():
    """A short noisy run with large steps: after each step, every layer's exact norm is at most 1."""
    torch.manual_seed(0)
    compiled = lipc.compile_source(NETWORK)
    module = compiled.module
    module.project_()
    parameters = dict(module.named_parameters())
    for parameter in parameters.values():
        parameter.grad = torch.zeros_like(parameter)
    optimizer = torch.optim.Adam(parameters.values(), lr=0.05)
    allocation = allocate_noise(compiled.sensitivities, 1.0, 16.0, "global", parameter_sizes(module))
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(16, 2, 8, 8, generator=generator)
    labels = torch.randint(3, (16,), generator=generator)

    for step in range(8):
        private_step(compiled, module, optimizer, parameters, allocation, inputs, labels, 16.0, generator)
        for name, layer in module.named_modules():
            if isinstance(layer, SpectralDense):
                assert exact_norm(layer.weight) <= 1.0, f"{name} after step {step}"
            elif isinstance(layer, LipschitzConv):
                assert layer.certified_lipschitz() <= 1.0, f"{name} after step {step}"


def test_projection_reaches_the_budget():
    """The certified bound is tight, so a layer pushed outside comes back to just below norm 1."""
    layer = SpectralDense(300, 200)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    layer.project_()
    assert 1.0 - 1e-4 <= exact_norm(layer.weight) <= 1.0
