"""The example networks compile, train a few private steps on synthetic data, and keep their bounds."""

from __future__ import annotations

import math

import pytest
import torch

import lipc
from lipc.privacy.noise import allocate_noise
from lipc.train.trainer import private_step

from conftest import SPECS
from test_soundness import all_labels, assert_within_bounds, on_sphere

EXAMPLES = {
    "mnist_cnn": ((1, 28, 28), 10),
    "cifar_resnet": ((3, 32, 32), 10),
    "mnist1d_cnn": ((1, 40), 10),
    "breast_cancer_mlp": ((30,), 1),
}

BATCH_SIZE = 8
STEPS = 2
NOISE_MULTIPLIER = 1.0


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_compiles(name):
    compiled = lipc.compile(SPECS / f"{name}.lip")
    input_shape, outputs = EXAMPLES[name]
    assert compiled.input_shape == input_shape
    assert compiled.num_classes == outputs
    assert compiled.certified_lipschitz() <= compiled.checked.lipschitz_bound


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_trains_privately(name):
    generator = torch.Generator().manual_seed(0)
    compiled = lipc.compile(SPECS / f"{name}.lip")
    module = compiled.module
    parameters = dict(module.named_parameters())
    assert set(parameters) == set(compiled.sensitivities)
    for parameter in parameters.values():
        parameter.grad = torch.zeros_like(parameter)
    optimizer = torch.optim.Adam(parameters.values(), lr=0.01)
    allocation = allocate_noise(compiled.sensitivities, NOISE_MULTIPLIER, float(BATCH_SIZE))
    before = {name: parameter.detach().clone() for name, parameter in parameters.items()}

    for _ in range(STEPS):
        inputs = torch.rand(BATCH_SIZE, *compiled.input_shape, generator=generator)
        labels = all_labels(compiled, BATCH_SIZE, generator)
        loss = private_step(compiled, module, optimizer, parameters, allocation, inputs, labels, float(BATCH_SIZE), generator)
        assert math.isfinite(loss)
    assert compiled.certified_lipschitz() <= compiled.checked.lipschitz_bound

    for parameter_name, parameter in parameters.items():
        assert not torch.equal(parameter.detach(), before[parameter_name]), f"{parameter_name} did not change"

    probe = on_sphere(BATCH_SIZE, compiled.input_shape, compiled.input_clip_norm, generator)
    assert_within_bounds(compiled, probe, all_labels(compiled, BATCH_SIZE, generator))
