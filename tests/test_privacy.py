"""Privacy: sampling and the private step itself; accounting and noise have their own test files."""

from __future__ import annotations

import math

import pytest
import torch

import lipc
from lipc.privacy.noise import TensorNoise, allocate_noise
from lipc.privacy.sampling import poisson_sample, shuffled_batches
from lipc.train.trainer import private_step

from conftest import MLP_SOURCE


def test_poisson_sampling_rate():
    generator = torch.Generator().manual_seed(0)
    sizes = [len(poisson_sample(1000, 0.1, generator, torch.device("cpu"))) for _ in range(400)]
    mean = sum(sizes) / len(sizes)
    assert abs(mean - 100) < 3  # standard error of the mean is sqrt(90/400) ≈ 0.47
    assert len(set(sizes)) > 10, "the batch size must vary"


def test_poisson_sampling_can_be_empty():
    generator = torch.Generator().manual_seed(0)
    sizes = [len(poisson_sample(10, 0.01, generator, torch.device("cpu"))) for _ in range(200)]
    assert 0 in sizes


def test_shuffled_batches_have_fixed_size():
    generator = torch.Generator().manual_seed(0)
    batches = shuffled_batches(100, 30, 3, generator, torch.device("cpu"))
    assert [len(batch) for batch in batches] == [30, 30, 30]
    assert len(set(torch.cat(batches).tolist())) == 90


def test_shuffled_batches_wrap_around():
    generator = torch.Generator().manual_seed(0)
    batches = shuffled_batches(10, 4, 3, generator, torch.device("cpu"))
    assert [len(batch) for batch in batches] == [4, 4, 4]


def _step_setup(source=MLP_SOURCE):
    compiled = lipc.compile_source(source)
    parameters = dict(compiled.module.named_parameters())
    for parameter in parameters.values():
        parameter.grad = torch.zeros_like(parameter)
    optimizer = torch.optim.SGD(parameters.values(), lr=0.0)
    return compiled, parameters, optimizer


def test_step_divides_by_expected_batch_size():
    compiled, parameters, optimizer = _step_setup()
    silent = {name: TensorNoise(1.0, math.inf, 0.0) for name in parameters}
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3, 12, generator=generator)
    labels = torch.tensor([0, 1, 2])

    private_step(compiled, compiled.module, optimizer, parameters, silent, inputs, labels, 10.0, generator)
    expected = torch.autograd.grad(compiled.loss_function(compiled.module(inputs), labels).sum() / 10.0, list(parameters.values()))
    for (name, parameter), reference in zip(parameters.items(), expected):
        assert torch.allclose(parameter.grad, reference, atol=1e-7), name


@pytest.mark.parametrize("physical_batch_size", [1, 2, 3, 7])
def test_split_batch_gives_same_gradient(physical_batch_size):
    compiled, parameters, optimizer = _step_setup()
    silent = {name: TensorNoise(1.0, math.inf, 0.0) for name in parameters}
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(7, 12, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])

    loss = private_step(compiled, compiled.module, optimizer, parameters, silent, inputs, labels, 5.0, generator, physical_batch_size)
    expected_loss = compiled.loss_function(compiled.module(inputs), labels).sum()
    expected = torch.autograd.grad(expected_loss / 5.0, list(parameters.values()))
    assert loss == pytest.approx(float(expected_loss), rel=1e-6)
    for (name, parameter), reference in zip(parameters.items(), expected):
        assert torch.allclose(parameter.grad, reference, atol=1e-7), name


def test_empty_batch_takes_noise_only_step():
    compiled, parameters, optimizer = _step_setup()
    allocation = allocate_noise(compiled.sensitivities, 1.0, 10.0)
    generator = torch.Generator().manual_seed(0)
    loss = private_step(compiled, compiled.module, optimizer, parameters, allocation, torch.empty(0, 12), torch.empty(0, dtype=torch.long), 10.0, generator)
    assert loss == 0.0
    noise = torch.cat([p.grad.flatten() for p in parameters.values()])
    expected_std = allocation["dense_1.weight"].standard_deviation
    assert float(noise.std()) == pytest.approx(expected_std, rel=0.15)


def test_projection_keeps_constraints_after_step():
    compiled, parameters, _ = _step_setup()
    optimizer = torch.optim.SGD(parameters.values(), lr=100.0)
    allocation = allocate_noise(compiled.sensitivities, 1.0, 1.0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        private_step(compiled, compiled.module, optimizer, parameters, allocation, torch.randn(4, 12), torch.tensor([0, 1, 2, 0]), 4.0, generator)
        for name, module in compiled.module.named_children():
            if hasattr(module, "certified_lipschitz"):
                assert module.certified_lipschitz() <= 1.0, name
            if getattr(module, "bias", None) is not None:
                assert float(module.bias.detach().norm()) <= module.bias_norm, name
