"""Noise strategies: each gives σ_eff equal to the calibrated multiplier, and the step noise it promises."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lipc
from lipc.check import check_spec
from lipc.errors import SpecError
from lipc.lang import parse_source
from lipc.privacy.accounting import calibrate_noise_multiplier, compute_epsilon, effective_noise_multiplier
from lipc.privacy.noise import NOISE_STRATEGIES, add_noise_, allocate_noise, noise_energy
from lipc.train.trainer import parameter_sizes

from conftest import MLP_SOURCE, run_lipc

SENSITIVITIES = {"a.weight": 3.0, "a.bias": 0.5, "b.weight": 4.0}
SIZES = {"a.weight": 1000, "a.bias": 10, "b.weight": 30}


@pytest.mark.parametrize("strategy", NOISE_STRATEGIES)
def test_effective_multiplier_equals_target(strategy):
    allocation = allocate_noise(SENSITIVITIES, 2.5, 64.0, strategy, SIZES)
    achieved = effective_noise_multiplier([noise.noise_multiplier for noise in allocation.values()])
    assert achieved >= 2.5
    assert achieved == pytest.approx(2.5, rel=1e-8)


@pytest.mark.parametrize("strategy", NOISE_STRATEGIES)
def test_standard_deviation_is_multiplier_times_bound(strategy):
    allocation = allocate_noise(SENSITIVITIES, 2.5, 64.0, strategy, SIZES)
    for name, noise in allocation.items():
        assert noise.standard_deviation == pytest.approx(noise.noise_multiplier * SENSITIVITIES[name] / 64.0, rel=1e-12), name


@pytest.mark.parametrize("strategy, accountant", [(strategy, "rdp") for strategy in NOISE_STRATEGIES] + [("least_energy", "pld")])
def test_accounting_of_step_meets_target(strategy, accountant):
    # The step is one Gaussian mechanism with multiplier σ_eff: account it as such.
    compiled = lipc.compile_source(MLP_SOURCE)
    q, steps, target = 64 / 1437, 100, 2.0
    sigma = calibrate_noise_multiplier(target, 1e-5, q, steps, accountant)
    allocation = allocate_noise(compiled.sensitivities, sigma, 64.0, strategy, parameter_sizes(compiled.module))
    sigma_eff = effective_noise_multiplier([noise.noise_multiplier for noise in allocation.values()])
    spent = compute_epsilon(q, sigma_eff, steps, 1e-5, accountant)
    assert spent <= compute_epsilon(q, sigma, steps, 1e-5, accountant)
    assert spent == pytest.approx(compute_epsilon(q, sigma, steps, 1e-5, accountant), rel=1e-6)
    assert spent <= target


def test_global_gives_one_standard_deviation():
    allocation = allocate_noise({"a": 3.0, "b": 4.0}, 2.0, 100.0, "global")
    assert allocation["a"].standard_deviation == pytest.approx(0.1)
    assert allocation["b"].standard_deviation == pytest.approx(0.1)
    assert allocation["a"].noise_multiplier == pytest.approx(2.0 * 5 / 3)


def test_per_tensor_gives_one_multiplier():
    allocation = allocate_noise(SENSITIVITIES, 2.0, 100.0, "per_tensor")
    for name, noise in allocation.items():
        assert noise.noise_multiplier == pytest.approx(2.0 * math.sqrt(3)), name


def test_least_energy_never_exceeds_global():
    for sizes in (SIZES, {"a.weight": 1, "a.bias": 1, "b.weight": 1}, {"a.weight": 10, "a.bias": 10_000, "b.weight": 5}):
        least = noise_energy(allocate_noise(SENSITIVITIES, 1.0, 1.0, "least_energy", sizes), sizes)
        for strategy in ("global", "per_tensor"):
            assert least <= noise_energy(allocate_noise(SENSITIVITIES, 1.0, 1.0, strategy, sizes), sizes) * (1 + 1e-12), strategy


def test_least_energy_needs_sizes():
    with pytest.raises(ValueError, match="least_energy strategy needs the size of every parameter tensor"):
        allocate_noise(SENSITIVITIES, 1.0, 1.0, "least_energy")


@pytest.mark.parametrize("strategy", NOISE_STRATEGIES)
def test_added_noise_has_allocated_spread(strategy):
    compiled = lipc.compile_source(MLP_SOURCE)
    parameters = dict(compiled.module.named_parameters())
    allocation = allocate_noise(compiled.sensitivities, 1.0, 8.0, strategy, parameter_sizes(compiled.module))
    generator = torch.Generator().manual_seed(0)
    samples = {name: [] for name in parameters}
    for _ in range(200):
        for parameter in parameters.values():
            parameter.grad = torch.zeros_like(parameter)
        add_noise_(parameters, allocation, generator)
        for name, parameter in parameters.items():
            samples[name].append(parameter.grad.flatten().clone())
    for name, values in samples.items():
        measured = float(torch.cat(values).std())
        assert measured == pytest.approx(allocation[name].standard_deviation, rel=0.05), name


def test_spec_selects_strategy():
    source = MLP_SOURCE + "privacy {\n    noise = least_energy\n}\n"
    assert check_spec(parse_source(source)).train.noise == "least_energy"


def test_spec_rejects_unknown_strategy():
    source = MLP_SOURCE + "privacy {\n    noise = per_tenser\n}\n"
    with pytest.raises(SpecError) as caught:
        check_spec(parse_source(source))
    assert caught.value.message == "invalid noise per_tenser for privacy"
    assert caught.value.hint == "did you mean 'per_tensor'?"
    assert caught.value.location.line == MLP_SOURCE.count("\n") + 2


def test_compile_shows_noise_per_tensor(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--epsilon", "3", "--noise", "per_tensor", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "noise per tensor (per_tensor strategy):" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("dense_")]
    noise_rows = [row for row in rows if len(row) == 5]
    assert [row[0] for row in noise_rows] == ["dense_1.weight", "dense_3.weight"]


def test_compile_json_noise_matches_allocation(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--epsilon", "3", "--noise", "least_energy", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    privacy = json.loads(result.stdout)["privacy"]
    compiled = lipc.compile(digits_spec)
    expected = allocate_noise(compiled.sensitivities, privacy["noise_multiplier"], 256.0, "least_energy", parameter_sizes(compiled.module))
    for name, noise in expected.items():
        assert privacy["tensors"][name]["standard_deviation"] == pytest.approx(noise.standard_deviation), name
    assert privacy["epsilon"] <= 3.0


def test_compile_without_target_has_no_noise(digits_spec, tmp_path):
    result = run_lipc("compile", str(digits_spec), "--json", cwd=tmp_path)
    assert "privacy" not in json.loads(result.stdout)
