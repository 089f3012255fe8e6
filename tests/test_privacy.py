"""Privacy: accounting against dp-accounting, noise allocation, sampling and the step itself."""

from __future__ import annotations

import math

import dp_accounting
import pytest
import torch
from dp_accounting import rdp

import lipc
from lipc.errors import UsageError
from lipc.privacy.accounting import calibrate_noise_multiplier, compute_epsilon, effective_noise_multiplier
from lipc.privacy.noise import TensorNoise, allocate_noise
from lipc.privacy.sampling import poisson_sample
from lipc.train.trainer import private_step

from conftest import MLP_SOURCE


def direct_rdp_epsilon(q, sigma, steps, delta):
    accountant = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return accountant.compose(event).get_epsilon(delta)


@pytest.mark.parametrize("q, sigma, steps", [(0.01, 1.1, 1000), (256 / 1437, 4.0, 240), (1.0, 5.0, 10)])
def test_epsilon_matches_dp_accounting(q, sigma, steps):
    assert compute_epsilon(q, sigma, steps, 1e-5) == pytest.approx(direct_rdp_epsilon(q, sigma, steps, 1e-5), rel=1e-12)


def test_reference_value_abadi_et_al():
    # Abadi et al., "Deep Learning with Differential Privacy" (CCS 2016), section 3.1: q = 0.01,
    # σ = 4, δ = 1e-5, 10 000 steps give ε ≈ 1.26 with the moments accountant. RDP over a finer
    # grid of orders is at least as tight, and PLD tighter still.
    rdp_epsilon = compute_epsilon(0.01, 4.0, 10_000, 1e-5, "rdp")
    pld_epsilon = compute_epsilon(0.01, 4.0, 10_000, 1e-5, "pld")
    assert 0.9 < rdp_epsilon <= 1.26
    assert 0.8 < pld_epsilon <= rdp_epsilon


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
@pytest.mark.parametrize("target", [0.5, 3.0, 8.0])
def test_calibration_meets_target(accountant, target):
    q, steps, delta = 256 / 1437, 60, 1e-5
    sigma = calibrate_noise_multiplier(target, delta, q, steps, accountant)
    reached = compute_epsilon(q, sigma, steps, delta, accountant)
    assert reached <= target
    assert reached > 0.99 * target, "calibration should not waste budget"


def test_calibration_unreachable_target():
    with pytest.raises(UsageError) as caught:
        calibrate_noise_multiplier(1e-6, 1e-5, 1.0, 10**6)
    assert "no noise multiplier" in caught.value.message


def test_pld_not_above_rdp():
    q, steps, delta, sigma = 0.05, 500, 1e-5, 1.2
    assert compute_epsilon(q, sigma, steps, delta, "pld") <= compute_epsilon(q, sigma, steps, delta, "rdp") * 1.001


def test_global_noise_allocation():
    sensitivities = {"a": 3.0, "b": 4.0}
    allocation = allocate_noise(sensitivities, 2.0, 100.0)
    # Same standard deviation everywhere: σ·sqrt(ΣΔ²)/B = 2·5/100.
    assert allocation["a"].standard_deviation == pytest.approx(0.1)
    assert allocation["b"].standard_deviation == pytest.approx(0.1)
    assert allocation["a"].noise_multiplier == pytest.approx(2.0 * 5 / 3)
    assert effective_noise_multiplier([n.noise_multiplier for n in allocation.values()]) == pytest.approx(2.0)


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
